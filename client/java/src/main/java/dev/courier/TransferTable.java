package dev.courier;

import dev.courier.errors.NoSuchTransferException;
import dev.courier.errors.TooManyTransfersException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.function.Consumer;

/**
 * A client's transfers and the limit on how many run at once: beyond it a new transfer
 * is refused at once with {@link TooManyTransfersException}, or, when the client was
 * built with {@code queueTransfers(true)}, waits for a slot.
 */
final class TransferTable {
  /** The most transfers running at once. */
  private final int max;

  /** Whether transfers beyond the limit wait instead of being refused. */
  private final boolean queue;

  /** Where transfers run. */
  private final Executor executor;

  /** Running transfers by request ID (guarded by this). */
  private final Map<Long, Transfer<?>> running = new HashMap<>();

  /** Transfers waiting for a slot, oldest first (guarded by this; empty unless queue). */
  private final ArrayDeque<Transfer<?>> waiting = new ArrayDeque<>();

  /** The next request ID (guarded by this). */
  private long nextId = 1;

  TransferTable(int max, boolean queue, Executor executor) {
    this.max = max;
    this.queue = queue;
    this.executor = executor;
  }

  /** Starts {@code job} as a transfer of {@code total} bytes, or refuses it. */
  <T> Transfer<T> start(
      long total, ProgressListener listener, boolean interruptOnCancel, Consumer<Transfer<T>> job)
      throws TooManyTransfersException {
    Transfer<T> transfer;
    boolean runNow;
    synchronized (this) {
      if (running.size() >= max && !queue) {
        throw new TooManyTransfersException(
            "too many transfers in flight: at most "
                + max
                + " uploads and downloads per client at once");
      }
      transfer = new Transfer<>(nextId++, total, this, job, interruptOnCancel);
      if (listener != null) {
        transfer.addListener(listener);
      }
      runNow = running.size() < max;
      if (runNow) {
        running.put(transfer.requestId(), transfer);
      } else {
        waiting.add(transfer);
      }
    }
    if (runNow) {
      launch(transfer);
    }
    return transfer;
  }

  private void launch(Transfer<?> transfer) {
    try {
      executor.execute(transfer::run);
    } catch (RuntimeException e) {
      // The client is closed.
      transfer.fail(e);
    }
  }

  /** Frees the slot of a transfer that ended, and starts the next waiting one. */
  void release(Transfer<?> transfer) {
    Transfer<?> next = null;
    synchronized (this) {
      if (running.remove(transfer.requestId()) == null) {
        waiting.remove(transfer);
        return;
      }
      if (!waiting.isEmpty() && running.size() < max) {
        next = waiting.poll();
        running.put(next.requestId(), next);
      }
    }
    if (next != null) {
      launch(next);
    }
  }

  /** Takes a transfer out of the queue; true if it was waiting there. */
  synchronized boolean dequeue(Transfer<?> transfer) {
    return waiting.remove(transfer);
  }

  /** Cancels the transfer with {@code requestId}. */
  void cancel(long requestId) throws NoSuchTransferException {
    Transfer<?> transfer;
    synchronized (this) {
      transfer = running.get(requestId);
      if (transfer == null) {
        transfer =
            waiting.stream().filter(t -> t.requestId() == requestId).findFirst().orElse(null);
      }
    }
    if (transfer == null || !transfer.cancel()) {
      throw new NoSuchTransferException(requestId);
    }
  }

  /** Cancels every transfer (the client is closing). */
  void cancelAll() {
    List<Transfer<?>> all;
    synchronized (this) {
      all = new ArrayList<>(waiting);
      all.addAll(running.values());
    }
    all.forEach(Transfer::cancel);
  }
}

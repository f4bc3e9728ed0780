package dev.courier;

import dev.courier.errors.CancelledException;
import dev.courier.errors.CourierException;
import io.grpc.Context;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.function.Consumer;

/**
 * A running upload or download, the way Agora's SDK modelled one: a request ID, progress
 * and a cancel handle. The work runs in the background from the moment the client hands
 * this back; wait for the result with {@link #await()} (blocking) or {@link #future()}.
 *
 * <p>Cancel with {@link #cancel()}, with {@link CourierClient#cancel(long)} by request
 * ID, or by cancelling {@link #future()}: the call is cancelled, the server removes what
 * was sent and frees the slot, a download to a file removes its partial file, and the
 * result is a {@link CancelledException}.
 *
 * @param <T> the result: the {@link Media} record, or a {@link Downloaded} for a download
 *     into memory
 */
public final class Transfer<T> {
  /** The request ID, unique within the client. */
  private final long requestId;

  /** The table that holds this transfer's slot, released when it ends. */
  private final TransferTable table;

  /** The work to run once the transfer has a slot. */
  private final Consumer<Transfer<T>> job;

  /** Whether {@link #cancel()} interrupts the worker (an upload blocked reading). */
  private final boolean interruptOnCancel;

  /** The result, completed once. */
  private final CompletableFuture<T> result = new CompletableFuture<>();

  /** Who hears about progress. */
  private final List<ProgressListener> listeners = new CopyOnWriteArrayList<>();

  /** The gRPC context the transfer's call runs in; cancelling it cancels the call. */
  final Context.CancellableContext context = Context.ROOT.withCancellation();

  /** The latest progress. */
  private volatile Progress progress;

  /** Set once the caller asked to cancel: every later failure reads as cancelled. */
  private volatile boolean cancelRequested;

  /** The thread running the job while it runs (guarded by this). */
  private Thread worker;

  Transfer(
      long requestId,
      long total,
      TransferTable table,
      Consumer<Transfer<T>> job,
      boolean interruptOnCancel) {
    this.requestId = requestId;
    this.table = table;
    this.job = job;
    this.interruptOnCancel = interruptOnCancel;
    this.progress = new Progress(0, total);
    // Whoever completes the result (the work, or a caller cancelling the future), the
    // slot and the call are released.
    result.whenComplete(
        (value, error) -> {
          if (result.isCancelled()) {
            requestCancel();
          }
          table.release(this);
          context.cancel(null);
        });
  }

  /**
   * The request ID of this transfer, valid while it runs.
   *
   * @return the request ID
   */
  public long requestId() {
    return requestId;
  }

  /**
   * The progress so far.
   *
   * @return the latest progress
   */
  public Progress progress() {
    return progress;
  }

  /** Adds a listener before the transfer runs; it hears the first report from the worker. */
  void addListener(ProgressListener listener) {
    listeners.add(listener);
  }

  /**
   * Adds a progress listener; it hears the progress so far at once, then every update.
   *
   * @param listener the listener
   * @return this transfer
   */
  public Transfer<T> onProgress(ProgressListener listener) {
    synchronized (listeners) {
      listeners.add(listener);
      listener.onProgress(requestId, progress);
    }
    return this;
  }

  /**
   * The result as a future. Cancelling it cancels the transfer.
   *
   * @return the future of the result; it fails with a {@link CourierException}
   */
  public CompletableFuture<T> future() {
    return result;
  }

  /**
   * Waits for the transfer to end and returns its result. An interrupt while waiting
   * cancels the transfer.
   *
   * @return the result
   * @throws CourierException why the transfer failed; {@link CancelledException} when it
   *     was cancelled
   */
  public T await() throws CourierException {
    try {
      return result.get();
    } catch (ExecutionException e) {
      throw Errors.from(e.getCause());
    } catch (CancellationException e) {
      throw new CancelledException("cancelled");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      cancel();
      throw new CancelledException("interrupted while waiting: the transfer was cancelled");
    }
  }

  /**
   * Whether the transfer has ended, in success, failure or cancellation.
   *
   * @return true once ended
   */
  public boolean isDone() {
    return result.isDone();
  }

  /**
   * Cancels the transfer: the call is cancelled, the server removes any partial data and
   * frees the slot, and {@link #await()} throws {@link CancelledException}.
   *
   * @return true if the transfer was still running
   */
  public boolean cancel() {
    if (result.isDone()) {
      return false;
    }
    requestCancel();
    if (table.dequeue(this)) {
      fail(new CancelledException("cancelled before it started"));
    }
    return true;
  }

  private void requestCancel() {
    cancelRequested = true;
    context.cancel(null);
    synchronized (this) {
      if (interruptOnCancel && worker != null) {
        worker.interrupt();
      }
    }
  }

  /** Runs the job on the calling thread (a transfer thread of the client). */
  void run() {
    synchronized (this) {
      worker = Thread.currentThread();
    }
    try {
      if (cancelRequested) {
        fail(new CancelledException("cancelled before it started"));
        return;
      }
      Progress start = progress;
      report(start.done(), start.total());
      job.accept(this);
    } catch (RuntimeException | Error e) {
      fail(e);
    } finally {
      synchronized (this) {
        worker = null;
        // An interrupt meant for this transfer must not reach the pool's next task.
        Thread.interrupted();
      }
    }
  }

  boolean cancelRequested() {
    return cancelRequested;
  }

  /** Reports {@code done} of {@code total} bytes to every listener. */
  void report(long done, long total) {
    Progress now = new Progress(done, total);
    synchronized (listeners) {
      progress = now;
      for (ProgressListener listener : listeners) {
        listener.onProgress(requestId, now);
      }
    }
  }

  /** Ends the transfer with its result; the slot is free before anyone sees it. */
  boolean succeed(T value) {
    if (cancelRequested) {
      return fail(new CancelledException("cancelled"));
    }
    table.release(this);
    return result.complete(value);
  }

  /** Ends the transfer with an error ({@link CancelledException} once cancel was asked). */
  boolean fail(Throwable error) {
    // Once cancel was asked, whatever the call ended with reads as cancelled.
    CourierException failure =
        cancelRequested ? new CancelledException("cancelled") : Errors.from(error);
    table.release(this);
    return result.completeExceptionally(failure);
  }
}

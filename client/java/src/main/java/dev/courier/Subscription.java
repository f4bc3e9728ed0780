package dev.courier;

import courier.v1.MessagingServiceOuterClass.SubscribeRequest;
import courier.v1.MessagingServiceOuterClass.SubscribeResponse;
import dev.courier.errors.CourierException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.UnauthenticatedException;
import io.grpc.Context;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * A user's live feed, open from {@link CourierClient#subscribe} until {@link #close()}.
 * While it is open the user is online. When the connection drops or the server restarts
 * it tells its listener ({@link SubscriptionListener#onDisconnected}) and reconnects by
 * itself, with backoff from the client's first pause up to 5 s.
 */
public final class Subscription implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(Subscription.class.getName());

  /** The connection to open Subscribe calls on. */
  private final Connection connection;

  /** Who hears the events. */
  private final SubscriptionListener listener;

  /** Set by close(), or by an error that ends the feed for good (guarded by this). */
  private boolean closed;

  /** The context of the open call; cancelling it ends the call (guarded by this). */
  private Context.CancellableContext call;

  /** The pending reconnection, if any (guarded by this). */
  private ScheduledFuture<?> reconnect;

  /** The pause before the next reconnection (guarded by this). */
  private Duration backoff;

  /** Whether the feed dropped since it was last ready (guarded by this). */
  private boolean dropped;

  /**
   * The cursor of the last message handed to the listener, or of the last ready event when
   * later: each connection asks for the events after it (guarded by this).
   */
  private long cursor;

  Subscription(Connection connection, SubscriptionListener listener, long after) {
    this.connection = connection;
    this.listener = listener;
    this.backoff = connection.options.backoff();
    this.cursor = after;
  }

  /**
   * The cursor of the last message handed to the listener (or of the last ready event,
   * when later): where a new subscription would resume.
   *
   * @return the cursor, 0 for none
   */
  public synchronized long cursor() {
    return cursor;
  }

  /** Opens a Subscribe call; its events go to the listener. */
  void open() {
    Context.CancellableContext context;
    SubscribeRequest request;
    synchronized (this) {
      if (closed) {
        return;
      }
      context = Context.ROOT.withCancellation();
      call = context;
      request = SubscribeRequest.newBuilder().setAfter(cursor).build();
    }
    context.run(() -> connection.messaging().subscribe(request, observer(context)));
  }

  private StreamObserver<SubscribeResponse> observer(Context.CancellableContext context) {
    return new StreamObserver<>() {
      @Override
      public void onNext(SubscribeResponse event) {
        boolean reconnected;
        synchronized (Subscription.this) {
          if (closed) {
            return;
          }
          backoff = connection.options.backoff();
          reconnected = dropped && event.hasReady();
          if (reconnected) {
            dropped = false;
          }
          if (event.hasReady()) {
            cursor = Math.max(cursor, event.getReady().getCursor());
          } else if (event.getCursor() != 0) {
            if (Long.compareUnsigned(event.getCursor(), cursor) <= 0) {
              return; // handed on before this connection
            }
            cursor = event.getCursor();
          }
        }
        long at = event.getCursor();
        switch (event.getEventCase()) {
          case PEER_MESSAGE -> deliver(Protos.received(event.getPeerMessage(), at));
          case CHANNEL_MESSAGE -> deliver(Protos.received(event.getChannelMessage(), at));
          case READY -> {
            if (reconnected) {
              safely(listener::onReconnected);
            }
            var ready = event.getReady();
            safely(
                () ->
                    listener.onReady(
                        ready.getOfflineMessageCount(), ready.getCursor(), ready.getEventsLost()));
          }
          case EVENT_NOT_SET -> {
            // An event this client does not know: newer servers may send more kinds.
          }
        }
      }

      @Override
      public void onError(Throwable error) {
        ended(context, Errors.from(error));
      }

      @Override
      public void onCompleted() {
        ended(context, null);
      }
    };
  }

  private void deliver(ReceivedMessage message) {
    if (message != null) {
      safely(() -> listener.onMessage(message));
    }
  }

  /** The call ended: reconnect after the backoff, or end the feed for good. */
  private void ended(Context.CancellableContext context, CourierException error) {
    String reason;
    synchronized (this) {
      context.cancel(null);
      if (closed || call != context) {
        return;
      }
      if (error != null && !reconnectable(error)) {
        closed = true;
      } else {
        dropped = true;
        Duration pause = backoff;
        backoff = Connection.min(backoff.multipliedBy(2), Connection.MAX_BACKOFF);
        try {
          reconnect =
              connection.scheduler.schedule(this::open, pause.toMillis(), TimeUnit.MILLISECONDS);
        } catch (RuntimeException e) {
          // The client closed: nothing to reconnect to.
          closed = true;
          return;
        }
      }
    }
    if (error != null && !reconnectable(error)) {
      safely(() -> listener.onClosed(error));
      return;
    }
    reason = error == null ? "the server ended the feed" : error.getMessage();
    safely(() -> listener.onDisconnected(reason));
  }

  private static boolean reconnectable(CourierException error) {
    return !(error instanceof UnauthenticatedException || error instanceof InvalidArgumentException);
  }

  private void safely(Runnable callback) {
    try {
      callback.run();
    } catch (RuntimeException e) {
      LOG.log(System.Logger.Level.WARNING, "a subscription listener threw", e);
    }
  }

  /**
   * Whether the feed is still open (connected or reconnecting).
   *
   * @return false once closed, or ended for good
   */
  public synchronized boolean isOpen() {
    return !closed;
  }

  /** Closes the feed: the call ends, no reconnection follows, the listener hears no more. */
  @Override
  public void close() {
    synchronized (this) {
      closed = true;
      if (reconnect != null) {
        reconnect.cancel(false);
      }
      if (call != null) {
        call.cancel(null);
      }
    }
  }
}

package dev.courier;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;

import dev.courier.errors.CourierException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** A subscription listener that queues events for a test to take, with time limits. */
final class Feed implements SubscriptionListener {
  /** The events a test can wait for. */
  sealed interface Event permits Message, Ready, Disconnected, Reconnected, Closed {}

  record Message(ReceivedMessage message) implements Event {}

  record Ready(int offlineCount) implements Event {}

  record Disconnected(String reason) implements Event {}

  record Reconnected() implements Event {}

  record Closed(CourierException error) implements Event {}

  /** What came before a ready event, and its count. */
  record ReadyResult(int offlineCount, List<ReceivedMessage> before) {}

  private final BlockingQueue<Event> events = new LinkedBlockingQueue<>();

  @Override
  public void onMessage(ReceivedMessage message) {
    events.add(new Message(message));
  }

  @Override
  public void onReady(int offlineCount) {
    events.add(new Ready(offlineCount));
  }

  @Override
  public void onDisconnected(String reason) {
    events.add(new Disconnected(reason));
  }

  @Override
  public void onReconnected() {
    events.add(new Reconnected());
  }

  @Override
  public void onClosed(CourierException error) {
    events.add(new Closed(error));
  }

  /** The next event, within {@code seconds}. */
  Event next(int seconds) throws InterruptedException {
    Event event = events.poll(seconds, TimeUnit.SECONDS);
    assertNotNull(event, "an event within " + seconds + " s");
    return event;
  }

  /** The next message within 10 s, skipping ready and reconnection events. */
  ReceivedMessage nextMessage() throws InterruptedException {
    for (int i = 0; i < 100; i++) {
      Event event = next(10);
      if (event instanceof Message m) {
        return m.message();
      }
      if (event instanceof Closed c) {
        fail("the feed closed", c.error());
      }
    }
    return fail("no message among 100 events");
  }

  /** Waits (10 s) for the ready event; returns its count and the messages before it. */
  ReadyResult ready() throws InterruptedException {
    List<ReceivedMessage> before = new ArrayList<>();
    for (int i = 0; i < 1000; i++) {
      Event event = next(10);
      if (event instanceof Ready r) {
        return new ReadyResult(r.offlineCount(), before);
      }
      if (event instanceof Message m) {
        before.add(m.message());
      }
      if (event instanceof Closed c) {
        fail("the feed closed", c.error());
      }
    }
    return fail("no ready event among 1000 events");
  }
}

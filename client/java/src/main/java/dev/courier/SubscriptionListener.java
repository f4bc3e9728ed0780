package dev.courier;

import dev.courier.errors.CourierException;

/**
 * Receives the events of a subscription (Agora's {@code RtmClientListener} and
 * {@code RtmChannelListener} in one). Calls come one at a time, in order, on a gRPC
 * thread: a slow listener slows the feed (the server ends a feed that falls far behind,
 * and the subscription then reconnects), so hand long work to another thread.
 */
public interface SubscriptionListener {
  /**
   * A message arrived: from a peer or in a channel; text, raw, image or file. Cached
   * offline messages come first after each connect, flagged {@link ReceivedMessage#offline()}.
   *
   * @param message the message
   */
  void onMessage(ReceivedMessage message);

  /**
   * The feed is live, after any cached offline messages: from here on every message to
   * this user arrives as it is sent. Called after every (re)connect.
   *
   * @param offlineCount how many cached offline messages came before this
   */
  default void onReady(int offlineCount) {}

  /**
   * The feed is live, as {@link #onReady(int)} (which it calls unless overridden), with
   * where it stands in this user's events.
   *
   * @param offlineCount how many cached offline messages came before this
   * @param cursor the cursor of this user's latest event: where to resume when no message
   *     has come yet
   * @param eventsLost true when the cursor the feed resumed after was older than the events
   *     the server still holds, so some messages after it are lost
   */
  default void onReady(int offlineCount, long cursor, boolean eventsLost) {
    onReady(offlineCount);
  }

  /**
   * The connection dropped and the subscription is reconnecting by itself, with backoff
   * up to 5 s. Meanwhile messages to this user are kept only if their senders enabled
   * offline messaging.
   *
   * @param reason why, for people
   */
  default void onDisconnected(String reason) {}

  /** The subscription is connected again after {@link #onDisconnected}; {@link #onReady} follows. */
  default void onReconnected() {}

  /**
   * The subscription ended for good with an error that reconnecting cannot cure, such as
   * an expired token. Not called when the application closes it.
   *
   * @param error why
   */
  default void onClosed(CourierException error) {}
}

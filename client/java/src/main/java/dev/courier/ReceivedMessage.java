package dev.courier;

import java.time.Instant;

/**
 * A message that arrived on a subscription, from a peer or in a channel (Agora's
 * {@code onMessageReceivedFromPeer}, {@code onImageMessageReceivedFromPeer},
 * {@code onFileMessageReceived}, ...).
 *
 * @param from the sender's user ID
 * @param channelId the channel it was sent to, or {@code null} for a peer message
 * @param messageId the server's ID of the message
 * @param serverTime when the server accepted it
 * @param offline true when it was cached while this user was offline
 * @param message the content
 * @param cursor the event's position in this user's event sequence (per user, increasing):
 *     {@link CourierClient#subscribe(SubscriptionListener, long)} with it brings what came
 *     after it
 */
public record ReceivedMessage(
    String from,
    String channelId,
    String messageId,
    Instant serverTime,
    boolean offline,
    Message message,
    long cursor) {

  /**
   * Whether this is a channel message.
   *
   * @return true when {@link #channelId()} is set
   */
  public boolean isChannelMessage() {
    return channelId != null;
  }
}

package dev.courier;

/**
 * How to send a peer message.
 *
 * @param offline keep the message for an offline peer (up to 200 per receiver, for 7
 *     days) and deliver it on their next subscription; without it a message to an
 *     offline peer fails with {@link dev.courier.errors.PeerUnreachableException}
 */
public record SendOptions(boolean offline) {
  /**
   * The defaults: offline messaging off.
   *
   * @return the options
   */
  public static SendOptions defaults() {
    return new SendOptions(false);
  }

  /**
   * Offline messaging on.
   *
   * @return the options
   */
  public static SendOptions offlineMessaging() {
    return new SendOptions(true);
  }
}

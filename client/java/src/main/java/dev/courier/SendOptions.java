package dev.courier;

/**
 * How to send a message.
 *
 * @param offline keep the message for an offline peer (up to 200 per receiver, for 7
 *     days) and deliver it on their next subscription; without it a message to an
 *     offline peer fails with {@link dev.courier.errors.PeerUnreachableException} (peer
 *     messages only)
 * @param clientMessageId the ID that makes the send safe to repeat: a send repeating the
 *     ID of an earlier one is answered as the first was and delivers nothing again; {@code
 *     null} lets the client make one (32 lowercase hex characters from 128 random bits),
 *     which it reuses on its own retries
 */
public record SendOptions(boolean offline, String clientMessageId) {
  /**
   * Options with offline messaging on or off and a generated client message ID.
   *
   * @param offline offline messaging on or off
   */
  public SendOptions(boolean offline) {
    this(offline, null);
  }

  /**
   * The defaults: offline messaging off, a generated client message ID.
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

  /**
   * These options with the caller's own client message ID.
   *
   * @param id the ID, not empty
   * @return the options
   */
  public SendOptions withClientMessageId(String id) {
    if (id == null || id.isEmpty()) {
      throw new IllegalArgumentException("a client message ID is not empty");
    }
    return new SendOptions(offline, id);
  }

  /** The caller's ID, or a new random one: what a send carries on all its attempts. */
  String idForSend() {
    if (clientMessageId != null && !clientMessageId.isEmpty()) {
      return clientMessageId;
    }
    byte[] random = new byte[16];
    RANDOM.nextBytes(random);
    return java.util.HexFormat.of().formatHex(random);
  }

  private static final java.security.SecureRandom RANDOM = new java.security.SecureRandom();
}

package dev.courier.errors;

import io.grpc.Status;

/**
 * The peer is offline and offline messaging was not enabled: the server answered
 * {@code PEER_UNREACHABLE} and kept nothing. Send with offline messaging on to have the
 * message cached for the peer's next subscription.
 */
public final class PeerUnreachableException extends CourierException {
  private static final long serialVersionUID = 1L;

  /** The peer the message was for. */
  private final String peer;

  /** The ID the server gave the message. */
  private final String messageId;

  /**
   * A message to {@code peer} that was neither delivered nor kept.
   *
   * @param peer the peer's user ID
   * @param messageId the ID the server gave the message
   */
  public PeerUnreachableException(String peer, String messageId) {
    super(
        "peer unreachable: " + peer + " is offline (message " + messageId + " was not kept)",
        Status.Code.UNAVAILABLE,
        null,
        null);
    this.peer = peer;
    this.messageId = messageId;
  }

  /**
   * The peer the message was for.
   *
   * @return the peer's user ID
   */
  public String peer() {
    return peer;
  }

  /**
   * The ID the server gave the message that was not kept.
   *
   * @return the message ID
   */
  public String messageId() {
    return messageId;
  }
}

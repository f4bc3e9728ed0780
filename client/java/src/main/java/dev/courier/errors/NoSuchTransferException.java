package dev.courier.errors;

import io.grpc.Status;

/**
 * No transfer with this request ID is running: it finished, failed, was cancelled or
 * never was. A request ID is valid only while its transfer runs.
 */
public final class NoSuchTransferException extends CourierException {
  private static final long serialVersionUID = 1L;

  /** The request ID that names no running transfer. */
  private final long requestId;

  /**
   * No running transfer has {@code requestId}.
   *
   * @param requestId the unknown request ID
   */
  public NoSuchTransferException(long requestId) {
    super("no such transfer: " + requestId, Status.Code.NOT_FOUND, null, null);
    this.requestId = requestId;
  }

  /**
   * The request ID that names no running transfer.
   *
   * @return the request ID
   */
  public long requestId() {
    return requestId;
  }
}

package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * A checksum sent with a resumable upload does not match the bytes: a part's CRC32C (nothing of
 * the part was kept; send it again) or the SHA-256 given at commit (the upload is removed)
 * (reason {@code CHECKSUM_MISMATCH}).
 */
public final class ChecksumMismatchException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public ChecksumMismatchException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.CHECKSUM_MISMATCH, cause);
  }
}

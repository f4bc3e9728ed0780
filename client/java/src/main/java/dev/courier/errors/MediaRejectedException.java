package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * The operator's upload hook (a scanner or moderation service) rejected the upload and
 * nothing was kept (reason {@code MEDIA_REJECTED}); the message carries the hook's words to
 * the uploader. Uploading the same content again is refused again.
 */
public final class MediaRejectedException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public MediaRejectedException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.MEDIA_REJECTED, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}).
   *
   * @param message what went wrong
   */
  public MediaRejectedException(String message) {
    this(message, Status.Code.FAILED_PRECONDITION, null);
  }
}

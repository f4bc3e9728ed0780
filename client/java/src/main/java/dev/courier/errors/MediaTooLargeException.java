package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/** The upload is larger than the server accepts (reason {@code MEDIA_TOO_LARGE}); nothing was kept. */
public final class MediaTooLargeException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public MediaTooLargeException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.MEDIA_TOO_LARGE, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code INVALID_ARGUMENT}).
   *
   * @param message what went wrong
   */
  public MediaTooLargeException(String message) {
    this(message, Status.Code.INVALID_ARGUMENT, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code INVALID_ARGUMENT}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public MediaTooLargeException(String message, Throwable cause) {
    this(message, Status.Code.INVALID_ARGUMENT, cause);
  }
}

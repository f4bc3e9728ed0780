package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * A thumbnail was asked of media that is not a JPEG, PNG, GIF, WebP or BMP image (reason
 * {@code NOT_AN_IMAGE}).
 */
public final class NotAnImageException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public NotAnImageException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.NOT_AN_IMAGE, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}).
   *
   * @param message what went wrong
   */
  public NotAnImageException(String message) {
    this(message, Status.Code.FAILED_PRECONDITION, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public NotAnImageException(String message, Throwable cause) {
    this(message, Status.Code.FAILED_PRECONDITION, cause);
  }
}

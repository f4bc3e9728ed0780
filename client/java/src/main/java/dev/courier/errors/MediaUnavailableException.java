package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/** An image or file message names media that do not exist or have expired (reason {@code MEDIA_UNAVAILABLE}). */
public final class MediaUnavailableException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public MediaUnavailableException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.MEDIA_UNAVAILABLE, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}).
   *
   * @param message what went wrong
   */
  public MediaUnavailableException(String message) {
    this(message, Status.Code.FAILED_PRECONDITION, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public MediaUnavailableException(String message, Throwable cause) {
    this(message, Status.Code.FAILED_PRECONDITION, cause);
  }
}

package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * The server will not decode the image for a thumbnail: over its pixel or memory limits, or
 * truncated or corrupt; asking again gives the same answer (reason {@code IMAGE_REFUSED}).
 */
public final class ImageRefusedException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public ImageRefusedException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.IMAGE_REFUSED, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}).
   *
   * @param message what went wrong
   */
  public ImageRefusedException(String message) {
    this(message, Status.Code.FAILED_PRECONDITION, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public ImageRefusedException(String message, Throwable cause) {
    this(message, Status.Code.FAILED_PRECONDITION, cause);
  }
}

package dev.courier.errors;

import io.grpc.Status;

/** A download offset lies past the end of the object. */
public final class OutOfRangeException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public OutOfRangeException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code OUT_OF_RANGE}).
   *
   * @param message what went wrong
   */
  public OutOfRangeException(String message) {
    this(message, Status.Code.OUT_OF_RANGE, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code OUT_OF_RANGE}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public OutOfRangeException(String message, Throwable cause) {
    this(message, Status.Code.OUT_OF_RANGE, cause);
  }
}

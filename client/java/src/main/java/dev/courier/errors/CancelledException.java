package dev.courier.errors;

import io.grpc.Status;

/** The transfer or call was cancelled. */
public final class CancelledException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public CancelledException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code CANCELLED}).
   *
   * @param message what went wrong
   */
  public CancelledException(String message) {
    this(message, Status.Code.CANCELLED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code CANCELLED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public CancelledException(String message, Throwable cause) {
    this(message, Status.Code.CANCELLED, cause);
  }
}

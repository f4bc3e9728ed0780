package dev.courier.errors;

import io.grpc.Status;

/** The server could not be reached, after the retries where a call is retried. */
public final class UnavailableException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public UnavailableException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code UNAVAILABLE}).
   *
   * @param message what went wrong
   */
  public UnavailableException(String message) {
    this(message, Status.Code.UNAVAILABLE, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code UNAVAILABLE}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public UnavailableException(String message, Throwable cause) {
    this(message, Status.Code.UNAVAILABLE, cause);
  }
}

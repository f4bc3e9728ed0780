package dev.courier.errors;

import io.grpc.Status;

/** The request broke a rule (the message says which), or the client found bad input: a missing or empty file, a malformed media ID. */
public final class InvalidArgumentException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public InvalidArgumentException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code INVALID_ARGUMENT}).
   *
   * @param message what went wrong
   */
  public InvalidArgumentException(String message) {
    this(message, Status.Code.INVALID_ARGUMENT, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code INVALID_ARGUMENT}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public InvalidArgumentException(String message, Throwable cause) {
    this(message, Status.Code.INVALID_ARGUMENT, cause);
  }
}

package dev.courier.errors;

import io.grpc.Status;

/** The token is missing, malformed, forged or expired. */
public final class UnauthenticatedException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public UnauthenticatedException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code UNAUTHENTICATED}).
   *
   * @param message what went wrong
   */
  public UnauthenticatedException(String message) {
    this(message, Status.Code.UNAUTHENTICATED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code UNAUTHENTICATED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public UnauthenticatedException(String message, Throwable cause) {
    this(message, Status.Code.UNAUTHENTICATED, cause);
  }
}

package dev.courier.errors;

import io.grpc.Status;

/** The media ID does not exist, or has expired. */
public final class NotFoundException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public NotFoundException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code NOT_FOUND}).
   *
   * @param message what went wrong
   */
  public NotFoundException(String message) {
    this(message, Status.Code.NOT_FOUND, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code NOT_FOUND}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public NotFoundException(String message, Throwable cause) {
    this(message, Status.Code.NOT_FOUND, cause);
  }
}

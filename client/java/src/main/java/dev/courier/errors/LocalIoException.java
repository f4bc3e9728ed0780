package dev.courier.errors;

import io.grpc.Status;

/** A local file could not be read or written. */
public final class LocalIoException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public LocalIoException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code INTERNAL}).
   *
   * @param message what went wrong
   */
  public LocalIoException(String message) {
    this(message, Status.Code.INTERNAL, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code INTERNAL}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public LocalIoException(String message, Throwable cause) {
    this(message, Status.Code.INTERNAL, cause);
  }
}

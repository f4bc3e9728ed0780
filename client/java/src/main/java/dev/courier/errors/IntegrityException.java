package dev.courier.errors;

import io.grpc.Status;

/** Downloaded bytes do not match the size or SHA-256 of the media record, or the server's record does not match the bytes uploaded. */
public final class IntegrityException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public IntegrityException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code DATA_LOSS}).
   *
   * @param message what went wrong
   */
  public IntegrityException(String message) {
    this(message, Status.Code.DATA_LOSS, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code DATA_LOSS}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public IntegrityException(String message, Throwable cause) {
    this(message, Status.Code.DATA_LOSS, cause);
  }
}

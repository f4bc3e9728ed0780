package dev.courier.errors;

import io.grpc.Status;

/** The call's deadline passed (10 s for unary calls by default). */
public final class DeadlineExceededException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public DeadlineExceededException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code DEADLINE_EXCEEDED}).
   *
   * @param message what went wrong
   */
  public DeadlineExceededException(String message) {
    this(message, Status.Code.DEADLINE_EXCEEDED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code DEADLINE_EXCEEDED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public DeadlineExceededException(String message, Throwable cause) {
    this(message, Status.Code.DEADLINE_EXCEEDED, cause);
  }
}

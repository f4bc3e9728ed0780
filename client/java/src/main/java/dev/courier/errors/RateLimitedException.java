package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/** Too many messages sent too quickly, 180 per 3 s per user by default (reason {@code RATE_LIMITED}). Retry after a pause. */
public final class RateLimitedException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public RateLimitedException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.RATE_LIMITED, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}).
   *
   * @param message what went wrong
   */
  public RateLimitedException(String message) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public RateLimitedException(String message, Throwable cause) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, cause);
  }
}

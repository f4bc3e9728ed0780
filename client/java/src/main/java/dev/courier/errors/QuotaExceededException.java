package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * An upload would pass the user's storage quota (live media, or bytes per hour); refused before
 * any byte was stored (reason {@code QUOTA_EXCEEDED}). Expiring media frees quota.
 */
public final class QuotaExceededException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public QuotaExceededException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.QUOTA_EXCEEDED, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}).
   *
   * @param message what went wrong
   */
  public QuotaExceededException(String message) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public QuotaExceededException(String message, Throwable cause) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, cause);
  }
}

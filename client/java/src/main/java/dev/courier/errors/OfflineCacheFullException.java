package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * The offline cache cannot take the message: the sender has the most messages waiting for
 * offline receivers (1,000 by default), or the server's cache is full; nothing was kept
 * (reason {@code OFFLINE_CACHE_FULL}).
 */
public final class OfflineCacheFullException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public OfflineCacheFullException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.OFFLINE_CACHE_FULL, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}).
   *
   * @param message what went wrong
   */
  public OfflineCacheFullException(String message) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public OfflineCacheFullException(String message, Throwable cause) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, cause);
  }
}

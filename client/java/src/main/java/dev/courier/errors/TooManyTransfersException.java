package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/** Too many uploads and downloads in flight: 9 per client, refused before any call, and 9 per user on the server (reason {@code TOO_MANY_TRANSFERS}). A finished or cancelled transfer frees its slot at once. */
public final class TooManyTransfersException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public TooManyTransfersException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.TOO_MANY_TRANSFERS, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}).
   *
   * @param message what went wrong
   */
  public TooManyTransfersException(String message) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public TooManyTransfersException(String message, Throwable cause) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, cause);
  }
}

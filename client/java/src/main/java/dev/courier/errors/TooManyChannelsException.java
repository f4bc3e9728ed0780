package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/** Already a member of the most channels allowed, 20 by default (reason {@code TOO_MANY_CHANNELS}). */
public final class TooManyChannelsException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public TooManyChannelsException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.TOO_MANY_CHANNELS, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}).
   *
   * @param message what went wrong
   */
  public TooManyChannelsException(String message) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code RESOURCE_EXHAUSTED}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public TooManyChannelsException(String message, Throwable cause) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, cause);
  }
}

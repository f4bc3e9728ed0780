package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/** A channel message from a user who has not joined the channel (reason {@code NOT_A_MEMBER}). */
public final class NotAMemberException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public NotAMemberException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.NOT_A_MEMBER, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}).
   *
   * @param message what went wrong
   */
  public NotAMemberException(String message) {
    this(message, Status.Code.FAILED_PRECONDITION, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public NotAMemberException(String message, Throwable cause) {
    this(message, Status.Code.FAILED_PRECONDITION, cause);
  }
}

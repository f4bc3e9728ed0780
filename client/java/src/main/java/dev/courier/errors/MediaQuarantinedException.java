package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * The media's content is quarantined by the operator (reason {@code MEDIA_QUARANTINED}): it
 * cannot be downloaded, linked, thumbnailed or sent, nor uploaded again by anyone, until an
 * admin releases it.
 */
public final class MediaQuarantinedException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public MediaQuarantinedException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.MEDIA_QUARANTINED, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code FAILED_PRECONDITION}).
   *
   * @param message what went wrong
   */
  public MediaQuarantinedException(String message) {
    this(message, Status.Code.FAILED_PRECONDITION, null);
  }
}

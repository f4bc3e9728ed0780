package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * The media ID (or upload ID) does not exist, or has expired; {@link MediaDeletedException},
 * a subclass, says that it was deleted.
 */
public class NotFoundException extends CourierException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public NotFoundException(String message, Status.Code code, Throwable cause) {
    super(message, code, null, cause);
  }

  /**
   * An error with a reason, for the subclasses that say why the ID is not found.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param reason the ErrorInfo reason
   * @param cause the underlying exception, or {@code null}
   */
  protected NotFoundException(String message, Status.Code code, ErrorReason reason, Throwable cause) {
    super(message, code, reason, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code NOT_FOUND}).
   *
   * @param message what went wrong
   */
  public NotFoundException(String message) {
    this(message, Status.Code.NOT_FOUND, null);
  }

  /**
   * An error found by the client itself, with the usual code ({@code NOT_FOUND}) and a cause.
   *
   * @param message what went wrong
   * @param cause the underlying exception
   */
  public NotFoundException(String message, Throwable cause) {
    this(message, Status.Code.NOT_FOUND, cause);
  }
}

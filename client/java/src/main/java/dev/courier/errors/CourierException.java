package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;
import java.util.Objects;

/**
 * Everything a courier call can fail with. Each failure a caller may act on has its own
 * subclass ({@link MediaTooLargeException}, {@link NotFoundException},
 * {@link TooManyTransfersException}, ...); any other status from the server arrives as a
 * plain {@code CourierException}.
 *
 * <p>Every instance carries the gRPC status {@link #code() code} (for an error the client
 * found by itself, the nearest one: {@code DATA_LOSS} for a failed integrity check,
 * {@code RESOURCE_EXHAUSTED} for the client's own transfer cap, ...) and the
 * {@code google.rpc.ErrorInfo} {@link #reason() reason}, a value of the proto's
 * {@link ErrorReason} enum ({@code ERROR_REASON_UNSPECIFIED} when there is none).
 */
public class CourierException extends Exception {
  private static final long serialVersionUID = 1L;

  /** The gRPC status code of the failure. */
  private final Status.Code code;

  /** The ErrorInfo reason, or ERROR_REASON_UNSPECIFIED. */
  private final ErrorReason reason;

  /**
   * A failure with a status code, a reason and a cause.
   *
   * @param message what went wrong, for people
   * @param code the gRPC status code
   * @param reason the ErrorInfo reason, or {@code null} for none
   * @param cause the underlying exception, or {@code null}
   */
  public CourierException(String message, Status.Code code, ErrorReason reason, Throwable cause) {
    super(message, cause);
    this.code = Objects.requireNonNull(code, "code");
    this.reason = reason == null ? ErrorReason.ERROR_REASON_UNSPECIFIED : reason;
  }

  /**
   * The gRPC status code of this failure: the server's, or for an error found by the
   * client itself the nearest one.
   *
   * @return the status code
   */
  public Status.Code code() {
    return code;
  }

  /**
   * The {@code google.rpc.ErrorInfo} reason of this failure (domain {@code courier.v1}),
   * or {@code ERROR_REASON_UNSPECIFIED} when the server sent none.
   *
   * @return the reason
   */
  public ErrorReason reason() {
    return reason;
  }

  /**
   * The reason as it travels on the wire ({@code "MEDIA_TOO_LARGE"}, ...), or the empty
   * string when there is none.
   *
   * @return the reason's name, or {@code ""}
   */
  public String reasonName() {
    return reason == ErrorReason.ERROR_REASON_UNSPECIFIED || reason == ErrorReason.UNRECOGNIZED
        ? ""
        : reason.name();
  }

  /**
   * Whether a retry may cure this failure: the server could not be reached.
   *
   * @return true for {@link UnavailableException}
   */
  public boolean isRetryable() {
    return this instanceof UnavailableException;
  }
}

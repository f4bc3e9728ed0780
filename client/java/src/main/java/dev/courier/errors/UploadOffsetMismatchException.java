package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * A resumable upload's part does not fit what the server stored (a gap, or an overlap with
 * different bytes), or a commit came before every byte was stored (reason {@code
 * UPLOAD_OFFSET_MISMATCH}). {@link #committedSize()} tells how many bytes the server holds.
 */
public final class UploadOffsetMismatchException extends CourierException {
  private static final long serialVersionUID = 1L;

  /** The bytes the server holds, or -1 when it did not say. */
  private final long committedSize;

  /**
   * An error with the server's message, code and ErrorInfo metadata {@code committed_size}.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param committedSize the bytes the server holds, or -1 when it did not say
   * @param cause the underlying exception, or {@code null}
   */
  public UploadOffsetMismatchException(
      String message, Status.Code code, long committedSize, Throwable cause) {
    super(message, code, ErrorReason.UPLOAD_OFFSET_MISMATCH, cause);
    this.committedSize = committedSize;
  }

  /**
   * The bytes of the upload the server holds, from the refusal's ErrorInfo metadata.
   *
   * @return the committed size, or -1 when the server did not say
   */
  public long committedSize() {
    return committedSize;
  }
}

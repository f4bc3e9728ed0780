package dev.courier.errors;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import io.grpc.Status;

/**
 * The media was deleted, by its owner ({@code deleteMedia}) or an admin (reason {@code
 * MEDIA_DELETED}, code {@code NOT_FOUND}). Messages sent with it before still arrive, but its
 * bytes, thumbnails and links are gone. A {@link NotFoundException}, so that code that
 * handles unknown media handles deleted media too.
 */
public final class MediaDeletedException extends NotFoundException {
  private static final long serialVersionUID = 1L;

  /**
   * An error with the server's (or the client's) message and code.
   *
   * @param message what went wrong
   * @param code the gRPC status code
   * @param cause the underlying exception, or {@code null}
   */
  public MediaDeletedException(String message, Status.Code code, Throwable cause) {
    super(message, code, ErrorReason.MEDIA_DELETED, cause);
  }

  /**
   * An error found by the client itself, with the usual code ({@code NOT_FOUND}).
   *
   * @param message what went wrong
   */
  public MediaDeletedException(String message) {
    this(message, Status.Code.NOT_FOUND, null);
  }
}

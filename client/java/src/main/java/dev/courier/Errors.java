package dev.courier;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import courier.v1.ErrorReasonOuterClass.ErrorReason;
import dev.courier.errors.CancelledException;
import dev.courier.errors.ChecksumMismatchException;
import dev.courier.errors.CourierException;
import dev.courier.errors.DeadlineExceededException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.LocalIoException;
import dev.courier.errors.MediaDeletedException;
import dev.courier.errors.MediaQuarantinedException;
import dev.courier.errors.MediaRejectedException;
import dev.courier.errors.MediaTooLargeException;
import dev.courier.errors.MediaUnavailableException;
import dev.courier.errors.MessageTooLargeException;
import dev.courier.errors.NotAMemberException;
import dev.courier.errors.NotFoundException;
import dev.courier.errors.OutOfRangeException;
import dev.courier.errors.RateLimitedException;
import dev.courier.errors.TooManyChannelsException;
import dev.courier.errors.TooManyStreamsException;
import dev.courier.errors.ImageRefusedException;
import dev.courier.errors.QuotaExceededException;
import dev.courier.errors.NotAnImageException;
import dev.courier.errors.OfflineCacheFullException;
import dev.courier.errors.TooManyTransfersException;
import dev.courier.errors.TooSlowException;
import dev.courier.errors.UnauthenticatedException;
import dev.courier.errors.UnavailableException;
import dev.courier.errors.UploadOffsetMismatchException;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/** Sorts gRPC failures into the {@link CourierException} kinds, in one place. */
final class Errors {
  /** The {@code google.rpc.ErrorInfo} domain of courier's refusals. */
  static final String DOMAIN = "courier.v1";

  private Errors() {}

  /**
   * The courier exception for any failure: a gRPC status (with its ErrorInfo reason), a
   * local I/O error, or a courier exception already (unwrapped from future wrappers).
   */
  static CourierException from(Throwable error) {
    Throwable t = unwrap(error);
    if (t instanceof CourierException courier) {
      return courier;
    }
    if (t instanceof IOException || t instanceof UncheckedIOException) {
      return new LocalIoException("i/o: " + describe(t), Status.Code.INTERNAL, t);
    }
    Status status = Status.fromThrowable(t);
    if (status.getCode() == Status.Code.UNKNOWN && status.getCause() == t) {
      // Not a gRPC failure at all: a bug or a runtime error in this process.
      return new CourierException(describe(t), Status.Code.INTERNAL, null, t);
    }
    if (status.getCode() == Status.Code.UNKNOWN && status.getCause() instanceof IOException) {
      // grpc-java reports a connection that closed under a call ("channel closed") as
      // UNKNOWN with the I/O error as its cause; a status from the server has no cause.
      // The server went away: UNAVAILABLE, so that the call is retried (on another
      // replica when there are several).
      status = Status.UNAVAILABLE.withDescription("connection lost").withCause(status.getCause());
    }
    return fromStatus(status, reasonOf(t), t, committedSizeOf(t));
  }

  /**
   * The exception for {@code status}, sorted by {@code reason} first, then by code; {@code
   * committedSize} is the ErrorInfo's {@code committed_size} (-1 when absent).
   */
  static CourierException fromStatus(
      Status status, ErrorReason reason, Throwable cause, long committedSize) {
    Status.Code code = status.getCode();
    String message = message(status);
    // A switch expression must name every value: a reason added to the proto fails the
    // build here until it is sorted.
    CourierException byReason =
        switch (reason) {
          case MEDIA_TOO_LARGE -> new MediaTooLargeException(message, code, cause);
          case MESSAGE_TOO_LARGE -> new MessageTooLargeException(message, code, cause);
          case TOO_MANY_TRANSFERS -> new TooManyTransfersException(message, code, cause);
          case RATE_LIMITED -> new RateLimitedException(message, code, cause);
          case TOO_MANY_CHANNELS -> new TooManyChannelsException(message, code, cause);
          case MEDIA_UNAVAILABLE -> new MediaUnavailableException(message, code, cause);
          case NOT_A_MEMBER -> new NotAMemberException(message, code, cause);
          case TOO_SLOW -> new TooSlowException(message, code, cause);
          case TOO_MANY_STREAMS -> new TooManyStreamsException(message, code, cause);
          case OFFLINE_CACHE_FULL -> new OfflineCacheFullException(message, code, cause);
          case NOT_AN_IMAGE -> new NotAnImageException(message, code, cause);
          case IMAGE_REFUSED -> new ImageRefusedException(message, code, cause);
          case QUOTA_EXCEEDED -> new QuotaExceededException(message, code, cause);
          case CHECKSUM_MISMATCH -> new ChecksumMismatchException(message, code, cause);
          case UPLOAD_OFFSET_MISMATCH ->
              new UploadOffsetMismatchException(message, code, committedSize, cause);
          case MEDIA_REJECTED -> new MediaRejectedException(message, code, cause);
          case MEDIA_QUARANTINED -> new MediaQuarantinedException(message, code, cause);
          case MEDIA_DELETED -> new MediaDeletedException(message, code, cause);
          case ERROR_REASON_UNSPECIFIED, UNRECOGNIZED -> null;
        };
    if (byReason != null) {
      return byReason;
    }
    return switch (code) {
      case UNAUTHENTICATED -> new UnauthenticatedException(message, code, cause);
      case NOT_FOUND -> new NotFoundException(message, code, cause);
      case INVALID_ARGUMENT -> new InvalidArgumentException(message, code, cause);
      case OUT_OF_RANGE -> new OutOfRangeException(message, code, cause);
      case UNAVAILABLE -> new UnavailableException(message, code, cause);
      case DEADLINE_EXCEEDED -> new DeadlineExceededException(message, code, cause);
      case CANCELLED -> new CancelledException(message, code, cause);
      default -> new CourierException(message, code, null, cause);
    };
  }

  /**
   * The ErrorInfo reason in the status details of {@code t}, read through the generated
   * {@link ErrorReason} enum; a reason this client does not know is UNSPECIFIED.
   */
  static ErrorReason reasonOf(Throwable t) {
    com.google.rpc.Status details = StatusProto.fromThrowable(t);
    if (details == null) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
    for (Any any : details.getDetailsList()) {
      if (!any.is(ErrorInfo.class)) {
        continue;
      }
      try {
        ErrorInfo info = any.unpack(ErrorInfo.class);
        if (DOMAIN.equals(info.getDomain())) {
          return ErrorReason.valueOf(info.getReason());
        }
      } catch (InvalidProtocolBufferException | IllegalArgumentException e) {
        return ErrorReason.ERROR_REASON_UNSPECIFIED;
      }
    }
    return ErrorReason.ERROR_REASON_UNSPECIFIED;
  }

  /**
   * The ErrorInfo metadata {@code committed_size} in the status details of {@code t}, or -1
   * when there is none (or it is not a number).
   */
  static long committedSizeOf(Throwable t) {
    com.google.rpc.Status details = StatusProto.fromThrowable(t);
    if (details == null) {
      return -1;
    }
    for (Any any : details.getDetailsList()) {
      if (!any.is(ErrorInfo.class)) {
        continue;
      }
      try {
        ErrorInfo info = any.unpack(ErrorInfo.class);
        if (DOMAIN.equals(info.getDomain())) {
          return Long.parseLong(info.getMetadataOrDefault("committed_size", "-1"));
        }
      } catch (InvalidProtocolBufferException | NumberFormatException e) {
        return -1;
      }
    }
    return -1;
  }

  /** The status description, with the causes of a connection failure spelled out. */
  private static String message(Status status) {
    StringBuilder text = new StringBuilder();
    text.append(status.getDescription() == null ? status.getCode().name() : status.getDescription());
    for (Throwable cause = status.getCause(); cause != null; cause = cause.getCause()) {
      String part = describe(cause);
      if (text.indexOf(part) < 0) {
        text.append(": ").append(part);
      }
      if (cause.getCause() == cause) {
        break;
      }
    }
    return text.toString();
  }

  private static String describe(Throwable t) {
    return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
  }

  private static Throwable unwrap(Throwable t) {
    Throwable current = t;
    for (int depth = 0; depth < 8; depth++) {
      if ((current instanceof CompletionException || current instanceof ExecutionException)
          && current.getCause() != null) {
        current = current.getCause();
      } else {
        break;
      }
    }
    return current;
  }
}

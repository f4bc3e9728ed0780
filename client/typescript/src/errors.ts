/**
 * One error family for every call: {@link CourierError} and a subclass per failure a
 * caller may act on, each carrying the gRPC status code and the `google.rpc.ErrorInfo`
 * reason. The server's reasons are sorted into subclasses from the generated
 * `ErrorReason` enum, never from string literals.
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";

import { ErrorReason, ErrorReasonSchema } from "./gen/courier/v1/error_reason_pb.js";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The `google.rpc.ErrorInfo` domain of courier's refusals. */
const DOMAIN = "courier.v1";

/** The canonical name of a gRPC status code, as `grpc-status` documentation spells it. */
export type GrpcCode =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

/** Code names by number: gRPC's codes are 0 to 16, in this order. */
const CODE_NAMES: readonly GrpcCode[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/**
 * A reason of courier's `ErrorReason` enum (`proto/courier/v1/error_reason.proto`),
 * such as `"MEDIA_TOO_LARGE"`: the `google.rpc.ErrorInfo.reason` strings.
 */
export type ErrorReasonName = Exclude<keyof typeof ErrorReason, "ERROR_REASON_UNSPECIFIED">;

/** The wire name of a reason, read from the generated enum's descriptor. */
function reasonName(reason: ErrorReason): ErrorReasonName {
  return ErrorReasonSchema.value[reason]!.name as ErrorReasonName;
}

/** What every error takes besides its message. */
interface ErrorInit {
  /** The gRPC code, where it is not the class's own. */
  code?: GrpcCode;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * Everything a courier call can fail with. Subclasses name the failures a caller may
 * act on; others (such as INTERNAL from the server) are a plain `CourierError`.
 */
export class CourierError extends Error {
  /** The gRPC status code: the server's, or for an error found by the client itself the nearest one. */
  readonly code: GrpcCode;
  /** The `google.rpc.ErrorInfo` reason (an `ErrorReason` value name), or `""` when there is none. */
  readonly reason: ErrorReasonName | "";

  /** An error with `code` and, when the server gave one, `reason`. */
  constructor(message: string, code: GrpcCode, reason: ErrorReasonName | "" = "", cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
  }
}

/** Declares a subclass for a failure without a reason, with its default code. */
function coded(code: GrpcCode) {
  return class extends CourierError {
    constructor(message: string, init: ErrorInit = {}) {
      super(message, init.code ?? code, "", init.cause);
    }
  };
}

/** Declares a subclass for one of the server's reasons; its code is the one the server sends with it. */
function reasoned(reason: ErrorReason, code: GrpcCode) {
  return class extends CourierError {
    constructor(message: string, init: ErrorInit = {}) {
      super(message, init.code ?? code, reasonName(reason), init.cause);
    }
  };
}

/** The token is missing, malformed, forged or expired. */
export class UnauthenticatedError extends coded("UNAUTHENTICATED") {}
/** The upload is larger than the server accepts (reason MEDIA_TOO_LARGE). */
export class TooLargeError extends reasoned(ErrorReason.MEDIA_TOO_LARGE, "INVALID_ARGUMENT") {}
/** The message's text, file name, thumbnail and payload exceed 32 KiB (MESSAGE_TOO_LARGE). */
export class MessageTooLargeError extends reasoned(ErrorReason.MESSAGE_TOO_LARGE, "INVALID_ARGUMENT") {}
/** The media ID (or other object) does not exist, or has expired. */
export class NotFoundError extends coded("NOT_FOUND") {}
/**
 * The media was deleted, by its owner ({@link BaseClient.deleteMedia}) or an admin
 * (MEDIA_DELETED): a {@link NotFoundError} that says why.
 */
export class MediaDeletedError extends NotFoundError {
  override readonly reason: ErrorReasonName | "" = reasonName(ErrorReason.MEDIA_DELETED);
}
/** A message points at media that do not exist or have expired (MEDIA_UNAVAILABLE). */
export class MediaUnavailableError extends reasoned(ErrorReason.MEDIA_UNAVAILABLE, "FAILED_PRECONDITION") {}
/** Too many uploads and downloads in flight: 9 per client, and per user on the server (TOO_MANY_TRANSFERS). */
export class TooManyTransfersError extends reasoned(ErrorReason.TOO_MANY_TRANSFERS, "RESOURCE_EXHAUSTED") {}
/** Too many messages too quickly: 180 per 3 s per user by default (RATE_LIMITED). */
export class RateLimitedError extends reasoned(ErrorReason.RATE_LIMITED, "RESOURCE_EXHAUSTED") {}
/** Already a member of the most channels allowed: 20 by default (TOO_MANY_CHANNELS). */
export class TooManyChannelsError extends reasoned(ErrorReason.TOO_MANY_CHANNELS, "RESOURCE_EXHAUSTED") {}
/** A channel message from a user who has not joined the channel (NOT_A_MEMBER). */
export class NotAMemberError extends reasoned(ErrorReason.NOT_A_MEMBER, "FAILED_PRECONDITION") {}
/**
 * The offline cache cannot take the message: the sender has the most messages waiting for
 * offline receivers (1,000 by default), or the server's cache is full; nothing was kept
 * (OFFLINE_CACHE_FULL).
 */
export class OfflineCacheFullError extends reasoned(ErrorReason.OFFLINE_CACHE_FULL, "RESOURCE_EXHAUSTED") {}
/** A thumbnail was asked of media that is not a JPEG, PNG, GIF, WebP or BMP image (NOT_AN_IMAGE). */
export class NotAnImageError extends reasoned(ErrorReason.NOT_AN_IMAGE, "FAILED_PRECONDITION") {}
/**
 * The server will not decode the image for a thumbnail: over its pixel or memory limits, or
 * truncated or corrupt; asking again gives the same answer (IMAGE_REFUSED).
 */
export class ImageRefusedError extends reasoned(ErrorReason.IMAGE_REFUSED, "FAILED_PRECONDITION") {}
/**
 * An upload would pass the user's storage quota (live media, or bytes per hour); refused
 * before any byte was stored (QUOTA_EXCEEDED). Expiring media frees quota.
 */
export class QuotaExceededError extends reasoned(ErrorReason.QUOTA_EXCEEDED, "RESOURCE_EXHAUSTED") {}

/**
 * The operator's upload hook (a scanner, a moderation service) rejected the upload:
 * nothing was kept; the message carries the hook's word to the uploader (MEDIA_REJECTED).
 */
export class MediaRejectedError extends reasoned(ErrorReason.MEDIA_REJECTED, "FAILED_PRECONDITION") {}
/**
 * The media's content is quarantined by the operator: it cannot be downloaded, linked or
 * sent until an admin releases it (MEDIA_QUARANTINED).
 */
export class MediaQuarantinedError extends reasoned(ErrorReason.MEDIA_QUARANTINED, "FAILED_PRECONDITION") {}

/**
 * A part of a resumable upload did not match its CRC32C, or a commit's SHA-256 did not
 * match the stored bytes (CHECKSUM_MISMATCH); the upload library sends a part again
 * (at most 3 times) before it gives up with this.
 */
export class ChecksumMismatchError extends reasoned(ErrorReason.CHECKSUM_MISMATCH, "INVALID_ARGUMENT") {}

/**
 * A resumable upload call did not fit what the server stores: a part leaving a gap,
 * overlapping stored bytes with different ones, or a commit before every byte is
 * stored (UPLOAD_OFFSET_MISMATCH). {@link UploadOffsetMismatchError.committedSize}
 * says how many bytes are stored, when the server said.
 */
export class UploadOffsetMismatchError extends reasoned(ErrorReason.UPLOAD_OFFSET_MISMATCH, "FAILED_PRECONDITION") {
  /** The bytes the server holds (ErrorInfo metadata `committed_size`), or `undefined`. */
  committedSize: number | undefined;
}

/** This user already has the most Subscribe streams open: 16 by default (TOO_MANY_STREAMS). */
export class TooManyStreamsError extends reasoned(ErrorReason.TOO_MANY_STREAMS, "RESOURCE_EXHAUSTED") {}
/** A Subscribe stream fell too far behind and the server ended it (TOO_SLOW). */
export class TooSlowError extends reasoned(ErrorReason.TOO_SLOW, "RESOURCE_EXHAUSTED") {}
/** The request broke a rule (the message says which), or the client refused its input. */
export class InvalidArgumentError extends coded("INVALID_ARGUMENT") {}
/** A download offset lies past the end of the object. */
export class OutOfRangeError extends coded("OUT_OF_RANGE") {}
/** The server could not be reached (after the retries, where a call is retried). */
export class UnavailableError extends coded("UNAVAILABLE") {}
/** The call's deadline passed. */
export class DeadlineExceededError extends coded("DEADLINE_EXCEEDED") {}
/** The transfer (or call) was cancelled. */
export class CancelledError extends coded("CANCELLED") {}
/** Downloaded bytes do not match the size or SHA-256 of the record. */
export class IntegrityError extends coded("DATA_LOSS") {}
/** A local file could not be read or written. */
export class IoError extends coded("INTERNAL") {}

/** The peer is offline and offline messaging was not enabled: nothing was kept. */
export class PeerUnreachableError extends CourierError {
  /** The peer. */
  readonly peer: string;
  /** The ID the server gave the message. */
  readonly messageId: string;

  constructor(peer: string, messageId: string) {
    super(`peer unreachable: ${peer} is offline (message ${messageId} was not kept)`, "UNAVAILABLE");
    this.peer = peer;
    this.messageId = messageId;
  }
}

/** No transfer with this request ID is running (it finished, failed, or never was). */
export class NoSuchTransferError extends CourierError {
  /** The request ID asked for. */
  readonly requestId: number;

  constructor(requestId: number) {
    super(`no such transfer: ${requestId}`, "NOT_FOUND");
    this.requestId = requestId;
  }
}

/**
 * The error for one of the server's reasons. Exhaustive on purpose: a reason added to
 * the proto fails to compile here until it is sorted.
 */
function fromReason(
  reason: ErrorReason,
  message: string,
  cause: unknown,
  metadata: Readonly<Record<string, string>> = {},
): CourierError | undefined {
  const init = { cause };
  switch (reason) {
    case ErrorReason.MEDIA_TOO_LARGE:
      return new TooLargeError(message, init);
    case ErrorReason.MESSAGE_TOO_LARGE:
      return new MessageTooLargeError(message, init);
    case ErrorReason.TOO_MANY_TRANSFERS:
      return new TooManyTransfersError(message, init);
    case ErrorReason.RATE_LIMITED:
      return new RateLimitedError(message, init);
    case ErrorReason.TOO_MANY_CHANNELS:
      return new TooManyChannelsError(message, init);
    case ErrorReason.MEDIA_UNAVAILABLE:
      return new MediaUnavailableError(message, init);
    case ErrorReason.NOT_A_MEMBER:
      return new NotAMemberError(message, init);
    case ErrorReason.TOO_SLOW:
      return new TooSlowError(message, init);
    case ErrorReason.TOO_MANY_STREAMS:
      return new TooManyStreamsError(message, init);
    case ErrorReason.OFFLINE_CACHE_FULL:
      return new OfflineCacheFullError(message, init);
    case ErrorReason.NOT_AN_IMAGE:
      return new NotAnImageError(message, init);
    case ErrorReason.IMAGE_REFUSED:
      return new ImageRefusedError(message, init);
    case ErrorReason.QUOTA_EXCEEDED:
      return new QuotaExceededError(message, init);
    case ErrorReason.CHECKSUM_MISMATCH:
      return new ChecksumMismatchError(message, init);
    case ErrorReason.MEDIA_REJECTED:
      return new MediaRejectedError(message, init);
    case ErrorReason.MEDIA_QUARANTINED:
      return new MediaQuarantinedError(message, init);
    case ErrorReason.MEDIA_DELETED:
      return new MediaDeletedError(message, init);
    case ErrorReason.UPLOAD_OFFSET_MISMATCH: {
      const error = new UploadOffsetMismatchError(message, init);
      const committed = Number(metadata.committed_size);
      if (metadata.committed_size !== undefined && Number.isSafeInteger(committed) && committed >= 0) {
        error.committedSize = committed;
      }
      return error;
    }
    case ErrorReason.ERROR_REASON_UNSPECIFIED:
      return undefined;
    default:
      reason satisfies never;
      return undefined;
  }
}

/** The courier reason in a refusal's `google.rpc.ErrorInfo` (if it has one this client knows) and its metadata. */
function reasonOf(error: ConnectError): { reason: ErrorReason; metadata: Record<string, string> } | undefined {
  const info = error.findDetails(ErrorInfoSchema).find((i) => i.domain === DOMAIN);
  if (info === undefined) return undefined;
  const reason = ErrorReasonSchema.values.find((v) => v.name === info.reason)?.number;
  return reason === undefined ? undefined : { reason, metadata: info.metadata };
}

/**
 * Whether the server sent this status (its `grpc-status` is in the headers or
 * trailers that came back), rather than the transport making it up for a connection
 * that broke. connect 2.2 names this `ConnectError.isWireError`; 2.1, pinned because it
 * is the last to support Node.js 20, has no such flag, but keeps what came back as the
 * error's metadata.
 */
function fromServer(status: ConnectError): boolean {
  return status.metadata.has("grpc-status");
}

/**
 * Sorts any failure of a call into a {@link CourierError}: the server's reason first,
 * then its code. Errors that already are courier errors pass through.
 */
export function toCourierError(error: unknown): CourierError {
  if (error instanceof CourierError) return error;
  const status = ConnectError.from(error);
  const message = status.rawMessage;
  const found = reasonOf(status);
  const byReason = found === undefined ? undefined : fromReason(found.reason, message, error, found.metadata);
  if (byReason !== undefined) return byReason;
  const init = { cause: error };
  switch (status.code) {
    case Code.Unauthenticated:
      return new UnauthenticatedError(message, init);
    case Code.NotFound:
      return new NotFoundError(message, init);
    case Code.InvalidArgument:
      return new InvalidArgumentError(message, init);
    case Code.OutOfRange:
      return new OutOfRangeError(message, init);
    case Code.Unavailable:
      return new UnavailableError(message, init);
    case Code.Aborted:
      // connect-node reports a connection reset under a call (ECONNRESET: the server
      // died, a proxy cut it) as ABORTED; the server itself never sends it.
      return fromServer(status)
        ? new CourierError(message, "ABORTED", "", error)
        : new UnavailableError(`the connection broke: ${message}`, init);
    case Code.Unknown:
      // A fetch (gRPC-Web) that could not reach the server, or whose connection broke,
      // fails with a TypeError ("Failed to fetch", "fetch failed", "network error")
      // that connect-web passes on as UNKNOWN: it is the connection, not the server.
      if (!fromServer(status) && status.cause instanceof TypeError) {
        return new UnavailableError(`cannot reach the server: ${message}`, init);
      }
      return new CourierError(message, "UNKNOWN", "", error);
    case Code.DeadlineExceeded:
      return new DeadlineExceededError(message, init);
    case Code.Canceled:
      // The server cancels nothing, and this library's own cancellations are sorted
      // before they get here: a stream reset under a call means the connection broke.
      return fromServer(status)
        ? new CancelledError("cancelled", init)
        : new UnavailableError(`the connection broke: ${message}`, init);
    default:
      return new CourierError(message, CODE_NAMES[status.code] ?? "UNKNOWN", "", error);
  }
}

/** A local file failure: a missing file is bad input, anything else an i/o error. */
export function fromFileError(error: unknown, path: string): CourierError {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "ENOENT") return new InvalidArgumentError(`${path}: no such file`, { cause: error });
  if (code === "EISDIR") return new InvalidArgumentError(`${path} is a folder`, { cause: error });
  const text = error instanceof Error ? error.message : String(error);
  return new IoError(`i/o: ${text}`, { cause: error });
}

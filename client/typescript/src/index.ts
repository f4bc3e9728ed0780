/**
 * courier-client: the TypeScript (Node.js) client of courier (for web pages:
 * `courier-client/browser`, over gRPC-Web) — a self-hostable
 * messaging service where users send each other, and channels, text, raw, image and
 * file messages, with images and files uploaded once and sent by media ID.
 *
 * ## Layout
 * - {@link Client}: the connection and every call (`client`, `connection`: deadlines,
 *   retries, the HTTP/2 session).
 * - Transfers: uploads and downloads run in the background and hand back a
 *   {@link Transfer} with a request ID, progress and cancel (`transfer`, `upload`,
 *   `download`).
 * - Messages: {@link Message}s to send, {@link FeedEvent}s from
 *   {@link Client.subscribe}, which reconnects by itself (`messages`, `subscribe`).
 * - Errors: {@link CourierError} and a subclass per failure (`errors`).
 * - {@link safeFileName}, {@link uniquePath}: where to save received files (`names`).
 * - `gen/`: the generated protobuf-es code, which stays inside the library.
 *
 * @module
 */

export { Client } from "./client.js";
export * from "./public.js";
export {
  CancelledError,
  ChecksumMismatchError,
  CourierError,
  DeadlineExceededError,
  IntegrityError,
  InvalidArgumentError,
  IoError,
  MediaDeletedError,
  MediaQuarantinedError,
  MediaRejectedError,
  MediaUnavailableError,
  MessageTooLargeError,
  NoSuchTransferError,
  NotAMemberError,
  NotFoundError,
  OutOfRangeError,
  PeerUnreachableError,
  RateLimitedError,
  TooLargeError,
  TooManyChannelsError,
  TooManyStreamsError,
  OfflineCacheFullError,
  NotAnImageError,
  ImageRefusedError,
  QuotaExceededError,
  TooManyTransfersError,
  TooSlowError,
  UnauthenticatedError,
  UnavailableError,
  UploadOffsetMismatchError,
  toCourierError,
  type ErrorReasonName,
  type GrpcCode,
} from "./errors.js";
export { safeFileName, uniquePath } from "./names.js";
export type { UploadOptions, UploadSource } from "./upload.js";

/**
 * Resumable uploads (issue 15), the same code in Node and in browsers: CreateUpload,
 * then WriteUpload of each `part_size` part at its offset with its CRC32C, then
 * CommitUpload with the SHA-256 of the whole. The upload's state (its ID, the server,
 * the source's size and SHA-256, the part size) is kept in a {@link StateStore} — a
 * file beside the source in Node (`resumable-node`), `localStorage` in a browser
 * (`browser`) — from CreateUpload until the commit (or a cancel), so that an upload
 * broken by a lost connection, a server restart or the end of the process continues
 * where the server's stored bytes end (QueryUpload) instead of starting over.
 *
 * The rules of the shared contract: NOT_FOUND (the upload expired or never was) starts
 * over with a new CreateUpload; CHECKSUM_MISMATCH sends the part again, at most 3
 * times; UPLOAD_OFFSET_MISMATCH asks QueryUpload and continues from `committed_size`;
 * UNAVAILABLE (or a broken connection) asks QueryUpload after a backoff, and gives up
 * after `retries` such breaks in a row without progress, keeping the state for a later
 * run.
 *
 * @module
 */

import { type Connection, MAX_BACKOFF_MS, sleep } from "./connection.js";
import { crc32c, toHex } from "./bytes.js";
import {
  ChecksumMismatchError,
  type CourierError,
  DeadlineExceededError,
  IntegrityError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
  UploadOffsetMismatchError,
  toCourierError,
} from "./errors.js";
import { type Media, type MediaKind, kindToProto, mediaFromProto } from "./media.js";
import type { Transfer, TransferContext, TransferOptions } from "./transfer.js";

/** How many times a part refused for its checksum is sent again. */
const CHECKSUM_RETRIES = 3;

/** How many offset mismatches in a row are followed before giving up (each asks the server). */
const OFFSET_RETRIES = 5;

/** What a resumable upload keeps between runs: the contract's state file, as JSON. */
export interface UploadState {
  /** The ID from CreateUpload. */
  readonly upload_id: string;
  /** The server's origin, `http://host:port`. */
  readonly server: string;
  /** The source's size in bytes. */
  readonly size: number;
  /** The source's SHA-256, lowercase hex. */
  readonly sha256: string;
  /** The part size the server chose. */
  readonly part_size: number;
  /** The display file name. */
  readonly file_name: string;
}

/** Where an upload's state is kept between runs. */
export interface StateStore {
  /** The saved state, or `undefined` when there is none (or it cannot be read). */
  load(): Promise<UploadState | undefined>;
  /** Saves `state`, replacing any. */
  save(state: UploadState): Promise<void>;
  /** Removes the state (after a commit or a cancel). */
  remove(): Promise<void>;
}

/** What a resumable upload reads: its size and SHA-256, known before, and its bytes by range. */
export interface ResumableSource {
  /** The display file name. */
  readonly fileName: string;
  /** The size in bytes (1 or more). */
  readonly size: number;
  /** The SHA-256 of the whole content. */
  readonly sha256: Uint8Array;
  /** Reads `length` bytes at `offset` (exactly that many). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** How to upload resumably. */
export interface ResumableOptions extends TransferOptions {
  /** Image (the server reads its width and height) or file; `"file"` by default. */
  kind?: MediaKind;
  /** The display file name: the path's (or the `File`'s) name by default. */
  fileName?: string;
  /** The MIME type; when left out the server detects images and otherwise records `application/octet-stream`. */
  contentType?: string;
  /** Stop after writing this many parts in this run, without committing, keeping the state (a pause). */
  stopAfterParts?: number;
  /** Stops the upload after the part being written, keeping the state, when aborted (a pause). */
  pause?: AbortSignal;
}

/** How a resumable upload ended: committed, or paused with its state kept. */
export type ResumableResult =
  | {
      readonly status: "committed";
      /** The stored record. */
      readonly media: Media;
      /** The bytes the server already held when this run started (0 for a new upload). */
      readonly resumedFrom: number;
    }
  | {
      readonly status: "paused";
      /** The upload's ID. */
      readonly uploadId: string;
      /** The bytes stored so far. */
      readonly committedSize: number;
      /** The bytes the server already held when this run started. */
      readonly resumedFrom: number;
    };

/** Where a run stands: the upload and how far the server has it. */
interface Position {
  uploadId: string;
  partSize: number;
  committed: number;
}

/**
 * Starts a resumable upload of `source` (made by `open` inside the transfer, so that
 * hashing counts as the transfer's work and can be cancelled), keeping its state in
 * `store`. Cancelling the transfer cancels the upload on the server and removes the
 * state; a failure keeps the state, so that the next call with the same source resumes.
 */
export function uploadResumable(
  connection: Connection,
  open: (signal: AbortSignal) => Promise<{ source: ResumableSource; store: StateStore }>,
  options: ResumableOptions,
): Transfer<ResumableResult> {
  if (options.stopAfterParts !== undefined && !(Number.isSafeInteger(options.stopAfterParts) && options.stopAfterParts >= 0)) {
    throw new InvalidArgumentError(`stopAfterParts takes a count of 0 or more, not ${options.stopAfterParts}`);
  }
  let current: { position: Position | undefined; store: StateStore | undefined } = { position: undefined, store: undefined };
  return connection.transfers.start(
    options,
    async (context) => {
      const { source, store } = await open(context.signal);
      current = { position: undefined, store };
      if (!(Number.isSafeInteger(source.size) && source.size > 0)) {
        throw new InvalidArgumentError(`${source.fileName} is empty: there is nothing to upload`);
      }
      return run(connection, source, store, options, context, (position) => (current.position = position));
    },
    async () => {
      // Cancelled: the server drops the parts, and the state goes.
      const { position, store } = current;
      if (position !== undefined) {
        await connection.media.cancelUpload({ uploadId: position.uploadId }, connection.unary).catch(() => {});
      }
      await store?.remove();
    },
  );
}

/**
 * Abandons the upload whose state `store` holds, if any: CancelUpload on the server
 * (an upload it no longer knows is fine) and the state removed.
 */
export async function discardUpload(connection: Connection, store: StateStore): Promise<void> {
  const state = await store.load();
  if (state !== undefined && state.server === connection.origin && typeof state.upload_id === "string") {
    try {
      await connection.retrying(() => connection.media.cancelUpload({ uploadId: state.upload_id }, connection.unary));
    } catch (cause) {
      if (!(toCourierError(cause) instanceof NotFoundError)) throw toCourierError(cause);
    }
  }
  await store.remove();
}

/** The body of an upload: resume or create, write the parts, commit. */
async function run(
  connection: Connection,
  source: ResumableSource,
  store: StateStore,
  options: ResumableOptions,
  context: TransferContext,
  track: (position: Position) => void,
): Promise<ResumableResult> {
  const digest = toHex(source.sha256);
  const { size } = source;
  let position = await resume(connection, source, digest, store);
  if (position === undefined) position = await create(connection, source, digest, store, options);
  track(position);
  const resumedFrom = position.committed;
  context.report(position.committed, size);
  let written = 0;
  let breaks = 0;
  let backoff = connection.settings.backoffMs;
  let checksumRetries = 0;
  let offsetRetries = 0;
  while (position.committed < size) {
    if (context.signal.aborted) throw context.signal.reason;
    if (options.pause?.aborted || (options.stopAfterParts !== undefined && written >= options.stopAfterParts)) {
      return { status: "paused", uploadId: position.uploadId, committedSize: position.committed, resumedFrom };
    }
    const offset = position.committed;
    const length = Math.min(position.partSize, size - offset);
    const data = await source.read(offset, length);
    if (data.length !== length) throw new IntegrityError(`read ${data.length} bytes at ${offset}, expected ${length}`);
    try {
      const answer = await connection.media.writeUpload(
        { uploadId: position.uploadId, offset: BigInt(offset), data, crc32c: crc32c(data) },
        { ...connection.unary, signal: context.signal },
      );
      position.committed = Number(answer.committedSize);
      written++;
      breaks = 0;
      backoff = connection.settings.backoffMs;
      checksumRetries = 0;
      offsetRetries = 0;
      context.report(position.committed, size);
      continue;
    } catch (cause) {
      if (context.signal.aborted) throw cause;
      const error = toCourierError(cause);
      if (error instanceof ChecksumMismatchError && checksumRetries < CHECKSUM_RETRIES) {
        checksumRetries++;
        continue;
      }
      if (error instanceof UploadOffsetMismatchError && offsetRetries < OFFSET_RETRIES) {
        offsetRetries++;
        position.committed = error.committedSize ?? (await query(connection, position.uploadId, context.signal));
        continue;
      }
      if (error instanceof NotFoundError) {
        // Expired (or removed): start over, once per expiry.
        position = await create(connection, source, digest, store, options);
        track(position);
        continue;
      }
      if (!broken(error) || breaks >= connection.settings.retries) throw error;
      breaks++;
      await sleep(backoff, context.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      try {
        position.committed = await query(connection, position.uploadId, context.signal);
      } catch (queryCause) {
        const queryError = toCourierError(queryCause);
        if (queryError instanceof NotFoundError) {
          position = await create(connection, source, digest, store, options);
          track(position);
        } else if (!broken(queryError)) {
          throw queryError;
        }
        // Still broken: the next write tries again (and counts another break).
      }
    }
  }
  if (options.stopAfterParts !== undefined && written >= options.stopAfterParts) {
    return { status: "paused", uploadId: position.uploadId, committedSize: position.committed, resumedFrom };
  }
  const response = await connection.retrying(() =>
    connection.media.commitUpload(
      { uploadId: position.uploadId, sha256: source.sha256 },
      { ...connection.unary, signal: context.signal },
    ),
  );
  if (response.media === undefined) throw new IntegrityError("the server's answer holds no media record");
  const media = mediaFromProto(response.media);
  if (media.sha256 !== digest) {
    throw new IntegrityError(`the server stored SHA-256 ${media.sha256} but the source hashes to ${digest}`);
  }
  await store.remove();
  context.report(size, size);
  return { status: "committed", media, resumedFrom };
}

/** Whether an error means the connection broke (or stalled), so that asking again may work. */
function broken(error: CourierError): boolean {
  return error instanceof UnavailableError || error instanceof DeadlineExceededError;
}

/** The bytes the server holds of `uploadId`. */
async function query(connection: Connection, uploadId: string, signal: AbortSignal): Promise<number> {
  const answer = await connection.retrying(() =>
    connection.media.queryUpload({ uploadId }, { ...connection.unary, signal }),
  );
  return Number(answer.committedSize);
}

/**
 * The saved upload of this same source on this same server, with the bytes the server
 * holds; `undefined` when there is none, or the server no longer knows it.
 */
async function resume(
  connection: Connection,
  source: ResumableSource,
  digest: string,
  store: StateStore,
): Promise<Position | undefined> {
  const state = await store.load();
  if (
    state === undefined ||
    state.server !== connection.origin ||
    state.size !== source.size ||
    state.sha256 !== digest ||
    typeof state.upload_id !== "string"
  ) {
    return undefined;
  }
  try {
    const answer = await connection.retrying(() =>
      connection.media.queryUpload({ uploadId: state.upload_id }, connection.unary),
    );
    if (Number(answer.size) !== source.size) return undefined;
    return { uploadId: state.upload_id, partSize: Number(answer.partSize), committed: Number(answer.committedSize) };
  } catch (cause) {
    if (toCourierError(cause) instanceof NotFoundError) return undefined;
    throw cause;
  }
}

/** Creates a new upload on the server and saves its state (replacing any). */
async function create(
  connection: Connection,
  source: ResumableSource,
  digest: string,
  store: StateStore,
  options: ResumableOptions,
): Promise<Position> {
  const header = {
    kind: kindToProto(options.kind ?? "file"),
    fileName: source.fileName,
    size: BigInt(source.size),
    contentType: options.contentType ?? "",
  };
  // Not retried: a lost answer would leave an upload behind that holds a transfer
  // slot until it expires.
  const answer = await connection.once(() => connection.media.createUpload({ header }, connection.unary));
  const partSize = Number(answer.partSize);
  if (!(Number.isSafeInteger(partSize) && partSize > 0)) {
    throw new IntegrityError(`the server gave a part size of ${answer.partSize}`);
  }
  await store.save({
    upload_id: answer.uploadId,
    server: connection.origin,
    size: source.size,
    sha256: digest,
    part_size: partSize,
    file_name: source.fileName,
  });
  return { uploadId: answer.uploadId, partSize, committed: 0 };
}

/**
 * Uploads from a path, a `Uint8Array` or a Node `Readable` (any async iterable of
 * bytes), streamed in chunks with progress; the server's SHA-256 is checked against
 * the one computed while reading.
 *
 * A path or bytes in memory are hashed first and offered to the server by header alone
 * (SHA-256 and size, no data): when this user stored the same content before, the
 * server completes the upload at once without the bytes. Otherwise it answers
 * INVALID_ARGUMENT (the same as for content it does not hold, or that another user
 * stored), and the bytes are sent as usual. A stream can be read only once, so it is
 * uploaded without the offer.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Connection } from "./connection.js";
import { CourierError, IntegrityError, InvalidArgumentError, fromFileError } from "./errors.js";
import type { UploadMediaRequestSchema } from "./gen/courier/v1/media_service_pb.js";
import { type Media, type MediaKind, kindToProto, mediaFromProto } from "./media.js";
import type { Transfer, TransferContext, TransferOptions } from "./transfer.js";

/** Where an upload's bytes come from: a file's path, bytes in memory, or a stream (such as a Node `Readable`). */
export type UploadSource = string | Uint8Array | AsyncIterable<Uint8Array | string>;

/** How to upload. */
export interface UploadOptions extends TransferOptions {
  /** Image (the server reads its width and height) or file; `"file"` by default. */
  kind?: MediaKind;
  /** The display file name: the path's base name by default; required for bytes and streams. */
  fileName?: string;
  /** How many bytes a stream yields: required for streams (the server must know it first). */
  size?: number;
  /** The MIME type; when left out the server detects images and otherwise records `application/octet-stream`. */
  contentType?: string;
}

/** An upload request frame. */
type Frame = MessageInitShape<typeof UploadMediaRequestSchema>;

/** What an upload reads from, resolved. */
interface Resolved {
  fileName: string;
  size: number;
  chunks: () => AsyncIterable<Uint8Array>;
  /** The SHA-256 of the content, read before the upload; absent for a stream, which can be read only once. */
  digest?: (signal: AbortSignal) => Promise<Uint8Array>;
}

/** Starts uploading `source`; the transfer resolves with the media record. */
export function upload(connection: Connection, source: UploadSource, options: UploadOptions): Transfer<Media> {
  const kind = options.kind ?? "file";
  if (typeof source !== "string") check(source, options);
  return connection.transfers.start(options, async (context) => {
    const resolved = await resolve(source, options, connection.settings.chunkSize);
    return run(connection, kind, options.contentType ?? "", resolved, context);
  });
}

/** Refuses, at once, bytes or a stream without the name or size the server needs. */
function check(source: Uint8Array | AsyncIterable<Uint8Array | string>, options: UploadOptions): void {
  if (!options.fileName) throw new InvalidArgumentError("an upload of bytes or of a stream needs a fileName");
  const size = source instanceof Uint8Array ? source.length : options.size;
  if (size === undefined) throw new InvalidArgumentError("an upload of a stream needs its size");
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new InvalidArgumentError(`an upload needs 1 byte or more, not ${size}`);
  }
}

/** The size of the file at `path`; refuses what is not a file, or is empty. */
export async function uploadableSize(path: string): Promise<number> {
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new InvalidArgumentError(`${path} is not a file`);
    size = info.size;
  } catch (error) {
    throw error instanceof InvalidArgumentError ? error : fromFileError(error, path);
  }
  if (size === 0) throw new InvalidArgumentError(`${path} is empty: there is nothing to upload`);
  return size;
}

/** The name, size and chunks of `source`. */
async function resolve(source: UploadSource, options: UploadOptions, chunk: number): Promise<Resolved> {
  if (typeof source === "string") {
    const size = await uploadableSize(source);
    const path = source;
    return {
      fileName: options.fileName ?? basename(path),
      size,
      // Opened when read: once to hash, again to send when the server wants the bytes.
      chunks: () => rechunk(readFile(createReadStream(path, { highWaterMark: chunk }), path), chunk),
      digest: async (signal) => {
        const hash = createHash("sha256");
        for await (const data of readFile(createReadStream(path, { highWaterMark: chunk }), path)) {
          if (signal.aborted) throw signal.reason;
          hash.update(data);
        }
        return hash.digest();
      },
    };
  }
  if (source instanceof Uint8Array) {
    const bytes = source;
    return {
      fileName: options.fileName!,
      size: bytes.length,
      chunks: async function* () {
        for (let at = 0; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
      },
      digest: async () => createHash("sha256").update(bytes).digest(),
    };
  }
  return { fileName: options.fileName!, size: options.size!, chunks: () => rechunk(source, chunk) };
}

/** A file's chunks, with read errors as courier errors. */
async function* readFile(file: AsyncIterable<Uint8Array | string>, path: string): AsyncIterable<Uint8Array | string> {
  try {
    yield* file;
  } catch (error) {
    throw fromFileError(error, path);
  }
}

/** Chunks of at most `chunk` bytes (each gRPC frame must stay under 4 MiB). */
async function* rechunk(source: AsyncIterable<Uint8Array | string>, chunk: number): AsyncIterable<Uint8Array> {
  for await (const piece of source) {
    const bytes = typeof piece === "string" ? Buffer.from(piece) : piece;
    for (let at = 0; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
  }
}

/**
 * Offers a path or bytes by header alone first (see the module's comment), then sends
 * the header and the data frames, and checks the server's record against what was read.
 */
async function run(
  connection: Connection,
  kind: MediaKind,
  contentType: string,
  source: Resolved,
  context: TransferContext,
): Promise<Media> {
  const { size } = source;
  const header = { kind: kindToProto(kind), fileName: source.fileName, size: BigInt(size), contentType };
  if (source.digest !== undefined) {
    const digest = await source.digest(context.signal);
    const reused = await offer(connection, { ...header, sha256: digest }, context.signal);
    if (reused !== undefined) {
      context.report(size, size);
      return reused;
    }
    // The server checks the bytes it receives against the digest offered. A path or
    // bytes can be read again: an upload that found its server unavailable starts over
    // (on the next replica, with several), as a call safe to repeat.
    return connection.retrying(() => send(connection, { ...header, sha256: digest }, source, context), context.signal);
  }
  return send(connection, header, source, context);
}

/** An upload's header. */
type Header = Extract<Frame["frame"], { case: "header" }>["value"];

/** Offers content by its header alone; `undefined` when the server wants the bytes. */
async function offer(connection: Connection, header: Header, signal: AbortSignal): Promise<Media | undefined> {
  async function* frames(): AsyncIterable<Frame> {
    yield { frame: { case: "header", value: header } };
  }
  let response;
  try {
    // An offer stores nothing: retried while the server is unavailable, each time on
    // the next replica (so that the upload that follows goes to one that answers).
    response = await connection.retrying(() => connection.media.uploadMedia(frames(), { signal }), signal);
  } catch (error) {
    // Not content this user stored (or not stored at all): send the bytes.
    if (error instanceof CourierError && error.code === "INVALID_ARGUMENT" && !signal.aborted) return undefined;
    throw error;
  }
  if (response.media === undefined) throw new IntegrityError("the server's answer holds no media record");
  const media = mediaFromProto(response.media);
  const expected = Buffer.from(header.sha256 ?? new Uint8Array()).toString("hex");
  if (media.sha256 !== expected) {
    throw new IntegrityError(`the server reused SHA-256 ${media.sha256} for content that hashes differently here`);
  }
  return media;
}

/** Sends the header and the data frames, then checks the server's record against what was read. */
async function send(connection: Connection, header: Header, source: Resolved, context: TransferContext): Promise<Media> {
  const { size } = source;
  const hash = createHash("sha256");
  let done = 0;
  let readError: unknown;
  let complete = false;
  async function* frames(): AsyncIterable<Frame> {
    yield { frame: { case: "header", value: header } };
    try {
      for await (const data of source.chunks()) {
        if (context.signal.aborted) return;
        if (done + data.length > size) {
          throw new InvalidArgumentError(`the source yields more than the ${size} bytes declared`);
        }
        hash.update(data);
        yield { frame: { case: "data", value: data } };
        done += data.length;
        context.report(done, size);
      }
      complete = true;
    } catch (error) {
      // A local read error is the root cause of whatever the server says after it.
      readError = error;
      throw error;
    }
  }
  let response;
  try {
    response = await connection.media.uploadMedia(frames(), { signal: context.signal });
  } catch (error) {
    throw readError ?? error;
  }
  if (readError !== undefined) throw readError;
  if (response.media === undefined) throw new IntegrityError("the server's answer holds no media record");
  const media = mediaFromProto(response.media);
  if (complete && media.sha256 !== hash.digest("hex")) {
    throw new IntegrityError(`the server stored SHA-256 ${media.sha256} but the bytes read here hash differently`);
  }
  context.report(size, size);
  return media;
}

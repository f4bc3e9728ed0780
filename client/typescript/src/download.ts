/**
 * Downloads into a file (Node; into memory: `memory`). A file download writes to a hidden partial
 * file beside the target, verifies size and SHA-256, then renames it into place, so
 * the target is never a half file; a download interrupted by a lost connection (or a
 * crash) resumes from the partial file.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import type { Connection } from "./connection.js";
import { ConnectError } from "@connectrpc/connect";

import {
  CourierError,
  IntegrityError,
  OutOfRangeError,
  UnavailableError,
  DeadlineExceededError,
  fromFileError,
  toCourierError,
} from "./errors.js";
import type { Media } from "./media.js";
import { checkMediaId, openDownload } from "./memory.js";
import type { Transfer, TransferContext, TransferOptions } from "./transfer.js";

/**
 * Where a download of `mediaId` to `path` keeps its unfinished bytes: the hidden file
 * `.<name>.<mediaId>.part` in the same folder, so that the rename is atomic.
 */
export function partialPath(path: string, mediaId: string): string {
  return join(dirname(path), `.${basename(path)}.${mediaId}.part`);
}

/**
 * Starts downloading `mediaId` to `path` (replacing any file there) through the
 * partial file of {@link partialPath}. A cancelled or failed download removes the
 * partial file, except when the connection was lost: then the next download resumes
 * from it.
 */
export function downloadToFile(
  connection: Connection,
  mediaId: string,
  path: string,
  options: TransferOptions,
): Transfer<Media> {
  checkMediaId(mediaId);
  const partial = partialPath(path, mediaId);
  const remove = () => rm(partial, { force: true });
  return connection.transfers.start(
    options,
    async (context) => {
      try {
        return await toFile(connection, mediaId, path, partial, context);
      } catch (error) {
        const courier =
          error instanceof CourierError || error instanceof ConnectError
            ? toCourierError(error)
            : fromFileError(error, partial);
        // Only a lost or stalled connection leaves bytes worth resuming from.
        const resumable = courier instanceof UnavailableError || courier instanceof DeadlineExceededError;
        if (!resumable && !context.signal.aborted) await remove();
        throw courier;
      }
    },
    remove,
  );
}

/** The body of {@link downloadToFile}. */
async function toFile(
  connection: Connection,
  mediaId: string,
  path: string,
  partial: string,
  context: TransferContext,
): Promise<Media> {
  let { hash, size: done } = await hashFile(partial);
  let opened;
  try {
    opened = await openDownload(connection, mediaId, done, context.signal);
  } catch (error) {
    // The partial file is longer than the object: it is not a prefix of it.
    if (!(toCourierError(error) instanceof OutOfRangeError)) throw error;
    await rm(partial, { force: true });
    ({ hash, size: done } = { hash: createHash("sha256"), size: 0 });
    opened = await openDownload(connection, mediaId, 0, context.signal);
  }
  const { media, frames } = opened;
  context.report(done, media.size);
  const file = await open(partial, "a");
  try {
    for await (const data of frames) {
      await file.write(data);
      hash.update(data);
      done += data.length;
      context.report(done, media.size);
    }
    await file.sync();
  } finally {
    await file.close();
  }
  // Bytes that can never become the object are removed by the caller.
  verify(media, done, hash);
  await rename(partial, path);
  return media;
}

/** Hashes what a partial file already holds; no file is an empty start. */
async function hashFile(path: string): Promise<{ hash: Hash; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { hash: createHash("sha256"), size: 0 };
    throw error;
  }
  return { hash, size };
}

/** Checks received bytes against the record. */
function verify(media: Media, size: number, hash: Hash): void {
  if (size !== media.size) throw new IntegrityError(`received ${size} bytes of ${media.size}`);
  const digest = hash.digest("hex");
  if (digest !== media.sha256) {
    throw new IntegrityError(`the bytes hash to ${digest} but the record says ${media.sha256}`);
  }
}

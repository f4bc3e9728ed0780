/**
 * Resumable uploads of files in Node: the source read by range from the file, its
 * SHA-256 read first, and the state kept beside it in `<PATH>.courier-upload` (a small
 * JSON file written after CreateUpload, replaced atomically, removed after the commit
 * or a cancel).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename } from "node:path";

import type { Connection } from "./connection.js";
import { InvalidArgumentError, fromFileError } from "./errors.js";
import {
  type ResumableOptions,
  type ResumableResult,
  type ResumableSource,
  type StateStore,
  type UploadState,
  uploadResumable,
} from "./resumable.js";
import type { Transfer } from "./transfer.js";
import { uploadableSize } from "./upload.js";

/** Where the state of a resumable upload of `path` is kept: `<PATH>.courier-upload`. */
export function statePath(path: string): string {
  return `${path}.courier-upload`;
}

/** The state file beside `path`. */
export function fileStateStore(path: string): StateStore {
  const file = statePath(path);
  return {
    async load() {
      try {
        const state = JSON.parse(await readFile(file, "utf8")) as UploadState;
        return typeof state === "object" && state !== null ? state : undefined;
      } catch {
        // Missing or unreadable: a new upload replaces it.
        return undefined;
      }
    },
    async save(state) {
      const temporary = `${file}.tmp`;
      try {
        await writeFile(temporary, `${JSON.stringify(state)}\n`);
        await rename(temporary, file);
      } catch (error) {
        await rm(temporary, { force: true });
        throw fromFileError(error, file);
      }
    },
    async remove() {
      await rm(file, { force: true });
    },
  };
}

/** Starts a resumable upload of the file at `path`. */
export function uploadFileResumable(
  connection: Connection,
  path: string,
  options: ResumableOptions,
): Transfer<ResumableResult> {
  return uploadResumable(
    connection,
    async (signal) => ({ source: await fileSource(path, options.fileName, signal), store: fileStateStore(path) }),
    options,
  );
}

/** The file at `path` as a source: its size and SHA-256 read now, its bytes by range later. */
async function fileSource(path: string, fileName: string | undefined, signal: AbortSignal): Promise<ResumableSource> {
  const size = await uploadableSize(path);
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
      if (signal.aborted) throw signal.reason;
      hash.update(chunk as Buffer);
    }
  } catch (error) {
    throw signal.aborted ? error : fromFileError(error, path);
  }
  return {
    fileName: fileName ?? basename(path),
    size,
    sha256: hash.digest(),
    async read(offset, length) {
      const file = await open(path, "r").catch((error) => {
        throw fromFileError(error, path);
      });
      try {
        const buffer = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await file.read(buffer, done, length - done, offset + done);
          if (bytesRead === 0) throw new InvalidArgumentError(`${path} got shorter while it was uploaded`);
          done += bytesRead;
        }
        return buffer;
      } finally {
        await file.close();
      }
    },
  };
}

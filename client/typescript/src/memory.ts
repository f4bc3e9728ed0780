/**
 * Downloads into memory, checked against the record's size and SHA-256 (WebCrypto):
 * the same code in Node and in browsers.
 *
 * @module
 */

import { toHex, sha256 } from "./bytes.js";
import type { Connection } from "./connection.js";
import { IntegrityError, InvalidArgumentError } from "./errors.js";
import type { DownloadMediaResponse } from "./gen/courier/v1/media_service_pb.js";
import { type Downloaded, type Media, isMediaId, mediaFromProto } from "./media.js";
import type { Transfer, TransferOptions } from "./transfer.js";

/** Refuses, at once, anything but a media ID: it goes into a request and a file name. */
export function checkMediaId(mediaId: string): void {
  if (!isMediaId(mediaId)) {
    throw new InvalidArgumentError(`${JSON.stringify(mediaId)} is not a media ID (32 lowercase hex characters)`);
  }
}

/** Starts downloading `mediaId` into memory. */
export function downloadToMemory(connection: Connection, mediaId: string, options: TransferOptions): Transfer<Downloaded> {
  checkMediaId(mediaId);
  return connection.transfers.start(options, async (context) => {
    const { media, frames } = await openDownload(connection, mediaId, 0, context.signal);
    const chunks: Uint8Array[] = [];
    let done = 0;
    context.report(0, media.size);
    for await (const data of frames) {
      if (done + data.length > media.size) throw new IntegrityError(`received more than the ${media.size} bytes of the record`);
      chunks.push(data);
      done += data.length;
      context.report(done, media.size);
    }
    if (done !== media.size) throw new IntegrityError(`received ${done} bytes of ${media.size}`);
    const bytes = new Uint8Array(done);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    const digest = toHex(await sha256(bytes));
    if (digest !== media.sha256) {
      throw new IntegrityError(`the bytes hash to ${digest} but the record says ${media.sha256}`);
    }
    return { media, bytes };
  });
}

/** Opens a download from `offset`: the record, then the data frames. */
export async function openDownload(
  connection: Connection,
  mediaId: string,
  offset: number,
  signal: AbortSignal,
): Promise<{ media: Media; frames: AsyncIterable<Uint8Array> }> {
  // Opening is safe to repeat (nothing was received yet): retried while the server is
  // unavailable, each time on the next replica.
  const { iterator, first } = await connection.retrying(async () => {
    const stream = connection.media.downloadMedia({ mediaId, offset: BigInt(offset) }, { signal });
    const iterator = stream[Symbol.asyncIterator]();
    return { iterator, first: await iterator.next() };
  }, signal);
  if (first.done || first.value.frame.case !== "media") {
    throw new IntegrityError("the download did not start with the media record");
  }
  const media = mediaFromProto(first.value.frame.value);
  return { media, frames: data(iterator) };
}

/** The data frames of a download after its record. */
async function* data(iterator: AsyncIterator<DownloadMediaResponse>): AsyncIterable<Uint8Array> {
  for (;;) {
    const next = await iterator.next();
    if (next.done) return;
    if (next.value.frame.case === "data") yield next.value.frame.value;
  }
}

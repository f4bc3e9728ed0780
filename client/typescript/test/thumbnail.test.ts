/**
 * Thumbnails, as the Rust client tests them (client/rust/tests/thumbnail.rs): the
 * server's thumbnail at the rounded-up size, and refusals as typed errors.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Client,
  ImageRefusedError,
  InvalidArgumentError,
  NotAnImageError,
  NotFoundError,
} from "courier-client";

import { Server, png } from "./harness.js";

/** The width and height in a JPEG's first frame header. */
function jpegSize(data: Uint8Array): [number, number] {
  const bytes = Buffer.from(data);
  assert.equal(bytes.readUInt16BE(0), 0xffd8, "a JPEG");
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    const marker = bytes[pos + 1];
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) {
      return [bytes.readUInt16BE(pos + 7), bytes.readUInt16BE(pos + 5)];
    }
    pos += 2 + bytes.readUInt16BE(pos + 2);
  }
  throw new Error("no frame header");
}

/** A PNG declaring 100,000 x 100,000 pixels: the header of a decompression bomb. */
function bomb(): Buffer {
  const small = png(1, 1);
  const out = Buffer.from(small);
  out.writeUInt32BE(100_000, 16);
  out.writeUInt32BE(100_000, 20);
  // The IHDR CRC covers the type and data (bytes 12..29); recompute it from the harness PNG.
  const crc = crc32(out.subarray(12, 29));
  out.writeUInt32BE(crc, 29);
  return out;
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

test("thumbnails come at the rounded-up size, refusals are typed", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const media = await alice.uploadImage(png(400, 200), { fileName: "wide.png" });
    const thumb = await alice.thumbnail(media.mediaId, 100);
    assert.equal(thumb.contentType, "image/jpeg");
    assert.deepEqual([thumb.width, thumb.height], [320, 160], "100 rounds up to 320");
    assert.deepEqual(jpegSize(thumb.data), [320, 160]);
    const small = await alice.uploadImage(png(50, 40), { fileName: "small.png" });
    assert.deepEqual(jpegSize((await alice.thumbnail(small.mediaId, 640)).data), [50, 40], "not enlarged");

    const text = await alice.uploadFile(Buffer.from("no picture here"), { fileName: "notes.txt" });
    await assert.rejects(alice.thumbnail(text.mediaId, 96), NotAnImageError);
    const large = await alice.uploadImage(bomb(), { fileName: "bomb.png" });
    await assert.rejects(alice.thumbnail(large.mediaId, 96), ImageRefusedError);
    await assert.rejects(alice.thumbnail(media.mediaId, 0), InvalidArgumentError);
    await assert.rejects(alice.thumbnail("00112233445566778899aabbccddeeff", 96), NotFoundError);
    alice.close();
  } finally {
    await server.stop();
  }
});

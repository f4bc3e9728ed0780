/**
 * The media_url scenario of tests/scenarios.md (issue 29) through this library: a
 * signed HTTP link from `mediaUrl`, fetched with Node's own `fetch` (no token) —
 * the whole file, a byte range, a 304, a thumbnail link, refusals and expiry — and the
 * interop CLI's `url MEDIA_ID [--max-edge N]`.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Client, NotAnImageError, NotFoundError } from "courier-client";

import { Server, pattern, pause, png, sha256 } from "./harness.js";

/** The width and height in a JPEG's frame header (SOF0 to SOF2). */
function jpegSize(bytes: Uint8Array): { width: number; height: number } {
  assert.ok(bytes[0] === 0xff && bytes[1] === 0xd8, "a JPEG (SOI)");
  let at = 2;
  while (at + 9 < bytes.length) {
    assert.equal(bytes[at], 0xff, `a marker at ${at}`);
    const marker = bytes[at + 1]!;
    const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    if (marker >= 0xc0 && marker <= 0xc2) {
      return { height: (bytes[at + 5]! << 8) | bytes[at + 6]!, width: (bytes[at + 7]! << 8) | bytes[at + 8]! };
    }
    at += 2 + length;
  }
  throw new Error("no frame header");
}

const FILE_SIZE = 300 * 1024;

test("media_url", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bytes = pattern(FILE_SIZE, 29);
    const file = await alice.upload(bytes, { fileName: "data.bin" });
    const image = await alice.uploadImage(png(200, 100), { fileName: "wide.png" });

    // The file's link: on the server's address, expiring within the default 5 minutes.
    const link = await alice.mediaUrl(file.mediaId);
    assert.ok(link.url.startsWith(`http://${server.addr}/media/v1/${file.mediaId}?`), link.url);
    const left = link.expireTime.getTime() - Date.now();
    assert.ok(left > 0 && left <= 5 * 60 * 1000 + 1000, `expires within 5 minutes: ${link.expireTime.toISOString()}`);
    const whole = await fetch(link.url);
    assert.equal(whole.status, 200);
    assert.equal(sha256(new Uint8Array(await whole.arrayBuffer())), sha256(bytes), "byte-identical");
    const etag = whole.headers.get("etag");
    assert.equal(etag, `"${file.sha256}"`, "the ETag is the quoted hex SHA-256");
    assert.equal(whole.headers.get("x-content-type-options"), "nosniff");

    // One byte range.
    const range = await fetch(link.url, { headers: { range: "bytes=262000-270000" } });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get("content-range"), `bytes 262000-270000/${FILE_SIZE}`);
    assert.ok(Buffer.from(await range.arrayBuffer()).equals(bytes.subarray(262000, 270001)), "exactly that slice");

    // A conditional GET.
    const cached = await fetch(link.url, { headers: { "if-none-match": etag! } });
    assert.equal(cached.status, 304);

    // A thumbnail link, and the refusals.
    const thumbLink = await alice.mediaUrl(image.mediaId, { maxEdge: 90 });
    const thumb = await fetch(thumbLink.url);
    assert.equal(thumb.status, 200);
    assert.equal(thumb.headers.get("content-type"), "image/jpeg");
    assert.deepEqual(jpegSize(new Uint8Array(await thumb.arrayBuffer())), { width: 96, height: 48 });
    await assert.rejects(alice.mediaUrl(file.mediaId, { maxEdge: 90 }), NotAnImageError);
    await assert.rejects(alice.mediaUrl("0".repeat(32)), NotFoundError);

    // A link of 1 s answers 410 once it has expired.
    const short = await alice.mediaUrl(file.mediaId, { lifetimeMs: 1000 });
    assert.ok(short.expireTime.getTime() - Date.now() <= 2000, "a 1 s link");
    await pause(Math.max(0, short.expireTime.getTime() - Date.now()) + 1200);
    assert.equal((await fetch(short.url)).status, 410);
    alice.close();
  } finally {
    await server.stop();
  }
});

test("the interop CLI: url MEDIA_ID [--max-edge N]", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bytes = pattern(FILE_SIZE, 30);
    const file = await alice.upload(bytes, { fileName: "data.bin" });
    alice.close();
    const cli = fileURLToPath(new URL("../../dist/cli/interop.js", import.meta.url));
    const env = { ...process.env, COURIER_SERVER: server.url, COURIER_TOKEN: server.token("bob") };
    const run = async (args: string[]) => {
      try {
        const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args], { env, timeout: 30_000 });
        return { status: 0, line: JSON.parse(stdout.trim()) as Record<string, any> };
      } catch (error) {
        const failed = error as { code: number; stdout: string };
        return { status: failed.code, line: failed.stdout.trim() ? JSON.parse(failed.stdout.trim()) : {} };
      }
    };
    // Another user's client mints the link (as the matrix's receiver does).
    const { status, line } = await run(["url", file.mediaId]);
    assert.equal(status, 0);
    assert.deepEqual(Object.keys(line).sort(), ["expire_time", "url"]);
    assert.match(line.expire_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, "RFC 3339, UTC, whole seconds");
    const got = await fetch(line.url);
    assert.equal(got.status, 200);
    assert.equal(sha256(new Uint8Array(await got.arrayBuffer())), sha256(bytes));
    const slice = await fetch(line.url, { headers: { range: "bytes=1000-1999" } });
    assert.equal(slice.status, 206);
    assert.ok(Buffer.from(await slice.arrayBuffer()).equals(bytes.subarray(1000, 2000)));
    const thumbnail = await run(["url", file.mediaId, "--max-edge", "96"]);
    assert.equal(thumbnail.status, 1);
    assert.deepEqual([thumbnail.line.error.code, thumbnail.line.error.reason], ["FAILED_PRECONDITION", "NOT_AN_IMAGE"]);
    const ttl = await run(["url", file.mediaId, "--ttl", "60s"]);
    assert.equal(ttl.status, 0);
    assert.ok(Date.parse(ttl.line.expire_time) - Date.now() <= 61_000);
    assert.equal((await run(["url", file.mediaId, "--max-edge", "x"])).status, 2, "a bad --max-edge is a usage error");
    assert.equal((await run(["url", file.mediaId, "--ttl", "soon"])).status, 2, "a bad --ttl is a usage error");
  } finally {
    await server.stop();
  }
});

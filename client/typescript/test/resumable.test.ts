/**
 * Resumable uploads from Node (issue 15), against a real server with small parts:
 * a paused upload keeps its state file and the next run resumes from the server's
 * bytes; a server restart mid-upload (during a run, and between runs) loses nothing;
 * a stale state starts over; a discarded upload frees its transfer slot; and the
 * interop CLI's `upload --resume [--stop-after-parts N]`.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Client, type Progress } from "courier-client";

import { Server, pattern, sha256, tempDir } from "./harness.js";

const PART = 64 * 1024;
const FLAGS = ["--upload-part-size", String(PART)];

/** Writes `data` to a new file and returns its path. */
function fileOf(data: Uint8Array, name = "data.bin"): string {
  const path = join(tempDir(), name);
  writeFileSync(path, data);
  return path;
}

test("a paused upload keeps its state; the next run resumes from the server's bytes", { timeout: 120_000 }, async () => {
  const server = await Server.start(FLAGS);
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const data = pattern(5 * PART + 1234, 21);
    const path = fileOf(data);
    const paused = await alice.uploadResumable(path, { stopAfterParts: 2 });
    assert.equal(paused.status, "paused");
    assert.ok(paused.status === "paused");
    assert.equal(paused.committedSize, 2 * PART);
    assert.equal(paused.resumedFrom, 0);
    const statePath = Client.uploadStatePath(path);
    assert.equal(statePath, `${path}.courier-upload`);
    const state = JSON.parse(readFileSync(statePath, "utf8"));
    assert.equal(state.upload_id, paused.uploadId);
    assert.equal(state.server, server.url);
    assert.equal(state.size, data.length);
    assert.equal(state.sha256, sha256(data));
    assert.equal(state.part_size, PART);

    const seen: Progress[] = [];
    const done = await alice.uploadResumable(path, { onProgress: (p) => seen.push(p) });
    assert.ok(done.status === "committed");
    assert.equal(done.resumedFrom, 2 * PART, "continued after the two stored parts");
    assert.equal(done.media.sha256, sha256(data));
    assert.equal(done.media.size, data.length);
    assert.equal(seen[0]?.done, 2 * PART, "progress starts at the stored bytes");
    assert.deepEqual(seen.at(-1), { done: data.length, total: data.length });
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.done >= seen[i - 1]!.done, "progress never goes back");
    assert.equal(existsSync(statePath), false, "the state goes after the commit");
    const downloaded = await alice.downloadToMemory(done.media.mediaId);
    assert.equal(sha256(downloaded.bytes), sha256(data), "byte-identical");
    alice.close();
  } finally {
    await server.stop();
  }
});

test("a server restart between runs and during a run loses nothing", { timeout: 120_000 }, async () => {
  const server = await Server.start(FLAGS);
  let restarted: Promise<void> | undefined;
  try {
    const data = pattern(12 * PART, 22);
    const path = fileOf(data);
    let alice = await Client.connect(server.url, server.token("alice"));
    const paused = await alice.uploadResumable(path, { stopAfterParts: 3 });
    assert.equal(paused.status, "paused");
    alice.close();
    await server.restart();

    // A new process would do the same: a new client, the state file, the server's bytes.
    alice = await Client.connect(server.url, server.token("alice"));
    const done = await alice.uploadResumable(path, {
      onProgress: (p) => {
        // Kill and start the server again once the run has written a part of its own.
        if (restarted === undefined && p.done >= 4 * PART) restarted = server.restart();
      },
    });
    await restarted;
    assert.ok(restarted !== undefined, "the server was restarted during the run");
    assert.ok(done.status === "committed");
    assert.equal(done.resumedFrom, 3 * PART);
    assert.equal(done.media.sha256, sha256(data));
    assert.equal(sha256((await alice.downloadToMemory(done.media.mediaId)).bytes), sha256(data));
    alice.close();
  } finally {
    // A restart still under way when the test fails would start a server after stop().
    await restarted?.catch(() => {});
    await server.stop();
  }
});

test("a stale state starts over; a discarded upload frees its transfer slot", { timeout: 120_000 }, async () => {
  const server = await Server.start(FLAGS);
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const data = pattern(3 * PART, 23);
    const path = fileOf(data);
    // A state naming an upload the server never had: NOT_FOUND, so a new upload.
    writeFileSync(
      Client.uploadStatePath(path),
      JSON.stringify({ upload_id: "f".repeat(32), server: server.url, size: data.length, sha256: sha256(data), part_size: PART }),
    );
    const done = await alice.uploadResumable(path);
    assert.ok(done.status === "committed");
    assert.equal(done.resumedFrom, 0);
    assert.equal(done.media.sha256, sha256(data));

    // A state for another file of the same name (another SHA-256): not resumed.
    const other = pattern(3 * PART, 24);
    writeFileSync(path, other);
    const first = await alice.uploadResumable(path, { stopAfterParts: 1 });
    assert.equal(first.status, "paused");
    writeFileSync(path, data);
    const fresh = await alice.uploadResumable(path);
    assert.ok(fresh.status === "committed");
    assert.equal(fresh.resumedFrom, 0, "another file's state is not resumed");
    assert.equal(fresh.media.sha256, sha256(data));

    // A paused upload holds a transfer slot until it is discarded (the other file's
    // upload, orphaned above, holds one until it expires).
    await server.waitInFlight(1);
    const paused = await alice.uploadResumable(path, { stopAfterParts: 1 });
    assert.equal(paused.status, "paused");
    await server.waitInFlight(2);
    await alice.discardUpload(path);
    await server.waitInFlight(1);
    assert.equal(existsSync(Client.uploadStatePath(path)), false);
    const again = await alice.uploadResumable(path, { stopAfterParts: 0 });
    assert.ok(again.status === "paused" && again.resumedFrom === 0, "nothing left to resume after a discard");
    await alice.discardUpload(path);
    alice.close();
  } finally {
    await server.stop();
  }
});

test("the interop CLI: upload --resume --stop-after-parts, then --resume", { timeout: 120_000 }, async () => {
  const server = await Server.start(FLAGS);
  try {
    const cli = fileURLToPath(new URL("../../dist/cli/interop.js", import.meta.url));
    const data = pattern(4 * PART + 7, 25);
    const path = fileOf(data, "cli.bin");
    const env = { ...process.env, COURIER_SERVER: server.url, COURIER_TOKEN: server.token("alice") };
    const run = async (...args: string[]) => {
      const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args], { env });
      return stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    };
    const [paused] = await run("upload", path, "--resume", "--stop-after-parts", "1");
    assert.equal(paused?.event, "paused");
    assert.equal(paused?.committed_size, PART);
    assert.equal(typeof paused?.upload_id, "string");
    const [media] = await run("upload", path, "--resume");
    assert.equal(media?.resumed_from, PART);
    assert.equal(media?.sha256, sha256(data));
    assert.equal(media?.size, data.length);
    const [fresh] = await run("upload", path, "--resume");
    assert.equal(fresh?.resumed_from, 0);
    await assert.rejects(run("upload", path, "--stop-after-parts", "1"), /needs --resume/);
  } finally {
    await server.stop();
  }
});

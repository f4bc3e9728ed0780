/**
 * The header-only re-upload, as the Rust client tests it (client/rust/tests/reupload.rs):
 * content this user stored before completes without its bytes; anyone else's upload
 * of it sends them.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Client, type Progress } from "courier-client";

import { Server, pattern, sha256, tempDir } from "./harness.js";

const MIB = 1024 * 1024;

test("a repeated upload does not resend", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await Client.connect(server.url, server.token("bob"));
    const path = join(tempDir(), "movie.bin");
    const data = pattern(4 * MIB, 8);
    writeFileSync(path, data);
    const received = () => server.metric("courier_upload_bytes_total");

    let before = await received();
    const first = await alice.uploadFile(path);
    assert.equal((await received()) - before, data.length, "the first upload sends");

    // Alice again, from the file and from memory: no byte is sent, a new media ID.
    before = await received();
    const seen: Progress[] = [];
    const transfer = alice.uploadFile(path, { onProgress: (p) => seen.push(p) });
    const again = await transfer;
    const fromMemory = await alice.uploadFile(data, { fileName: "copy.bin" });
    assert.equal((await received()) - before, 0, "a re-upload sends nothing");
    assert.notEqual(again.mediaId, first.mediaId);
    assert.equal(fromMemory.fileName, "copy.bin");
    for (const media of [again, fromMemory]) {
      assert.equal(media.sha256, sha256(data));
      assert.equal(media.size, data.length);
    }
    assert.deepEqual(transfer.progress, { done: data.length, total: data.length }, "a re-upload reaches done == total");
    assert.deepEqual(seen.at(-1), { done: data.length, total: data.length });
    const downloaded = await alice.downloadToMemory(again.mediaId);
    assert.ok(Buffer.from(downloaded.bytes).equals(data), "the re-uploaded media downloads as the original");

    // Bob's upload of the same content sends every byte.
    before = await received();
    const bobs = await bob.uploadFile(path);
    assert.equal((await received()) - before, data.length, "another user sends");
    assert.equal(bobs.sha256, sha256(data));
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

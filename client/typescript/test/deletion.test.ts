/**
 * Scenario 13 of tests/scenarios.md (`delete_media`, issue 30) through this library,
 * and the interop CLI's `delete MEDIA_ID` with what follows it (`download` and
 * `send --media-id` of the deleted ID), against a real server.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import {
  Client,
  type FeedEvent,
  MediaDeletedError,
  MediaUnavailableError,
  NotFoundError,
  type ReceivedMessage,
  imageMessage,
} from "courier-client";

import { Server, png, sha256, tempDir, within } from "./harness.js";

/** The next message of a feed (skipping other events), and the ready event's offline count. */
async function messages(feed: AsyncIterable<FeedEvent>, n: number): Promise<ReceivedMessage[]> {
  const got: ReceivedMessage[] = [];
  const iterator = feed[Symbol.asyncIterator]();
  while (got.length < n) {
    const next = await within(10_000, `message ${got.length + 1} of ${n}`, iterator.next());
    assert.ok(!next.done, "the feed is open");
    if (next.value.type === "message") got.push(next.value);
  }
  return got;
}

/** Waits for a feed's ready event. */
async function ready(feed: AsyncIterable<FeedEvent>): Promise<void> {
  const iterator = feed[Symbol.asyncIterator]();
  for (let i = 0; i < 20; i++) {
    const next = await within(10_000, "ready", iterator.next());
    assert.ok(!next.done);
    if (next.value.type === "ready") return;
  }
  throw new Error("no ready event");
}

/** Asserts that `promise` fails with `kind`, and with `code` / `reason`. */
async function refused(promise: Promise<unknown>, kind: Function, code: string, reason: string, what: string) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof kind, `${what}: ${error}`);
    assert.equal((error as NotFoundError).code, code, what);
    assert.equal((error as NotFoundError).reason, reason, what);
    return true;
  });
}

test("delete_media", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await Client.connect(server.url, server.token("bob"));
    const carol = await Client.connect(server.url, server.token("carol"));
    const bobFeed = bob.subscribe();
    await ready(bobFeed);
    const picture = png(40, 30);
    const media = await alice.uploadImage(picture, { fileName: "cat.png" });
    assert.equal(await alice.sendPeerMessage("bob", imageMessage(media)).then((r) => r.delivery), "delivered");
    assert.equal(
      await alice.sendPeerMessage("carol", imageMessage(media), { offline: true }).then((r) => r.delivery),
      "cached",
    );
    const [received] = await messages(bobFeed, 1);
    assert.equal(received!.message.type, "image");
    assert.equal((received!.message as { mediaId: string }).mediaId, media.mediaId, "bob got it before the deletion");

    await alice.deleteMedia(media.mediaId);
    // Downloading, getting and thumbnailing it: "media deleted", which is a NotFoundError too.
    await refused(bob.downloadToMemory(media.mediaId), MediaDeletedError, "NOT_FOUND", "MEDIA_DELETED", "download");
    await refused(bob.getMedia(media.mediaId), MediaDeletedError, "NOT_FOUND", "MEDIA_DELETED", "getMedia");
    await refused(bob.thumbnail(media.mediaId, 96), MediaDeletedError, "NOT_FOUND", "MEDIA_DELETED", "thumbnail");
    await refused(bob.getMedia(media.mediaId), NotFoundError, "NOT_FOUND", "MEDIA_DELETED", "getMedia (NotFoundError)");
    // A new send naming it: "media unavailable".
    await refused(
      alice.sendPeerMessage("bob", { type: "image", mediaId: media.mediaId }, { offline: true }),
      MediaUnavailableError,
      "FAILED_PRECONDITION",
      "MEDIA_UNAVAILABLE",
      "a new send",
    );
    // Carol gets what was cached for her before the deletion.
    const carolFeed = carol.subscribe();
    const [cached] = await messages(carolFeed, 1);
    assert.equal(cached!.offline, true);
    assert.equal((cached!.message as { mediaId: string }).mediaId, media.mediaId);
    carolFeed.close();

    // Deleting again is fine; bob cannot delete alice's media, which still downloads.
    await alice.deleteMedia(media.mediaId);
    const other = await alice.uploadImage(png(41, 30), { fileName: "dog.png" });
    await assert.rejects(bob.deleteMedia(other.mediaId), (error: unknown) => {
      assert.ok(error instanceof NotFoundError && !(error instanceof MediaDeletedError), String(error));
      assert.equal((error as NotFoundError).reason, "");
      return true;
    });
    const still = await bob.downloadToMemory(other.mediaId);
    assert.equal(sha256(still.bytes), other.sha256);

    bobFeed.close();
    alice.close();
    bob.close();
    carol.close();
  } finally {
    await server.stop();
  }
});

test("the interop CLI: delete MEDIA_ID, then download and send --media-id of it", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const cli = fileURLToPath(new URL("../../dist/cli/interop.js", import.meta.url));
    const dir = tempDir();
    const path = join(dir, "cat.png");
    writeFileSync(path, png(40, 30));
    const run = async (user: string, args: string[]) => {
      const env = { ...process.env, COURIER_SERVER: server.url, COURIER_TOKEN: server.token(user) };
      try {
        const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args], { env, timeout: 30_000 });
        return { status: 0, lines: stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>) };
      } catch (error) {
        const failed = error as { code: number; stdout: string };
        return { status: failed.code, lines: failed.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) };
      }
    };
    const uploaded = await run("alice", ["upload", path, "--image"]);
    assert.equal(uploaded.status, 0);
    const id = uploaded.lines[0]!.media_id as string;
    const deleted = await run("alice", ["delete", id]);
    assert.deepEqual(deleted, { status: 0, lines: [{ media_id: id, deleted: true }] });
    assert.deepEqual(await run("alice", ["delete", id]), deleted, "deleting again prints the same");
    const download = await run("bob", ["download", id, "-o", join(dir, "out.png")]);
    assert.equal(download.status, 1);
    assert.equal(download.lines[0]!.error.code, "NOT_FOUND");
    assert.equal(download.lines[0]!.error.reason, "MEDIA_DELETED");
    const send = await run("alice", ["send", "--to", "bob", "--media-id", id, "--offline"]);
    assert.equal(send.status, 1);
    assert.deepEqual([send.lines[0]!.error.code, send.lines[0]!.error.reason], ["NOT_FOUND", "MEDIA_DELETED"]);
    const unknown = await run("alice", ["delete", "0".repeat(32)]);
    assert.equal(unknown.status, 1);
    assert.equal(unknown.lines[0]!.error.code, "NOT_FOUND");
    assert.equal((await run("alice", ["delete"])).status, 2, "a missing MEDIA_ID is a usage error");
  } finally {
    await server.stop();
  }
});

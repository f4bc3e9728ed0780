/**
 * The eight client scenarios of tests/scenarios.md, under the same names, run through
 * this library against real `courier-server` processes; every "check" line is an
 * assertion.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";

import {
  CancelledError,
  Client,
  type FeedEvent,
  IntegrityError,
  InvalidArgumentError,
  MediaUnavailableError,
  MessageTooLargeError,
  NoSuchTransferError,
  NotFoundError,
  PeerUnreachableError,
  type Progress,
  RateLimitedError,
  type ReceivedMessage,
  type Subscription,
  TooLargeError,
  TooManyTransfersError,
  UnauthenticatedError,
  fileMessage,
  imageMessage,
  textMessage,
} from "courier-client";

import { Server, pattern, pause, png, sha256, tempDir, within } from "./harness.js";

const MIB = 1024 * 1024;

/** Runs `body` with a fresh server (started with `flags`), stopped afterwards. */
async function withServer(flags: readonly string[], body: (server: Server) => Promise<void>): Promise<void> {
  const server = await Server.start(flags);
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

/** A client of `server` as `user`; closed by the caller. */
function connect(server: Server, user: string): Promise<Client> {
  return Client.connect(server.url, server.token(user));
}

/** The next event of `feed`, within 10 s. */
async function nextEvent(feed: Subscription): Promise<FeedEvent> {
  const next = await within(10_000, "the next event", feed.next());
  assert.equal(next.done, false, "the feed is open");
  return next.value as FeedEvent;
}

/** The next message on `feed`, skipping ready and reconnection events. */
async function nextMessage(feed: Subscription): Promise<ReceivedMessage> {
  for (let i = 0; i < 50; i++) {
    const event = await nextEvent(feed);
    if (event.type === "message") return event;
  }
  throw new Error("no message among 50 events");
}

/** Waits for the feed's ready event: its offline count and the messages before it. */
async function ready(feed: Subscription): Promise<{ count: number; before: ReceivedMessage[] }> {
  const before: ReceivedMessage[] = [];
  for (let i = 0; i < 50; i++) {
    const event = await nextEvent(feed);
    if (event.type === "ready") return { count: event.offlineCount, before };
    if (event.type === "message") before.push(event);
  }
  throw new Error("no ready event among 50 events");
}

/** Waits (bounded) until `condition` holds. */
async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await pause(10);
  assert.ok(condition(), what);
}

test("upload_with_progress", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const alice = await connect(server, "alice");
    const dir = tempDir();
    const path = join(dir, "report.bin");
    const data = pattern(5 * MIB, 1);
    writeFileSync(path, data);
    const seen: Progress[] = [];
    let finished = false;
    const upload = alice.uploadFile(path, { onProgress: (p) => seen.push(p) });
    void upload.then(() => (finished = true));
    // check: the call returns a request ID at once, before the upload completes.
    assert.ok(upload.requestId > 0);
    assert.equal(finished, false);
    assert.equal(upload.progress.done, 0);
    const media = await upload;
    // check: progress never decreases, every total is 5 MiB, the last done is the total.
    assert.ok(seen.length > 1, `several progress updates: ${seen.length}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1]!.done <= seen[i]!.done, "progress went backwards");
    assert.ok(seen.every((p) => p.total === 5 * MIB));
    assert.equal(seen.at(-1)!.done, 5 * MIB);
    // check: the result is the media record.
    assert.equal(media.size, 5 * MIB);
    assert.equal(media.fileName, "report.bin");
    assert.equal(media.kind, "file");
    assert.equal(media.sha256, sha256(data));
    alice.close();
  }));

test("cancel_mid_upload", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const alice = await connect(server, "alice");
    // A source that yields 2 MiB, then nothing more until cancelled.
    const source = new PassThrough();
    const upload = alice.upload(source, { fileName: "big.bin", size: 20 * MIB });
    const id = upload.requestId;
    assert.equal(upload.progress.done, 0, "the call returns before any byte moves");
    for (let chunk = 0; chunk < 8; chunk++) source.write(pattern(256 * 1024, chunk));
    await until("progress passes 1 MiB", () => upload.progress.done > MIB);
    await server.waitInFlight(1);
    alice.cancel(id);
    // check: awaiting it fails with the client's "cancelled" error.
    await assert.rejects(upload, CancelledError);
    // check: nothing stored, and the slot is free at once.
    await server.waitInFlight(0);
    await server.waitStored([]);
    const next = await alice.upload(pattern(1000, 2), { fileName: "next.bin" });
    assert.equal(next.size, 1000);
    // check: cancelling the same request ID again fails with "no such transfer".
    assert.throws(() => alice.cancel(id), (e) => e instanceof NoSuchTransferError && e.requestId === id);
    source.destroy();
    alice.close();
  }));

test("download_to_file", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const alice = await connect(server, "alice");
    const dir = tempDir();
    const data = pattern(3 * MIB, 3);
    const media = await alice.uploadFile(data, { fileName: "doc.bin" });
    const path = join(dir, "doc.bin");
    const got = await alice.downloadToFile(media.mediaId, path);
    // check: the file is byte-identical, and no partial file remains beside it.
    assert.deepEqual(got, media);
    assert.ok(readFileSync(path).equals(data));
    assert.deepEqual(readdirSync(dir), ["doc.bin"]);

    // Cancelled part-way (through an AbortSignal): neither the file nor a partial file is left.
    const big = pattern(30 * MIB, 4);
    const bigMedia = await alice.uploadFile(big, { fileName: "big.bin" });
    const target = join(dir, "big.bin");
    const partial = Client.partialPath(target, bigMedia.mediaId);
    assert.equal(partial, join(dir, `.big.bin.${bigMedia.mediaId}.part`));
    const abort = new AbortController();
    const cancelled = alice.downloadToFile(bigMedia.mediaId, target, {
      signal: abort.signal,
      onProgress: (p) => {
        if (p.done > 0) abort.abort();
      },
    });
    await assert.rejects(cancelled, CancelledError);
    assert.ok(!existsSync(target));
    assert.ok(!existsSync(partial));

    // Interrupted earlier: the first MiB is in the partial file; only the rest is sent.
    writeFileSync(partial, big.subarray(0, MIB));
    await server.waitInFlight(0);
    const before = await server.metric("courier_download_bytes_total");
    await alice.downloadToFile(bigMedia.mediaId, target);
    const sent = (await server.metric("courier_download_bytes_total")) - before;
    assert.equal(sent, 30 * MIB - MIB, "only the missing bytes were sent");
    assert.ok(readFileSync(target).equals(big));
    assert.ok(!existsSync(partial));

    // A corrupt partial file fails the check, is removed, and the next try works.
    rmSync(target);
    writeFileSync(partial, Buffer.alloc(MIB));
    await assert.rejects(alice.downloadToFile(bigMedia.mediaId, target), (e) => {
      assert.ok(e instanceof IntegrityError, String(e));
      assert.equal(e.code, "DATA_LOSS");
      return true;
    });
    assert.ok(!existsSync(partial) && !existsSync(target));
    await alice.downloadToFile(bigMedia.mediaId, target);
    assert.ok(readFileSync(target).equals(big));
    alice.close();
  }));

test("download_to_memory", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const alice = await connect(server, "alice");
    const data = pattern(200 * 1024, 5);
    const media = await alice.uploadFile(data, { fileName: "notes.bin" });
    let last: Progress = { done: 0, total: 0 };
    const got = await alice.downloadToMemory(media.mediaId, { onProgress: (p) => (last = p) });
    // check: the bytes are identical, the record matches, progress reached the total.
    assert.ok(Buffer.from(got.bytes).equals(data));
    assert.deepEqual(got.media, media);
    assert.deepEqual(last, { done: data.length, total: data.length });
    alice.close();
  }));

test("image_to_peer", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const bob = await connect(server, "bob");
    const feed = bob.subscribe();
    await ready(feed);
    const alice = await connect(server, "alice");
    const picture = png(40, 30);
    const media = await alice.uploadImage(picture, { fileName: "cat.png" });
    const fromRecord = imageMessage(media);
    const fromId = await alice.imageMessageFromMediaId(media.mediaId);
    for (const message of [fromRecord, fromId]) {
      const receipt = await alice.sendPeerMessage("bob", message);
      assert.equal(receipt.delivery, "delivered");
      // check: bob receives an image message from peer alice, not offline, with the record's fields.
      const got = await nextMessage(feed);
      assert.equal(got.from, "alice");
      assert.equal(got.channel, null);
      assert.equal(got.offline, false);
      assert.equal(got.messageId, receipt.messageId);
      assert.equal(got.message.type, "image");
      if (got.message.type !== "image") return;
      assert.equal(got.message.mediaId, media.mediaId);
      assert.equal(got.message.fileName, "cat.png");
      assert.equal(got.message.size, media.size);
      assert.equal(got.message.width, 40);
      assert.equal(got.message.height, 30);
      // check: bob downloads the media ID and gets the PNG's bytes.
      const downloaded = await bob.downloadToMemory(got.message.mediaId);
      assert.ok(Buffer.from(downloaded.bytes).equals(picture));
    }
    feed.close();
    alice.close();
    bob.close();
  }));

test("file_to_channel", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const alice = await connect(server, "alice");
    const bob = await connect(server, "bob");
    await alice.joinChannel("team");
    await bob.joinChannel("team");
    assert.deepEqual(await bob.channelMembers("team"), ["alice", "bob"]);
    const bobFeed = bob.subscribe();
    await ready(bobFeed);
    const aliceFeed = alice.subscribe();
    await ready(aliceFeed);
    const media = await alice.uploadFile(pattern(70_000, 6), { fileName: "plan.pdf" });
    await alice.sendChannelMessage("team", fileMessage(media));
    // check: bob receives a file message from alice in channel team with the media ID, name and size.
    const got = await nextMessage(bobFeed);
    assert.equal(got.from, "alice");
    assert.equal(got.channel, "team");
    assert.deepEqual(
      got.message.type === "file" ? [got.message.mediaId, got.message.fileName, got.message.size] : got.message,
      [media.mediaId, "plan.pdf", 70_000],
    );
    // check: alice's own feed does not get it: the next thing it sees is a later peer message.
    const marker = await bob.sendPeerMessage("alice", textMessage("marker"));
    assert.equal((await nextMessage(aliceFeed)).messageId, marker.messageId);
    await bob.leaveChannel("team");
    assert.deepEqual(await alice.channelMembers("team"), ["alice"]);
    bobFeed.close();
    aliceFeed.close();
    alice.close();
    bob.close();
  }));

test("offline_cached_then_delivered", { timeout: 120_000 }, () =>
  withServer([], async (server) => {
    const alice = await connect(server, "alice");
    // check: the first send reports CACHED; the second fails with "peer unreachable".
    const cached = await alice.sendPeerMessage("bob", textMessage("while you were out"), { offline: true });
    assert.equal(cached.delivery, "cached");
    await assert.rejects(
      alice.sendPeerMessage("bob", textMessage("lost")),
      (e) => e instanceof PeerUnreachableError && e.peer === "bob" && e.messageId !== "",
    );
    // check: when bob subscribes, the cached text arrives first, offline, from alice; ready counts 1.
    const bob = await connect(server, "bob");
    const feed = bob.subscribe();
    const { count, before } = await ready(feed);
    assert.equal(count, 1);
    assert.equal(before.length, 1);
    const got = before[0]!;
    assert.equal(got.offline, true);
    assert.equal(got.from, "alice");
    assert.equal(got.messageId, cached.messageId);
    assert.deepEqual(got.message, textMessage("while you were out"));
    const online = await alice.queryOnlineStatus(["bob", "carol"]);
    assert.deepEqual(online, [
      { userId: "bob", online: true },
      { userId: "carol", online: false },
    ]);
    feed.close();
    alice.close();
    bob.close();
  }));

test("typed_errors", { timeout: 120_000 }, async () => {
  await withServer(["--max-upload-size", "1000", "--media-ttl", "1s"], async (small) => {
    const alice = await connect(small, "alice");
    // oversize: "too large", with the server's code and reason.
    await assert.rejects(alice.uploadFile(pattern(1001, 7), { fileName: "big" }), (e) => {
      assert.ok(e instanceof TooLargeError, String(e));
      assert.equal(e.code, "INVALID_ARGUMENT");
      assert.equal(e.reason, "MEDIA_TOO_LARGE");
      return true;
    });
    // unknown media ID: "not found" for get and download, "media unavailable" in a message.
    const unknown = "0123456789abcdef0123456789abcdef";
    await assert.rejects(alice.getMedia(unknown), (e) => e instanceof NotFoundError && e.code === "NOT_FOUND");
    await assert.rejects(alice.downloadToMemory(unknown), NotFoundError);
    const dir = tempDir();
    await assert.rejects(alice.downloadToFile(unknown, join(dir, "x")), NotFoundError);
    assert.deepEqual(readdirSync(dir), [], "nothing is left at the path");
    await assert.rejects(alice.sendPeerMessage("bob", { type: "image", mediaId: unknown }, { offline: true }), (e) => {
      assert.ok(e instanceof MediaUnavailableError, String(e));
      assert.equal(e.code, "FAILED_PRECONDITION");
      assert.equal(e.reason, "MEDIA_UNAVAILABLE");
      return true;
    });
    assert.throws(() => alice.downloadToMemory("../etc/passwd"), InvalidArgumentError);
    // expired: after 1.5 s with --media-ttl 1s the media is "not found".
    const media = await alice.uploadFile(pattern(10, 8), { fileName: "short-lived" });
    await pause(1500);
    await assert.rejects(alice.getMedia(media.mediaId), NotFoundError);
    // 32 KiB passes, 32 KiB + 1 is "message too large".
    await alice.sendPeerMessage("bob", textMessage("x".repeat(32 * 1024)), { offline: true });
    await assert.rejects(alice.sendPeerMessage("bob", textMessage("x".repeat(32 * 1024 + 1)), { offline: true }), (e) => {
      assert.ok(e instanceof MessageTooLargeError, String(e));
      assert.equal(e.reason, "MESSAGE_TOO_LARGE");
      return true;
    });
    alice.close();
  });

  // A 1-hour rate window: the 181st message is refused however slowly this machine runs.
  await withServer(["--rate-window", "1h"], async (server) => {
    const alice = await connect(server, "alice");
    // A 10th concurrent transfer fails in the client, before reaching the server.
    const sources = Array.from({ length: 9 }, () => new PassThrough());
    const held = sources.map((source) => alice.upload(source, { fileName: "slow", size: 10 }));
    await server.waitInFlight(9);
    assert.throws(
      () => alice.uploadFile(pattern(10, 9), { fileName: "tenth" }),
      (e) => e instanceof TooManyTransfersError && e.code === "RESOURCE_EXHAUSTED" && e.reason === "TOO_MANY_TRANSFERS",
    );
    assert.equal(await server.metric("courier_transfers_in_flight"), 9, "the 10th never reached the server");
    for (const transfer of held) transfer.cancel();
    for (const transfer of held) await assert.rejects(transfer, CancelledError);
    sources.forEach((s) => s.destroy());
    // The client frees its slots at once; the server frees its own once it has seen
    // the cancellations, which under load can take a moment.
    await server.waitInFlight(0);
    const after = await alice.uploadFile(pattern(10, 9), { fileName: "after" });
    assert.equal(after.size, 10, "slots are free again");

    // The rate limit: the 181st message in the window is refused.
    let refused: { at: number; error: unknown } | undefined;
    for (let i = 0; i < 181 && refused === undefined; i++) {
      try {
        await alice.sendPeerMessage("bob", textMessage("hi"));
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) refused = { at: i, error };
      }
    }
    assert.equal(refused?.at, 180);
    assert.ok(refused?.error instanceof RateLimitedError && refused.error.reason === "RATE_LIMITED", String(refused?.error));

    // A bad token is "unauthenticated".
    const forged = await Client.connect(server.url, "not-a-token");
    await assert.rejects(forged.getMedia("0123456789abcdef0123456789abcdef"), (e) => {
      assert.ok(e instanceof UnauthenticatedError, String(e));
      assert.equal(e.code, "UNAUTHENTICATED");
      return true;
    });
    await assert.rejects(forged.joinChannel("c"), UnauthenticatedError);
    forged.close();
    alice.close();
  });
});

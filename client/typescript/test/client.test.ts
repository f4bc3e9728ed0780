/**
 * Behaviour beyond the eight scenarios, as the Rust client tests it: the feed
 * reconnects after a server restart and says so, connecting retries while nothing
 * listens, `https://` speaks TLS, the server's own transfer limit and the opt-in
 * queue, and safe names for received files.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";

import {
  CancelledError,
  Client,
  type FeedEvent,
  NoSuchTransferError,
  NotAMemberError,
  TooManyTransfersError,
  UnavailableError,
  rawMessage,
  safeFileName,
  textMessage,
  uniquePath,
} from "courier-client";

import { Server, pattern, tempDir, within } from "./harness.js";

/** A port that nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  assert.ok(address !== null && typeof address === "object");
  return address.port;
}

test("the feed reconnects after a server restart and says so", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const bob = await Client.connect(server.url, server.token("bob"));
    const feed = bob.subscribe();
    const first = await within(10_000, "ready", feed.next());
    assert.equal((first.value as FeedEvent).type, "ready");
    await server.restart();
    const seen: string[] = [];
    for (let i = 0; i < 20 && seen.at(-1) !== "ready"; i++) {
      const next = await within(15_000, "an event after the restart", feed.next());
      seen.push((next.value as FeedEvent).type);
    }
    assert.equal(seen[0], "disconnected");
    assert.ok(seen.includes("reconnected"), seen.join(","));
    assert.equal(seen.at(-1), "ready");
    const alice = await Client.connect(server.url, server.token("alice"));
    const sent = await alice.sendPeerMessage("bob", textMessage("after the restart"));
    const got = await within(10_000, "the message", feed.next());
    assert.equal((got.value as FeedEvent).type === "message" && (got.value as { messageId: string }).messageId, sent.messageId);
    // Breaking out of a loop over the feed closes it: bob goes offline.
    await alice.sendPeerMessage("bob", textMessage("one more"));
    for await (const event of feed) {
      assert.equal(event.type, "message");
      break;
    }
    for (let i = 0; i < 100 && (await alice.queryOnlineStatus(["bob"]))[0]!.online; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(await alice.queryOnlineStatus(["bob"]), [{ userId: "bob", online: false }]);
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

test("connecting gives up with UNAVAILABLE when nothing listens, after retrying", { timeout: 120_000 }, async () => {
  const port = await freePort();
  const started = Date.now();
  await assert.rejects(Client.connect(`http://127.0.0.1:${port}`, "t", { backoffMs: 50, retries: 3 }), (e) => {
    assert.ok(e instanceof UnavailableError, String(e));
    assert.equal(e.code, "UNAVAILABLE");
    assert.match(e.message, /ECONNREFUSED/);
    return true;
  });
  assert.ok(Date.now() - started >= 50 + 100 + 200, "it retried with backoff");
});

test("https:// URLs speak TLS", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const plain = await Client.connect(server.url, server.token("alice"));
    plain.close();
    // The test server speaks plaintext HTTP/2: a TLS handshake meets a plaintext answer.
    const tls = server.url.replace("http://", "https://");
    await assert.rejects(Client.connect(tls, server.token("alice"), { retries: 0 }), (e) => {
      assert.ok(e instanceof UnavailableError, String(e));
      assert.match(e.message, /SSL|TLS|EPROTO/i);
      return true;
    });
  } finally {
    await server.stop();
  }
});

test("a second client of the same user meets the server's limit, with the same error", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const phone = await Client.connect(server.url, server.token("alice"));
    const laptop = await Client.connect(server.url, server.token("alice"));
    const sources = Array.from({ length: 9 }, () => new PassThrough());
    const held = sources.map((s) => phone.upload(s, { fileName: "slow", size: 10 }));
    await server.waitInFlight(9);
    await assert.rejects(
      laptop.uploadFile(pattern(10, 1), { fileName: "x" }),
      (e) => e instanceof TooManyTransfersError && e.reason === "TOO_MANY_TRANSFERS" && e.code === "RESOURCE_EXHAUSTED",
    );
    held.forEach((t) => t.cancel());
    for (const t of held) await assert.rejects(t, CancelledError);
    phone.close();
    laptop.close();
  } finally {
    await server.stop();
  }
});

test("with queueTransfers the 10th transfer waits for a slot, and can be cancelled while it waits", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"), { queueTransfers: true });
    const sources = Array.from({ length: 9 }, () => new PassThrough());
    const held = sources.map((s) => alice.upload(s, { fileName: "slow", size: 4 }));
    const waiting = alice.uploadFile(pattern(10, 2), { fileName: "queued" });
    const cancelledWhileWaiting = alice.uploadFile(pattern(10, 3), { fileName: "never" });
    await server.waitInFlight(9);
    alice.cancel(cancelledWhileWaiting.requestId);
    await assert.rejects(cancelledWhileWaiting, CancelledError);
    assert.throws(() => alice.cancel(cancelledWhileWaiting.requestId), NoSuchTransferError);
    assert.equal(waiting.progress.done, 0, "still waiting");
    sources[0]!.end(Buffer.from("abcd"));
    const first = await held[0]!;
    assert.equal(first.size, 4);
    assert.equal((await waiting).size, 10, "the queued upload ran once a slot was free");
    held.slice(1).forEach((t) => t.cancel());
    for (const t of held.slice(1)) await assert.rejects(t, CancelledError);
    alice.close();
  } finally {
    await server.stop();
  }
});

test("received file names lose their danger and never overwrite", { timeout: 120_000 }, () => {
  assert.equal(safeFileName("cat.png", "x"), "cat.png");
  assert.equal(safeFileName("../../etc/passwd", "x"), "_.._etc_passwd");
  assert.equal(safeFileName("a\\b\nc", "x"), "a_b_c");
  assert.equal(safeFileName("..", "id"), "id");
  assert.equal(safeFileName("", "id"), "id");
  assert.equal(safeFileName(".bashrc", "id"), "bashrc");
  assert.equal(safeFileName("/", "id"), "id");
  const dir = tempDir();
  assert.equal(uniquePath(dir, "cat.png", "x"), join(dir, "cat.png"));
  writeFileSync(join(dir, "cat.png"), "1");
  assert.equal(uniquePath(dir, "cat.png", "x"), join(dir, "cat (1).png"));
  writeFileSync(join(dir, "cat (1).png"), "2");
  assert.equal(uniquePath(dir, "cat.png", "x"), join(dir, "cat (2).png"));
});

test("raw messages arrive as sent; a channel message from a non-member is refused", { timeout: 120_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await Client.connect(server.url, server.token("bob"));
    const feed = bob.subscribe();
    for (let i = 0; i < 10; i++) {
      const next = await within(10_000, "ready", feed.next());
      if ((next.value as FeedEvent).type === "ready") break;
    }
    const payload = new Uint8Array([0, 1, 2, 254, 255]);
    const receipt = await alice.sendPeerMessage("bob", rawMessage(payload, "bytes"));
    const got = (await within(10_000, "the raw message", feed.next())).value as FeedEvent;
    assert.deepEqual(got.type === "message" ? [got.messageId, got.message] : got, [
      receipt.messageId,
      { type: "raw", payload, description: "bytes" },
    ]);
    await assert.rejects(
      alice.sendChannelMessage("nobody-here", textMessage("hi")),
      (e) => e instanceof NotAMemberError && e.reason === "NOT_A_MEMBER" && e.code === "FAILED_PRECONDITION",
    );
    feed.close();
    assert.deepEqual(await feed.next(), { done: true, value: undefined }, "a closed feed ends");
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

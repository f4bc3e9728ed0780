/**
 * Issue 18 from the TypeScript client: every event carries a cursor, `after` replays
 * what came after one, the feed's own reconnect resumes after its last cursor (nothing
 * missed or repeated across a server restart), and a send repeated with the same
 * client message ID is answered as the first and delivered once; the interop CLI's
 * `listen --after`, cursors in its lines, and `send --client-message-id`.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Client, type FeedEvent, type ReceivedMessage, textMessage } from "courier-client";

import { Server, pause, within } from "./harness.js";

/** The next events of a feed, bounded in time. */
function reader(feed: AsyncIterable<FeedEvent>) {
  const iterator = feed[Symbol.asyncIterator]();
  return async (what: string, ms = 10_000): Promise<FeedEvent> => {
    const next = await within(ms, what, iterator.next());
    assert.ok(!next.done, `the feed ended while waiting for ${what}`);
    return next.value;
  };
}

/** The next message of a feed, skipping other events. */
async function message(next: (what: string) => Promise<FeedEvent>): Promise<ReceivedMessage> {
  for (let i = 0; i < 10; i++) {
    const event = await next("a message");
    if (event.type === "message") return event;
  }
  throw new Error("no message in 10 events");
}

const text = (event: ReceivedMessage) => (event.message.type === "text" ? event.message.text : "");

test("cursors increase; after replays what came after a cursor, once", { timeout: 60_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await Client.connect(server.url, server.token("bob"));
    const feed = bob.subscribe();
    const next = reader(feed);
    const ready = await next("ready");
    assert.ok(ready.type === "ready");
    assert.equal(ready.eventsLost, false);
    const received: ReceivedMessage[] = [];
    for (const word of ["one", "two", "three"]) {
      await alice.sendPeerMessage("bob", textMessage(word));
      received.push(await message(next));
    }
    assert.deepEqual(received.map(text), ["one", "two", "three"]);
    assert.ok(received[0]!.cursor > 0);
    assert.ok(received[0]!.cursor < received[1]!.cursor && received[1]!.cursor < received[2]!.cursor, "increasing");
    assert.equal(feed.cursor, received[2]!.cursor, "the feed resumes after its last message");
    feed.close();

    const replay = bob.subscribe({ after: received[0]!.cursor });
    const again = reader(replay);
    const replayed = [await message(again), await message(again)];
    assert.deepEqual(replayed.map(text), ["two", "three"], "only what came after the cursor");
    assert.deepEqual(replayed.map((m) => m.cursor), [received[1]!.cursor, received[2]!.cursor]);
    replay.close();
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

test("the feed's reconnect after a server restart misses and repeats nothing", { timeout: 90_000 }, async () => {
  const server = await Server.start();
  try {
    const bob = await Client.connect(server.url, server.token("bob"));
    const feed = bob.subscribe();
    const next = reader(feed);
    assert.equal((await next("ready")).type, "ready");
    let alice = await Client.connect(server.url, server.token("alice"));
    await alice.sendPeerMessage("bob", textMessage("before"));
    assert.equal(text(await message(next)), "before");
    alice.close();
    await server.restart();
    const events: FeedEvent[] = [];
    for (;;) {
      const event = await next("the reconnect", 30_000);
      events.push(event);
      if (event.type === "ready") break;
    }
    assert.ok(events.some((e) => e.type === "disconnected"));
    assert.ok(!events.some((e) => e.type === "message"), "nothing is repeated after the reconnect");
    alice = await Client.connect(server.url, server.token("alice"));
    await alice.sendPeerMessage("bob", textMessage("after"));
    assert.equal(text(await message(next)), "after");
    feed.close();
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

test("a send repeated with its client message ID is answered as the first and delivered once", { timeout: 60_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await Client.connect(server.url, server.token("bob"));
    const feed = bob.subscribe();
    const next = reader(feed);
    assert.equal((await next("ready")).type, "ready");
    const first = await alice.sendPeerMessage("bob", textMessage("once"), { clientMessageId: "ts-idempotent-1" });
    const second = await alice.sendPeerMessage("bob", textMessage("once"), { clientMessageId: "ts-idempotent-1" });
    assert.equal(second.messageId, first.messageId);
    assert.equal(text(await message(next)), "once");
    // Two sends without an ID are two messages (each gets its own generated ID).
    const a = await alice.sendPeerMessage("bob", textMessage("x"));
    const b = await alice.sendPeerMessage("bob", textMessage("x"));
    assert.notEqual(a.messageId, b.messageId);
    const got = [await message(next), await message(next)];
    assert.deepEqual(got.map((m) => m.messageId), [a.messageId, b.messageId], "the repeat was not delivered again");

    // The CLI: the same ID twice prints the first message_id.
    const cli = fileURLToPath(new URL("../../dist/cli/interop.js", import.meta.url));
    const env = { ...process.env, COURIER_SERVER: server.url, COURIER_TOKEN: server.token("alice") };
    const send = async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [cli, "send", "--to", "bob", "--text", "cli", "--client-message-id", "ts-cli-1"],
        { env },
      );
      return JSON.parse(stdout.trim()) as { message_id: string; state: string };
    };
    const one = await send();
    const two = await send();
    assert.equal(two.message_id, one.message_id);
    assert.equal(one.state, "delivered");
    const cliMessage = await message(next);
    assert.equal(cliMessage.messageId, one.message_id);
    await pause(300);
    feed.close();
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

test("the interop CLI's listen --after prints cursors and replays after one", { timeout: 60_000 }, async () => {
  const server = await Server.start();
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await Client.connect(server.url, server.token("bob"));
    const feed = bob.subscribe();
    const next = reader(feed);
    await next("ready");
    await alice.sendPeerMessage("bob", textMessage("a"));
    const first = await message(next);
    await alice.sendPeerMessage("bob", textMessage("b"));
    const second = await message(next);
    feed.close();
    const cli = fileURLToPath(new URL("../../dist/cli/interop.js", import.meta.url));
    const env = { ...process.env, COURIER_SERVER: server.url, COURIER_TOKEN: server.token("bob") };
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [cli, "listen", "--after", String(first.cursor), "--count", "1"],
      { env, timeout: 20_000 },
    );
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const messages = lines.filter((l) => l.event === "message");
    assert.equal(messages.length, 1);
    assert.equal(messages[0]!.cursor, second.cursor);
    assert.equal(messages[0]!.message_id, second.messageId);
    alice.close();
    bob.close();
  } finally {
    await server.stop();
  }
});

/**
 * Scenario 15 of tests/scenarios.md (`three_replicas`, issue 31) through this library:
 * a nats-server with JetStream started here, three courier-servers on it (`--bus`)
 * sharing one media folder (`--storage`), and clients made with the three addresses.
 * Calls spread over the three; the feed moves to another replica when its server is
 * killed and resumes after its last cursor; sends retried on another replica; uploads
 * and downloads go on. Skipped without a nats-server (`$COURIER_NATS_SERVER`, or
 * `nats-server` on the PATH), failed instead with COURIER_TEST_REQUIRE_NATS=1.
 */

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { test } from "node:test";

import { Client, type FeedEvent, type ReceivedMessage, textMessage } from "courier-client";

import { Nats, Server, pattern, png, sha256, tempDir, within } from "./harness.js";

const text = (event: ReceivedMessage) => (event.message.type === "text" ? event.message.text : "");

test("three_replicas", { timeout: 240_000 }, async (t) => {
  const binary = Nats.binary();
  if (binary === undefined) {
    if (process.env.COURIER_TEST_REQUIRE_NATS === "1") {
      assert.fail("COURIER_TEST_REQUIRE_NATS=1 but there is no nats-server ($COURIER_NATS_SERVER or on the PATH)");
    }
    t.skip("no nats-server: set COURIER_NATS_SERVER (client/typescript/run-tests does)");
    return;
  }
  const nats = await Nats.start(binary);
  const storage = tempDir("courier-ts-shared-media-");
  const servers: Server[] = [];
  const clients: Client[] = [];
  try {
    for (let i = 0; i < 3; i++) servers.push(await Server.start(["--bus", nats.url, "--storage", storage]));
    const urls = servers.map((s) => s.url);
    const alice = await Client.connect(urls, servers[0]!.token("alice"));
    // The same deployment as one string, comma-separated (as COURIER_SERVER takes it).
    const bob = await Client.connect(urls.join(","), servers[0]!.token("bob"));
    clients.push(alice, bob);

    // 30 unary calls reach all three servers.
    const media = await alice.uploadImage(png(40, 30), { fileName: "cat.png" });
    const before = await Promise.all(servers.map((s) => s.metricTotal("courier_grpc_requests_total")));
    for (let i = 0; i < 30; i++) assert.equal((await alice.getMedia(media.mediaId)).mediaId, media.mediaId);
    const after = await Promise.all(servers.map((s) => s.metricTotal("courier_grpc_requests_total")));
    const rose = after.map((n, i) => n - before[i]!);
    t.diagnostic(`requests per server over 30 calls: ${rose.join(", ")}`);
    for (const [i, n] of rose.entries()) assert.ok(n >= 5, `server ${i} took ${n} of the 30 calls`);

    // Bob's feed; alice sends 5, then the server holding bob's stream dies.
    const feed = bob.subscribe();
    const iterator = feed[Symbol.asyncIterator]();
    const next = async (what: string): Promise<FeedEvent> => {
      const step = await within(30_000, what, iterator.next());
      assert.ok(!step.done, `the feed ended while waiting for ${what}`);
      return step.value;
    };
    let ready = await next("ready");
    while (ready.type !== "ready") ready = await next("ready");
    const holder = servers.find((s) => s.url === ready.server);
    assert.ok(holder !== undefined, `the feed is on one of the three (${ready.server})`);
    assert.ok((await holder.metricTotal("courier_subscribers")) >= 1, "the server the feed names holds the stream");
    const received: ReceivedMessage[] = [];
    for (let i = 1; i <= 5; i++) await alice.sendPeerMessage("bob", textMessage(`m${i}`), { offline: true });
    while (received.length < 5) {
      const event = await next(`message ${received.length + 1}`);
      if (event.type === "message") received.push(event);
    }
    await holder.crash();
    // Alice's next calls meet the dead server in her rotation: retried on another.
    for (let i = 6; i <= 10; i++) await alice.sendPeerMessage("bob", textMessage(`m${i}`), { offline: true });
    let reconnectedTo: string | undefined;
    while (received.length < 10) {
      const event = await next(`message ${received.length + 1} after the kill`);
      if (event.type === "reconnected") reconnectedTo = event.server;
      if (event.type === "message") received.push(event);
    }
    assert.ok(reconnectedTo !== undefined, "the feed said it reconnected");
    assert.notEqual(reconnectedTo, holder.url, "to another replica");
    assert.deepEqual(
      received.map(text),
      Array.from({ length: 10 }, (_, i) => `m${i + 1}`),
      "all 10, each once, in order",
    );
    const cursors = received.map((m) => m.cursor);
    assert.ok(cursors.every((c, i) => i === 0 || c > cursors[i - 1]!), `cursors increase: ${cursors}`);
    feed.close();

    // Uploads and downloads still work through the client (three each, so every live replica is met).
    for (let i = 0; i < 3; i++) {
      const bytes = pattern(300 * 1024 + i, 40 + i);
      const uploaded = await alice.upload(bytes, { fileName: `after-${i}.bin` });
      assert.equal(uploaded.sha256, sha256(bytes));
      const downloaded = await bob.downloadToMemory(uploaded.mediaId);
      assert.equal(sha256(downloaded.bytes), sha256(bytes), "downloaded byte-identical");
    }
  } finally {
    for (const client of clients) client.close();
    for (const server of servers) await server.stop();
    await nats.stop();
    rmSync(storage, { recursive: true, force: true });
  }
});

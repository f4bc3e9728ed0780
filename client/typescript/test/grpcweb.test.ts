/**
 * The browser client (`courier-client/browser`) under Node: connect-web's gRPC-Web
 * transport to a real server on the gRPC port — a unary call, a server stream
 * (download), the live feed, a refusal with its reason, and CORS as the server's
 * flag sets it (Node's fetch sends no Origin, so the preflight is sent by hand).
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BrowserClient,
  type FeedEvent,
  NotAnImageError,
  NotFoundError,
  UnauthenticatedError,
  UnavailableError,
} from "courier-client/browser";
import { Client, textMessage } from "courier-client";

import { Server, pattern, png, sha256, within } from "./harness.js";

test("gRPC-Web: records, thumbnails, downloads, the feed and refusals", { timeout: 120_000 }, async () => {
  const server = await Server.start(["--cors-allow-origin", "http://127.0.0.1:1"]);
  try {
    const alice = await Client.connect(server.url, server.token("alice"));
    const bob = await BrowserClient.connect(server.url, server.token("bob"));
    const image = await alice.uploadImage(png(300, 150), { fileName: "wide.png" });

    // Unary.
    const record = await bob.getMedia(image.mediaId);
    assert.equal(record.sha256, image.sha256);
    assert.deepEqual([record.width, record.height], [300, 150]);
    const thumb = await bob.thumbnail(image.mediaId, 96);
    assert.deepEqual([thumb.width, thumb.height], [96, 48]);

    // Server streaming: a download of 1.5 MiB, byte-identical.
    const data = pattern(1536 * 1024, 3);
    const file = await alice.uploadFile(data, { fileName: "data.bin" });
    let progress = 0;
    const downloaded = await bob.downloadToMemory(file.mediaId, { onProgress: (p) => (progress = p.done) });
    assert.equal(sha256(downloaded.bytes), sha256(data));
    assert.equal(progress, data.length);

    // Refusals with their reasons.
    await assert.rejects(bob.thumbnail(file.mediaId, 96), (e) => e instanceof NotAnImageError && e.reason === "NOT_AN_IMAGE");
    await assert.rejects(bob.getMedia("0".repeat(32)), NotFoundError);
    const stranger = await BrowserClient.connect(server.url, "not-a-token");
    await assert.rejects(stranger.getMedia(image.mediaId), UnauthenticatedError);

    // The live feed over gRPC-Web: ready, then a message sent from a native client.
    const feed = bob.subscribe();
    const events: FeedEvent[] = [];
    const iterator = feed[Symbol.asyncIterator]();
    const next = async () => {
      const result = await within(10_000, "a feed event", iterator.next());
      assert.ok(!result.done);
      events.push(result.value);
      return result.value;
    };
    assert.equal((await next()).type, "ready");
    const [online] = await alice.queryOnlineStatus(["bob"]);
    assert.equal(online?.online, true, "a gRPC-Web feed makes its user online");
    const receipt = await alice.sendPeerMessage("bob", textMessage("over gRPC-Web"));
    const event = await next();
    assert.ok(event.type === "message" && event.message.type === "text");
    assert.equal(event.message.text, "over gRPC-Web");
    assert.equal(event.messageId, receipt.messageId);
    feed.close();
    alice.close();

    // A server that cannot be reached: UNAVAILABLE (fetch's own failure, which
    // connect-web passes on as UNKNOWN), so that calls and uploads retry and resume.
    await server.crash();
    const away = await BrowserClient.connect(server.url, server.token("bob"), { retries: 1, backoffMs: 10 });
    await assert.rejects(away.getMedia(image.mediaId), UnavailableError);
  } finally {
    await server.stop();
  }
});

test("CORS: the flag's origin may call from a page, another may not", { timeout: 60_000 }, async () => {
  const server = await Server.start(["--cors-allow-origin", "http://127.0.0.1:8080"]);
  try {
    const preflight = (origin: string) =>
      fetch(`${server.url}/courier.v1.MediaService/GetMedia`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization,content-type,x-grpc-web,x-user-agent",
        },
      });
    const allowed = await preflight("http://127.0.0.1:8080");
    assert.equal(allowed.headers.get("access-control-allow-origin"), "http://127.0.0.1:8080");
    assert.match(allowed.headers.get("access-control-allow-headers") ?? "", /authorization/);
    const refused = await preflight("http://127.0.0.1:8081");
    assert.equal(refused.headers.get("access-control-allow-origin"), null);
  } finally {
    await server.stop();
  }
});

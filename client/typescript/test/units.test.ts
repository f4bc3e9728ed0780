/**
 * The client's own pieces that need no server: CRC32C against known vectors, every
 * server reason sorted into its own error class (the two of resumable uploads too,
 * with `committed_size`), the browser's upload-state keys and store, and the refusal of
 * empty messages before any call.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { type DescEnum, type DescMessage, create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

import {
  CourierError,
  InvalidArgumentError,
  MediaDeletedError,
  MediaQuarantinedError,
  MediaRejectedError,
  NotFoundError,
  UploadOffsetMismatchError,
  UnavailableError,
  crc32c,
  rawMessage,
  textMessage,
  toCourierError,
} from "courier-client";
import { BrowserClient, type KeyValueStorage, storageStateStore, uploadStateKey } from "courier-client/browser";

// The generated code stays inside the library (no export names it); the tests read it
// from the build, beside this file's own build folder.
const generated = (path: string) => import(new URL(`../../dist/gen/${path}`, import.meta.url).href);
const { ErrorReasonSchema } = (await generated("courier/v1/error_reason_pb.js")) as { ErrorReasonSchema: DescEnum };
const { ErrorInfoSchema } = (await generated("google/rpc/error_details_pb.js")) as { ErrorInfoSchema: DescMessage };

test("CRC32C matches the known vectors (RFC 3720, GCS)", () => {
  const ascii = (text: string) => new TextEncoder().encode(text);
  assert.equal(crc32c(ascii("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array()), 0);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(ascii("The quick brown fox jumps over the lazy dog")), 0x22620404);
  // Continued over pieces, as over the whole.
  const whole = ascii("123456789");
  assert.equal(crc32c(whole.subarray(4), crc32c(whole.subarray(0, 4))), 0xe3069283);
});

/** A refusal as the server sends it: a code and an ErrorInfo of courier's domain. */
function refusal(reason: string, code: Code, metadata: Record<string, string> = {}): ConnectError {
  return new ConnectError("refused", code, undefined, [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: "courier.v1", reason, metadata }) },
  ]);
}

test("every server reason is sorted into its own error class", () => {
  const reasons = ErrorReasonSchema.values.filter((v) => v.number !== 0);
  assert.ok(reasons.some((r) => r.name === "CHECKSUM_MISMATCH"));
  assert.ok(reasons.some((r) => r.name === "UPLOAD_OFFSET_MISMATCH"));
  const classes = new Set<unknown>();
  for (const { name } of reasons) {
    const error = toCourierError(refusal(name, Code.FailedPrecondition));
    assert.equal(error.reason, name, name);
    assert.notEqual(error.constructor, CourierError, `${name} has a class of its own`);
    classes.add(error.constructor);
  }
  assert.equal(classes.size, reasons.length, "one class per reason");

  const mismatch = toCourierError(refusal("UPLOAD_OFFSET_MISMATCH", Code.FailedPrecondition, { committed_size: "1048576" }));
  assert.ok(mismatch instanceof UploadOffsetMismatchError);
  assert.equal(mismatch.code, "FAILED_PRECONDITION");
  assert.equal(mismatch.committedSize, 1048576);
  const without = toCourierError(refusal("UPLOAD_OFFSET_MISMATCH", Code.FailedPrecondition));
  assert.ok(without instanceof UploadOffsetMismatchError);
  assert.equal(without.committedSize, undefined);
  assert.equal(toCourierError(refusal("CHECKSUM_MISMATCH", Code.InvalidArgument)).code, "INVALID_ARGUMENT");

  // The reasons of issue 30: hooks, quarantine and deletion.
  const rejected = toCourierError(refusal("MEDIA_REJECTED", Code.FailedPrecondition));
  assert.ok(rejected instanceof MediaRejectedError);
  assert.deepEqual([rejected.code, rejected.reason], ["FAILED_PRECONDITION", "MEDIA_REJECTED"]);
  const quarantined = toCourierError(refusal("MEDIA_QUARANTINED", Code.FailedPrecondition));
  assert.ok(quarantined instanceof MediaQuarantinedError);
  assert.deepEqual([quarantined.code, quarantined.reason], ["FAILED_PRECONDITION", "MEDIA_QUARANTINED"]);
  const deleted = toCourierError(refusal("MEDIA_DELETED", Code.NotFound));
  assert.ok(deleted instanceof MediaDeletedError);
  assert.ok(deleted instanceof NotFoundError, "a deleted media ID is a not-found one that says why");
  assert.deepEqual([deleted.code, deleted.reason, deleted.name], ["NOT_FOUND", "MEDIA_DELETED", "MediaDeletedError"]);
  const plain = toCourierError(new ConnectError("gone", Code.NotFound));
  assert.ok(plain instanceof NotFoundError && !(plain instanceof MediaDeletedError));
  assert.equal(plain.reason, "");
});

test("browser upload state: keyed by name, size and modification time; saved, loaded, removed", async () => {
  const map = new Map<string, string>();
  const storage: KeyValueStorage = {
    getItem: (k) => map.get(k) ?? null,
    setItem: (k, v) => void map.set(k, v),
    removeItem: (k) => void map.delete(k),
  };
  const blob = new Blob(["0123456789"]);
  const file = { name: "cat.png", size: 10, lastModified: 1234, slice: blob.slice.bind(blob), arrayBuffer: () => blob.arrayBuffer() };
  const key = uploadStateKey(file);
  assert.notEqual(key, uploadStateKey({ ...file, lastModified: 1235 }));
  assert.notEqual(key, uploadStateKey({ ...file, size: 11 }));
  assert.notEqual(key, uploadStateKey({ ...file, name: "dog.png" }));
  const store = storageStateStore(storage, key);
  assert.equal(await store.load(), undefined);
  const state = { upload_id: "u1", server: "http://127.0.0.1:1", size: 10, sha256: "ab", part_size: 4, file_name: "cat.png" };
  await store.save(state);
  assert.deepEqual(await store.load(), state);
  map.set(key, "{not json");
  assert.equal(await store.load(), undefined, "a damaged state is no state");
  await store.remove();
  assert.equal(map.size, 0);
});

test("an empty text or raw message is refused before any call, to a peer and to a channel", async () => {
  // The browser client sends nothing until a call, through globalThis.fetch: a fetch
  // that counts and fails (as an unreachable server does) shows whether a call was made.
  const realFetch = globalThis.fetch;
  let calls = 0;
  globalThis.fetch = async () => {
    calls++;
    throw new TypeError("fetch failed");
  };
  try {
    const client = await BrowserClient.connect("http://127.0.0.1:1", "token", { retries: 0 });
    const empties = [
      ["text", textMessage(""), /^a text message needs text: an empty one cannot be sent$/],
      ["raw", rawMessage(new Uint8Array(), "bytes"), /^a raw message needs a payload: an empty one cannot be sent$/],
    ] as const;
    for (const [what, message, words] of empties) {
      const refused = (e: unknown) =>
        e instanceof InvalidArgumentError && e.code === "INVALID_ARGUMENT" && words.test(e.message);
      await assert.rejects(client.sendPeerMessage("bob", message), refused, `${what} to a peer`);
      await assert.rejects(client.sendPeerMessage("bob", message, { offline: true }), refused, `${what} offline`);
      await assert.rejects(client.sendChannelMessage("team", message), refused, `${what} to a channel`);
    }
    assert.equal(calls, 0, "nothing was sent");
    // A message with content does make the call (here refused by the failing fetch).
    await assert.rejects(client.sendPeerMessage("bob", rawMessage(new Uint8Array([0]))), UnavailableError);
    assert.equal(calls, 1);
    client.close();
  } finally {
    globalThis.fetch = realFetch;
  }
});

#!/usr/bin/env node
/**
 * The TypeScript interop client of docs/interop.md, built on this library: `upload`,
 * `send`, `join`, `leave`, `members`, `online`, `download`, `delete`, `url`, `thumbnail`
 * and `listen`, printing one
 * JSON object per line on stdout as the Rust `courier --json` does. A refused call
 * prints `{"error": {"code", "reason", "message"}}` and exits 1; usage errors exit 2;
 * Ctrl-C cancels a transfer and exits 130. The server and token come from
 * `COURIER_SERVER` and `COURIER_TOKEN` (or `--server`, `--token`); several replicas'
 * URLs, separated by commas, spread the calls over them.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import {
  CancelledError,
  Client,
  CourierError,
  type FeedEvent,
  InvalidArgumentError,
  IoError,
  type Media,
  type Message,
  type MessageInit,
  PeerUnreachableError,
  type SendReceipt,
  type Transfer,
  UnauthenticatedError,
  fileMessage,
  imageMessage,
  mediaMessage,
  textMessage,
  uniquePath,
} from "../index.js";
import { checkSendable } from "../messages.js";

/** A mistake in the command line: exit 2. */
class UsageError extends Error {}

const USAGE = `usage: interop [--server URL] [--token TOKEN] COMMAND
  upload PATH [--image] [--resume [--stop-after-parts N]]
  send (--to PEER | --channel CH) (--text T | --image PATH | --file PATH | --media-id ID) [--offline]
       [--client-message-id ID]
  join CH | leave CH | members CH | online USER...
  download MEDIA_ID -o PATH
  delete MEDIA_ID
  url MEDIA_ID [--max-edge N] [--ttl DURATION]
  thumbnail MEDIA_ID [--max-edge N] -o PATH
  listen [--after CURSOR] [--save DIR] [--count N]`;

/** Cancels the running transfer on Ctrl-C. */
const interrupt = new AbortController();

/** Writes one JSON line on stdout. */
function print(value: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function mediaJson(media: Media): Record<string, unknown> {
  return {
    media_id: media.mediaId,
    kind: media.kind,
    file_name: media.fileName,
    size: media.size,
    sha256: media.sha256,
    content_type: media.contentType,
    width: media.width,
    height: media.height,
    created_ms: media.created.getTime(),
    expires_ms: media.expires.getTime(),
  };
}

function messageJson(message: Message): Record<string, unknown> {
  switch (message.type) {
    case "text":
      return { type: "text", text: message.text };
    case "raw":
      return { type: "raw", payload_hex: Buffer.from(message.payload).toString("hex"), description: message.description };
    case "image":
      return {
        type: "image",
        media_id: message.mediaId,
        file_name: message.fileName,
        size: message.size,
        width: message.width,
        height: message.height,
        thumbnail_bytes: message.thumbnail.length,
      };
    case "file":
      return {
        type: "file",
        media_id: message.mediaId,
        file_name: message.fileName,
        size: message.size,
        width: 0,
        height: 0,
        thumbnail_bytes: message.thumbnail.length,
      };
  }
}

function eventJson(event: FeedEvent): Record<string, unknown> {
  switch (event.type) {
    case "message":
      return {
        event: "message",
        from: event.from,
        channel: event.channel,
        message_id: event.messageId,
        server_time_ms: event.serverTime.getTime(),
        offline: event.offline,
        message: messageJson(event.message),
        cursor: event.cursor,
      };
    case "ready":
      return { event: "ready", offline_count: event.offlineCount, cursor: event.cursor, events_lost: event.eventsLost };
    case "disconnected":
      return { event: "disconnected", reason: event.reason };
    case "reconnected":
      return { event: "reconnected" };
  }
}

/** The SHA-256 (hex) of the bytes now on disk: read back, not taken from the record. */
async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Prints a saved file: its record, where it is, and the digest of what is on disk. */
async function printSaved(media: Media, path: string): Promise<void> {
  print({ ...mediaJson(media), event: "saved", path, sha256: await sha256OfFile(path) });
}

/**
 * Writes `data` at `path`; a failed write leaves nothing there and is an i/o error
 * (INTERNAL, as in the Rust reference).
 */
function writeWhole(path: string, data: Uint8Array): void {
  try {
    writeFileSync(path, data);
  } catch (error) {
    rmSync(path, { force: true });
    throw new IoError(`could not write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Awaits a transfer; Ctrl-C cancels it. */
async function finish<T>(transfer: Transfer<T>): Promise<T> {
  const cancel = () => transfer.cancel();
  interrupt.signal.addEventListener("abort", cancel, { once: true });
  try {
    return await transfer;
  } finally {
    interrupt.signal.removeEventListener("abort", cancel);
  }
}

/** Parses a command's own arguments; unknown flags are usage errors. */
function parse<O extends Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>>(
  args: string[],
  options: O,
) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** A whole number of 0 or more given to `flag`. */
function count_(text: string, flag: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} takes a whole number of 0 or more, not ${text}`);
  return n;
}

/** A duration such as `60s`, `10m`, `1h30m` or `500ms`, in milliseconds (as humantime reads the Rust CLI's). */
function duration(text: string, flag: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const parts = [...text.matchAll(/([0-9]+)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) {
    throw new UsageError(`${flag} takes a duration such as 60s or 10m, not ${text}`);
  }
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * units[unit!]!, 0);
}

/** A time in RFC 3339, UTC, whole seconds (`2026-01-02T03:04:05Z`), as the Rust CLI prints it. */
function rfc3339Seconds(time: Date): string {
  return new Date(Math.floor(time.getTime() / 1000) * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/** Exactly one positional argument. */
function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}`);
  return positionals[0]!;
}

/**
 * The arguments of `send`, checked before connecting: usage errors first, then an
 * empty `--text`, which is refused input (INVALID_ARGUMENT, exit 1) as the library
 * refuses it, not a usage error.
 */
function sendArgs(args: string[]) {
  const { values, positionals } = parse(args, {
    to: { type: "string" },
    channel: { type: "string" },
    text: { type: "string" },
    image: { type: "string" },
    file: { type: "string" },
    "media-id": { type: "string" },
    offline: { type: "boolean" },
    "client-message-id": { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected ${positionals.join(" ")}`);
  const contents = [values.text, values.image, values.file, values["media-id"]].filter((v) => v !== undefined);
  if (contents.length !== 1) throw new UsageError("say what to send: one of --text, --image, --file, --media-id");
  if ((values.to === undefined) === (values.channel === undefined)) {
    throw new UsageError("say where to send: --to PEER or --channel CH");
  }
  if (values["client-message-id"] === "") throw new UsageError("--client-message-id cannot be empty");
  if (values.text !== undefined) checkSendable(textMessage(values.text));
  return values;
}

async function send(client: Client, values: ReturnType<typeof sendArgs>): Promise<void> {
  let message: MessageInit;
  if (values.text !== undefined) message = textMessage(values.text);
  else if (values.image !== undefined) message = imageMessage(await finish(client.uploadImage(values.image)));
  else if (values.file !== undefined) message = fileMessage(await finish(client.uploadFile(values.file)));
  else message = mediaMessage(await client.getMedia(values["media-id"]!));
  const clientMessageId = values["client-message-id"];
  const id = clientMessageId === undefined ? {} : { clientMessageId };
  let receipt: SendReceipt;
  if (values.to !== undefined) {
    try {
      receipt = await client.sendPeerMessage(values.to, message, { offline: values.offline ?? false, ...id });
    } catch (error) {
      if (!(error instanceof PeerUnreachableError)) throw error;
      print({ message_id: error.messageId, state: "unreachable" });
      process.stderr.write(
        `interop: ${error.peer} is offline; the message was not kept (send with --offline to keep it)\n`,
      );
      process.exitCode = 1;
      return;
    }
  } else {
    receipt = await client.sendChannelMessage(values.channel!, message, id);
  }
  print({ message_id: receipt.messageId, state: receipt.delivery, server_time_ms: receipt.serverTime.getTime() });
}

async function listen(client: Client, args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    save: { type: "string" },
    count: { type: "string" },
    after: { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected ${positionals.join(" ")}`);
  const after = values.after === undefined ? 0 : count_(values.after, "--after");
  const count = values.count === undefined ? undefined : count_(values.count, "--count");
  const save = values.save;
  if (save !== undefined) mkdirSync(save, { recursive: true });
  const feed = client.subscribe({ signal: interrupt.signal, after });
  let messages = 0;
  if (count === 0) return;
  for await (const event of feed) {
    print(eventJson(event));
    if (event.type !== "message") continue;
    messages++;
    const received = event.message;
    if (save !== undefined && (received.type === "image" || received.type === "file")) {
      const path = uniquePath(save, received.fileName, received.mediaId);
      try {
        await printSaved(await finish(client.downloadToFile(received.mediaId, path)), path);
      } catch (error) {
        if (error instanceof CancelledError) throw error;
        // One failed download does not end the feed.
        process.stderr.write(`interop: could not save ${received.mediaId}: ${(error as Error).message}\n`);
      }
    }
    if (count !== undefined && messages >= count) break;
  }
}

/** Runs one command: global flags first, then the command and its own arguments. */
async function run(argv: string[]): Promise<void> {
  let server = process.env.COURIER_SERVER ?? "http://127.0.0.1:50051";
  let token = process.env.COURIER_TOKEN;
  let at = 0;
  for (; at < argv.length && argv[at]!.startsWith("-"); at++) {
    const [flag, inline] = argv[at]!.split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag === "--json") continue;
    if (flag !== "--server" && flag !== "--token") throw new UsageError(`unknown flag ${flag}`);
    const value = inline ?? argv[++at];
    if (value === undefined) throw new UsageError(`${flag} takes a value`);
    if (flag === "--server") server = value;
    else token = value;
  }
  const command = argv[at];
  if (command === undefined) throw new UsageError("no command");
  // Check the command line before connecting.
  const runCommand = check(command, argv.slice(at + 1));
  if (!token) {
    throw new UnauthenticatedError("no token: set COURIER_TOKEN (courier-server token --user NAME mints one)");
  }
  const client = await Client.connect(server, token);
  try {
    await runCommand(client);
  } finally {
    client.close();
  }
}

/** Parses a command's arguments, returning what runs it. */
function check(command: string, args: string[]): (client: Client) => Promise<void> {
  switch (command) {
    case "upload": {
      const { values, positionals } = parse(args, {
        image: { type: "boolean" },
        resume: { type: "boolean" },
        "stop-after-parts": { type: "string" },
      });
      const path = one(positionals, "PATH");
      const stop = values["stop-after-parts"];
      if (stop !== undefined && !values.resume) throw new UsageError("--stop-after-parts needs --resume");
      const stopAfterParts = stop === undefined ? undefined : count_(stop, "--stop-after-parts");
      if (values.resume) {
        return async (client) => {
          const kind = values.image ? "image" : "file";
          const done = await finish(
            client.uploadResumable(path, stopAfterParts === undefined ? { kind } : { kind, stopAfterParts }),
          );
          if (done.status === "paused") {
            print({ event: "paused", upload_id: done.uploadId, committed_size: done.committedSize });
          } else {
            print({ ...mediaJson(done.media), resumed_from: done.resumedFrom });
          }
        };
      }
      return async (client) => {
        const upload = values.image ? client.uploadImage(path) : client.uploadFile(path);
        print(mediaJson(await finish(upload)));
      };
    }
    case "send": {
      const values = sendArgs(args);
      return (client) => send(client, values);
    }
    case "join":
    case "leave": {
      const channel = one(parse(args, {}).positionals, "channel");
      return async (client) => {
        if (command === "join") await client.joinChannel(channel);
        else await client.leaveChannel(channel);
        print({ channel, result: command === "join" ? "joined" : "left" });
      };
    }
    case "members": {
      const channel = one(parse(args, {}).positionals, "channel");
      return async (client) => print({ channel, members: await client.channelMembers(channel) });
    }
    case "online": {
      const users = parse(args, {}).positionals;
      if (users.length === 0) throw new UsageError("name at least one user");
      return async (client) => {
        for (const status of await client.queryOnlineStatus(users)) {
          print({ user_id: status.userId, online: status.online });
        }
      };
    }
    case "download": {
      const { values, positionals } = parse(args, { output: { type: "string", short: "o" } });
      const mediaId = one(positionals, "MEDIA_ID");
      const output = values.output;
      if (output === undefined) throw new UsageError("say where to write it: -o PATH");
      return async (client) => printSaved(await finish(client.downloadToFile(mediaId, output)), output);
    }
    case "delete": {
      const mediaId = one(parse(args, {}).positionals, "MEDIA_ID");
      return async (client) => {
        await client.deleteMedia(mediaId);
        print({ media_id: mediaId, deleted: true });
      };
    }
    case "url": {
      const { values, positionals } = parse(args, { "max-edge": { type: "string" }, ttl: { type: "string" } });
      const mediaId = one(positionals, "MEDIA_ID");
      const maxEdge = count_(values["max-edge"] ?? "0", "--max-edge");
      const lifetimeMs = values.ttl === undefined ? undefined : duration(values.ttl, "--ttl");
      return async (client) => {
        const link = await client.mediaUrl(mediaId, lifetimeMs === undefined ? { maxEdge } : { maxEdge, lifetimeMs });
        print({ url: link.url, expire_time: rfc3339Seconds(link.expireTime) });
      };
    }
    case "thumbnail": {
      const { values, positionals } = parse(args, {
        "max-edge": { type: "string" },
        output: { type: "string", short: "o" },
      });
      const mediaId = one(positionals, "MEDIA_ID");
      const output = values.output;
      if (output === undefined) throw new UsageError("say where to write it: -o PATH");
      const text = values["max-edge"] ?? "320";
      const maxEdge = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!(Number.isSafeInteger(maxEdge) && maxEdge >= 1)) {
        throw new UsageError(`--max-edge takes a number of pixels of at least 1, not ${text}`);
      }
      return async (client) => {
        const thumb = await client.thumbnail(mediaId, maxEdge);
        writeWhole(output, thumb.data);
        print({
          event: "thumbnail",
          media_id: mediaId,
          content_type: thumb.contentType,
          width: thumb.width,
          height: thumb.height,
          size: thumb.data.length,
          path: output,
        });
      };
    }
    case "listen":
      parse(args, { save: { type: "string" }, count: { type: "string" }, after: { type: "string" } });
      return (client) => listen(client, args);
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

/** Runs the command line and exits with its status once stdout is flushed. */
async function main(): Promise<void> {
  let status = 0;
  process.once("SIGINT", () => interrupt.abort());
  try {
    await run(process.argv.slice(2));
    status = typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`interop: ${error.message}\n${USAGE}\n`);
      status = 2;
    } else if (error instanceof CancelledError && interrupt.signal.aborted) {
      process.stderr.write("interop: cancelled\n");
      status = 130;
    } else {
      const courier =
        error instanceof CourierError ? error : new InvalidArgumentError(String((error as Error)?.message ?? error));
      print({ error: { code: courier.code, reason: courier.reason, message: courier.message } });
      process.stderr.write(`interop: ${courier.code}: ${courier.message}\n`);
      status = 1;
    }
  }
  // Exit once everything written has reached the pipe.
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  process.exit(status);
}

await main();

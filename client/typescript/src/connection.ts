/**
 * The connection to a courier server, whatever carries it (connect-node's gRPC over
 * one HTTP/2 session in Node, see `node-connection`; connect-web's gRPC-Web in a
 * browser, see `browser`): the token on every call, the deadline of unary calls, and
 * retries with backoff where a call is safe to repeat. No Node built-ins here.
 *
 * @module
 */

import {
  type Client as RpcClient,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";

import { InvalidArgumentError, UnavailableError, toCourierError } from "./errors.js";
import { MediaService } from "./gen/courier/v1/media_service_pb.js";
import { MessagingService } from "./gen/courier/v1/messaging_service_pb.js";
import { TransferTable } from "./transfer.js";

/** How a {@link Client} behaves; the defaults suit most applications. */
export interface ClientOptions {
  /** The deadline of each unary call, in milliseconds (10 s). */
  deadlineMs?: number;
  /** How many times a call that is safe to repeat is retried while the server is unavailable (4). */
  retries?: number;
  /** The first pause before a retry, in milliseconds (100); it doubles each time, up to 5 s. */
  backoffMs?: number;
  /** The most uploads and downloads this client runs at once (9, as the server allows per user). */
  maxTransfers?: number;
  /**
   * Let a transfer beyond `maxTransfers` wait for a slot instead of failing at once
   * with {@link TooManyTransfersError} (off: Agora's rule, and the Rust client's).
   */
  queueTransfers?: boolean;
  /** The size of an upload's data frames, in bytes (256 KiB). */
  chunkSize?: number;
}

/** The longest pause between retries or reconnections, in milliseconds. */
export const MAX_BACKOFF_MS = 5_000;

/** Every option filled in. */
export type Settings = Required<ClientOptions>;

/** The defaults of {@link ClientOptions}. */
const DEFAULTS: Settings = {
  deadlineMs: 10_000,
  retries: 4,
  backoffMs: 100,
  maxTransfers: 9,
  queueTransfers: false,
  chunkSize: 256 * 1024,
};

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Makes the transport of a connection, given the interceptors every call goes through. */
export type TransportMaker = (interceptors: Interceptor[]) => Transport;

/** The shared state of a client: stubs, settings and transfers. Internal. */
export class Connection {
  /** The MediaService stub. */
  readonly media: RpcClient<typeof MediaService>;
  /** The MessagingService stub. */
  readonly messaging: RpcClient<typeof MessagingService>;
  /** Running transfers and their limit. */
  readonly transfers: TransferTable;

  constructor(
    /** The server's origin, `http://host:port` or `https://host:port`. */
    readonly origin: string,
    token: string,
    /** Deadlines, retries, limits. */
    readonly settings: Settings,
    /** The transport: connect-node's gRPC over HTTP/2, or connect-web's gRPC-Web. */
    makeTransport: TransportMaker,
    /** Closes the transport's connections, if it keeps any. */
    readonly close: () => void,
  ) {
    const authorization = `Bearer ${token.trim()}`;
    const authenticate: Interceptor = (next) => (request) => {
      request.header.set("authorization", authorization);
      return next(request);
    };
    const transport = makeTransport([authenticate]);
    this.media = createClient(MediaService, transport);
    this.messaging = createClient(MessagingService, transport);
    this.transfers = new TransferTable(settings.maxTransfers, settings.queueTransfers);
  }

  /**
   * Checks a server URL and a token before connecting, and fills in the options:
   * the URL's origin and the settings.
   */
  static check(url: string, token: string, options: ClientOptions): { origin: string; settings: Settings } {
    const settings: Settings = { ...DEFAULTS, ...options };
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (cause) {
      throw new InvalidArgumentError(`bad server URL: ${url}`, { cause });
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new InvalidArgumentError(`bad server URL: ${url} (use http:// or https://)`);
    }
    if (/[\r\n]/.test(token)) {
      throw new InvalidArgumentError("the token holds characters a header cannot carry");
    }
    return { origin: parsed.origin, settings };
  }

  /** The options of a unary call: its deadline. */
  get unary(): { timeoutMs: number } {
    return { timeoutMs: this.settings.deadlineMs };
  }

  /** Runs `call` once (for calls that are not safe to repeat), its failure as a courier error. */
  async once<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toCourierError(error);
    }
  }

  /** Runs `call` again, with backoff, while it fails with UNAVAILABLE; only for calls safe to repeat. */
  retrying<T>(call: () => Promise<T>): Promise<T> {
    return retry(this.settings, call);
  }
}

/** An error and its causes, spelled out ("transport error" alone says nothing a person can act on). */
export function describe(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    const text = current instanceof ConnectError ? current.rawMessage : current instanceof Error ? current.message : String(current);
    if (!parts.some((p) => p.includes(text))) parts.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ") || "unknown error";
}

/** Runs `call`, retrying with doubling pauses while it fails with UNAVAILABLE. */
export async function retry<T>(settings: Settings, call: () => Promise<T>): Promise<T> {
  let pause = settings.backoffMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const courier = toCourierError(error);
      if (!(courier instanceof UnavailableError) || attempt >= settings.retries) throw courier;
      await sleep(pause);
      pause = Math.min(pause * 2, MAX_BACKOFF_MS);
    }
  }
}

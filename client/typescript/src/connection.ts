/**
 * The connection to a courier server, or to several replicas of one, whatever carries
 * it (connect-node's gRPC over one HTTP/2 session per server in Node, see
 * `node-connection`; connect-web's gRPC-Web in a browser, see `browser`): the token on
 * every call, the deadline of unary calls, calls spread over the replicas (each call
 * goes to the next one that is up; one found unavailable is passed over for a while),
 * and retries with backoff where a call is safe to repeat, each on the next replica.
 * No Node built-ins here.
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

/** Makes the transport to one server `origin`, given the interceptors every call goes through. */
export type TransportMaker = (origin: string, interceptors: Interceptor[]) => Transport;

/** How long a server that was unavailable is passed over at first, in milliseconds; it doubles while it stays so. */
const DOWN_MS = 2_000;
/** The longest a server that was unavailable is passed over, in milliseconds. */
const MAX_DOWN_MS = 30_000;

/**
 * One server address of a client (a replica of the deployment): its stubs, and
 * whether it answered lately. A call that fails with UNAVAILABLE marks it down for a
 * while (2 s, doubling while it keeps failing, at most 30 s), so that the rotation
 * passes it over; any answer marks it up again. Internal.
 */
export class Replica {
  /** The MediaService stub of this server. */
  readonly media: RpcClient<typeof MediaService>;
  /** The MessagingService stub of this server. */
  readonly messaging: RpcClient<typeof MessagingService>;
  /** Failures in a row, which lengthen the time it is passed over. */
  #failures = 0;
  /** Until when (ms since the epoch) the rotation passes it over. */
  #downUntil = 0;

  constructor(
    /** The server's origin, `http://host:port` or `https://host:port`. */
    readonly origin: string,
    /** Makes its transport, given the interceptor that watches its calls. */
    makeTransport: (watch: Interceptor) => Transport,
  ) {
    const transport = makeTransport(this.watch());
    this.media = createClient(MediaService, transport);
    this.messaging = createClient(MessagingService, transport);
  }

  /** Whether the rotation may pick it now. */
  get up(): boolean {
    return Date.now() >= this.#downUntil;
  }

  /** Until when it is passed over (0: it is up). */
  get downUntil(): number {
    return this.#downUntil;
  }

  /** A call through it found the server unavailable. */
  failed(): void {
    this.#failures++;
    this.#downUntil = Date.now() + Math.min(DOWN_MS * 2 ** Math.min(this.#failures - 1, 8), MAX_DOWN_MS);
  }

  /** The server answered. */
  answered(): void {
    this.#failures = 0;
    this.#downUntil = 0;
  }

  /**
   * The interceptor that tells this replica how its calls fare: an answer (a unary
   * response, or a stream's headers) is a sign of life; UNAVAILABLE (a refused or
   * broken connection, which `toCourierError` sorts) marks it down, unless the caller
   * itself cancelled the call.
   */
  private watch(): Interceptor {
    const fared = (error: unknown, signal: AbortSignal) => {
      if (!signal.aborted && toCourierError(error) instanceof UnavailableError) this.failed();
    };
    return (next) => async (request) => {
      let response;
      try {
        response = await next(request);
      } catch (error) {
        fared(error, request.signal);
        throw error;
      }
      this.answered();
      if (!response.stream) return response;
      const messages = response.message;
      const signal = request.signal;
      async function* watched() {
        try {
          yield* messages;
        } catch (error) {
          fared(error, signal);
          throw error;
        }
      }
      return { ...response, message: watched() } as typeof response;
    };
  }
}

/**
 * The shared state of a client: its servers (one, or several replicas of one
 * deployment, which calls rotate over), settings and transfers. Internal.
 */
export class Connection {
  /** The servers, in the order given; calls rotate over those that are up. */
  readonly replicas: readonly Replica[];
  /** Running transfers and their limit. */
  readonly transfers: TransferTable;
  /** The index of the replica the next call starts looking from. */
  #next = 0;

  constructor(
    /** The servers' origins, `http://host:port` or `https://host:port`: at least one. */
    origins: readonly string[],
    token: string,
    /** Deadlines, retries, limits. */
    readonly settings: Settings,
    /** The transport: connect-node's gRPC over HTTP/2, or connect-web's gRPC-Web. */
    makeTransport: TransportMaker,
    /** Closes the transports' connections, if they keep any. */
    readonly close: () => void,
  ) {
    const authorization = `Bearer ${token.trim()}`;
    const authenticate: Interceptor = (next) => (request) => {
      request.header.set("authorization", authorization);
      return next(request);
    };
    this.replicas = origins.map(
      (origin) => new Replica(origin, (watch) => makeTransport(origin, [authenticate, watch])),
    );
    this.transfers = new TransferTable(settings.maxTransfers, settings.queueTransfers);
  }

  /** The first server's origin: what upload state files name (the deployment, not the replica). */
  get origin(): string {
    return this.replicas[0]!.origin;
  }

  /**
   * The replica for the next call: the next one in the rotation that is up, or, when
   * none is, the one that comes back first. Each call picks anew, so calls spread over
   * the replicas, and a retried call goes to another one.
   */
  pick(): Replica {
    const n = this.replicas.length;
    for (let i = 0; i < n; i++) {
      const replica = this.replicas[(this.#next + i) % n]!;
      if (replica.up) {
        this.#next = (this.#next + i + 1) % n;
        return replica;
      }
    }
    const soonest = this.replicas.reduce((a, b) => (b.downUntil < a.downUntil ? b : a));
    this.#next = (this.replicas.indexOf(soonest) + 1) % n;
    return soonest;
  }

  /** The MediaService stub for one call (of the replica {@link Connection.pick} chose). */
  get media(): RpcClient<typeof MediaService> {
    return this.pick().media;
  }

  /** The MessagingService stub for one call (of the replica {@link Connection.pick} chose). */
  get messaging(): RpcClient<typeof MessagingService> {
    return this.pick().messaging;
  }

  /**
   * Checks server URLs (one, or several replicas of one deployment) and a token
   * before connecting, and fills in the options: the URLs' origins and the settings.
   */
  static check(
    urls: string | readonly string[],
    token: string,
    options: ClientOptions,
  ): { origins: string[]; settings: Settings } {
    const settings: Settings = { ...DEFAULTS, ...options };
    const list = typeof urls === "string" ? [urls] : [...urls];
    if (list.length === 0) throw new InvalidArgumentError("no server URL given");
    const origins = list.map((url) => {
      let parsed: URL;
      try {
        parsed = new URL(url.trim());
      } catch (cause) {
        throw new InvalidArgumentError(`bad server URL: ${url}`, { cause });
      }
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
        throw new InvalidArgumentError(`bad server URL: ${url} (use http:// or https://)`);
      }
      return parsed.origin;
    });
    if (/[\r\n]/.test(token)) {
      throw new InvalidArgumentError("the token holds characters a header cannot carry");
    }
    return { origins, settings };
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

  /**
   * Runs `call` again, with backoff, while it fails with UNAVAILABLE; only for calls
   * safe to repeat. `call` reads its stub from {@link Connection.media} or
   * {@link Connection.messaging} inside, so each attempt goes to the next replica.
   * Once `signal` aborts, the call's own failure is thrown as it is.
   */
  retrying<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return retry(this.settings, call, signal);
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

/**
 * Runs `call`, retrying with doubling pauses while it fails with UNAVAILABLE; once
 * `signal` aborts, the failure is thrown as it is (the caller sorts its cancellation).
 */
export async function retry<T>(settings: Settings, call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  let pause = settings.backoffMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (signal?.aborted) throw error;
      const courier = toCourierError(error);
      if (!(courier instanceof UnavailableError) || attempt >= settings.retries) throw courier;
      await sleep(pause, signal);
      pause = Math.min(pause * 2, MAX_BACKOFF_MS);
    }
  }
}

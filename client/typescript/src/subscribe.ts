/**
 * The live feed: {@link Subscription} is an async iterator of typed events that keeps a
 * Subscribe call open, reconnects by itself with backoff (up to 5 s) when the
 * connection drops or the server restarts (with several replicas, to another one),
 * resuming after the last cursor it queued, and says when it did.
 *
 * @module
 */

import { type Connection, MAX_BACKOFF_MS, sleep } from "./connection.js";
import { type CourierError, InvalidArgumentError, UnauthenticatedError, toCourierError } from "./errors.js";
import type { SubscribeResponse } from "./gen/courier/v1/messaging_service_pb.js";
import { type ReceivedMessage, fromChannel, fromPeer } from "./messages.js";

/** How many events may wait for the application before the feed stops reading. */
const QUEUE = 256;

/** The feed is live (after each connect, after the cached offline messages and the replayed events). */
export interface ReadyEvent {
  readonly type: "ready";
  /** How many cached offline messages came before this event. */
  readonly offlineCount: number;
  /**
   * True when the cursor this stream resumed after was older than the events the
   * server still holds: some events in between are lost (tell the user).
   */
  readonly eventsLost: boolean;
  /** The cursor of this user's latest event when the stream became live. */
  readonly cursor: number;
  /** The origin of the server (the replica, with several) this stream is open on. */
  readonly server: string;
}

/**
 * The connection dropped; the feed is reconnecting. Messages sent to this user
 * meanwhile are cached only if their senders enabled offline messaging.
 */
export interface DisconnectedEvent {
  readonly type: "disconnected";
  /** Why. */
  readonly reason: string;
}

/**
 * The feed is connected again after a {@link DisconnectedEvent} (with several
 * replicas, to the next one that is up); a `ready` event follows.
 */
export interface ReconnectedEvent {
  readonly type: "reconnected";
  /** The origin of the server the feed is connected to now. */
  readonly server: string;
}

/** Something that happened on the feed, told apart by `type`. */
export type FeedEvent = ReceivedMessage | ReadyEvent | DisconnectedEvent | ReconnectedEvent;

/** How to subscribe. */
export interface SubscribeOptions {
  /** Closes the feed when aborted, as {@link Subscription.close} does. */
  signal?: AbortSignal;
  /**
   * Replay first every event after this cursor that the server still holds (a
   * {@link ReceivedMessage.cursor} or {@link Subscription.cursor} kept from before).
   * Default 0: none, only what is owed (cached offline messages) and then live.
   */
  after?: number;
}

/**
 * This user's live feed, open from the moment it is made: iterate it with
 * `for await`. It ends only when closed (or when the loop breaks), or with an error
 * that reconnecting cannot cure, such as an expired token.
 */
export class Subscription implements AsyncIterableIterator<FeedEvent> {
  /** Events not yet taken by the application (at most {@link QUEUE}). */
  readonly #queue: FeedEvent[] = [];
  /** Wakes the readers waiting in `next()` when an event arrives or the feed ends. */
  #readers: (() => void)[] = [];
  /** Wakes the feed when the reader has made room. */
  #writable: (() => void) | undefined;
  /** The error that ended the feed, if any. */
  #error: CourierError | undefined;
  /** True once the feed has ended. */
  #ended = false;
  /** Stops the Subscribe call and the backoff. */
  readonly #controller = new AbortController();
  /** The cursor to resume after: the last event handed on, or the last ready's. */
  #cursor: number;

  /** @internal */
  constructor(connection: Connection, options: SubscribeOptions = {}) {
    const after = options.after ?? 0;
    if (!(Number.isSafeInteger(after) && after >= 0)) {
      throw new InvalidArgumentError(`after takes a cursor of 0 or more, not ${after}`);
    }
    this.#cursor = after;
    const outer = options.signal;
    if (outer?.aborted) this.close();
    else outer?.addEventListener("abort", () => this.close(), { once: true });
    void this.#feed(connection).finally(() => this.#end());
  }

  /**
   * The cursor a reconnect resumes after: that of the last message queued for the
   * application, or of the latest `ready` when no message came after it. Keep it to
   * subscribe again later with `after`.
   */
  get cursor(): number {
    return this.#cursor;
  }

  /** Closes the feed: the call ends (the user goes offline unless another feed is open) and iteration stops. */
  close(): void {
    this.#controller.abort();
    this.#end();
  }

  /** The next event. */
  async next(): Promise<IteratorResult<FeedEvent, undefined>> {
    for (;;) {
      const event = this.#queue.shift();
      if (event !== undefined) {
        this.#writable?.();
        return { done: false, value: event };
      }
      if (this.#error !== undefined) {
        const error = this.#error;
        this.#error = undefined;
        throw error;
      }
      if (this.#ended) return { done: true, value: undefined };
      await new Promise<void>((resolve) => this.#readers.push(resolve));
    }
  }

  /** Closes the feed (a `for await` loop that breaks calls this). */
  async return(): Promise<IteratorResult<FeedEvent, undefined>> {
    this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Marks the feed ended and wakes the readers. */
  #end(): void {
    this.#ended = true;
    this.#wake();
    this.#writable?.();
  }

  #wake(): void {
    const readers = this.#readers;
    this.#readers = [];
    for (const reader of readers) reader();
  }

  /** Queues an event, waiting while the queue is full. */
  async #push(event: FeedEvent): Promise<void> {
    while (this.#queue.length >= QUEUE && !this.#ended) {
      await new Promise<void>((resolve) => (this.#writable = resolve));
    }
    this.#queue.push(event);
    this.#wake();
  }

  /**
   * Keeps a Subscribe call open, forwarding its events, and opens a new one whenever
   * it ends, until the feed is closed or fails for good.
   */
  async #feed(connection: Connection): Promise<void> {
    const { signal } = this.#controller;
    const base = connection.settings.backoffMs;
    let backoff = base;
    let disconnected = false;
    while (!signal.aborted) {
      let reason: string;
      try {
        const request = { after: BigInt(this.#cursor) };
        // With several replicas, each (re)connect goes to the next one that is up.
        const replica = connection.pick();
        for await (const response of replica.messaging.subscribe(request, { signal })) {
          backoff = base;
          if (disconnected) {
            disconnected = false;
            await this.#push({ type: "reconnected", server: replica.origin });
          }
          const event = convert(response, replica.origin);
          // Resume after this event from now on: it is in the queue, which outlives
          // the call, so a reconnect neither misses nor repeats it. A cursor of 0 (a
          // server without cursors) moves nothing.
          const cursor = event?.type === "ready" ? event.cursor : Number(response.cursor);
          if (cursor > this.#cursor) this.#cursor = cursor;
          if (event !== undefined) await this.#push(event);
        }
        reason = "the server ended the feed";
      } catch (cause) {
        if (signal.aborted) return;
        const error = toCourierError(cause);
        if (!reconnectable(error)) {
          this.#error = error;
          return;
        }
        reason = error.message || error.code;
      }
      if (signal.aborted) return;
      disconnected = true;
      await this.#push({ type: "disconnected", reason });
      try {
        await sleep(backoff, signal);
      } catch {
        return;
      }
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

/** Whether a feed that ended with `error` should reconnect. */
function reconnectable(error: CourierError): boolean {
  return !(error instanceof UnauthenticatedError || error instanceof InvalidArgumentError);
}

/** The library's event from the generated one; undefined for one this client does not know. */
function convert(response: SubscribeResponse, server: string): FeedEvent | undefined {
  const event = response.event;
  switch (event.case) {
    case "peerMessage":
      return fromPeer(event.value, Number(response.cursor));
    case "channelMessage":
      return fromChannel(event.value, Number(response.cursor));
    case "ready":
      return {
        type: "ready",
        offlineCount: event.value.offlineMessageCount,
        eventsLost: event.value.eventsLost,
        cursor: Number(event.value.cursor),
        server,
      };
    default:
      return undefined;
  }
}

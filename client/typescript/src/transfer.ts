/**
 * Transfers: every upload and download runs in the background and hands back a
 * {@link Transfer}: a request ID, the latest progress, a cancel handle, and a promise
 * of the result — the model of Agora's SDK, in Node's shapes (`AbortSignal`,
 * `onProgress`, `await`).
 *
 * @module
 */

import { CancelledError, NoSuchTransferError, TooManyTransfersError, toCourierError } from "./errors.js";

/** Identifies a transfer of one client while it runs (or waits in the opt-in queue). */
export type RequestId = number;

/** How far a transfer has come. */
export interface Progress {
  /** Bytes moved so far. */
  readonly done: number;
  /** Bytes in all (0 until a download has read the record). */
  readonly total: number;
}

/** What every upload and download takes. */
export interface TransferOptions {
  /** Called with every progress update; `done` never decreases. */
  onProgress?: (progress: Progress) => void;
  /** Cancels the transfer when aborted, as {@link Transfer.cancel} does. */
  signal?: AbortSignal;
}

/** What a transfer's work gets: the signal to obey and where to report progress. */
export interface TransferContext {
  /** Aborted when the transfer is cancelled. */
  readonly signal: AbortSignal;
  /** Reports `done` of `total` bytes. */
  report(done: number, total: number): void;
}

/**
 * A running upload or download. `await` it for the result; it rejects with a
 * {@link CourierError} ({@link CancelledError} once cancelled). Not awaiting it does
 * not cancel it.
 */
export class Transfer<T> implements Promise<T> {
  /** The request ID: `client.cancel(requestId)` cancels this transfer while it runs. */
  readonly requestId: RequestId;
  /** Settles with the result. */
  readonly #result: Promise<T>;
  /** Aborts the work. */
  readonly #controller: AbortController;
  /** The latest progress. */
  #progress: Progress = { done: 0, total: 0 };
  /** Shown by `Object.prototype.toString`. */
  readonly [Symbol.toStringTag] = "Transfer";

  /** @internal */
  constructor(requestId: RequestId, controller: AbortController, run: (t: Transfer<T>) => Promise<T>) {
    this.requestId = requestId;
    this.#controller = controller;
    this.#result = run(this);
    // A transfer that fails unobserved (cancelled by ID and never awaited, say) must
    // not crash the process as an unhandled rejection; awaiting it still rejects.
    this.#result.catch(() => {});
  }

  /** The progress so far. */
  get progress(): Progress {
    return this.#progress;
  }

  /** @internal */
  setProgress(progress: Progress): void {
    this.#progress = progress;
  }

  /**
   * Cancels the transfer: the call is dropped, the server removes any partial data,
   * local partial files are removed, and the transfer rejects with
   * {@link CancelledError}. Cancelling a finished transfer does nothing.
   */
  cancel(): void {
    this.#controller.abort();
  }

  then<R1 = T, R2 = never>(
    onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#result.then(onFulfilled, onRejected);
  }

  /** Like `Promise.prototype.catch`. */
  catch<R = never>(onRejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.#result.catch(onRejected);
  }

  /** Like `Promise.prototype.finally`. */
  finally(onFinally?: (() => void) | null): Promise<T> {
    return this.#result.finally(onFinally);
  }
}

/** A transfer waiting in the opt-in queue for a slot. */
interface Waiter {
  /** Starts it. */
  wake: () => void;
  /** Its cancel signal. */
  signal: AbortSignal;
}

/** The client's running transfers, and the limit on how many may run at once. */
export class TransferTable {
  /** Cancel handles of running and queued transfers, by request ID. */
  readonly #live = new Map<RequestId, AbortController>();
  /** Transfers waiting for a slot (only with `queue`), oldest first. */
  readonly #waiting: Waiter[] = [];
  /** How many hold a slot. */
  #active = 0;
  /** The next request ID. */
  #nextId = 1;

  /**
   * @param max the most transfers at once (9 per client, like the server per user)
   * @param queue wait for a slot instead of refusing the next transfer
   */
  constructor(
    readonly max: number,
    readonly queue: boolean,
  ) {}

  /**
   * Starts `work` as a transfer, or throws {@link TooManyTransfersError} at once when
   * the client already runs the most it may (unless queueing). `onCancel` runs after
   * a cancelled work has stopped, to remove local files.
   */
  start<T>(
    options: TransferOptions,
    work: (context: TransferContext) => Promise<T>,
    onCancel: () => Promise<void> = async () => {},
  ): Transfer<T> {
    if (!this.queue && this.#active >= this.max) {
      throw new TooManyTransfersError(
        `too many transfers in flight: at most ${this.max} uploads and downloads per client at once`,
      );
    }
    const id = this.#nextId++;
    const controller = new AbortController();
    const { signal } = controller;
    const outer = options.signal;
    const abort = () => controller.abort();
    if (outer?.aborted) controller.abort();
    else outer?.addEventListener("abort", abort, { once: true });
    this.#live.set(id, controller);
    return new Transfer<T>(id, controller, async (transfer) => {
      let holding = false;
      try {
        await this.#acquire(signal);
        holding = true;
        const context: TransferContext = {
          signal,
          report: (done, total) => {
            const progress = { done, total };
            transfer.setProgress(progress);
            options.onProgress?.(progress);
          },
        };
        return await work(context);
      } catch (error) {
        if (signal.aborted) {
          await onCancel().catch(() => {});
          throw new CancelledError("cancelled", { cause: error });
        }
        throw toCourierError(error);
      } finally {
        outer?.removeEventListener("abort", abort);
        this.#live.delete(id);
        if (holding) this.#release();
      }
    });
  }

  /** Takes a slot, waiting for one in queue mode; rejects once `signal` aborts. */
  #acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(new CancelledError("cancelled"));
    if (this.#active < this.max) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { wake: () => resolve(), signal };
      this.#waiting.push(waiter);
      signal.addEventListener(
        "abort",
        () => {
          const at = this.#waiting.indexOf(waiter);
          if (at >= 0) this.#waiting.splice(at, 1);
          reject(new CancelledError("cancelled"));
        },
        { once: true },
      );
    });
  }

  /** Frees a slot, handing it to the oldest waiter. */
  #release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#active--;
    else next.wake();
  }

  /** Cancels a running or queued transfer; {@link NoSuchTransferError} for any other ID. */
  cancel(id: RequestId): void {
    const controller = this.#live.get(id);
    if (controller === undefined) throw new NoSuchTransferError(id);
    controller.abort();
  }
}

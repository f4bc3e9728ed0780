/**
 * courier-client/browser: the courier client for web pages, over gRPC-Web
 * (connect-web) to a courier server that allows the page's origin
 * (`--cors-allow-origin`). Every call of {@link BaseClient} — records, thumbnails,
 * downloads into memory, messages, channels, presence and the reconnecting feed — plus
 * resumable uploads of a `File` or `Blob` (browsers cannot stream a request body over
 * gRPC-Web, so uploads go part by part through unary calls), with their state kept in
 * `localStorage`. No Node built-ins are used on this path.
 *
 * ```ts
 * import { BrowserClient, imageMessage } from "courier-client/browser";
 * const alice = await BrowserClient.connect("http://127.0.0.1:50051", token);
 * const done = await alice.uploadResumable(file, { kind: "image", onProgress: show });
 * if (done.status === "committed") await alice.sendPeerMessage("bob", imageMessage(done.media));
 * ```
 *
 * @module
 */

import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { BaseClient } from "./base-client.js";
import { sha256, toHex } from "./bytes.js";
import { type ClientOptions, Connection } from "./connection.js";
import { IoError } from "./errors.js";
import {
  type ResumableOptions,
  type ResumableResult,
  type ResumableSource,
  type StateStore,
  type UploadState,
  discardUpload,
  uploadResumable,
} from "./resumable.js";
import type { Transfer } from "./transfer.js";

export * from "./errors.js";
export * from "./public.js";

/** A `File` (or a `Blob` with a name): what a page's file picker gives. */
export interface FileLike {
  readonly name: string;
  readonly size: number;
  /** Milliseconds since the epoch; part of the state's key. */
  readonly lastModified?: number;
  readonly type?: string;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** The part of the Web Storage API the state needs (`localStorage` by default). */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** How a browser client stores upload state, besides {@link ClientOptions}. */
export interface BrowserClientOptions extends ClientOptions {
  /** Where resumable uploads keep their state: `localStorage` by default. */
  storage?: KeyValueStorage;
}

/** The key of a file's upload state: its name, size and modification time. */
export function uploadStateKey(file: FileLike): string {
  return `courier-upload:${JSON.stringify([file.name, file.size, file.lastModified ?? 0])}`;
}

/** A {@link StateStore} in `storage` under `key` (the SHA-256 inside the state tells apart files that share a key). */
export function storageStateStore(storage: KeyValueStorage, key: string): StateStore {
  return {
    async load() {
      try {
        const text = storage.getItem(key);
        return text === null ? undefined : (JSON.parse(text) as UploadState);
      } catch {
        return undefined;
      }
    },
    async save(state) {
      try {
        storage.setItem(key, JSON.stringify(state));
      } catch (error) {
        throw new IoError(`cannot keep the upload's state: ${(error as Error).message}`, { cause: error });
      }
    },
    async remove() {
      storage.removeItem(key);
    },
  };
}

/** A connection to a courier server from a web page, over gRPC-Web. */
export class BrowserClient extends BaseClient {
  /** Where upload state lives. */
  readonly #storage: KeyValueStorage | undefined;

  private constructor(connection: Connection, storage: KeyValueStorage | undefined) {
    super(connection);
    this.#storage = storage;
  }

  /**
   * A client for `serverUrl` (`http://host:port`, or `https://`) as the user named by
   * `token`. Nothing is sent until the first call (gRPC-Web opens no connection of
   * its own); a server that cannot be reached fails that call with UNAVAILABLE.
   */
  static async connect(serverUrl: string, token: string, options: BrowserClientOptions = {}): Promise<BrowserClient> {
    // One origin: a page talks to the address it was given (a load balancer, an L7
    // proxy or a Kubernetes Service spreads it over replicas), not to a list.
    const { origins, settings } = Connection.check(serverUrl, token, options);
    const connection = new Connection(
      origins,
      token,
      settings,
      (origin, interceptors) => createGrpcWebTransport({ baseUrl: origin, interceptors }),
      () => {},
    );
    const storage =
      options.storage ?? (globalThis as { localStorage?: KeyValueStorage }).localStorage ?? undefined;
    return new BrowserClient(connection, storage);
  }

  /**
   * Starts a resumable upload of `file`: its SHA-256 is computed first (WebCrypto),
   * then it is written part by part; the state is kept in `localStorage` under
   * {@link uploadStateKey}, so that after a lost connection or a reload the same file
   * continues where the server's bytes end. Resolves with the record and
   * `resumedFrom`, or with `status: "paused"` when `options.pause` aborts (or after
   * `stopAfterParts` parts). Cancelling removes the upload and its state.
   */
  uploadResumable(file: FileLike, options: ResumableOptions = {}): Transfer<ResumableResult> {
    const store = this.#store(file);
    return uploadResumable(
      this.connection,
      async () => ({ source: await fileSource(file, options.fileName), store }),
      { contentType: file.type || undefined, ...options },
    );
  }

  /**
   * Abandons a stored (paused or broken-off) upload of `file`: the server drops its
   * parts and the state is removed. Nothing to do is fine.
   */
  async discardUpload(file: FileLike): Promise<void> {
    await discardUpload(this.connection, this.#store(file));
  }

  /** Where the state of `file`'s upload lives. */
  #store(file: FileLike): StateStore {
    const storage = this.#storage;
    if (storage !== undefined) return storageStateStore(storage, uploadStateKey(file));
    let store = memoryStores.get(file);
    if (store === undefined) memoryStores.set(file, (store = memoryStore()));
    return store;
  }
}

/** A page without storage keeps the state for this page's life only (per file). */
const memoryStores = new WeakMap<FileLike, StateStore>();

/** A page without storage keeps the state for this run only. */
function memoryStore(): StateStore {
  let state: UploadState | undefined;
  return {
    load: async () => state,
    save: async (s) => void (state = s),
    remove: async () => void (state = undefined),
  };
}

/** A file as a source: hashed now, read by slices later. */
async function fileSource(file: FileLike, fileName: string | undefined): Promise<ResumableSource> {
  const digest = await sha256(new Uint8Array(await file.arrayBuffer()));
  return {
    fileName: fileName ?? file.name,
    size: file.size,
    sha256: digest,
    async read(offset, length) {
      return new Uint8Array(await file.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** The SHA-256 of bytes, lowercase hex (WebCrypto). */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  return toHex(await sha256(data));
}

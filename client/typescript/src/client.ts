/**
 * {@link Client}: a connection to a courier server as one user from Node, and every
 * call the library offers: those of {@link BaseClient} (the same in browsers) and the
 * ones that read or write local files. Each method is thin; the work is in `upload`,
 * `download`, `resumable`, `subscribe` and the messaging calls.
 *
 * @module
 */

import { BaseClient } from "./base-client.js";
import type { ClientOptions } from "./connection.js";
import { downloadToFile, partialPath } from "./download.js";
import type { Media } from "./media.js";
import { openNode } from "./node-connection.js";
import type { ResumableOptions, ResumableResult } from "./resumable.js";
import { discardUpload } from "./resumable.js";
import { fileStateStore, statePath, uploadFileResumable } from "./resumable-node.js";
import type { Transfer, TransferOptions } from "./transfer.js";
import { type UploadOptions, type UploadSource, upload } from "./upload.js";

/**
 * A connection to a courier server as one user, over gRPC on HTTP/2. Unary calls have
 * a deadline (10 s); calls that are safe to repeat are retried with backoff while the
 * server is unavailable (sends too: each carries a client message ID, reused on its
 * retries, so the server delivers it once); `https://` URLs use TLS. At most 9 uploads
 * and downloads run at once.
 *
 * ```ts
 * const alice = await Client.connect("http://127.0.0.1:50051", token);
 * const media = await alice.uploadImage("cat.png");
 * await alice.sendPeerMessage("bob", imageMessage(media), { offline: true });
 * ```
 */
export class Client extends BaseClient {
  /**
   * Connects to `serverUrl` (`http://host:port`, or `https://` for TLS with Node's
   * roots) as the user named by `token`, retrying while the server cannot be reached;
   * fails with {@link UnavailableError} after the retries.
   *
   * Several replicas of one deployment: give their URLs as an array, or as one string
   * separated by commas (`"http://a:50051,http://b:50051"`). Each call then goes to the
   * next replica in turn; one found unavailable is passed over for a while, calls that
   * are safe to repeat are retried on another, and the feed reconnects to another,
   * resuming after its last cursor.
   */
  static async connect(serverUrl: string | readonly string[], token: string, options: ClientOptions = {}): Promise<Client> {
    const urls = typeof serverUrl === "string" ? serverUrl.split(",").filter((u) => u.trim() !== "") : serverUrl;
    return new Client(await openNode(urls, token, options));
  }

  /**
   * Where {@link Client.downloadToFile} keeps the unfinished bytes of `mediaId` for
   * `path`: the hidden file `.<name>.<mediaId>.part` beside it.
   */
  static partialPath(path: string, mediaId: string): string {
    return partialPath(path, mediaId);
  }

  /** Where {@link Client.uploadResumable} keeps the state of an upload of `path`: `<PATH>.courier-upload`. */
  static uploadStatePath(path: string): string {
    return statePath(path);
  }

  /**
   * Starts uploading `source` (a path, bytes, or a stream such as a Node `Readable`)
   * and returns at once; `await` the {@link Transfer} for the {@link Media} record.
   * Throws {@link TooManyTransfersError} at once when 9 transfers already run, and
   * {@link InvalidArgumentError} for bytes or a stream without `fileName` (and a
   * stream without `size`).
   */
  upload(source: UploadSource, options: UploadOptions = {}): Transfer<Media> {
    return upload(this.connection, source, options);
  }

  /** {@link Client.upload} as an image: the server reads its width and height. */
  uploadImage(source: UploadSource, options: Omit<UploadOptions, "kind"> = {}): Transfer<Media> {
    return upload(this.connection, source, { ...options, kind: "image" });
  }

  /** {@link Client.upload} as a file. */
  uploadFile(source: UploadSource, options: Omit<UploadOptions, "kind"> = {}): Transfer<Media> {
    return upload(this.connection, source, { ...options, kind: "file" });
  }

  /**
   * Starts a resumable upload of the file at `path` (unary calls, part by part, each
   * with its CRC32C): an earlier upload of the same file (same size and SHA-256) to
   * this server, broken off by a lost connection, a server restart or the end of this
   * process, continues where the server's bytes end, from the state kept in
   * {@link Client.uploadStatePath}. Resolves with the record and how many bytes were
   * already stored (`resumedFrom`), or with `status: "paused"` after
   * `stopAfterParts` parts or when `pause` aborts. Cancelling removes the upload and
   * its state.
   */
  uploadResumable(path: string, options: ResumableOptions = {}): Transfer<ResumableResult> {
    return uploadFileResumable(this.connection, path, options);
  }

  /**
   * Abandons a stored (paused or broken-off) resumable upload of `path`: the server
   * drops its parts and the state file is removed. Nothing to do is fine.
   */
  async discardUpload(path: string): Promise<void> {
    await discardUpload(this.connection, fileStateStore(path));
  }

  /**
   * Starts downloading `mediaId` to `path`: the bytes go to
   * {@link Client.partialPath} first and are renamed into place once their size and
   * SHA-256 match the record ({@link IntegrityError} otherwise). A partial file left
   * by an interrupted download is resumed from; a cancelled or failed download
   * removes it (unless the connection was lost, so that the next call resumes).
   */
  downloadToFile(mediaId: string, path: string, options: TransferOptions = {}): Transfer<Media> {
    return downloadToFile(this.connection, mediaId, path, options);
  }
}

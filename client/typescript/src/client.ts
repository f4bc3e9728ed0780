/**
 * {@link Client}: a connection to a courier server as one user, and every call the
 * library offers. Each method is thin; the work is in `upload`, `download`,
 * `subscribe` and the messaging calls below.
 *
 * @module
 */

import { type ClientOptions, Connection } from "./connection.js";
import { NotFoundError, PeerUnreachableError } from "./errors.js";
import { PeerMessageState } from "./gen/courier/v1/messaging_service_pb.js";
import { downloadToFile, downloadToMemory, partialPath } from "./download.js";
import { type Downloaded, type Media, type Thumbnail, mediaFromProto, toDate } from "./media.js";
import {
  type FileMessage,
  type ImageMessage,
  type MessageInit,
  type OnlineStatus,
  type SendOptions,
  type SendReceipt,
  fileMessage,
  imageMessage,
  messageToProto,
} from "./messages.js";
import { type SubscribeOptions, Subscription } from "./subscribe.js";
import type { RequestId, Transfer, TransferOptions } from "./transfer.js";
import { type UploadOptions, type UploadSource, upload } from "./upload.js";

/**
 * A connection to a courier server as one user. Unary calls have a deadline (10 s);
 * calls that are safe to repeat are retried with backoff while the server is
 * unavailable; `https://` URLs use TLS. At most 9 uploads and downloads run at once.
 *
 * ```ts
 * const alice = await Client.connect("http://127.0.0.1:50051", token);
 * const media = await alice.uploadImage("cat.png");
 * await alice.sendPeerMessage("bob", imageMessage(media), { offline: true });
 * ```
 */
export class Client {
  /** Stubs, settings and transfers. */
  readonly #connection: Connection;

  private constructor(connection: Connection) {
    this.#connection = connection;
  }

  /**
   * Connects to `serverUrl` (`http://host:port`, or `https://` for TLS with Node's
   * roots) as the user named by `token`, retrying while the server cannot be reached;
   * fails with {@link UnavailableError} after the retries.
   */
  static async connect(serverUrl: string, token: string, options: ClientOptions = {}): Promise<Client> {
    return new Client(await Connection.open(serverUrl, token, options));
  }

  /** Closes the connection; open calls and subscriptions end. */
  close(): void {
    this.#connection.session.abort();
  }

  /**
   * Where {@link Client.downloadToFile} keeps the unfinished bytes of `mediaId` for
   * `path`: the hidden file `.<name>.<mediaId>.part` beside it.
   */
  static partialPath(path: string, mediaId: string): string {
    return partialPath(path, mediaId);
  }

  /**
   * Cancels a running (or queued) upload or download by its request ID; an unknown or
   * finished one throws {@link NoSuchTransferError}.
   */
  cancel(requestId: RequestId): void {
    this.#connection.transfers.cancel(requestId);
  }

  /**
   * Starts uploading `source` (a path, bytes, or a stream such as a Node `Readable`)
   * and returns at once; `await` the {@link Transfer} for the {@link Media} record.
   * Throws {@link TooManyTransfersError} at once when 9 transfers already run, and
   * {@link InvalidArgumentError} for bytes or a stream without `fileName` (and a
   * stream without `size`).
   */
  upload(source: UploadSource, options: UploadOptions = {}): Transfer<Media> {
    return upload(this.#connection, source, options);
  }

  /** {@link Client.upload} as an image: the server reads its width and height. */
  uploadImage(source: UploadSource, options: Omit<UploadOptions, "kind"> = {}): Transfer<Media> {
    return upload(this.#connection, source, { ...options, kind: "image" });
  }

  /** {@link Client.upload} as a file. */
  uploadFile(source: UploadSource, options: Omit<UploadOptions, "kind"> = {}): Transfer<Media> {
    return upload(this.#connection, source, { ...options, kind: "file" });
  }

  /**
   * Starts downloading `mediaId` to `path`: the bytes go to
   * {@link Client.partialPath} first and are renamed into place once their size and
   * SHA-256 match the record ({@link IntegrityError} otherwise). A partial file left
   * by an interrupted download is resumed from; a cancelled or failed download
   * removes it (unless the connection was lost, so that the next call resumes).
   */
  downloadToFile(mediaId: string, path: string, options: TransferOptions = {}): Transfer<Media> {
    return downloadToFile(this.#connection, mediaId, path, options);
  }

  /** Starts downloading `mediaId` into memory, checked against the record's size and SHA-256. */
  downloadToMemory(mediaId: string, options: TransferOptions = {}): Transfer<Downloaded> {
    return downloadToMemory(this.#connection, mediaId, options);
  }

  /** The record of `mediaId`, without its bytes; {@link NotFoundError} when unknown or expired. */
  async getMedia(mediaId: string): Promise<Media> {
    const connection = this.#connection;
    const response = await connection.retrying(() => connection.media.getMedia({ mediaId }, connection.unary));
    if (response.media === undefined) throw new NotFoundError(mediaId);
    return mediaFromProto(response.media);
  }

  /**
   * The server's thumbnail of image `mediaId`, at most `maxEdge` pixels on its longer
   * side after rounding up to 96, 320 or 640 (above 640: 640). Errors:
   * {@link InvalidArgumentError} for a `maxEdge` of 0 or less, {@link NotFoundError} for
   * an unknown or expired ID, {@link NotAnImageError} and {@link ImageRefusedError} for
   * media the server does not thumbnail.
   */
  async thumbnail(mediaId: string, maxEdge: number): Promise<Thumbnail> {
    const connection = this.#connection;
    const edge = Math.max(-(2 ** 31), Math.min(Math.trunc(maxEdge), 2 ** 31 - 1));
    const response = await connection.retrying(() =>
      connection.media.getThumbnail({ mediaId, maxEdge: edge }, connection.unary),
    );
    return {
      contentType: response.contentType,
      width: response.width,
      height: response.height,
      data: response.data,
    };
  }

  /** An image message for an already uploaded `mediaId`, without uploading again. */
  async imageMessageFromMediaId(mediaId: string): Promise<ImageMessage> {
    return imageMessage(await this.getMedia(mediaId));
  }

  /** A file message for an already uploaded `mediaId`, without uploading again. */
  async fileMessageFromMediaId(mediaId: string): Promise<FileMessage> {
    return fileMessage(await this.getMedia(mediaId));
  }

  /**
   * Sends `message` to `peer`. An offline peer is {@link PeerUnreachableError} unless
   * `options.offline` is set, which caches the message instead. Not retried: a retry
   * could deliver the message twice.
   */
  async sendPeerMessage(peer: string, message: MessageInit, options: SendOptions = {}): Promise<SendReceipt> {
    const connection = this.#connection;
    const request = {
      peerId: peer,
      message: messageToProto(message),
      options: { enableOfflineMessaging: options.offline ?? false },
    };
    const response = await connection.once(() => connection.messaging.sendPeerMessage(request, connection.unary));
    const serverTime = toDate(response.serverTime);
    switch (response.state) {
      case PeerMessageState.DELIVERED:
        return { messageId: response.messageId, serverTime, delivery: "delivered" };
      case PeerMessageState.CACHED:
        return { messageId: response.messageId, serverTime, delivery: "cached" };
      default:
        throw new PeerUnreachableError(peer, response.messageId);
    }
  }

  /** Sends `message` to every other member of `channel`; the caller must be a member ({@link NotAMemberError}). */
  async sendChannelMessage(channel: string, message: MessageInit): Promise<SendReceipt> {
    const connection = this.#connection;
    const request = { channelId: channel, message: messageToProto(message) };
    const response = await connection.once(() => connection.messaging.sendChannelMessage(request, connection.unary));
    return { messageId: response.messageId, serverTime: toDate(response.serverTime), delivery: "delivered" };
  }

  /** Joins `channel` (joining twice is fine); at most 20 channels ({@link TooManyChannelsError}). */
  async joinChannel(channel: string): Promise<void> {
    const connection = this.#connection;
    await connection.retrying(() => connection.messaging.joinChannel({ channelId: channel }, connection.unary));
  }

  /** Leaves `channel`; delivery stops at once. */
  async leaveChannel(channel: string): Promise<void> {
    const connection = this.#connection;
    await connection.retrying(() => connection.messaging.leaveChannel({ channelId: channel }, connection.unary));
  }

  /** The members of `channel`, sorted. */
  async channelMembers(channel: string): Promise<string[]> {
    const connection = this.#connection;
    const response = await connection.retrying(() =>
      connection.messaging.getChannelMembers({ channelId: channel }, connection.unary),
    );
    return response.userIds;
  }

  /** Whether each of `users` is online, in the order asked. */
  async queryOnlineStatus(users: readonly string[]): Promise<OnlineStatus[]> {
    const connection = this.#connection;
    const response = await connection.retrying(() =>
      connection.messaging.queryPeersOnlineStatus({ userIds: [...users] }, connection.unary),
    );
    return response.statuses.map((s) => ({ userId: s.userId, online: s.online }));
  }

  /**
   * Opens this user's live feed, at once: while it is open the user is online.
   * Iterate it with `for await`; it reconnects by itself and says so with
   * `disconnected` and `reconnected` events.
   */
  subscribe(options: SubscribeOptions = {}): Subscription {
    return new Subscription(this.#connection, options);
  }
}

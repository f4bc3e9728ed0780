/**
 * {@link BaseClient}: the calls that are the same in Node and in browsers — media
 * records, thumbnails, downloads into memory, messages, channels, presence and the
 * live feed — over whatever transport the {@link Connection} was made with. No Node
 * built-ins here.
 *
 * @module
 */

import type { Connection } from "./connection.js";
import { InvalidArgumentError, NotFoundError, PeerUnreachableError } from "./errors.js";
import { randomId } from "./bytes.js";
import { PeerMessageState } from "./gen/courier/v1/messaging_service_pb.js";
import {
  type Downloaded,
  type Media,
  type MediaUrl,
  type MediaUrlOptions,
  type Thumbnail,
  mediaFromProto,
  toDate,
} from "./media.js";
import { downloadToMemory } from "./memory.js";
import {
  type ChannelSendOptions,
  type FileMessage,
  type ImageMessage,
  type MessageInit,
  type OnlineStatus,
  type SendOptions,
  type SendReceipt,
  checkSendable,
  fileMessage,
  imageMessage,
  messageToProto,
} from "./messages.js";
import { type SubscribeOptions, Subscription } from "./subscribe.js";
import type { RequestId, Transfer, TransferOptions } from "./transfer.js";

/** A client message ID: what the caller gave, checked, or a new one. */
function clientMessageId(given: string | undefined): string {
  if (given === undefined) return randomId();
  if (given.length === 0) throw new InvalidArgumentError("a client message ID cannot be empty");
  return given;
}

/** The calls of a client that need no local files: shared by the Node and browser clients. */
export class BaseClient {
  /** Stubs, settings and transfers. @internal */
  protected readonly connection: Connection;

  /** @internal */
  protected constructor(connection: Connection) {
    this.connection = connection;
  }

  /** Closes the connection; open calls and subscriptions end. */
  close(): void {
    this.connection.close();
  }

  /**
   * Cancels a running (or queued) upload or download by its request ID; an unknown or
   * finished one throws {@link NoSuchTransferError}.
   */
  cancel(requestId: RequestId): void {
    this.connection.transfers.cancel(requestId);
  }

  /** Starts downloading `mediaId` into memory, checked against the record's size and SHA-256. */
  downloadToMemory(mediaId: string, options: TransferOptions = {}): Transfer<Downloaded> {
    return downloadToMemory(this.connection, mediaId, options);
  }

  /** The record of `mediaId`, without its bytes; {@link NotFoundError} when unknown or expired. */
  async getMedia(mediaId: string): Promise<Media> {
    const connection = this.connection;
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
    const connection = this.connection;
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

  /**
   * Deletes one of this user's own media: from now on its ID is
   * {@link MediaDeletedError} (a {@link NotFoundError}) for downloads, records,
   * thumbnails and links (those minted before included), and new messages naming it
   * are refused ({@link MediaUnavailableError}); messages already sent still arrive.
   * Deleting it again is fine. Another user's or an unknown ID is {@link NotFoundError}.
   * Retried while the server is unavailable (deleting is safe to repeat).
   */
  async deleteMedia(mediaId: string): Promise<void> {
    const connection = this.connection;
    await connection.retrying(() => connection.media.deleteMedia({ mediaId }, connection.unary));
  }

  /**
   * A signed HTTP link to `mediaId`, or with `maxEdge` to its thumbnail (rounded up to
   * 96, 320 or 640 as {@link BaseClient.thumbnail} does), that any HTTP client (an
   * `<img>` or `<video>` tag, `fetch`, a CDN) can GET, with single byte ranges, until
   * `expireTime`. **It is a capability**: whoever holds the URL can fetch the bytes,
   * with no token, until it expires; revoking the user, or deleting the media, ends it
   * sooner. `lifetimeMs` asks for its life (default the server's, 5 minutes; capped by
   * the server, 1 hour, and by the media's and the token's expiry). Errors:
   * {@link NotFoundError} (or {@link MediaDeletedError}) for an unknown, expired or
   * deleted ID, {@link NotAnImageError} for a thumbnail of a file,
   * {@link MediaQuarantinedError}, {@link InvalidArgumentError} for a negative option.
   */
  async mediaUrl(mediaId: string, options: MediaUrlOptions = {}): Promise<MediaUrl> {
    const connection = this.connection;
    const maxEdge = options.maxEdge ?? 0;
    if (!(Number.isSafeInteger(maxEdge) && maxEdge >= 0)) {
      throw new InvalidArgumentError(`maxEdge takes a whole number of pixels of 0 or more, not ${maxEdge}`);
    }
    const lifetimeMs = options.lifetimeMs;
    if (lifetimeMs !== undefined && !(Number.isFinite(lifetimeMs) && lifetimeMs >= 0)) {
      throw new InvalidArgumentError(`lifetimeMs takes milliseconds of 0 or more, not ${lifetimeMs}`);
    }
    const lifetime =
      lifetimeMs === undefined
        ? undefined
        : { seconds: BigInt(Math.floor(lifetimeMs / 1000)), nanos: Math.round((lifetimeMs % 1000) * 1e6) };
    const request = { mediaId, maxEdge: Math.min(maxEdge, 2 ** 31 - 1), lifetime };
    const response = await connection.retrying(() => connection.media.getMediaUrl(request, connection.unary));
    return { url: response.url, expireTime: toDate(response.expireTime) };
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
   * `options.offline` is set, which caches the message instead. The send carries a
   * client message ID (`options.clientMessageId`, or 32 random hex characters) and is
   * retried with it while the server is unavailable: the server answers a repeated ID
   * as it answered the first send, and delivers the message once. An empty text or raw
   * payload is refused with {@link InvalidArgumentError} before any call.
   */
  async sendPeerMessage(peer: string, message: MessageInit, options: SendOptions = {}): Promise<SendReceipt> {
    checkSendable(message);
    const connection = this.connection;
    const request = {
      peerId: peer,
      message: messageToProto(message),
      options: { enableOfflineMessaging: options.offline ?? false },
      clientMessageId: clientMessageId(options.clientMessageId),
    };
    const response = await connection.retrying(() => connection.messaging.sendPeerMessage(request, connection.unary));
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

  /**
   * Sends `message` to every other member of `channel`; the caller must be a member
   * ({@link NotAMemberError}). Carries a client message ID and is retried with it, as
   * {@link BaseClient.sendPeerMessage}. An empty text or raw payload is refused with
   * {@link InvalidArgumentError} before any call.
   */
  async sendChannelMessage(channel: string, message: MessageInit, options: ChannelSendOptions = {}): Promise<SendReceipt> {
    checkSendable(message);
    const connection = this.connection;
    const request = {
      channelId: channel,
      message: messageToProto(message),
      clientMessageId: clientMessageId(options.clientMessageId),
    };
    const response = await connection.retrying(() => connection.messaging.sendChannelMessage(request, connection.unary));
    return { messageId: response.messageId, serverTime: toDate(response.serverTime), delivery: "delivered" };
  }

  /** Joins `channel` (joining twice is fine); at most 20 channels ({@link TooManyChannelsError}). */
  async joinChannel(channel: string): Promise<void> {
    const connection = this.connection;
    await connection.retrying(() => connection.messaging.joinChannel({ channelId: channel }, connection.unary));
  }

  /** Leaves `channel`; delivery stops at once. */
  async leaveChannel(channel: string): Promise<void> {
    const connection = this.connection;
    await connection.retrying(() => connection.messaging.leaveChannel({ channelId: channel }, connection.unary));
  }

  /** The members of `channel`, sorted. */
  async channelMembers(channel: string): Promise<string[]> {
    const connection = this.connection;
    const response = await connection.retrying(() =>
      connection.messaging.getChannelMembers({ channelId: channel }, connection.unary),
    );
    return response.userIds;
  }

  /** Whether each of `users` is online, in the order asked. */
  async queryOnlineStatus(users: readonly string[]): Promise<OnlineStatus[]> {
    const connection = this.connection;
    const response = await connection.retrying(() =>
      connection.messaging.queryPeersOnlineStatus({ userIds: [...users] }, connection.unary),
    );
    return response.statuses.map((s) => ({ userId: s.userId, online: s.online }));
  }

  /**
   * Opens this user's live feed, at once: while it is open the user is online.
   * Iterate it with `for await`; it reconnects by itself, resuming after the cursor
   * of the last event it delivered (so nothing is missed or repeated across a
   * reconnect), and says so with `disconnected` and `reconnected` events.
   * `options.after` starts after a cursor the application kept.
   */
  subscribe(options: SubscribeOptions = {}): Subscription {
    return new Subscription(this.connection, options);
  }
}

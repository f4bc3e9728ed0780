/**
 * What both entry points export (`courier-client` for Node, `courier-client/browser`
 * for web pages): the calls every client has, messages, the feed, transfers and media
 * records. Only modules without Node built-ins belong here.
 *
 * @module
 */

export { BaseClient } from "./base-client.js";
export { crc32c } from "./bytes.js";
export type { ClientOptions } from "./connection.js";
export type { Downloaded, Media, MediaKind, MediaUrl, MediaUrlOptions, Thumbnail } from "./media.js";
export {
  fileMessage,
  imageMessage,
  mediaMessage,
  rawMessage,
  textMessage,
  type ChannelSendOptions,
  type FileMessage,
  type ImageMessage,
  type Message,
  type MessageInit,
  type OnlineStatus,
  type RawMessage,
  type ReceivedMessage,
  type SendOptions,
  type SendReceipt,
  type TextMessage,
} from "./messages.js";
export type { ResumableOptions, ResumableResult, StateStore, UploadState } from "./resumable.js";
export {
  Subscription,
  type DisconnectedEvent,
  type FeedEvent,
  type ReadyEvent,
  type ReconnectedEvent,
  type SubscribeOptions,
} from "./subscribe.js";
export { Transfer, type Progress, type RequestId, type TransferOptions } from "./transfer.js";

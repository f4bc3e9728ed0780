/**
 * Messages: what is sent and what arrives (text, raw, image and file), the helpers
 * that build them, and their conversions from and to the generated types.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";

import {
  type Message as PbMessage,
  MessageSchema,
  type ChannelMessageReceived,
  type PeerMessageReceived,
} from "./gen/courier/v1/messaging_service_pb.js";
import { InvalidArgumentError } from "./errors.js";
import { type Media, toDate } from "./media.js";

/** A text message. */
export interface TextMessage {
  readonly type: "text";
  /** The UTF-8 text. */
  readonly text: string;
}

/** Bytes for the application's own formats. */
export interface RawMessage {
  readonly type: "raw";
  /** The payload. */
  readonly payload: Uint8Array;
  /** What the payload is, such as a format name. */
  readonly description: string;
}

/** An image message: a media ID plus what receivers show before downloading. */
export interface ImageMessage {
  readonly type: "image";
  /** The media ID of the uploaded image. */
  readonly mediaId: string;
  /** The display file name (filled by the server when empty). */
  readonly fileName: string;
  /** The size in bytes (filled by the server when 0). */
  readonly size: number;
  /** Width in pixels (filled by the server when 0; a value set by the sender wins). */
  readonly width: number;
  /** Height in pixels (filled by the server when 0; a value set by the sender wins). */
  readonly height: number;
  /** A small preview, delivered as sent. */
  readonly thumbnail: Uint8Array;
  /** The preview's width. */
  readonly thumbnailWidth: number;
  /** The preview's height. */
  readonly thumbnailHeight: number;
}

/** A file message: a media ID plus what receivers show before downloading. */
export interface FileMessage {
  readonly type: "file";
  /** The media ID of the uploaded file. */
  readonly mediaId: string;
  /** The display file name (filled by the server when empty). */
  readonly fileName: string;
  /** The size in bytes (filled by the server when 0). */
  readonly size: number;
  /** A small preview, delivered as sent. */
  readonly thumbnail: Uint8Array;
}

/** The content of a message, told apart by `type`. */
export type Message = TextMessage | RawMessage | ImageMessage | FileMessage;

/** Fields every message of a `type` must have; the rest may be left out when sending. */
type Init<M extends Message, K extends keyof M> = Pick<M, "type" | K> & Partial<Omit<M, "type" | K>>;

/** A message to send: as {@link Message}, but only `type` and the content (text, payload or media ID) are required. */
export type MessageInit =
  | Init<TextMessage, "text">
  | Init<RawMessage, "payload">
  | Init<ImageMessage, "mediaId">
  | Init<FileMessage, "mediaId">;

/** A text message. */
export function textMessage(text: string): TextMessage {
  return { type: "text", text };
}

/** A raw message of `payload`, described by `description`. */
export function rawMessage(payload: Uint8Array, description = ""): RawMessage {
  return { type: "raw", payload, description };
}

/** An image message for an uploaded object, with its name, size and dimensions. */
export function imageMessage(media: Media): ImageMessage {
  return {
    type: "image",
    mediaId: media.mediaId,
    fileName: media.fileName,
    size: media.size,
    width: media.width,
    height: media.height,
    thumbnail: new Uint8Array(),
    thumbnailWidth: 0,
    thumbnailHeight: 0,
  };
}

/** A file message for an uploaded object, with its name and size. */
export function fileMessage(media: Media): FileMessage {
  return { type: "file", mediaId: media.mediaId, fileName: media.fileName, size: media.size, thumbnail: new Uint8Array() };
}

/** An image message for an image, a file message for anything else. */
export function mediaMessage(media: Media): ImageMessage | FileMessage {
  return media.kind === "image" ? imageMessage(media) : fileMessage(media);
}

/**
 * Refuses, before any call, a message the server would refuse with INVALID_ARGUMENT:
 * a text message with empty text, or a raw message with an empty payload.
 */
export function checkSendable(message: MessageInit): void {
  if (message.type === "text" && !message.text) {
    throw new InvalidArgumentError("a text message needs text: an empty one cannot be sent");
  }
  if (message.type === "raw" && !message.payload?.length) {
    throw new InvalidArgumentError("a raw message needs a payload: an empty one cannot be sent");
  }
}

/** The generated message of a {@link MessageInit}. */
export function messageToProto(message: MessageInit): PbMessage {
  switch (message.type) {
    case "text":
      return create(MessageSchema, { body: { case: "text", value: { text: message.text } } });
    case "raw":
      return create(MessageSchema, {
        body: { case: "raw", value: { payload: message.payload, description: message.description ?? "" } },
      });
    case "image":
      return create(MessageSchema, {
        body: {
          case: "image",
          value: {
            mediaId: message.mediaId,
            fileName: message.fileName ?? "",
            size: BigInt(message.size ?? 0),
            width: message.width ?? 0,
            height: message.height ?? 0,
            thumbnail: message.thumbnail ?? new Uint8Array(),
            thumbnailWidth: message.thumbnailWidth ?? 0,
            thumbnailHeight: message.thumbnailHeight ?? 0,
          },
        },
      });
    case "file":
      return create(MessageSchema, {
        body: {
          case: "file",
          value: {
            mediaId: message.mediaId,
            fileName: message.fileName ?? "",
            size: BigInt(message.size ?? 0),
            thumbnail: message.thumbnail ?? new Uint8Array(),
          },
        },
      });
  }
}

/** The library's message from the generated one; undefined for a body this client does not know. */
export function messageFromProto(message: PbMessage | undefined): Message | undefined {
  const body = message?.body;
  switch (body?.case) {
    case "text":
      return { type: "text", text: body.value.text };
    case "raw":
      return { type: "raw", payload: body.value.payload, description: body.value.description };
    case "image": {
      const i = body.value;
      return {
        type: "image",
        mediaId: i.mediaId,
        fileName: i.fileName,
        size: Number(i.size),
        width: i.width,
        height: i.height,
        thumbnail: i.thumbnail,
        thumbnailWidth: i.thumbnailWidth,
        thumbnailHeight: i.thumbnailHeight,
      };
    }
    case "file": {
      const f = body.value;
      return { type: "file", mediaId: f.mediaId, fileName: f.fileName, size: Number(f.size), thumbnail: f.thumbnail };
    }
    default:
      return undefined;
  }
}

/** A message that arrived on a subscription. */
export interface ReceivedMessage {
  readonly type: "message";
  /** The sender's user ID. */
  readonly from: string;
  /** The channel it was sent to, or `null` for a message sent to this user. */
  readonly channel: string | null;
  /** The server's ID of the message. */
  readonly messageId: string;
  /** When the server accepted it. */
  readonly serverTime: Date;
  /** True when it was cached while this user was offline. */
  readonly offline: boolean;
  /** The content. */
  readonly message: Message;
  /**
   * The event's position in this user's event sequence (increasing; 0 from a server
   * without cursors): subscribe with `after` set to it to receive what came after.
   */
  readonly cursor: number;
}

/** A received peer message from the generated event. */
export function fromPeer(m: PeerMessageReceived, cursor = 0): ReceivedMessage | undefined {
  const message = messageFromProto(m.message);
  if (message === undefined) return undefined;
  return {
    type: "message",
    from: m.senderId,
    channel: null,
    messageId: m.messageId,
    serverTime: toDate(m.serverTime),
    offline: m.offline,
    message,
    cursor,
  };
}

/** A received channel message from the generated event. */
export function fromChannel(m: ChannelMessageReceived, cursor = 0): ReceivedMessage | undefined {
  const message = messageFromProto(m.message);
  if (message === undefined) return undefined;
  return {
    type: "message",
    from: m.senderId,
    channel: m.channelId,
    messageId: m.messageId,
    serverTime: toDate(m.serverTime),
    offline: false,
    message,
    cursor,
  };
}

/** The server's receipt for a sent message. */
export interface SendReceipt {
  /** The ID the server gave the message. */
  readonly messageId: string;
  /** When the server accepted it. */
  readonly serverTime: Date;
  /** Handed to the receivers' open streams, or cached for an offline peer. */
  readonly delivery: "delivered" | "cached";
}

/** How to send a channel message. */
export interface ChannelSendOptions {
  /**
   * The client message ID (not empty) that makes retries safe: a send
   * repeating the ID of an earlier send of this user is answered as the first was and
   * delivers nothing again. Default: 32 random hex characters, reused on the library's
   * own retries of this send.
   */
  clientMessageId?: string;
}

/** How to send a peer message. */
export interface SendOptions extends ChannelSendOptions {
  /** Keep the message for an offline peer (up to 7 days) and deliver it when they next subscribe. */
  offline?: boolean;
}

/** Whether one user is online. */
export interface OnlineStatus {
  /** The user. */
  readonly userId: string;
  /** True while they have a subscription open. */
  readonly online: boolean;
}

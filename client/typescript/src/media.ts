/**
 * The record of a stored image or file, and the conversions from the generated types.
 *
 * @module
 */

import type { Timestamp } from "@bufbuild/protobuf/wkt";

import { toHex } from "./bytes.js";
import { type Media as PbMedia, MediaKind as PbMediaKind } from "./gen/courier/v1/media_service_pb.js";

/** Whether an object was uploaded as an image (the server reads its width and height) or a file. */
export type MediaKind = "image" | "file";

/** The record of a stored object, as the server keeps it. */
export interface Media {
  /** The media ID that messages carry and downloads use: 32 lowercase hex characters. */
  readonly mediaId: string;
  /** Image or file. */
  readonly kind: MediaKind;
  /** The display file name given by the uploader. */
  readonly fileName: string;
  /** The size in bytes. */
  readonly size: number;
  /** The SHA-256 of the bytes, lowercase hex. */
  readonly sha256: string;
  /** The MIME type. */
  readonly contentType: string;
  /** Width in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0. */
  readonly width: number;
  /** Height in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0. */
  readonly height: number;
  /** When the upload completed. */
  readonly created: Date;
  /** When the object expires (not found from then on). */
  readonly expires: Date;
}

/** A download held in memory. */
export interface Downloaded {
  /** The record of the object. */
  readonly media: Media;
  /** Its bytes, verified against the record's size and SHA-256. */
  readonly bytes: Uint8Array;
}

/** A protobuf timestamp as a `Date` (the epoch when absent). */
export function toDate(timestamp: Timestamp | undefined): Date {
  if (timestamp === undefined) return new Date(0);
  return new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6));
}

/** The generated kind of a {@link MediaKind}. */
export function kindToProto(kind: MediaKind): PbMediaKind {
  return kind === "image" ? PbMediaKind.IMAGE : PbMediaKind.FILE;
}

/** Checks a media ID before it goes into a request or a file name: 32 lowercase hex. */
export function isMediaId(mediaId: string): boolean {
  return /^[0-9a-f]{32}$/.test(mediaId);
}

/** The library's record from the generated one. */
export function mediaFromProto(media: PbMedia): Media {
  return {
    mediaId: media.mediaId,
    kind: media.kind === PbMediaKind.IMAGE ? "image" : "file",
    fileName: media.fileName,
    size: Number(media.size),
    sha256: toHex(media.sha256),
    contentType: media.contentType,
    width: media.width,
    height: media.height,
    created: toDate(media.createTime),
    expires: toDate(media.expireTime),
  };
}

/**
 * A thumbnail made by the server: at most 96, 320 or 640 pixels on its longer side,
 * upright (EXIF orientation applied).
 */
export interface Thumbnail {
  /** `image/jpeg`, or `image/png` for an image with transparency. */
  readonly contentType: string;
  /** The width in pixels. */
  readonly width: number;
  /** The height in pixels. */
  readonly height: number;
  /** The encoded image. */
  readonly data: Uint8Array;
}

/** What link {@link BaseClient.mediaUrl} asks for. */
export interface MediaUrlOptions {
  /**
   * 0 (the default) for the object itself; otherwise a link to its thumbnail of at
   * most this many pixels on the longer side, rounded up to 96, 320 or 640.
   */
  maxEdge?: number;
  /**
   * How long the link should work, in milliseconds (whole seconds on the wire); unset:
   * the server's default (5 minutes). The server caps it (1 hour by default) and never
   * lets it outlive the media or this client's token.
   */
  lifetimeMs?: number;
}

/** A signed HTTP link to stored media (or a thumbnail of it). */
export interface MediaUrl {
  /**
   * The absolute URL (`http://` on a plaintext server, `https://` with TLS). Whoever
   * holds it can fetch the bytes, with no token, until `expireTime`.
   */
  readonly url: string;
  /** When the server stops answering it (HTTP 410 after). */
  readonly expireTime: Date;
}

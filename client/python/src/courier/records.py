"""The library's own types: media records, messages, subscription events, progress.

They are plain frozen dataclasses; the generated protobuf types stay inside the
library.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Union

if TYPE_CHECKING:
    from courier.errors import CourierError

__all__ = [
    "MediaUrl",
    "MediaKind",
    "Media",
    "TextMessage",
    "RawMessage",
    "ImageMessage",
    "FileMessage",
    "Message",
    "Delivery",
    "SendReceipt",
    "ReceivedMessage",
    "Ready",
    "Disconnected",
    "Event",
    "Progress",
    "Downloaded",
]


class MediaKind(enum.Enum):
    """Whether an object was uploaded as an image or as a file."""

    #: An image: the server reads its width and height (JPEG, PNG, BMP, GIF, WebP).
    IMAGE = "image"
    #: Any other file.
    FILE = "file"


@dataclass(frozen=True)
class TextMessage:
    """A text message."""

    #: The text (counts towards the 32 KiB message limit).
    text: str


@dataclass(frozen=True)
class RawMessage:
    """Bytes for the application's own formats, with a short description."""

    #: The payload (counts towards the 32 KiB message limit).
    payload: bytes
    #: What the payload is, for receivers (counts towards the limit too).
    description: str = ""


@dataclass(frozen=True)
class ImageMessage:
    """An image message: a media ID plus what receivers show before downloading.

    Fields left empty (0, ``""``) are filled by the server from the media record;
    a width or height set here is delivered as set.
    """

    #: The media ID of the uploaded image.
    media_id: str
    #: The display file name.
    file_name: str = ""
    #: The size in bytes.
    size: int = 0
    #: The width in pixels.
    width: int = 0
    #: The height in pixels.
    height: int = 0
    #: A small preview chosen by the sender, delivered as given.
    thumbnail: bytes = b""
    #: The preview's width in pixels.
    thumbnail_width: int = 0
    #: The preview's height in pixels.
    thumbnail_height: int = 0


@dataclass(frozen=True)
class FileMessage:
    """A file message: a media ID plus what receivers show before downloading.

    Fields left empty are filled by the server from the media record.
    """

    #: The media ID of the uploaded file.
    media_id: str
    #: The display file name.
    file_name: str = ""
    #: The size in bytes.
    size: int = 0
    #: A small preview chosen by the sender, delivered as given.
    thumbnail: bytes = b""


#: The content of a message: text, raw bytes, an image or a file.
Message = Union[TextMessage, RawMessage, ImageMessage, FileMessage]


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail made by the server: at most 96, 320 or 640 pixels on its longer
    side, upright (EXIF orientation applied)."""

    #: ``image/jpeg``, or ``image/png`` for an image with transparency.
    content_type: str
    #: The width in pixels.
    width: int
    #: The height in pixels.
    height: int
    #: The encoded image.
    data: bytes


class MediaUrl(NamedTuple):
    """A signed HTTP link to stored media (or to one of its thumbnails), from
    ``media_url()``; it unpacks as ``url, expire_time = client.media_url(...)``.

    The link is a capability: whoever holds it can GET the bytes, with no token,
    until ``expire_time`` (single byte ranges, ETag and If-None-Match work). A
    deletion, a quarantine or the revocation of the user who minted it ends it
    sooner; a CDN's cached copy may outlive those."""

    #: The absolute ``http://`` (``https://`` on a TLS server) URL.
    url: str
    #: When the link stops working (HTTP 410 after), an aware UTC datetime.
    expire_time: datetime


@dataclass(frozen=True)
class Media:
    """The server's record of a stored image or file."""

    #: The media ID that messages carry and downloads use (32 lowercase hex digits).
    media_id: str
    #: Image or file.
    kind: MediaKind
    #: The display file name given by the uploader.
    file_name: str
    #: The size in bytes.
    size: int
    #: The SHA-256 of the bytes (32 bytes).
    sha256: bytes
    #: The MIME type.
    content_type: str
    #: The width in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0.
    width: int
    #: The height in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0.
    height: int
    #: When the upload completed (UTC).
    created: datetime
    #: When the object expires: not found from then on (UTC).
    expires: datetime

    @property
    def sha256_hex(self) -> str:
        """The SHA-256 as lowercase hex."""
        return self.sha256.hex()

    def image_message(self) -> ImageMessage:
        """An image message for this object, with its name, size and dimensions."""
        return ImageMessage(
            media_id=self.media_id,
            file_name=self.file_name,
            size=self.size,
            width=self.width,
            height=self.height,
        )

    def file_message(self) -> FileMessage:
        """A file message for this object, with its name and size."""
        return FileMessage(media_id=self.media_id, file_name=self.file_name, size=self.size)

    def message(self) -> ImageMessage | FileMessage:
        """An image message for an image, a file message for anything else."""
        if self.kind is MediaKind.IMAGE:
            return self.image_message()
        return self.file_message()


class Delivery(enum.Enum):
    """What became of a sent message."""

    #: Handed to the receivers' open subscriptions.
    DELIVERED = "delivered"
    #: The peer was offline; the message is kept for their next subscription.
    CACHED = "cached"


@dataclass(frozen=True)
class SendReceipt:
    """The server's receipt for a sent message."""

    #: The ID the server gave the message.
    message_id: str
    #: When the server accepted it (UTC).
    server_time: datetime
    #: Delivered or cached (a channel message is always delivered).
    delivery: Delivery


@dataclass(frozen=True)
class ReceivedMessage:
    """A message that arrived on a subscription."""

    #: The sender's user ID.
    sender: str
    #: The channel it was sent to, or None for a message sent to this user.
    channel: str | None
    #: The server's ID of the message.
    message_id: str
    #: When the server accepted it (UTC).
    server_time: datetime
    #: True when it was cached while this user was offline.
    offline: bool
    #: The content.
    message: Message
    #: The event's position in this user's event sequence (per user, increasing):
    #: subscribe with ``after=cursor`` to get what came after it.
    cursor: int = 0

    @property
    def media_id(self) -> str | None:
        """The media ID of an image or file message, else None."""
        if isinstance(self.message, (ImageMessage, FileMessage)):
            return self.message.media_id
        return None


@dataclass(frozen=True)
class Ready:
    """The subscription is live: from here on every message arrives as it is sent.

    It comes after the cached offline messages, once per connection; after a
    reconnection it comes again with ``reconnected`` set.
    """

    #: How many cached offline messages came before this event.
    offline_count: int
    #: True when the subscription had been disconnected and is live again.
    reconnected: bool = False
    #: The cursor of this user's latest event when the feed went live: where to
    #: resume when no message has come yet.
    cursor: int = 0
    #: True when the cursor the feed resumed after was older than the events the
    #: server still holds: some messages after it are lost (tell the user).
    events_lost: bool = False


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped; the subscription reconnects by itself after
    ``retry_in`` seconds. Messages sent meanwhile are kept only if their senders
    enabled offline messaging."""

    #: Why, for people.
    reason: str
    #: The seconds until the next attempt.
    retry_in: float
    #: The error that ended the connection, if one did.
    error: CourierError | None = field(default=None, compare=False)


#: What a subscription yields.
Event = Union[ReceivedMessage, Ready, Disconnected]


@dataclass(frozen=True)
class Progress:
    """How far a transfer has come."""

    #: Bytes moved so far.
    done: int
    #: Bytes in all (0 until a download knows its size).
    total: int


@dataclass(frozen=True)
class Downloaded:
    """A download held in memory."""

    #: The record of the object.
    media: Media
    #: Its bytes, checked against the record's size and SHA-256.
    data: bytes

"""Between the generated protobuf types and the library's records, both ways: the one
place that knows the wire shapes of requests and answers."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from google.protobuf import duration_pb2, timestamp_pb2

from courier.errors import InvalidArgumentError, PeerUnreachableError
from courier.records import (
    Delivery,
    Event,
    FileMessage,
    ImageMessage,
    Media,
    MediaKind,
    MediaUrl,
    Message,
    RawMessage,
    Ready,
    ReceivedMessage,
    SendReceipt,
    TextMessage,
    Thumbnail,
)
from courier.v1 import media_service_pb2 as media_pb
from courier.v1 import messaging_service_pb2 as messaging_pb

_EPOCH = datetime.fromtimestamp(0, tz=timezone.utc)


def timestamp(value: timestamp_pb2.Timestamp) -> datetime:
    """A protobuf timestamp as an aware UTC datetime (the epoch when unset)."""
    if value.seconds == 0 and value.nanos == 0:
        return _EPOCH
    return datetime.fromtimestamp(value.seconds + value.nanos / 1e9, tz=timezone.utc)


def media_kind(kind: MediaKind) -> media_pb.MediaKind.ValueType:
    """The proto's value for ``kind``."""
    return media_pb.MEDIA_KIND_IMAGE if kind is MediaKind.IMAGE else media_pb.MEDIA_KIND_FILE


def media(record: media_pb.Media) -> Media:
    """The library's record for a proto ``Media``."""
    return Media(
        media_id=record.media_id,
        kind=MediaKind.IMAGE if record.kind == media_pb.MEDIA_KIND_IMAGE else MediaKind.FILE,
        file_name=record.file_name,
        size=record.size,
        sha256=bytes(record.sha256),
        content_type=record.content_type,
        width=record.width,
        height=record.height,
        created=timestamp(record.create_time),
        expires=timestamp(record.expire_time),
    )


def thumbnail_request(media_id: str, max_edge: int) -> media_pb.GetThumbnailRequest:
    """The GetThumbnail request; ``max_edge`` clamped to the field's range, so that the
    server (not an overflow here) refuses one of 0 or less."""
    return media_pb.GetThumbnailRequest(
        media_id=media_id, max_edge=max(-(2**31), min(max_edge, 2**31 - 1))
    )


def thumbnail(response: media_pb.GetThumbnailResponse) -> Thumbnail:
    """The library's thumbnail for a GetThumbnail answer."""
    return Thumbnail(
        content_type=response.content_type,
        width=response.width,
        height=response.height,
        data=response.data,
    )


def media_url_request(
    media_id: str, max_edge: int, lifetime: float | timedelta | None
) -> media_pb.GetMediaUrlRequest:
    """The GetMediaUrl request: a thumbnail's ``max_edge`` (0: the object itself) and
    the link's ``lifetime`` in seconds (None or 0: the server's default).

    Raises:
        InvalidArgumentError: a negative ``max_edge`` or ``lifetime``.
    """
    if max_edge < 0:
        raise InvalidArgumentError(f"max_edge must be 0 (the object) or more, not {max_edge}")
    seconds = lifetime.total_seconds() if isinstance(lifetime, timedelta) else lifetime
    if seconds is not None and seconds < 0:
        raise InvalidArgumentError(f"lifetime must not be negative, not {seconds} s")
    request = media_pb.GetMediaUrlRequest(media_id=media_id, max_edge=min(max_edge, 2**31 - 1))
    if seconds:
        request.lifetime.CopyFrom(
            duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))
        )
    return request


def media_url(response: media_pb.GetMediaUrlResponse) -> MediaUrl:
    """The library's link for a GetMediaUrl answer."""
    return MediaUrl(response.url, timestamp(response.expire_time))


def message_to_proto(message: Message | str) -> messaging_pb.Message:
    """The proto ``Message`` for a message to send (a ``str`` is a text message).

    Raises:
        InvalidArgumentError: an empty text message or a raw message without payload,
            which the server refuses, so that no call is made for them.
    """
    if isinstance(message, str):
        message = TextMessage(message)
    if isinstance(message, TextMessage):
        if not message.text:
            raise InvalidArgumentError("a text message needs text: an empty one cannot be sent")
        return messaging_pb.Message(text=messaging_pb.TextMessage(text=message.text))
    if isinstance(message, RawMessage):
        if not message.payload:
            raise InvalidArgumentError(
                "a raw message needs a payload: an empty one cannot be sent"
            )
        return messaging_pb.Message(
            raw=messaging_pb.RawMessage(payload=message.payload, description=message.description)
        )
    if isinstance(message, ImageMessage):
        return messaging_pb.Message(
            image=messaging_pb.ImageMessage(
                media_id=message.media_id,
                file_name=message.file_name,
                size=message.size,
                width=message.width,
                height=message.height,
                thumbnail=message.thumbnail,
                thumbnail_width=message.thumbnail_width,
                thumbnail_height=message.thumbnail_height,
            )
        )
    if isinstance(message, FileMessage):
        return messaging_pb.Message(
            file=messaging_pb.FileMessage(
                media_id=message.media_id,
                file_name=message.file_name,
                size=message.size,
                thumbnail=message.thumbnail,
            )
        )
    raise TypeError(
        "a message is a str, TextMessage, RawMessage, ImageMessage or FileMessage, "
        f"not {type(message).__name__}"
    )


def message_from_proto(message: messaging_pb.Message) -> Message | None:
    """The library's message for a proto ``Message``; None for a body this client
    does not know (sent by a newer one)."""
    body = message.WhichOneof("body")
    if body == "text":
        return TextMessage(message.text.text)
    if body == "raw":
        return RawMessage(bytes(message.raw.payload), message.raw.description)
    if body == "image":
        i = message.image
        return ImageMessage(
            media_id=i.media_id,
            file_name=i.file_name,
            size=i.size,
            width=i.width,
            height=i.height,
            thumbnail=bytes(i.thumbnail),
            thumbnail_width=i.thumbnail_width,
            thumbnail_height=i.thumbnail_height,
        )
    if body == "file":
        f = message.file
        return FileMessage(
            media_id=f.media_id, file_name=f.file_name, size=f.size, thumbnail=bytes(f.thumbnail)
        )
    return None


def client_message_id(given: str | None) -> str:
    """The ID that makes a send safe to retry: the caller's, or a new one of 32
    lowercase hex characters (128 random bits)."""
    if given is not None:
        if not given:
            raise InvalidArgumentError("client_message_id is empty")
        return given
    return secrets.token_hex(16)


def peer_request(
    peer_id: str, message: Message | str, offline: bool, message_id: str | None = None
) -> messaging_pb.SendPeerMessageRequest:
    """The request that sends ``message`` to ``peer_id``, with ``message_id`` (or a
    generated one) as its client_message_id."""
    return messaging_pb.SendPeerMessageRequest(
        peer_id=peer_id,
        message=message_to_proto(message),
        options=messaging_pb.SendMessageOptions(enable_offline_messaging=offline),
        client_message_id=client_message_id(message_id),
    )


def channel_request(
    channel_id: str, message: Message | str, message_id: str | None = None
) -> messaging_pb.SendChannelMessageRequest:
    """The request that sends ``message`` to ``channel_id``, with ``message_id`` (or
    a generated one) as its client_message_id."""
    return messaging_pb.SendChannelMessageRequest(
        channel_id=channel_id,
        message=message_to_proto(message),
        client_message_id=client_message_id(message_id),
    )


def peer_receipt(peer_id: str, response: messaging_pb.SendPeerMessageResponse) -> SendReceipt:
    """The receipt of a peer message; :class:`PeerUnreachableError` when the peer was
    offline and nothing was kept."""
    if response.state == messaging_pb.PEER_MESSAGE_STATE_DELIVERED:
        delivery = Delivery.DELIVERED
    elif response.state == messaging_pb.PEER_MESSAGE_STATE_CACHED:
        delivery = Delivery.CACHED
    else:
        raise PeerUnreachableError(peer_id, response.message_id)
    return SendReceipt(response.message_id, timestamp(response.server_time), delivery)


def channel_receipt(response: messaging_pb.SendChannelMessageResponse) -> SendReceipt:
    """The receipt of a channel message."""
    return SendReceipt(response.message_id, timestamp(response.server_time), Delivery.DELIVERED)


def online_statuses(response: messaging_pb.QueryPeersOnlineStatusResponse) -> dict[str, bool]:
    """Whether each user is online, in the order of the answer (that of the question)."""
    return {s.user_id: s.online for s in response.statuses}


def event(response: messaging_pb.SubscribeResponse, reconnected: bool) -> Event | None:
    """The event for one Subscribe frame; None for one this client does not know.
    ``reconnected`` marks the ``Ready`` of a connection that replaced a broken one."""
    kind = response.WhichOneof("event")
    if kind == "peer_message":
        p = response.peer_message
        body = message_from_proto(p.message)
        if body is None:
            return None
        return ReceivedMessage(
            sender=p.sender_id,
            channel=None,
            message_id=p.message_id,
            server_time=timestamp(p.server_time),
            offline=p.offline,
            message=body,
            cursor=response.cursor,
        )
    if kind == "channel_message":
        c = response.channel_message
        body = message_from_proto(c.message)
        if body is None:
            return None
        return ReceivedMessage(
            sender=c.sender_id,
            channel=c.channel_id,
            message_id=c.message_id,
            server_time=timestamp(c.server_time),
            offline=False,
            message=body,
            cursor=response.cursor,
        )
    if kind == "ready":
        r = response.ready
        return Ready(
            r.offline_message_count,
            reconnected=reconnected,
            cursor=r.cursor,
            events_lost=r.events_lost,
        )
    return None

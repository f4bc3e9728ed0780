"""The unary calls, written once for both clients: what each sends, in what order,
and what it makes of the answers.

A call is a *flow*: a generator that yields the :data:`Step` s it needs (a unary
RPC, or local work that may block) and is sent each step's answer back, or has the
step's error thrown in, and returns the call's result. :class:`courier.Client` runs
the steps where it is (:func:`run`); :class:`courier.aio.AsyncClient` awaits the RPCs
and runs blocking work in a worker thread (:func:`run_async`). The multi-step
protocol of a resumable upload is a flow too (:func:`courier._resumable.upload`), so
each client holds only how it waits, never what it asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, Literal, TypeVar, Union, cast

from google.protobuf.message import Message as ProtoMessage

from courier import _convert
from courier.records import Media, MediaUrl, Message, SendReceipt, Thumbnail
from courier.v1 import media_service_pb2 as media_pb
from courier.v1 import messaging_service_pb2 as messaging_pb

T = TypeVar("T")
Resp = TypeVar("Resp", bound=ProtoMessage)

#: The service of an RPC: the client's stub of that service runs it.
Service = Literal["media", "messaging"]


@dataclass(frozen=True)
class Rpc:
    """One unary call, made with the token and the deadline, and retried while the
    server is unavailable when ``idempotent``."""

    #: Which stub runs it.
    service: Service
    #: The method's name in the service, as the stub has it (``"GetMedia"``).
    method: str
    #: The request message.
    request: ProtoMessage
    #: True when the call is safe to repeat.
    idempotent: bool


@dataclass(frozen=True)
class Blocking:
    """Local work that may block (reading or hashing a file): run in place by the
    synchronous client, in a worker thread by the asyncio client, so that it never
    holds up the event loop."""

    #: The work; its return value is the step's answer.
    work: Callable[[], object]


#: What a flow asks its client to do.
Step = Union[Rpc, Blocking]

#: A call written once: yields steps, is sent their answers, returns ``T``.
Flow = Generator[Step, object, T]


@dataclass(frozen=True)
class _Done(Generic[T]):
    """A flow's result, once it has returned."""

    value: T


def rpc(
    service: Service, method: str, request: ProtoMessage, answer: type[Resp], *, idempotent: bool
) -> Flow[Resp]:
    """One unary call as a sub-flow (``response = yield from rpc(...)``): the step,
    and its answer checked to be an ``answer``."""
    response = yield Rpc(service, method, request, idempotent)
    if not isinstance(response, answer):
        raise TypeError(f"{method} answered {type(response).__name__}, not {answer.__name__}")
    return response


def blocking(work: Callable[[], T]) -> Flow[T]:
    """Local work that may block, as a sub-flow: ``yield from blocking(plan.hash)``."""
    result = yield Blocking(work)
    return cast(T, result)


def _advance(flow: Flow[T], answer: object, error: BaseException | None) -> Step | _Done[T]:
    """Hands ``flow`` the last step's answer (or throws in its error) and returns the
    next step, or the flow's result."""
    try:
        return flow.send(answer) if error is None else flow.throw(error)
    except StopIteration as done:
        return _Done(cast(T, done.value))


def run(flow: Flow[T], take: Callable[[Step], object]) -> T:
    """Runs ``flow`` to its end with ``take`` doing each step; a step's error goes
    into the flow, which handles it or lets it through."""
    answer: object = None
    error: BaseException | None = None
    while True:
        # Outside the handler below, so that a flow's own errors get no implicit context.
        step = _advance(flow, answer, error)
        if isinstance(step, _Done):
            return step.value
        try:
            answer, error = take(step), None
        except BaseException as e:  # an interrupt too: the flow's finally and except run
            answer, error = None, e


async def run_async(flow: Flow[T], take: Callable[[Step], Awaitable[object]]) -> T:
    """:func:`run` with ``take`` a coroutine function: the asyncio client's."""
    answer: object = None
    error: BaseException | None = None
    while True:
        step = _advance(flow, answer, error)
        if isinstance(step, _Done):
            return step.value
        try:
            answer, error = await take(step), None
        except BaseException as e:  # cancellation too: a resumable upload abandons itself
            answer, error = None, e


# -- media records ---------------------------------------------------------------


def get_media(media_id: str) -> Flow[Media]:
    """The record of ``media_id``."""
    request = media_pb.GetMediaRequest(media_id=media_id)
    response = yield from rpc(
        "media", "GetMedia", request, media_pb.GetMediaResponse, idempotent=True
    )
    return _convert.media(response.media)


def thumbnail(media_id: str, max_edge: int) -> Flow[Thumbnail]:
    """The server's thumbnail of image ``media_id``."""
    request = _convert.thumbnail_request(media_id, max_edge)
    response = yield from rpc(
        "media", "GetThumbnail", request, media_pb.GetThumbnailResponse, idempotent=True
    )
    return _convert.thumbnail(response)


def media_url(media_id: str, max_edge: int, lifetime: float | timedelta | None) -> Flow[MediaUrl]:
    """A signed link to ``media_id`` (or its thumbnail) and when it expires."""
    request = _convert.media_url_request(media_id, max_edge, lifetime)
    response = yield from rpc(
        "media", "GetMediaUrl", request, media_pb.GetMediaUrlResponse, idempotent=True
    )
    return _convert.media_url(response)


def delete_media(media_id: str) -> Flow[None]:
    """Deletes one of the caller's media (again is fine, so it is retried)."""
    request = media_pb.DeleteMediaRequest(media_id=media_id)
    yield from rpc("media", "DeleteMedia", request, media_pb.DeleteMediaResponse, idempotent=True)


# -- messaging -------------------------------------------------------------------


def send_peer_message(
    peer_id: str, message: Message | str, offline: bool, client_message_id: str | None
) -> Flow[SendReceipt]:
    """Sends ``message`` to ``peer_id``; retried with one client message ID, which the
    server delivers once."""
    request = _convert.peer_request(peer_id, message, offline, client_message_id)
    response = yield from rpc(
        "messaging",
        "SendPeerMessage",
        request,
        messaging_pb.SendPeerMessageResponse,
        idempotent=True,
    )
    return _convert.peer_receipt(peer_id, response)


def send_channel_message(
    channel_id: str, message: Message | str, client_message_id: str | None
) -> Flow[SendReceipt]:
    """Sends ``message`` to the other members of ``channel_id``; retried as a peer
    message is."""
    request = _convert.channel_request(channel_id, message, client_message_id)
    response = yield from rpc(
        "messaging",
        "SendChannelMessage",
        request,
        messaging_pb.SendChannelMessageResponse,
        idempotent=True,
    )
    return _convert.channel_receipt(response)


def join_channel(channel_id: str) -> Flow[None]:
    """Joins ``channel_id``."""
    request = messaging_pb.JoinChannelRequest(channel_id=channel_id)
    yield from rpc(
        "messaging", "JoinChannel", request, messaging_pb.JoinChannelResponse, idempotent=True
    )


def leave_channel(channel_id: str) -> Flow[None]:
    """Leaves ``channel_id``."""
    request = messaging_pb.LeaveChannelRequest(channel_id=channel_id)
    yield from rpc(
        "messaging", "LeaveChannel", request, messaging_pb.LeaveChannelResponse, idempotent=True
    )


def channel_members(channel_id: str) -> Flow[list[str]]:
    """The members of ``channel_id``, sorted."""
    request = messaging_pb.GetChannelMembersRequest(channel_id=channel_id)
    response = yield from rpc(
        "messaging",
        "GetChannelMembers",
        request,
        messaging_pb.GetChannelMembersResponse,
        idempotent=True,
    )
    return list(response.user_ids)


def query_online_status(user_ids: list[str]) -> Flow[dict[str, bool]]:
    """Whether each user is online, in the order asked."""
    request = messaging_pb.QueryPeersOnlineStatusRequest(user_ids=user_ids)
    response = yield from rpc(
        "messaging",
        "QueryPeersOnlineStatus",
        request,
        messaging_pb.QueryPeersOnlineStatusResponse,
        idempotent=True,
    )
    return _convert.online_statuses(response)

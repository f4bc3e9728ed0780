"""The asyncio client (``grpc.aio``): the same calls as :class:`courier.Client`, as
coroutines; transfers are tasks; the subscription is an async iterator.

Everything but running the calls lives in modules shared with
:mod:`courier.client` (see there): the state and the waiting-free calls in
:mod:`courier._base`, what each call sends and makes of the answer in
:mod:`courier._calls` and :mod:`courier._resumable`, the channel in
:mod:`courier._connection`.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import grpc
import grpc.aio

from courier import _calls, _resumable, _transfers
from courier._base import ClientBase
from courier._calls import Blocking, Flow, Step
from courier._connection import ClientOptions, Servers, TokenSource, backoff_delays, open_channel
from courier._download import Download, FileDownload, MemoryDownload
from courier._resumable import ResumedUpload
from courier._transfers import AsyncTransfer, ProgressCallback, TransferState
from courier._upload import Source, UploadPlan, reuse_refused
from courier.errors import TransferCancelledError, UnavailableError, from_rpc_error
from courier.records import (
    Downloaded,
    FileMessage,
    ImageMessage,
    Media,
    MediaKind,
    MediaUrl,
    Message,
    SendReceipt,
    Thumbnail,
)
from courier.subscription import AsyncSubscription
from courier.v1 import media_service_pb2 as media_pb
from courier.v1 import media_service_pb2_grpc as media_grpc
from courier.v1 import messaging_service_pb2_grpc as messaging_grpc

__all__ = ["AsyncClient"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")


class AsyncClient(ClientBase):
    """A connection to a courier server as one user, for asyncio.

    Make it inside a running event loop (``async with AsyncClient(url, token) as
    client:``) and use it from that loop. ``servers`` (one URL or several replicas'
    addresses), ``token`` and ``options``
    are those of :class:`courier.Client`; so are the deadlines, retries and limits.
    """

    def __init__(
        self,
        servers: Servers,
        token: TokenSource,
        *,
        options: ClientOptions | None = None,
    ) -> None:
        super().__init__(servers, token, options)
        self._channel = open_channel(
            self._target, self._options, grpc.aio.secure_channel, grpc.aio.insecure_channel
        )
        self._media = media_grpc.MediaServiceStub(self._channel)
        self._messaging = messaging_grpc.MessagingServiceStub(self._channel)
        # Transfer tasks, kept here so that none is collected while it runs.
        self._tasks: set[asyncio.Task[None]] = set()
        # Open subscriptions, closed with the client.
        self._subscriptions: weakref.WeakSet[AsyncSubscription] = weakref.WeakSet()

    # -- lifecycle --------------------------------------------------------------

    async def close(self) -> None:
        """Closes every subscription, cancels every transfer and closes the
        connection."""
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        self._transfers.cancel_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        idempotent: bool,
    ) -> Resp:
        """One unary call with the token and the deadline; retried while the server
        is unavailable when ``idempotent``."""
        delays = backoff_delays(self._options) if idempotent else iter(())
        while True:
            try:
                return await method(
                    request, timeout=self._options.deadline, metadata=self._auth.metadata()
                )
            except grpc.aio.AioRpcError as e:
                error = from_rpc_error(e)
                pause = next(delays, None) if isinstance(error, UnavailableError) else None
                if pause is None:
                    raise error from None
            await asyncio.sleep(pause)

    async def _run(self, flow: Flow[T]) -> T:
        """Runs a call of :mod:`courier._calls`: each RPC through :meth:`_unary`,
        blocking work in a worker thread, so that a file never holds up the loop."""
        return await _calls.run_async(flow, self._take)

    async def _take(self, step: Step) -> object:
        if isinstance(step, Blocking):
            return await asyncio.to_thread(step.work)
        stub = self._media if step.service == "media" else self._messaging
        return await self._unary(
            getattr(stub, step.method), step.request, idempotent=step.idempotent
        )

    # -- media ------------------------------------------------------------------

    async def get_media(self, media_id: str) -> Media:
        """The record of ``media_id``, without its bytes (NotFoundError: unknown or
        expired)."""
        return await self._run(_calls.get_media(media_id))

    async def thumbnail(self, media_id: str, max_edge: int) -> Thumbnail:
        """The server's thumbnail of image ``media_id``, at most ``max_edge`` pixels on
        its longer side after rounding up to 96, 320 or 640 (above 640: 640).

        Raises:
            InvalidArgumentError: ``max_edge`` is 0 or less.
            NotFoundError: unknown or expired.
            NotAnImageError: not a JPEG, PNG, GIF, WebP or BMP image.
            ImageRefusedError: over the server's limits, truncated or corrupt.
        """
        return await self._run(_calls.thumbnail(media_id, max_edge))

    async def media_url(
        self, media_id: str, max_edge: int = 0, lifetime: float | timedelta | None = None
    ) -> MediaUrl:
        """A signed HTTP link to ``media_id`` (with ``max_edge`` above 0, to its
        thumbnail of at most that many pixels, rounded up as :meth:`thumbnail` does)
        and when it expires: ``url, expire_time = client.media_url(media_id)``.

        Any HTTP client (an ``<img>`` tag, a video player, a CDN) can GET it without
        a token until then: whoever holds the URL can. ``lifetime`` (seconds or a
        timedelta) asks for a life other than the server's default (5 minutes); the
        server caps it (1 hour) and never lets it outlive the media or the token.

        Raises:
            NotFoundError: unknown or expired (MediaDeletedError: deleted).
            NotAnImageError: a thumbnail link of media that is not an image.
            MediaQuarantinedError: the content is quarantined.
        """
        return await self._run(_calls.media_url(media_id, max_edge, lifetime))

    async def delete_media(self, media_id: str) -> None:
        """Deletes one of this user's media: from now on its ID is refused with
        :class:`MediaDeletedError` for downloads, its record, its thumbnails and its
        links, and new messages naming it with :class:`MediaUnavailableError`;
        messages already sent with it still arrive. Deleting it again is fine.

        Raises:
            NotFoundError: unknown, expired, or another user's.
        """
        await self._run(_calls.delete_media(media_id))

    async def image_message_from_media_id(self, media_id: str) -> ImageMessage:
        """An image message for an already uploaded ``media_id``."""
        return (await self.get_media(media_id)).image_message()

    async def file_message_from_media_id(self, media_id: str) -> FileMessage:
        """A file message for an already uploaded ``media_id``."""
        return (await self.get_media(media_id)).file_message()

    async def message_from_media_id(self, media_id: str) -> ImageMessage | FileMessage:
        """An image or a file message for ``media_id``, after its record's kind."""
        return (await self.get_media(media_id)).message()

    def start_upload(
        self,
        source: Source,
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        size: int | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
    ) -> AsyncTransfer[Media]:
        """Starts uploading and returns at once with the :class:`AsyncTransfer`
        (request ID, progress, cancel); await it for the :class:`Media` record.
        Arguments and errors are those of :meth:`courier.Client.start_upload`;
        ``progress`` is called in the event loop, and files are read in a worker
        thread."""
        plan = self._upload_plan(source, kind, file_name, size, content_type)
        return self._start(progress, lambda state: lambda: self._run_upload(state, plan))

    async def upload(
        self,
        source: Source,
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        size: int | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Uploads and returns the :class:`Media` record; see :meth:`start_upload`."""
        return await self.start_upload(
            source,
            kind=kind,
            file_name=file_name,
            size=size,
            content_type=content_type,
            progress=progress,
        )

    async def upload_image(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Uploads an image; then ``media.image_message()`` is the message to send."""
        return await self.upload(
            source, kind=MediaKind.IMAGE, file_name=file_name, progress=progress
        )

    async def upload_file(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Uploads a file; then ``media.file_message()`` is the message to send."""
        return await self.upload(source, kind=MediaKind.FILE, file_name=file_name, progress=progress)

    def start_upload_resumable(
        self,
        path: str | os.PathLike[str],
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
        max_parts: int | None = None,
    ) -> AsyncTransfer[ResumedUpload]:
        """Starts a resumable upload of the file at ``path`` as a task; see
        :meth:`courier.Client.start_upload_resumable`."""
        plan = self._resumable_plan(path, kind, file_name, content_type, max_parts)
        return self._start(
            progress, lambda state: lambda: self._run(_resumable.upload(state, plan, max_parts))
        )

    async def upload_resumable(
        self,
        path: str | os.PathLike[str],
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
        max_parts: int | None = None,
    ) -> ResumedUpload:
        """Uploads the file at ``path`` resumably; see
        :meth:`courier.Client.start_upload_resumable`."""
        transfer = self.start_upload_resumable(
            path,
            kind=kind,
            file_name=file_name,
            content_type=content_type,
            progress=progress,
            max_parts=max_parts,
        )
        return await transfer

    def start_download_to_file(
        self,
        media_id: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> AsyncTransfer[Media]:
        """Starts downloading ``media_id`` to ``path``; see
        :meth:`courier.Client.start_download_to_file`."""
        job: Callable[[TransferState[Media]], Callable[[], Awaitable[Media]]] = (
            lambda state: self._download_work(FileDownload(media_id, path, state, self._options))
        )
        return self._start(progress, job)

    async def download_to_file(
        self,
        media_id: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Downloads ``media_id`` to ``path`` and returns its record."""
        return await self.start_download_to_file(media_id, path, progress=progress)

    def start_download_to_memory(
        self, media_id: str, *, progress: ProgressCallback | None = None
    ) -> AsyncTransfer[Downloaded]:
        """Starts downloading ``media_id`` into memory."""
        job: Callable[[TransferState[Downloaded]], Callable[[], Awaitable[Downloaded]]] = (
            lambda state: self._download_work(MemoryDownload(media_id, state, self._options))
        )
        return self._start(progress, job)

    async def download_to_memory(
        self, media_id: str, *, progress: ProgressCallback | None = None
    ) -> Downloaded:
        """Downloads ``media_id`` into memory: its record and its checked bytes."""
        return await self.start_download_to_memory(media_id, progress=progress)

    def _start(
        self,
        progress: ProgressCallback | None,
        job: Callable[[TransferState[T]], Callable[[], Awaitable[T]]],
    ) -> AsyncTransfer[T]:
        """Makes a transfer of ``job``'s work and runs it as a task once it has a
        slot; cancel() cancels the task."""
        loop = asyncio.get_running_loop()
        state: TransferState[T] = self._transfers.new_state(progress)
        work = job(state)  # checks the input before a slot is taken

        def launch() -> None:
            task = loop.create_task(_transfers.run_async(self._transfers, state, work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            state.on_cancel(lambda: loop.call_soon_threadsafe(task.cancel))

        self._transfers.start(state, launch)
        return AsyncTransfer(state, self._transfers)

    async def _run_upload(self, state: TransferState[Media], plan: UploadPlan) -> Media:
        # Hashed in a worker thread: a file, or 30 MiB of bytes, never holds up the loop.
        if plan.reusable and await asyncio.to_thread(plan.hash, state) is not None:
            reused = await self._offer_upload(state, plan)
            if reused is not None:
                return reused
        if state.cancelled:
            raise TransferCancelledError()
        call = self._media.UploadMedia(plan.aframes(state), metadata=self._auth.metadata())
        plan.attach_abort(call.cancel)
        try:
            response = await call
        except grpc.aio.AioRpcError as e:
            failure = plan.failure(state, from_rpc_error(e))
            raise failure from failure.__cause__  # a local error keeps its cause
        except asyncio.CancelledError:
            call.cancel()
            if plan.error is not None:  # the call was stopped because reading failed
                raise plan.error from plan.error.__cause__
            raise
        return plan.finish(state, response)

    async def _offer_upload(self, state: TransferState[Media], plan: UploadPlan) -> Media | None:
        """Offers the content by header alone: its record when this user stored it
        before, None when the server wants the bytes."""

        async def header_only() -> AsyncIterator[media_pb.UploadMediaRequest]:
            yield plan.offer()

        call = self._media.UploadMedia(header_only(), metadata=self._auth.metadata())
        try:
            response = await call
        except grpc.aio.AioRpcError as e:
            error = from_rpc_error(e)
            if reuse_refused(error) and not state.cancelled:
                return None
            raise state.failure(error) from None
        except asyncio.CancelledError:
            call.cancel()
            raise
        return plan.reused(state, response)

    def _download_work(self, job: Download[T]) -> Callable[[], Awaitable[T]]:
        return lambda: self._run_download(job)

    async def _run_download(self, job: Download[T]) -> T:
        try:
            await asyncio.to_thread(job.prepare)
            while True:
                call = self._media.DownloadMedia(job.request(), metadata=self._auth.metadata())
                try:
                    async for frame in call:
                        job.on_frame(frame)
                    return await asyncio.to_thread(job.finish)
                except grpc.aio.AioRpcError as e:
                    pause = job.after_error(from_rpc_error(e))
                finally:
                    call.cancel()  # a no-op once the call has ended
                await asyncio.sleep(pause)
        except asyncio.CancelledError:
            job.abort(TransferCancelledError())
            raise
        except BaseException as e:
            job.abort(job.state.failure(e))
            raise

    # -- messaging --------------------------------------------------------------

    async def send_peer_message(
        self,
        peer_id: str,
        message: Message | str,
        *,
        offline: bool = False,
        client_message_id: str | None = None,
    ) -> SendReceipt:
        """Sends ``message`` to the user ``peer_id``; see
        :meth:`courier.Client.send_peer_message` (PeerUnreachableError when the peer
        is offline and ``offline`` is False; retried with the same
        ``client_message_id``, given or generated, while the server is unavailable).
        An empty text message or a raw message without payload is refused at once,
        before any call, with InvalidArgumentError."""
        return await self._run(
            _calls.send_peer_message(peer_id, message, offline, client_message_id)
        )

    async def send_channel_message(
        self, channel_id: str, message: Message | str, *, client_message_id: str | None = None
    ) -> SendReceipt:
        """Sends ``message`` to every other member of ``channel_id``; retried as
        :meth:`send_peer_message` is. An empty text message or a raw message without
        payload is refused at once, before any call, with InvalidArgumentError."""
        return await self._run(
            _calls.send_channel_message(channel_id, message, client_message_id)
        )

    async def join_channel(self, channel_id: str) -> None:
        """Joins ``channel_id`` (joining twice is fine)."""
        await self._run(_calls.join_channel(channel_id))

    async def leave_channel(self, channel_id: str) -> None:
        """Leaves ``channel_id``; delivery stops at once."""
        await self._run(_calls.leave_channel(channel_id))

    async def channel_members(self, channel_id: str) -> list[str]:
        """The user IDs of the members of ``channel_id``, sorted."""
        return await self._run(_calls.channel_members(channel_id))

    async def query_online_status(self, user_ids: list[str]) -> dict[str, bool]:
        """Whether each user is online, in the order asked."""
        return await self._run(_calls.query_online_status(user_ids))

    def subscribe(self, *, after: int = 0) -> AsyncSubscription:
        """Opens this user's live feed, at once, first with the events after cursor
        ``after`` that the server still holds (0: none); see
        :class:`AsyncSubscription`."""
        subscription = AsyncSubscription(self._messaging, self._auth, self._options, after)
        self._subscriptions.add(subscription)
        return subscription

"""The synchronous client: blocking calls, transfers in background threads, and a
subscription that is a plain iterator.

Everything but running the calls lives in modules shared with :mod:`courier.aio`:
the state and the waiting-free calls in :mod:`courier._base`, what each call sends
and makes of the answer in :mod:`courier._calls` (the resumable upload's protocol in
:mod:`courier._resumable`), the channel in :mod:`courier._connection`, and
validation, records, errors, partial files, retries and reconnection beside them.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import grpc

from courier import _calls, _resumable, _transfers
from courier._base import ClientBase
from courier._calls import Blocking, Flow, Step
from courier._connection import ClientOptions, Servers, TokenSource, backoff_delays, open_channel
from courier._download import Download, FileDownload, MemoryDownload
from courier._resumable import ResumedUpload
from courier._transfers import ProgressCallback, Transfer, TransferState
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
from courier.subscription import Subscription
from courier.v1 import media_service_pb2_grpc as media_grpc
from courier.v1 import messaging_service_pb2_grpc as messaging_grpc

__all__ = ["Client"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")


class Client(ClientBase):
    """A connection to a courier server as one user.

    ``servers`` is ``http://host:port``, or ``https://host:port`` for TLS (with the
    system's roots, or ``options.root_certificates``); or several replicas'
    addresses, as a list (``["10.0.0.1:50051", "10.0.0.2:50051"]``) or a gRPC
    target (``"ipv4:10.0.0.1:50051,10.0.0.2:50051"``): calls are spread over them
    (``round_robin``), and a retried call or a reconnecting subscription moves to
    another replica when one dies. ``token`` is the user's token,
    or a function returning the current one, read before every call; ``set_token()``
    replaces it. Neither needs a new connection.

    The connection is made on the first call and remade by itself after a failure.
    Unary calls have a deadline (10 s); those safe to repeat (everything but sends)
    are retried with backoff while the server is unavailable. Use it as a context
    manager, or call :meth:`close`. A client may be shared between threads.
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
            self._target, self._options, grpc.secure_channel, grpc.insecure_channel
        )
        self._media = media_grpc.MediaServiceStub(self._channel)
        self._messaging = messaging_grpc.MessagingServiceStub(self._channel)
        # Open subscriptions, closed with the client.
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Closes every subscription, cancels every transfer and closes the connection."""
        for subscription in list(self._subscriptions):
            subscription.close()
        self._transfers.cancel_all()
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _unary(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        idempotent: bool,
    ) -> Resp:
        """One unary call with the token and the deadline; retried while the server
        is unavailable when ``idempotent``."""
        delays = backoff_delays(self._options) if idempotent else iter(())
        while True:
            try:
                return method(
                    request, timeout=self._options.deadline, metadata=self._auth.metadata()
                )
            except grpc.RpcError as e:
                error = from_rpc_error(e)
                pause = next(delays, None) if isinstance(error, UnavailableError) else None
                if pause is None:
                    raise error from None
            time.sleep(pause)

    def _run(self, flow: Flow[T]) -> T:
        """Runs a call of :mod:`courier._calls` here: each RPC through :meth:`_unary`,
        blocking work in place."""
        return _calls.run(flow, self._take)

    def _take(self, step: Step) -> object:
        if isinstance(step, Blocking):
            return step.work()
        stub = self._media if step.service == "media" else self._messaging
        return self._unary(getattr(stub, step.method), step.request, idempotent=step.idempotent)

    # -- media ------------------------------------------------------------------

    def get_media(self, media_id: str) -> Media:
        """The record of ``media_id``, without its bytes.

        Raises:
            NotFoundError: unknown or expired.
        """
        return self._run(_calls.get_media(media_id))

    def thumbnail(self, media_id: str, max_edge: int) -> Thumbnail:
        """The server's thumbnail of image ``media_id``, at most ``max_edge`` pixels on
        its longer side after rounding up to 96, 320 or 640 (above 640: 640).

        Raises:
            InvalidArgumentError: ``max_edge`` is 0 or less.
            NotFoundError: unknown or expired.
            NotAnImageError: not a JPEG, PNG, GIF, WebP or BMP image.
            ImageRefusedError: over the server's limits, truncated or corrupt.
        """
        return self._run(_calls.thumbnail(media_id, max_edge))

    def media_url(
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
        return self._run(_calls.media_url(media_id, max_edge, lifetime))

    def delete_media(self, media_id: str) -> None:
        """Deletes one of this user's media: from now on its ID is refused with
        :class:`MediaDeletedError` for downloads, its record, its thumbnails and its
        links, and new messages naming it with :class:`MediaUnavailableError`;
        messages already sent with it still arrive. Deleting it again is fine.

        Raises:
            NotFoundError: unknown, expired, or another user's.
        """
        self._run(_calls.delete_media(media_id))

    def image_message_from_media_id(self, media_id: str) -> ImageMessage:
        """An image message for an already uploaded ``media_id``, without uploading
        again (Agora's ``createImageMessageByMediaId``)."""
        return self.get_media(media_id).image_message()

    def file_message_from_media_id(self, media_id: str) -> FileMessage:
        """A file message for an already uploaded ``media_id``."""
        return self.get_media(media_id).file_message()

    def message_from_media_id(self, media_id: str) -> ImageMessage | FileMessage:
        """An image or a file message for ``media_id``, after its record's kind."""
        return self.get_media(media_id).message()

    def start_upload(
        self,
        source: Source,
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        size: int | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
    ) -> Transfer[Media]:
        """Starts uploading and returns at once with the :class:`Transfer` (request
        ID, progress, cancel); ``result()`` gives the :class:`Media` record.

        Args:
            source: a path, bytes, or a binary file object (read from where it is
                now; ``size`` bytes of it, by default up to its end).
            kind: IMAGE (the server reads width and height) or FILE.
            file_name: the display name; by default the path's (or file object's)
                base name; required for bytes.
            size: the bytes to send; by default all of them.
            content_type: the MIME type; by default the server detects images.
            progress: called with each :class:`Progress` (in a worker thread).

        Raises:
            InvalidArgumentError: a missing or empty source, or no file name.
            TooManyTransfersError: the client already runs ``max_transfers``.
        """
        plan = self._upload_plan(source, kind, file_name, size, content_type)
        return self._start(progress, lambda state: lambda: self._run_upload(state, plan))

    def upload(
        self,
        source: Source,
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        size: int | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Uploads and returns the :class:`Media` record; see :meth:`start_upload`.
        An interrupt (Ctrl-C) cancels the upload."""
        return _wait(
            self.start_upload(
                source,
                kind=kind,
                file_name=file_name,
                size=size,
                content_type=content_type,
                progress=progress,
            )
        )

    def upload_image(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Uploads an image (Agora's ``createImageMessageByUploading``); then
        ``media.image_message()`` is the message to send."""
        return self.upload(source, kind=MediaKind.IMAGE, file_name=file_name, progress=progress)

    def upload_file(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Uploads a file; then ``media.file_message()`` is the message to send."""
        return self.upload(source, kind=MediaKind.FILE, file_name=file_name, progress=progress)

    def start_upload_resumable(
        self,
        path: str | os.PathLike[str],
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
        max_parts: int | None = None,
    ) -> Transfer[ResumedUpload]:
        """Starts a resumable upload of the file at ``path`` and returns at once with
        the :class:`Transfer`; ``result()`` gives a :class:`ResumedUpload`.

        The file goes in parts of the server's part size, each checked by its
        CRC32C, so that a break costs at most one part: while the server is
        unavailable a part is retried with backoff, and when the retries run out
        (or the process stops) the state file ``<path>.courier-upload`` stays, and
        the next upload of the same file to the same server goes on from what the
        server holds. ``max_parts`` stops after writing that many parts in this
        call, without committing (``media`` is then None). Progress counts the
        bytes the server holds. Cancelling abandons the upload on the server and
        removes the state file.

        Raises:
            InvalidArgumentError: a missing or empty file.
            TooManyTransfersError: the client already runs ``max_transfers``.
        """
        plan = self._resumable_plan(path, kind, file_name, content_type, max_parts)
        return self._start(
            progress, lambda state: lambda: self._run(_resumable.upload(state, plan, max_parts))
        )

    def upload_resumable(
        self,
        path: str | os.PathLike[str],
        *,
        kind: MediaKind = MediaKind.FILE,
        file_name: str | None = None,
        content_type: str = "",
        progress: ProgressCallback | None = None,
        max_parts: int | None = None,
    ) -> ResumedUpload:
        """Uploads the file at ``path`` resumably and returns what was done; see
        :meth:`start_upload_resumable`. An interrupt (Ctrl-C) leaves the state file,
        so the next call resumes."""
        transfer = self.start_upload_resumable(
            path,
            kind=kind,
            file_name=file_name,
            content_type=content_type,
            progress=progress,
            max_parts=max_parts,
        )
        return transfer.result()

    def start_download_to_file(
        self,
        media_id: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> Transfer[Media]:
        """Starts downloading ``media_id`` to ``path`` and returns at once.

        The bytes go to :meth:`partial_path` first and are renamed into place once
        their size and SHA-256 match the record; an existing ``path`` is replaced.
        A broken connection resumes by offset (after the client's retries, the
        partial file stays and the next download resumes from it); a cancelled or
        corrupt download removes it.
        """
        state_job: Callable[[TransferState[Media]], Callable[[], Media]] = (
            lambda state: self._download_work(FileDownload(media_id, path, state, self._options))
        )
        return self._start(progress, state_job)

    def download_to_file(
        self,
        media_id: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> Media:
        """Downloads ``media_id`` to ``path`` and returns its record; see
        :meth:`start_download_to_file`.

        Raises:
            NotFoundError: unknown or expired.
            IntegrityError: the bytes do not match the record.
        """
        return _wait(self.start_download_to_file(media_id, path, progress=progress))

    def start_download_to_memory(
        self, media_id: str, *, progress: ProgressCallback | None = None
    ) -> Transfer[Downloaded]:
        """Starts downloading ``media_id`` into memory and returns at once."""
        state_job: Callable[[TransferState[Downloaded]], Callable[[], Downloaded]] = (
            lambda state: self._download_work(MemoryDownload(media_id, state, self._options))
        )
        return self._start(progress, state_job)

    def download_to_memory(
        self, media_id: str, *, progress: ProgressCallback | None = None
    ) -> Downloaded:
        """Downloads ``media_id`` into memory: its record and its checked bytes."""
        return _wait(self.start_download_to_memory(media_id, progress=progress))

    def _start(
        self,
        progress: ProgressCallback | None,
        job: Callable[[TransferState[T]], Callable[[], T]],
    ) -> Transfer[T]:
        """Makes a transfer of ``job``'s work and runs it in a thread of its own once
        it has a slot."""
        state: TransferState[T] = self._transfers.new_state(progress)
        work = job(state)  # checks the input before a slot is taken

        def launch() -> None:
            threading.Thread(
                target=_transfers.run,
                args=(self._transfers, state, work),
                name=f"courier-transfer-{state.request_id}",
                daemon=True,
            ).start()

        self._transfers.start(state, launch)
        return Transfer(state, self._transfers)

    def _run_upload(self, state: TransferState[Media], plan: UploadPlan) -> Media:
        if plan.hash(state) is not None:
            reused = self._offer_upload(state, plan)
            if reused is not None:
                return reused
        if state.cancelled:
            raise TransferCancelledError()
        call = self._media.UploadMedia.future(plan.frames(state), metadata=self._auth.metadata())
        plan.attach_abort(call.cancel)
        state.on_cancel(call.cancel)
        try:
            response = call.result()
        except grpc.RpcError as e:
            failure = plan.failure(state, from_rpc_error(e))
            raise failure from failure.__cause__  # a local error keeps its cause
        except grpc.FutureCancelledError:
            failure = plan.failure(state, TransferCancelledError())
            raise failure from failure.__cause__
        return plan.finish(state, response)

    def _offer_upload(self, state: TransferState[Media], plan: UploadPlan) -> Media | None:
        """Offers the content by header alone: its record when this user stored it
        before, None when the server wants the bytes."""
        if state.cancelled:
            raise TransferCancelledError()
        call = self._media.UploadMedia.future(iter([plan.offer()]), metadata=self._auth.metadata())
        state.on_cancel(call.cancel)
        try:
            response = call.result()
        except grpc.RpcError as e:
            error = from_rpc_error(e)
            if reuse_refused(error) and not state.cancelled:
                return None
            raise state.failure(error) from None
        except grpc.FutureCancelledError:
            raise TransferCancelledError() from None
        return plan.reused(state, response)

    def _download_work(self, job: Download[T]) -> Callable[[], T]:
        return lambda: self._run_download(job)

    def _run_download(self, job: Download[T]) -> T:
        try:
            job.prepare()
            while True:
                call = self._media.DownloadMedia(job.request(), metadata=self._auth.metadata())
                job.state.on_cancel(call.cancel)
                try:
                    for frame in call:
                        job.on_frame(frame)
                    return job.finish()
                except grpc.RpcError as e:
                    pause = job.after_error(from_rpc_error(e))
                finally:
                    call.cancel()  # a no-op once the call has ended
                if job.state.wait_cancelled(pause):
                    raise TransferCancelledError()
        except BaseException as e:
            job.abort(job.state.failure(e))
            raise

    # -- messaging --------------------------------------------------------------

    def send_peer_message(
        self,
        peer_id: str,
        message: Message | str,
        *,
        offline: bool = False,
        client_message_id: str | None = None,
    ) -> SendReceipt:
        """Sends ``message`` (a str is a text message) to the user ``peer_id``.

        With ``offline`` a peer who is offline gets it on their next subscription
        (the receipt says CACHED). The send carries ``client_message_id`` (by default
        a new random one), and is retried with it while the server is unavailable:
        the server answers a repeated ID as it did the first time and delivers
        nothing again. Pass your own ID to make your own retries as safe.

        Raises:
            InvalidArgumentError: an empty text message or a raw message without
                payload is refused at once, before any call.
            PeerUnreachableError: the peer is offline and ``offline`` is False.
            MessageTooLargeError, MediaUnavailableError, RateLimitedError: as named.
        """
        return self._run(_calls.send_peer_message(peer_id, message, offline, client_message_id))

    def send_channel_message(
        self, channel_id: str, message: Message | str, *, client_message_id: str | None = None
    ) -> SendReceipt:
        """Sends ``message`` to every other member of ``channel_id``, with
        ``client_message_id`` (given or generated) and retried as
        :meth:`send_peer_message` is.

        Raises:
            InvalidArgumentError: an empty text message or a raw message without
                payload is refused at once, before any call.
            NotAMemberError: the caller has not joined the channel.
        """
        return self._run(_calls.send_channel_message(channel_id, message, client_message_id))

    def join_channel(self, channel_id: str) -> None:
        """Joins ``channel_id`` (joining twice is fine).

        Raises:
            TooManyChannelsError: already in the most channels allowed.
        """
        self._run(_calls.join_channel(channel_id))

    def leave_channel(self, channel_id: str) -> None:
        """Leaves ``channel_id``; delivery stops at once."""
        self._run(_calls.leave_channel(channel_id))

    def channel_members(self, channel_id: str) -> list[str]:
        """The user IDs of the members of ``channel_id``, sorted."""
        return self._run(_calls.channel_members(channel_id))

    def query_online_status(self, user_ids: list[str]) -> dict[str, bool]:
        """Whether each user is online (has a subscription open), in the order asked."""
        return self._run(_calls.query_online_status(user_ids))

    def subscribe(self, *, after: int = 0) -> Subscription:
        """Opens this user's live feed, at once; the user is online while it is open.
        It first brings the events after cursor ``after`` (a message's ``cursor``)
        that the server still holds; 0 asks for none. See :class:`Subscription`."""
        subscription = Subscription(self._messaging, self._auth, self._options, after)
        self._subscriptions.add(subscription)
        return subscription


def _wait(transfer: Transfer[T]) -> T:
    """The result of ``transfer``; an interrupt while waiting cancels it."""
    try:
        return transfer.result()
    except BaseException:
        transfer.cancel()  # a no-op when it has ended
        raise

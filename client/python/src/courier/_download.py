"""Downloads into memory or into a file, shared by both clients: they only run the
calls. A file download writes to a hidden partial file beside the target, checks size
and SHA-256 against the record, then renames it into place, so the target is never a
half file; a broken connection resumes from the partial file by offset, in the same
call (after a pause) or in a later one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from courier import _convert
from courier._connection import ClientOptions, backoff_delays
from courier._transfers import TransferState
from courier.errors import (
    CourierError,
    DeadlineExceededError,
    IntegrityError,
    InvalidArgumentError,
    OutOfRangeError,
    TransferCancelledError,
    UnavailableError,
    local_file_error,
)
from courier.records import Downloaded, Media
from courier.v1 import media_service_pb2 as media_pb

R = TypeVar("R")

_HEX = frozenset("0123456789abcdef")


def check_media_id(media_id: str) -> None:
    """Raises InvalidArgumentError unless ``media_id`` looks like one (32 lowercase
    hex digits): it is checked before it goes into a request or a file name."""
    if len(media_id) != 32 or not set(media_id) <= _HEX:
        raise InvalidArgumentError(
            f"{media_id!r} is not a media ID (32 lowercase hexadecimal characters)"
        )


def partial_path(path: str | os.PathLike[str], media_id: str) -> Path:
    """Where a download of ``media_id`` to ``path`` keeps its unfinished bytes: a
    hidden file in the same folder (``.<name>.<media_id>.part``), so that the final
    rename is atomic and an interrupted download can resume from it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{media_id}.part")


def verify(media: Media, size: int, sha256: bytes) -> None:
    """Raises IntegrityError unless ``size`` and ``sha256`` are the record's."""
    if size != media.size:
        raise IntegrityError(f"received {size} bytes of {media.size}")
    if sha256 != media.sha256:
        raise IntegrityError(
            f"the bytes hash to {sha256.hex()} but the record says {media.sha256_hex}"
        )


class Download(Generic[R]):
    """One download: turns frames into bytes and decides, after a failed call,
    whether to resume. The clients run the calls::

        job.prepare()
        while True:
            try: for frame in call(job.request()): job.on_frame(frame); return job.finish()
            except error: pause = job.after_error(error)  # raises when it cannot resume
    """

    def __init__(self, media_id: str, state: TransferState[R], options: ClientOptions) -> None:
        check_media_id(media_id)
        self.media_id = media_id
        self.state = state
        self._options = options
        #: The record, from the first frame of the first call.
        self.media: Media | None = None
        #: Bytes held so far: the offset of the next call.
        self.offset = 0
        self._hasher = hashlib.sha256()
        self._delays: Iterator[float] = backoff_delays(options)
        self._moved = False
        self._restarted = False

    def prepare(self) -> None:
        """Picks up what an earlier attempt left (may read a file: off the loop)."""

    def request(self) -> media_pb.DownloadMediaRequest:
        """The request of the next call: from the current offset."""
        return media_pb.DownloadMediaRequest(media_id=self.media_id, offset=self.offset)

    def on_frame(self, frame: media_pb.DownloadMediaResponse) -> None:
        """Takes one frame: the record first, then data."""
        kind = frame.WhichOneof("frame")
        if kind == "media":
            record = _convert.media(frame.media)
            if self.media is None:
                self.media = record
            elif (record.size, record.sha256) != (self.media.size, self.media.sha256):
                raise IntegrityError("the object changed between two attempts of a download")
            self.state.report(self.offset, record.size)
        elif kind == "data":
            if self.media is None:
                raise IntegrityError("the download did not start with the media record")
            data = frame.data
            if self.offset + len(data) > self.media.size:
                raise IntegrityError(f"the server sent more than the {self.media.size} bytes")
            self._write(data)
            self._hasher.update(data)
            self.offset += len(data)
            self._moved = True
            self.state.report(self.offset, self.media.size)

    def after_error(self, error: CourierError) -> float:
        """The pause before resuming after a failed call, or raises the error the
        download fails with."""
        if self.state.cancelled:
            raise TransferCancelledError()
        if isinstance(error, OutOfRangeError) and self.offset > 0 and not self._restarted:
            # What an earlier attempt left is longer than the object: not a prefix.
            self._restarted = True
            self._restart()
            return 0.0
        if isinstance(error, UnavailableError):
            if self._moved:  # it was making progress: a fresh set of retries
                self._delays = backoff_delays(self._options)
                self._moved = False
            pause = next(self._delays, None)
            if pause is not None:
                return pause
        raise error

    def finish(self) -> R:
        """The result, once every byte is in and checked."""
        raise NotImplementedError

    def abort(self, error: BaseException) -> None:
        """Cleans up after the download failed with ``error``."""

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _restart(self) -> None:
        self.offset = 0
        self._hasher = hashlib.sha256()

    def _verify(self) -> Media:
        if self.media is None:
            raise IntegrityError("the download ended before the media record")
        verify(self.media, self.offset, self._hasher.digest())
        return self.media


class MemoryDownload(Download[Downloaded]):
    """A download into memory."""

    def __init__(self, media_id: str, state: TransferState[Downloaded], options: ClientOptions):
        super().__init__(media_id, state, options)
        self._buffer = bytearray()

    def _write(self, data: bytes) -> None:
        self._buffer += data

    def _restart(self) -> None:
        super()._restart()
        self._buffer.clear()

    def finish(self) -> Downloaded:
        return Downloaded(self._verify(), bytes(self._buffer))


class FileDownload(Download[Media]):
    """A download into a file at ``path`` (replaced if it exists), through
    :func:`partial_path`. A cancelled download, or one whose bytes do not match,
    removes the partial file; one that failed for want of a connection keeps it, and
    the next download of the same media ID to the same path resumes from it."""

    def __init__(
        self,
        media_id: str,
        path: str | os.PathLike[str],
        state: TransferState[Media],
        options: ClientOptions,
    ) -> None:
        super().__init__(media_id, state, options)
        self.path = Path(path)
        self.partial = partial_path(self.path, media_id)
        self._file: BinaryIO | None = None

    def prepare(self) -> None:
        try:
            with open(self.partial, "rb") as held:
                while block := held.read(256 * 1024):
                    self._hasher.update(block)
                    self.offset += len(block)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise local_file_error(e, "read the partial download") from e

    def _write(self, data: bytes) -> None:
        try:
            if self._file is None:
                self._file = open(self.partial, "ab")  # noqa: SIM115 (closed by _close)
            self._file.write(data)
        except OSError as e:
            raise local_file_error(e, "write") from e

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _remove_partial(self) -> None:
        self._close()
        try:
            self.partial.unlink()
        except FileNotFoundError:
            pass

    def _restart(self) -> None:
        super()._restart()
        self._remove_partial()

    def finish(self) -> Media:
        try:
            if self._file is None:  # nothing left to fetch: the partial file was whole
                if self.offset == 0:
                    self.partial.touch()
            else:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._close()
            try:
                media = self._verify()
            except IntegrityError:
                # These bytes can never become the object: start over next time.
                self._remove_partial()
                raise
            os.replace(self.partial, self.path)
        except OSError as e:
            raise local_file_error(e, "write") from e
        return media

    def abort(self, error: BaseException) -> None:
        self._close()
        if not isinstance(error, (UnavailableError, DeadlineExceededError)):
            self._remove_partial()

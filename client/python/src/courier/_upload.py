"""Uploads: what to send (a path, bytes or a binary file object), checked before the
transfer starts, then sent as a header frame and data frames, hashed on the way so
that the server's SHA-256 can be checked. Shared by both clients: they only differ in
how the frames reach gRPC (an iterator, an async iterator).

A path or bytes is hashed first and offered to the server by header alone (SHA-256
and size, no data): when this user stored the same content before, the server
completes the upload at once without the bytes. Otherwise it answers
INVALID_ARGUMENT (the same for content it does not hold and for content another user
stored), and the bytes are sent as usual. A file object can be read only once: it is
always sent."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, Union

import grpc

from courier import _convert
from courier._transfers import TransferState
from courier.errors import (
    CourierError,
    IntegrityError,
    InvalidArgumentError,
    MediaTooLargeError,
    local_file_error,
)
from courier.records import Media, MediaKind
from courier.v1 import media_service_pb2 as media_pb


#: How much of a file hash() reads at once.
_HASH_CHUNK = 1024 * 1024


def reuse_refused(error: CourierError) -> bool:
    """Whether a header-only offer was refused because the server wants the bytes
    (INVALID_ARGUMENT: content it does not hold for this user); any other error is
    the upload's."""
    if isinstance(error, MediaTooLargeError):  # the bytes would be refused as well
        return False
    return error.code == grpc.StatusCode.INVALID_ARGUMENT


class Readable(Protocol):
    """A binary file object: anything with ``read(size) -> bytes``."""

    def read(self, size: int, /) -> bytes | None: ...


#: What an upload reads: a path, bytes, or a binary file object.
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Readable]


def _size_of(reader: Readable) -> int | None:
    """The bytes left in a file object, when it can tell."""
    try:
        fileno = getattr(reader, "fileno", None)
        if callable(fileno):
            info = os.fstat(fileno())
            if stat.S_ISREG(info.st_mode):
                tell = getattr(reader, "tell", None)
                return info.st_size - (tell() if callable(tell) else 0)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    seekable = getattr(reader, "seekable", None)
    if callable(seekable) and seekable():
        here = reader.tell()  # type: ignore[attr-defined]
        end = reader.seek(0, io.SEEK_END)  # type: ignore[attr-defined]
        reader.seek(here)  # type: ignore[attr-defined]
        return int(end) - int(here)
    return None


class UploadPlan:
    """One upload, checked: its source, name, size and kind.

    Raises InvalidArgumentError at once for a missing, empty or unreadable source or
    a missing name, before any transfer slot is taken.
    """

    def __init__(
        self,
        source: Source,
        *,
        kind: MediaKind,
        file_name: str | None,
        size: int | None,
        content_type: str,
        chunk_size: int,
    ) -> None:
        self.kind = kind
        self.content_type = content_type
        self._chunk_size = chunk_size
        self._path: str | None = None
        self._memory: memoryview | None = None
        self._reader: Readable | None = None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            try:
                info = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                raise InvalidArgumentError(f"{path}: no such file") from None
            except OSError as e:
                raise local_file_error(e, "read") from None
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgumentError(f"{path} is not a regular file")
            self._path = path
            name = os.path.basename(path)
            found_size = info.st_size
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._memory = memoryview(source).cast("B")
            name = None
            found_size = self._memory.nbytes
        elif callable(getattr(source, "read", None)):
            self._reader = source
            attribute = getattr(source, "name", None)
            name = os.path.basename(attribute) if isinstance(attribute, str) else None
            told = size if size is not None else _size_of(source)
            if told is None:
                raise InvalidArgumentError(
                    "the file object cannot tell its size: pass size= (the number of bytes it "
                    "will yield)"
                )
            found_size = told
        else:
            raise TypeError(
                "an upload reads a path, bytes or a binary file object, "
                f"not {type(source).__name__}"
            )
        chosen_name = file_name if file_name is not None else name
        if not chosen_name:
            raise InvalidArgumentError("an upload needs a file name: pass file_name=")
        self.file_name: str = chosen_name
        self.size: int = size if size is not None else found_size
        if self.size <= 0:
            raise InvalidArgumentError(f"{self.file_name} is empty: there is nothing to upload")
        if self._memory is not None and self.size != self._memory.nbytes:
            raise InvalidArgumentError(f"size={self.size} but the bytes hold {self._memory.nbytes}")
        self._done = 0
        self._hasher = hashlib.sha256()
        self._file: io.BufferedReader | None = None
        self._lock = threading.Lock()
        self._abort: Callable[[], object] | None = None
        #: The SHA-256 of the content, once hash() has read it (paths and bytes only).
        self.digest: bytes | None = None
        #: An error met while reading, the root cause of whatever the call said.
        self.error: BaseException | None = None

    def header(self) -> media_pb.UploadMediaRequest:
        """The first frame; it carries the SHA-256 once hash() has computed it (the
        server then checks the bytes against it)."""
        return media_pb.UploadMediaRequest(
            header=media_pb.UploadHeader(
                kind=_convert.media_kind(self.kind),
                file_name=self.file_name,
                size=self.size,
                content_type=self.content_type,
                sha256=self.digest or b"",
            )
        )

    @property
    def reusable(self) -> bool:
        """Whether the content can be hashed before it is sent (a path or bytes; a
        file object can be read only once)."""
        return self._reader is None

    def hash(self, state: TransferState[Media]) -> bytes | None:
        """Computes the SHA-256 of the ``size`` bytes to send, streaming a file in
        chunks, before the upload is offered by header alone. Returns None for a file
        object, or when the transfer was cancelled meanwhile. Blocking: the asyncio
        client runs it in a worker thread."""
        if not self.reusable:
            return None
        hasher = hashlib.sha256()
        if self._memory is not None:
            hasher.update(self._memory[: self.size])
        else:
            assert self._path is not None
            left = self.size
            try:
                with open(self._path, "rb") as file:
                    while left > 0:
                        if state.cancelled:
                            return None
                        chunk = file.read(min(_HASH_CHUNK, left))
                        if not chunk:
                            raise InvalidArgumentError(
                                f"{self.file_name} ended after {self.size - left} of "
                                f"{self.size} bytes"
                            )
                        hasher.update(chunk)
                        left -= len(chunk)
            except OSError as e:
                raise local_file_error(e, "read") from e
        self.digest = hasher.digest()
        return self.digest

    def offer(self) -> media_pb.UploadMediaRequest:
        """The only frame of a header-only re-upload: the header with the SHA-256."""
        assert self.digest is not None, "hash() first"
        return self.header()

    def reused(self, state: TransferState[Media], response: media_pb.UploadMediaResponse) -> Media:
        """The record of an upload the server completed from content this user
        stored before; the whole size counts as sent."""
        if not response.HasField("media"):
            raise IntegrityError("the server's answer holds no media record")
        media = _convert.media(response.media)
        if media.sha256 != self.digest or media.size != self.size:
            raise IntegrityError(
                f"the server reused SHA-256 {media.sha256_hex} ({media.size} bytes) for "
                f"content that hashes to {(self.digest or b'').hex()} ({self.size} bytes) here"
            )
        state.report(self.size, self.size)
        return media

    def read_chunk(self) -> bytes | None:
        """The next chunk of the source, or None once ``size`` bytes were read."""
        want = min(self._chunk_size, self.size - self._done)
        if want <= 0:
            return None
        if self._memory is not None:
            chunk = bytes(self._memory[self._done : self._done + want])
        else:
            try:
                if self._path is not None and self._file is None:
                    self._file = open(self._path, "rb")  # noqa: SIM115 (closed by close())
                reader: Any = self._file if self._file is not None else self._reader
                chunk = reader.read(want) or b""
            except OSError as e:
                raise local_file_error(e, "read") from e
            if not chunk:
                raise InvalidArgumentError(
                    f"{self.file_name} ended after {self._done} of {self.size} bytes"
                )
            if len(chunk) > want:
                raise InvalidArgumentError(
                    f"the file object returned {len(chunk)} bytes when asked for {want}"
                )
        self._hasher.update(chunk)
        self._done += len(chunk)
        return chunk

    @property
    def done(self) -> int:
        """Bytes read so far."""
        return self._done

    def close(self) -> None:
        """Closes a file this plan opened (never one the caller gave)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def attach_abort(self, abort: Callable[[], object]) -> None:
        """How to stop the call when reading fails: the error is what the transfer
        raises, not the call's echo of it."""
        with self._lock:
            self._abort = abort
            failed = self.error is not None
        if failed:
            abort()

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self.error = error
            abort = self._abort
        if abort is not None:
            abort()

    def frames(self, state: TransferState[Media]) -> Iterator[media_pb.UploadMediaRequest]:
        """The frames, for a synchronous stream call; stops at a cancel."""
        try:
            yield self.header()
            while not state.cancelled:
                chunk = self.read_chunk()
                if chunk is None:
                    return
                yield media_pb.UploadMediaRequest(data=chunk)
                state.report(self._done, self.size)
        except Exception as e:  # gRPC would swallow it: keep it, stop the call
            self._fail(e)
        finally:
            self.close()

    async def aframes(self, state: TransferState[Media]) -> AsyncIterator[media_pb.UploadMediaRequest]:
        """The frames, for an asyncio stream call; files are read in a worker thread
        so that the event loop never waits on a disk or a pipe."""
        in_thread = self._memory is None
        try:
            yield self.header()
            while not state.cancelled:
                if in_thread:
                    chunk = await asyncio.to_thread(self.read_chunk)
                else:
                    chunk = self.read_chunk()
                if chunk is None:
                    return
                yield media_pb.UploadMediaRequest(data=chunk)
                state.report(self._done, self.size)
        except Exception as e:  # gRPC would swallow it: keep it, stop the call
            self._fail(e)
        finally:
            self.close()

    def failure(self, state: TransferState[Media], error: CourierError) -> BaseException:
        """What the upload fails with after the call failed with ``error``: the local
        read error behind it, or the cancel, or the call's own error."""
        if self.error is not None:
            return self.error
        return state.failure(error)

    def finish(self, state: TransferState[Media], response: media_pb.UploadMediaResponse) -> Media:
        """The record of a completed upload, once its SHA-256 matches what was read."""
        if self.error is not None:
            raise self.error
        if not response.HasField("media"):
            raise IntegrityError("the server's answer holds no media record")
        media = _convert.media(response.media)
        if self._done != self.size or media.sha256 != self._hasher.digest():
            raise IntegrityError(
                f"the server stored SHA-256 {media.sha256_hex} but the bytes read here hash "
                f"to {self._hasher.hexdigest()}"
            )
        state.report(self.size, self.size)
        return media

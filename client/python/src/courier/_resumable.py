"""Resumable uploads (MediaService.CreateUpload/WriteUpload/QueryUpload/CommitUpload):
the file goes in parts of the server's ``part_size``, each with its CRC32C, so that an
upload broken by a lost connection, a restarted server or a restarted process goes on
from the bytes the server already holds.

What survives a restart is a small JSON file beside the file, ``<path>.courier-upload``
(upload ID, server URL, the file's size and SHA-256, the part size), written after
CreateUpload and removed once the upload is committed or cancelled. A later upload of
the same file (same size and SHA-256) to the same server asks the server how much it
holds (QueryUpload) and writes on from there; an unknown or expired upload (NOT_FOUND)
starts over.

Shared by both clients: :class:`ResumablePlan` plans and checks, :func:`upload` is the
protocol, written once as a flow (:mod:`courier._calls`) that each client runs its own
way."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from functools import partial

import google_crc32c

from courier import _convert
from courier._calls import Flow, blocking, rpc
from courier._transfers import TransferState
from courier.errors import (
    ChecksumMismatchError,
    CourierError,
    InvalidArgumentError,
    NotFoundError,
    TransferCancelledError,
    UploadOffsetMismatchError,
    local_file_error,
)
from courier.records import Media, MediaKind
from courier.v1 import media_service_pb2 as media_pb

__all__ = ["STATE_SUFFIX", "ResumablePlan", "ResumedUpload", "crc32c", "state_path", "upload"]

#: What follows the file's path in the name of its upload state file.
STATE_SUFFIX = ".courier-upload"
#: How many times a part refused for its CRC32C is sent again before giving up.
CHECKSUM_RETRIES = 3
#: How many times an upload that expired under it is started over.
RESTARTS = 2
_HASH_CHUNK = 1024 * 1024


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli, as in RFC 3720 and GCS) of ``data``."""
    return int(google_crc32c.value(data))


def state_path(path: str | os.PathLike[str]) -> str:
    """Where the upload state of the file at ``path`` is kept."""
    return os.fspath(path) + STATE_SUFFIX


@dataclass(frozen=True)
class ResumedUpload:
    """What :meth:`Client.upload_resumable` did.

    ``media`` is the stored record, or None when the upload stopped after
    ``max_parts`` parts (its state file stays, and a later call goes on from
    ``committed_size``)."""

    #: The record of the stored file, or None when paused.
    media: Media | None
    #: The ID of the resumable upload on the server.
    upload_id: str
    #: The bytes the server already held when this call started (0 for a new upload).
    resumed_from: int
    #: The bytes the server holds now (the file's size once committed).
    committed_size: int


class ResumablePlan:
    """One resumable upload of the file at ``path``, checked: a missing, empty or
    irregular file raises InvalidArgumentError before any slot is taken."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        server_url: str,
        kind: MediaKind,
        file_name: str | None,
        content_type: str,
    ) -> None:
        self.path = os.fspath(path)
        try:
            info = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgumentError(f"{self.path}: no such file") from None
        except OSError as e:
            raise local_file_error(e, "read") from None
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgumentError(f"{self.path} is not a regular file")
        self.size = info.st_size
        if self.size <= 0:
            raise InvalidArgumentError(f"{self.path} is empty: there is nothing to upload")
        self.file_name = file_name if file_name is not None else os.path.basename(self.path)
        if not self.file_name:
            raise InvalidArgumentError("an upload needs a file name: pass file_name=")
        self.server_url = server_url
        self.kind = kind
        self.content_type = content_type
        self.state_path = state_path(self.path)
        #: The SHA-256 of the file, once hash() has read it.
        self.digest = b""

    def hash(self, state: TransferState[ResumedUpload]) -> bool:
        """Reads the file once for its SHA-256; False when cancelled meanwhile."""
        hasher = hashlib.sha256()
        left = self.size
        try:
            with open(self.path, "rb") as file:
                while left > 0:
                    if state.cancelled:
                        return False
                    chunk = file.read(min(_HASH_CHUNK, left))
                    if not chunk:
                        raise InvalidArgumentError(
                            f"{self.file_name} ended after {self.size - left} of {self.size} bytes"
                        )
                    hasher.update(chunk)
                    left -= len(chunk)
        except OSError as e:
            raise local_file_error(e, "read") from e
        self.digest = hasher.digest()
        return True

    def create_request(self) -> media_pb.CreateUploadRequest:
        return media_pb.CreateUploadRequest(
            header=media_pb.UploadHeader(
                kind=_convert.media_kind(self.kind),
                file_name=self.file_name,
                size=self.size,
                content_type=self.content_type,
                sha256=self.digest,
            )
        )

    def saved_upload(self) -> str | None:
        """The upload ID of a state file that names this server and a file of this
        size and SHA-256; None when there is none (or it does not match, or cannot
        be read)."""
        try:
            with open(self.state_path, encoding="utf-8") as file:
                saved = json.load(file)
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict):
            return None
        upload_id = saved.get("upload_id")
        if (
            isinstance(upload_id, str)
            and upload_id
            and saved.get("server") == self.server_url
            and saved.get("size") == self.size
            and saved.get("sha256") == self.digest.hex()
        ):
            return upload_id
        return None

    def save(self, upload_id: str, part_size: int) -> None:
        """Writes the state file (through a temporary file, renamed into place)."""
        record = {
            "upload_id": upload_id,
            "server": self.server_url,
            "size": self.size,
            "sha256": self.digest.hex(),
            "part_size": part_size,
            "file_name": self.file_name,
            "kind": self.kind.name.lower(),
        }
        temporary = self.state_path + ".tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump(record, file)
                file.write("\n")
            os.replace(temporary, self.state_path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise local_file_error(e, "write the upload state") from e

    def forget(self) -> None:
        """Removes the state file (after a commit or a cancel)."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.state_path)

    def part(self, offset: int, part_size: int) -> media_pb.WriteUploadRequest:
        """The part at ``offset`` (``part_size`` bytes, or the rest) with its CRC32C;
        the upload ID is filled in by the caller."""
        length = min(part_size, self.size - offset)
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                data = file.read(length)
        except OSError as e:
            raise local_file_error(e, "read") from e
        if len(data) != length:
            raise InvalidArgumentError(
                f"{self.file_name} ended after {offset + len(data)} of {self.size} bytes"
            )
        return media_pb.WriteUploadRequest(offset=offset, data=data, crc32c=crc32c(data))


def upload(
    state: TransferState[ResumedUpload], plan: ResumablePlan, max_parts: int | None
) -> Flow[ResumedUpload]:
    """A resumable upload from start to end: hashes the file, goes on with the upload
    its state file names while the server still holds it (else creates one), writes
    the parts (at most ``max_parts``, then stops without committing) and commits. An
    upload that expires under it starts over, at most :data:`RESTARTS` times; a
    cancelled one is abandoned on the server and its state file removed."""
    if not (yield from blocking(partial(plan.hash, state))):
        raise TransferCancelledError()
    upload_id, part_size, committed = "", 0, 0
    saved = plan.saved_upload()
    if saved is not None:
        try:
            query = yield from _query(saved)
            upload_id, part_size, committed = saved, query.part_size, query.committed_size
        except (NotFoundError, InvalidArgumentError):
            pass  # expired, never was, or not an upload ID: start over
    restarts = 0
    while True:
        try:
            if not upload_id:
                created = yield from rpc(
                    "media",
                    "CreateUpload",
                    plan.create_request(),
                    media_pb.CreateUploadResponse,
                    idempotent=False,
                )
                upload_id, part_size, committed = created.upload_id, created.part_size, 0
                plan.save(upload_id, part_size)
            resumed_from = committed
            state.report(committed, plan.size)
            return (
                yield from _write_parts(
                    state, plan, upload_id, part_size, committed, resumed_from, max_parts
                )
            )
        except NotFoundError:
            # The upload expired under us: start over, a bounded number of times.
            restarts += 1
            if restarts > RESTARTS or state.cancelled:
                raise
            upload_id = ""
        except (TransferCancelledError, asyncio.CancelledError):
            # cancel(): the asyncio client's task is cancelled, the other's work sees it.
            if upload_id:
                yield from _abandon(upload_id)
            plan.forget()
            raise


def _write_parts(
    state: TransferState[ResumedUpload],
    plan: ResumablePlan,
    upload_id: str,
    part_size: int,
    committed: int,
    resumed_from: int,
    max_parts: int | None,
) -> Flow[ResumedUpload]:
    """Writes the parts from ``committed`` on, then commits."""
    if part_size <= 0:
        raise CourierError(f"the server gave upload {upload_id} a part size of {part_size}")
    written = checksum_failures = 0
    while committed < plan.size:
        if max_parts is not None and written >= max_parts:
            return ResumedUpload(None, upload_id, resumed_from, committed)
        if state.cancelled:
            raise TransferCancelledError()
        request = yield from blocking(partial(plan.part, committed, part_size))
        request.upload_id = upload_id
        try:
            answer = yield from rpc(
                "media", "WriteUpload", request, media_pb.WriteUploadResponse, idempotent=True
            )
        except ChecksumMismatchError:
            checksum_failures += 1
            if checksum_failures > CHECKSUM_RETRIES:
                raise
            continue
        except UploadOffsetMismatchError:
            committed = (yield from _query(upload_id)).committed_size
            continue
        committed = answer.committed_size
        written += 1
        checksum_failures = 0
        state.report(committed, plan.size)
    if state.cancelled:
        raise TransferCancelledError()
    response = yield from rpc(
        "media",
        "CommitUpload",
        media_pb.CommitUploadRequest(upload_id=upload_id, sha256=plan.digest),
        media_pb.CommitUploadResponse,
        # The server keeps a committed upload's record for a while: a commit whose
        # answer was lost can be sent again and gets the same record.
        idempotent=True,
    )
    plan.forget()
    state.report(plan.size, plan.size)
    return ResumedUpload(_convert.media(response.media), upload_id, resumed_from, plan.size)


def _query(upload_id: str) -> Flow[media_pb.QueryUploadResponse]:
    """How much of ``upload_id`` the server holds, and its part size."""
    return (
        yield from rpc(
            "media",
            "QueryUpload",
            media_pb.QueryUploadRequest(upload_id=upload_id),
            media_pb.QueryUploadResponse,
            idempotent=True,
        )
    )


def _abandon(upload_id: str) -> Flow[None]:
    """Cancels an upload on the server, as far as it can be reached."""
    try:
        yield from rpc(
            "media",
            "CancelUpload",
            media_pb.CancelUploadRequest(upload_id=upload_id),
            media_pb.CancelUploadResponse,
            idempotent=False,
        )
    except CourierError:
        pass  # it expires by itself

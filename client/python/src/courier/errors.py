"""Errors: one exception class per failure a caller acts on, all :class:`CourierError`.

Every error carries the gRPC status ``code`` (a :class:`grpc.StatusCode`), the
``google.rpc.ErrorInfo`` ``reason`` (a value name of the proto's ``ErrorReason`` enum,
or ``""`` when there is none) and a ``message`` that says what was wrong.

The classes form two levels. One class per gRPC code the server uses
(:class:`InvalidArgumentError`, :class:`ResourceExhaustedError`,
:class:`FailedPreconditionError`, ...) and, below them, one class per ErrorInfo
reason (:class:`MediaTooLargeError` is an :class:`InvalidArgumentError`,
:class:`RateLimitedError` a :class:`ResourceExhaustedError`, ...), so a caller may
catch as broadly or as narrowly as it needs::

    try:
        client.upload_file("big.iso")
    except courier.MediaTooLargeError:
        ...  # too big for this server
    except courier.CourierError as e:
        print(e.code.name, e.reason, e.message)

Errors that the client finds itself use the nearest code: :class:`IntegrityError`
(``DATA_LOSS``) for a download that does not match its record,
:class:`TooManyTransfersError` for the client's own cap of 9 transfers,
:class:`InvalidArgumentError` for input it checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from courier.v1 import error_reason_pb2

__all__ = [
    "DOMAIN",
    "CourierError",
    "InvalidArgumentError",
    "MediaTooLargeError",
    "MessageTooLargeError",
    "NotFoundError",
    "MediaDeletedError",
    "ResourceExhaustedError",
    "TooManyTransfersError",
    "RateLimitedError",
    "TooManyChannelsError",
    "TooManyStreamsError",
    "OfflineCacheFullError",
    "TooSlowError",
    "FailedPreconditionError",
    "MediaUnavailableError",
    "NotAMemberError",
    "MediaRejectedError",
    "MediaQuarantinedError",
    "NotAnImageError",
    "ImageRefusedError",
    "QuotaExceededError",
    "ChecksumMismatchError",
    "UploadOffsetMismatchError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "OutOfRangeError",
    "UnavailableError",
    "DeadlineExceededError",
    "PeerUnreachableError",
    "TransferCancelledError",
    "NoSuchTransferError",
    "IntegrityError",
    "LocalFileError",
    "from_rpc_error",
]

#: The ``google.rpc.ErrorInfo`` domain of courier's refusals.
DOMAIN = "courier.v1"

_ErrorReason = error_reason_pb2.ErrorReason
_UNSPECIFIED = error_reason_pb2.ERROR_REASON_UNSPECIFIED
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class CourierError(Exception):
    """Base class of every error a courier call raises.

    Attributes:
        code: the gRPC status code (the server's, or the nearest one for an error
            the client found itself).
        reason: the ``google.rpc.ErrorInfo`` reason, one of the value names of the
            proto's ``ErrorReason`` enum (``"MEDIA_TOO_LARGE"``, ...), or ``""``.
        message: what went wrong, for people.
    """

    #: The code of errors of this class unless the server said otherwise.
    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    #: The ErrorInfo reason this class stands for (ERROR_REASON_UNSPECIFIED: none).
    reason_value: ClassVar[error_reason_pb2.ErrorReason.ValueType] = _UNSPECIFIED

    code: grpc.StatusCode
    reason: str
    message: str

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else type(self).default_code
        if reason is None:
            value = type(self).reason_value
            reason = "" if value == _UNSPECIFIED else _ErrorReason.Name(value)
        self.reason = reason

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )


class InvalidArgumentError(CourierError):
    """The request broke a rule (``INVALID_ARGUMENT``); the message says which."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class MediaTooLargeError(InvalidArgumentError):
    """The upload is larger than the server accepts (30 MiB by default)."""

    reason_value = error_reason_pb2.MEDIA_TOO_LARGE


class MessageTooLargeError(InvalidArgumentError):
    """The message's text, file name, thumbnail and payload exceed 32 KiB."""

    reason_value = error_reason_pb2.MESSAGE_TOO_LARGE


class NotFoundError(CourierError):
    """The media ID does not exist, or the object has expired (``NOT_FOUND``)."""

    default_code = grpc.StatusCode.NOT_FOUND


class MediaDeletedError(NotFoundError):
    """The media was deleted by its owner (or an admin): downloads, its record, its
    thumbnails and its links are refused from then on."""

    reason_value = error_reason_pb2.MEDIA_DELETED


class ResourceExhaustedError(CourierError):
    """A limit was reached (``RESOURCE_EXHAUSTED``); the subclass says which."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class TooManyTransfersError(ResourceExhaustedError):
    """Too many uploads and downloads in flight: 9 per client, and 9 per user on the
    server. Retry once one of them has finished."""

    reason_value = error_reason_pb2.TOO_MANY_TRANSFERS


class RateLimitedError(ResourceExhaustedError):
    """Too many messages sent too quickly (180 per 3 s per user by default)."""

    reason_value = error_reason_pb2.RATE_LIMITED


class TooManyChannelsError(ResourceExhaustedError):
    """Already a member of the most channels allowed (20 by default)."""

    reason_value = error_reason_pb2.TOO_MANY_CHANNELS


class TooManyStreamsError(ResourceExhaustedError):
    """This user already has the most subscriptions open (16 by default)."""

    reason_value = error_reason_pb2.TOO_MANY_STREAMS


class OfflineCacheFullError(ResourceExhaustedError):
    """The offline cache cannot take the message: the sender has the most messages
    waiting for offline receivers (1,000 by default), or the server's cache is full.
    Nothing was kept."""

    reason_value = error_reason_pb2.OFFLINE_CACHE_FULL


class QuotaExceededError(ResourceExhaustedError):
    """An upload would pass the user's storage quota (live media, or bytes uploaded
    per hour); refused before any byte was stored. Expiring media frees quota."""

    reason_value = error_reason_pb2.QUOTA_EXCEEDED


class ChecksumMismatchError(InvalidArgumentError):
    """A checksum sent with a resumable upload does not match the bytes: a part's
    CRC32C (nothing of the part was kept; send it again) or the SHA-256 given at
    commit (the upload is removed)."""

    reason_value = error_reason_pb2.CHECKSUM_MISMATCH


class TooSlowError(ResourceExhaustedError):
    """A subscription fell too far behind its events and the server ended it."""

    reason_value = error_reason_pb2.TOO_SLOW


class FailedPreconditionError(CourierError):
    """The request is well-formed but the state does not allow it
    (``FAILED_PRECONDITION``)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class MediaUnavailableError(FailedPreconditionError):
    """An image or file message names media that do not exist or have expired."""

    reason_value = error_reason_pb2.MEDIA_UNAVAILABLE


class NotAMemberError(FailedPreconditionError):
    """A channel message from a user who has not joined the channel."""

    reason_value = error_reason_pb2.NOT_A_MEMBER


class MediaRejectedError(FailedPreconditionError):
    """The server's upload hook (a scanner, moderation) refused the upload; the
    message is the hook's. Nothing was kept."""

    reason_value = error_reason_pb2.MEDIA_REJECTED


class MediaQuarantinedError(FailedPreconditionError):
    """The content is quarantined by the server's upload hook or an admin: it cannot
    be downloaded, sent or uploaded again until an admin releases it."""

    reason_value = error_reason_pb2.MEDIA_QUARANTINED


class NotAnImageError(FailedPreconditionError):
    """A thumbnail was asked of media that is not a JPEG, PNG, GIF, WebP or BMP
    image."""

    reason_value = error_reason_pb2.NOT_AN_IMAGE


class ImageRefusedError(FailedPreconditionError):
    """The server will not decode the image for a thumbnail: over its pixel or memory
    limits, or truncated or corrupt. Asking again gives the same answer."""

    reason_value = error_reason_pb2.IMAGE_REFUSED


class UploadOffsetMismatchError(FailedPreconditionError):
    """A resumable upload's part does not fit what the server stored (a gap, an
    overlap with different bytes), or a commit came before every byte was stored.

    Attributes:
        committed_size: the bytes the server holds (its ErrorInfo metadata
            ``committed_size``), or None when it did not say.
    """

    reason_value = error_reason_pb2.UPLOAD_OFFSET_MISMATCH

    committed_size: int | None = None


class UnauthenticatedError(CourierError):
    """The token is missing, malformed, forged or expired (``UNAUTHENTICATED``)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(CourierError):
    """The caller may not do this (``PERMISSION_DENIED``)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class OutOfRangeError(CourierError):
    """A download offset lies past the end of the object (``OUT_OF_RANGE``)."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class UnavailableError(CourierError):
    """The server could not be reached, after the retries where a call is retried
    (``UNAVAILABLE``)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(CourierError):
    """The call's deadline passed (``DEADLINE_EXCEEDED``)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class PeerUnreachableError(CourierError):
    """The peer is offline and offline messaging was not enabled: nothing was kept.

    Attributes:
        peer_id: the peer the message was for.
        message_id: the ID the server gave the message.
    """

    default_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, peer_id: str, message_id: str) -> None:
        super().__init__(
            f"peer unreachable: {peer_id} is offline (message {message_id} was not kept; "
            "send with offline=True to keep it)"
        )
        self.peer_id = peer_id
        self.message_id = message_id


class TransferCancelledError(CourierError):
    """The upload or download was cancelled (``CANCELLED``)."""

    default_code = grpc.StatusCode.CANCELLED

    def __init__(self, message: str = "the transfer was cancelled") -> None:
        super().__init__(message)


class NoSuchTransferError(CourierError):
    """No transfer with this request ID is running: it finished, failed, was
    cancelled, or never was.

    Attributes:
        request_id: the request ID asked about.
    """

    default_code = grpc.StatusCode.NOT_FOUND

    def __init__(self, request_id: int) -> None:
        super().__init__(f"no such transfer: {request_id}")
        self.request_id = request_id


class IntegrityError(CourierError):
    """Bytes do not match the size or SHA-256 of their media record (``DATA_LOSS``)."""

    default_code = grpc.StatusCode.DATA_LOSS


class LocalFileError(CourierError):
    """A local file could not be read or written; the :class:`OSError` is the
    ``__cause__``."""

    default_code = grpc.StatusCode.INTERNAL


# The classes that stand for an ErrorInfo reason, by reason. A reason added to the
# proto must get its class here (a unit test checks that none is missing).
_BY_REASON: dict[int, type[CourierError]] = {
    cls.reason_value: cls
    for cls in (
        MediaTooLargeError,
        MessageTooLargeError,
        TooManyTransfersError,
        RateLimitedError,
        TooManyChannelsError,
        MediaUnavailableError,
        NotAMemberError,
        TooSlowError,
        TooManyStreamsError,
        OfflineCacheFullError,
        NotAnImageError,
        ImageRefusedError,
        QuotaExceededError,
        ChecksumMismatchError,
        UploadOffsetMismatchError,
        MediaRejectedError,
        MediaQuarantinedError,
        MediaDeletedError,
    )
}

# The classes for a status without a known reason, by code.
_BY_CODE: dict[grpc.StatusCode, type[CourierError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: TransferCancelledError,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}


def error_info(trailing_metadata: Iterable[Any] | None) -> tuple[str, dict[str, str]]:
    """The reason and metadata of the ``google.rpc.ErrorInfo`` (domain ``courier.v1``)
    in a call's ``grpc-status-details-bin`` trailer, or ``("", {})``."""
    for key, value in trailing_metadata or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a malformed trailer is no reason
            return "", {}
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                return str(info.reason), dict(info.metadata)
    return "", {}


def error_info_reason(trailing_metadata: Iterable[Any] | None) -> str:
    """The reason of the ``google.rpc.ErrorInfo`` (domain ``courier.v1``) in a call's
    ``grpc-status-details-bin`` trailer, or ``""``."""
    return error_info(trailing_metadata)[0]


def from_status(
    code: grpc.StatusCode, details: str | None, trailing_metadata: Iterable[Any] | None
) -> CourierError:
    """The :class:`CourierError` for a gRPC status: by its ErrorInfo reason when the
    generated ``ErrorReason`` enum knows it, else by its code."""
    reason, metadata = error_info(trailing_metadata)
    try:
        value = _ErrorReason.Value(reason) if reason else _UNSPECIFIED
    except ValueError:  # a reason newer than this client: fall back on the code
        value = _UNSPECIFIED
    cls = _BY_REASON.get(value) or _BY_CODE.get(code, CourierError)
    message = details or code.name.lower().replace("_", " ")
    if cls is TransferCancelledError:
        return TransferCancelledError(message)
    error = cls(message, code=code, reason=reason)
    if isinstance(error, UploadOffsetMismatchError):
        committed = metadata.get("committed_size", "")
        error.committed_size = int(committed) if committed.isdigit() else None
    return error


def from_rpc_error(error: grpc.RpcError) -> CourierError:
    """The :class:`CourierError` for an error raised by a gRPC call, synchronous
    (``grpc.Call``) or asyncio (``grpc.aio.AioRpcError``)."""
    if isinstance(error, grpc.aio.AioRpcError):
        return from_status(error.code(), error.details(), error.trailing_metadata())
    if isinstance(error, grpc.Call):
        return from_status(error.code(), error.details(), error.trailing_metadata())
    return CourierError(str(error) or type(error).__name__)


def local_file_error(error: OSError, doing: str) -> LocalFileError:
    """A :class:`LocalFileError` for ``error``, met while ``doing`` something."""
    where = f" {error.filename}" if error.filename else ""
    failure = LocalFileError(f"could not {doing}{where}: {error.strerror or error}")
    failure.__cause__ = error
    return failure

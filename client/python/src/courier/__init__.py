"""courier-client: the Python client of courier, a self-hostable messaging service
where users send each other, and channels, text, raw, image and file messages, with
images and files uploaded once and sent by media ID.

::

    from courier import Client

    with Client("http://127.0.0.1:50051", token) as alice:
        media = alice.upload_image("cat.png")
        alice.send_peer_message("bob", media.image_message(), offline=True)

Layout:

- :class:`Client` (``courier.client``): the synchronous client; :class:`AsyncClient`
  (``courier.aio``): the same for asyncio. Both take :class:`ClientOptions`.
- Subscriptions (``courier.subscription``): :class:`Subscription` (an iterator) and
  :class:`AsyncSubscription` (an async iterator), reconnecting by themselves.
- Transfers: ``start_upload`` / ``start_download_*`` return a :class:`Transfer`
  (:class:`AsyncTransfer`) with a request ID, progress and cancel; ``upload_*`` /
  ``download_*`` wait for the result.
- Records and messages (``courier.records``): :class:`Media`, :class:`TextMessage`,
  :class:`RawMessage`, :class:`ImageMessage`, :class:`FileMessage`,
  :class:`SendReceipt`; the events of a subscription: :class:`ReceivedMessage`,
  :class:`Ready`, :class:`Disconnected`.
- Errors (``courier.errors``): :class:`CourierError` and one subclass per kind.
- :func:`safe_file_name`, :func:`unique_path` (``courier.names``): where to save
  received files.
- ``courier.v1``: the generated gRPC code, for anything the library does not cover.
- ``python -m courier.interop``: the interop client of docs/interop.md.
"""

from courier._connection import ClientOptions, TokenSource
from courier._resumable import ResumedUpload
from courier._transfers import AsyncTransfer, ProgressCallback, Transfer
from courier._upload import Readable, Source
from courier.aio import AsyncClient
from courier.client import Client
from courier.errors import (
    ChecksumMismatchError,
    CourierError,
    DeadlineExceededError,
    FailedPreconditionError,
    ImageRefusedError,
    QuotaExceededError,
    IntegrityError,
    InvalidArgumentError,
    LocalFileError,
    MediaDeletedError,
    MediaQuarantinedError,
    MediaRejectedError,
    MediaTooLargeError,
    MediaUnavailableError,
    MessageTooLargeError,
    NoSuchTransferError,
    NotAMemberError,
    NotAnImageError,
    NotFoundError,
    OutOfRangeError,
    PeerUnreachableError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceExhaustedError,
    TooManyChannelsError,
    TooManyStreamsError,
    UploadOffsetMismatchError,
    TooManyTransfersError,
    TooSlowError,
    TransferCancelledError,
    UnauthenticatedError,
    UnavailableError,
)
from courier.names import safe_file_name, unique_path
from courier.records import (
    Delivery,
    Disconnected,
    Downloaded,
    Event,
    FileMessage,
    ImageMessage,
    Media,
    MediaKind,
    MediaUrl,
    Message,
    Progress,
    RawMessage,
    Ready,
    ReceivedMessage,
    SendReceipt,
    TextMessage,
    Thumbnail,
)
from courier.subscription import AsyncSubscription, Subscription

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncSubscription",
    "AsyncTransfer",
    "Client",
    "ChecksumMismatchError",
    "ClientOptions",
    "CourierError",
    "DeadlineExceededError",
    "Delivery",
    "Disconnected",
    "Downloaded",
    "Event",
    "FailedPreconditionError",
    "FileMessage",
    "ImageMessage",
    "ImageRefusedError",
    "QuotaExceededError",
    "IntegrityError",
    "InvalidArgumentError",
    "LocalFileError",
    "Media",
    "MediaKind",
    "MediaUrl",
    "MediaDeletedError",
    "MediaQuarantinedError",
    "MediaRejectedError",
    "MediaTooLargeError",
    "MediaUnavailableError",
    "Message",
    "MessageTooLargeError",
    "NoSuchTransferError",
    "NotAMemberError",
    "NotAnImageError",
    "NotFoundError",
    "OutOfRangeError",
    "PeerUnreachableError",
    "PermissionDeniedError",
    "Progress",
    "ProgressCallback",
    "RateLimitedError",
    "RawMessage",
    "Readable",
    "Ready",
    "ReceivedMessage",
    "ResourceExhaustedError",
    "ResumedUpload",
    "SendReceipt",
    "Source",
    "Subscription",
    "TextMessage",
    "Thumbnail",
    "TokenSource",
    "TooManyChannelsError",
    "TooManyStreamsError",
    "TooManyTransfersError",
    "TooSlowError",
    "Transfer",
    "TransferCancelledError",
    "UnauthenticatedError",
    "UnavailableError",
    "UploadOffsetMismatchError",
    "safe_file_name",
    "unique_path",
    "__version__",
]

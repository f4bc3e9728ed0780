//! One error type for every call, with the server's refusals sorted into variants a
//! caller can match on instead of reading status strings.

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{pb::ErrorReason, request_id::RequestId};

/// The `google.rpc.ErrorInfo` domain of courier's refusals.
const DOMAIN: &str = "courier.v1";

/// Everything a courier call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is missing, malformed, forged or expired.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The upload is larger than the server accepts.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The message's text, file name, thumbnail and payload exceed 32 KiB.
    #[error("message too large: {0}")]
    MessageTooLarge(String),
    /// The media ID (or other object) does not exist, or has expired.
    #[error("not found or expired: {0}")]
    NotFound(String),
    /// A message points at media that do not exist or have expired.
    #[error("media unavailable: {0}")]
    MediaUnavailable(String),
    /// Too many uploads and downloads in flight (9 per user, and per client).
    #[error("too many transfers: {0}")]
    TooManyTransfers(String),
    /// Too many messages sent too quickly (180 per 3 s per user by default).
    #[error("sending too often: {0}")]
    TooOften(String),
    /// Already a member of the most channels allowed (20 by default).
    #[error("too many channels: {0}")]
    TooManyChannels(String),
    /// A channel message from a user who has not joined the channel.
    #[error("not a member: {0}")]
    NotAMember(String),
    /// The peer is offline and offline messaging was not enabled: nothing was kept.
    #[error("peer unreachable: {peer} is offline (message {message_id} was not kept)")]
    PeerUnreachable {
        /// The peer.
        peer: String,
        /// The ID the server gave the message.
        message_id: String,
    },
    /// This user already has the most Subscribe streams open (16 by default).
    #[error("too many streams: {0}")]
    TooManyStreams(String),
    /// The offline cache cannot take the message: the sender has the most messages
    /// waiting for offline receivers, or the server's cache is full. Nothing was kept.
    #[error("offline cache full: {0}")]
    OfflineCacheFull(String),
    /// GetThumbnail: the media is not a JPEG, PNG, GIF, WebP or BMP image (reason
    /// NOT_AN_IMAGE).
    #[error("not an image: {0}")]
    NotAnImage(String),
    /// GetThumbnail: the server will not decode the image: over its pixel or memory
    /// limits, or truncated or corrupt (reason IMAGE_REFUSED). Asking again gives the
    /// same answer.
    #[error("image refused: {0}")]
    ImageRefused(String),
    /// An upload would pass the user's storage quota (live media, or bytes per hour);
    /// refused before any byte was stored (reason QUOTA_EXCEEDED). Expiring media
    /// frees quota.
    #[error("over quota: {0}")]
    QuotaExceeded(String),
    /// A resumable upload's checksum does not match its bytes: a part's CRC32C (send
    /// the part again) or the whole object's SHA-256 at commit (reason
    /// CHECKSUM_MISMATCH).
    #[error("checksum mismatch: {0}")]
    ChecksumMismatch(String),
    /// A resumable upload call does not fit the bytes stored: a gap, an overlap with
    /// different bytes, a misaligned part, or a commit before every byte is stored
    /// (reason UPLOAD_OFFSET_MISMATCH). Ask for the stored size and write from there.
    #[error("upload offset mismatch: {0}")]
    UploadOffsetMismatch(String),
    /// The operator's upload hook rejected the upload; nothing was kept (reason
    /// MEDIA_REJECTED). The message is the hook's, for the uploader.
    #[error("media rejected: {0}")]
    MediaRejected(String),
    /// The media's content is quarantined by the operator: it cannot be downloaded,
    /// linked or sent until released (reason MEDIA_QUARANTINED).
    #[error("media quarantined: {0}")]
    MediaQuarantined(String),
    /// The media was deleted by its owner or an admin (reason MEDIA_DELETED).
    #[error("media deleted: {0}")]
    MediaDeleted(String),
    /// A Subscribe stream fell too far behind and the server ended it.
    #[error("too slow: {0}")]
    TooSlow(String),
    /// The request broke a rule; the message says which.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A download offset lies past the end of the object.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The server could not be reached (after the retries, where a call is retried).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call's deadline passed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The transfer was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// No transfer with this request ID is running (it finished, failed or never was).
    #[error("no such transfer: {0}")]
    NoSuchTransfer(RequestId),
    /// Downloaded bytes do not match the size or SHA-256 of the record.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A local file could not be read or written.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server URL is not usable.
    #[error("bad server URL: {0}")]
    BadUrl(String),
    /// Any other status from the server.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Status),
}

impl Error {
    /// True for failures that a retry may cure: the server was unreachable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The gRPC code of this error: the server's, or for an error found by the client
    /// itself the nearest one (DATA_LOSS for a failed integrity check, UNAVAILABLE for
    /// a server that cannot be reached, RESOURCE_EXHAUSTED for the client's own
    /// transfer cap).
    pub fn code(&self) -> Code {
        if let Some(reason) = self.reason() {
            return reason_code(reason);
        }
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::NotFound(_) => Code::NotFound,
            Self::InvalidArgument(_) | Self::BadUrl(_) => Code::InvalidArgument,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Cancelled => Code::Cancelled,
            Self::NoSuchTransfer(_) => Code::NotFound,
            Self::PeerUnreachable { .. } => Code::Unavailable,
            Self::Integrity(_) => Code::DataLoss,
            Self::Io(_) => Code::Internal,
            Self::Status(status) => status.code(),
            // The variants with a reason returned above.
            _ => Code::Unknown,
        }
    }

    /// The `google.rpc.ErrorInfo` reason of this error (the client's own transfer cap
    /// counts as TOO_MANY_TRANSFERS), or `None` where there is none.
    pub fn reason(&self) -> Option<ErrorReason> {
        Some(match self {
            Self::TooLarge(_) => ErrorReason::MediaTooLarge,
            Self::MessageTooLarge(_) => ErrorReason::MessageTooLarge,
            Self::TooManyTransfers(_) => ErrorReason::TooManyTransfers,
            Self::TooOften(_) => ErrorReason::RateLimited,
            Self::TooManyChannels(_) => ErrorReason::TooManyChannels,
            Self::MediaUnavailable(_) => ErrorReason::MediaUnavailable,
            Self::NotAMember(_) => ErrorReason::NotAMember,
            Self::TooSlow(_) => ErrorReason::TooSlow,
            Self::TooManyStreams(_) => ErrorReason::TooManyStreams,
            Self::OfflineCacheFull(_) => ErrorReason::OfflineCacheFull,
            Self::QuotaExceeded(_) => ErrorReason::QuotaExceeded,
            Self::NotAnImage(_) => ErrorReason::NotAnImage,
            Self::ImageRefused(_) => ErrorReason::ImageRefused,
            Self::ChecksumMismatch(_) => ErrorReason::ChecksumMismatch,
            Self::UploadOffsetMismatch(_) => ErrorReason::UploadOffsetMismatch,
            Self::MediaRejected(_) => ErrorReason::MediaRejected,
            Self::MediaQuarantined(_) => ErrorReason::MediaQuarantined,
            Self::MediaDeleted(_) => ErrorReason::MediaDeleted,
            _ => return None,
        })
    }
}

/// The gRPC code that the server sends with `reason` (documented on each value in
/// `proto/courier/v1/error_reason.proto`).
fn reason_code(reason: ErrorReason) -> Code {
    match reason {
        ErrorReason::MediaTooLarge
        | ErrorReason::MessageTooLarge
        | ErrorReason::ChecksumMismatch => Code::InvalidArgument,
        ErrorReason::MediaUnavailable
        | ErrorReason::NotAMember
        | ErrorReason::NotAnImage
        | ErrorReason::ImageRefused
        | ErrorReason::UploadOffsetMismatch
        | ErrorReason::MediaRejected
        | ErrorReason::MediaQuarantined => Code::FailedPrecondition,
        ErrorReason::MediaDeleted => Code::NotFound,
        ErrorReason::TooManyTransfers
        | ErrorReason::RateLimited
        | ErrorReason::TooManyChannels
        | ErrorReason::TooSlow
        | ErrorReason::TooManyStreams
        | ErrorReason::OfflineCacheFull
        | ErrorReason::QuotaExceeded => Code::ResourceExhausted,
        ErrorReason::Unspecified => Code::Unknown,
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        let reason = status
            .get_error_details()
            .error_info()
            .filter(|info| info.domain == DOMAIN)
            .map(|info| info.reason.clone());
        // Exhaustive on purpose: a reason added to the proto must be sorted here.
        match reason.as_deref().and_then(ErrorReason::from_str_name) {
            Some(ErrorReason::MediaTooLarge) => return Self::TooLarge(message),
            Some(ErrorReason::MessageTooLarge) => return Self::MessageTooLarge(message),
            Some(ErrorReason::TooManyTransfers) => return Self::TooManyTransfers(message),
            Some(ErrorReason::RateLimited) => return Self::TooOften(message),
            Some(ErrorReason::TooManyChannels) => return Self::TooManyChannels(message),
            Some(ErrorReason::MediaUnavailable) => return Self::MediaUnavailable(message),
            Some(ErrorReason::NotAMember) => return Self::NotAMember(message),
            Some(ErrorReason::TooSlow) => return Self::TooSlow(message),
            Some(ErrorReason::TooManyStreams) => return Self::TooManyStreams(message),
            Some(ErrorReason::OfflineCacheFull) => return Self::OfflineCacheFull(message),
            Some(ErrorReason::QuotaExceeded) => return Self::QuotaExceeded(message),
            Some(ErrorReason::NotAnImage) => return Self::NotAnImage(message),
            Some(ErrorReason::ImageRefused) => return Self::ImageRefused(message),
            Some(ErrorReason::ChecksumMismatch) => return Self::ChecksumMismatch(message),
            Some(ErrorReason::UploadOffsetMismatch) => {
                return Self::UploadOffsetMismatch(message);
            }
            Some(ErrorReason::MediaRejected) => return Self::MediaRejected(message),
            Some(ErrorReason::MediaQuarantined) => return Self::MediaQuarantined(message),
            Some(ErrorReason::MediaDeleted) => return Self::MediaDeleted(message),
            Some(ErrorReason::Unspecified) | None => {}
        }
        match status.code() {
            Code::Unauthenticated => Self::Unauthenticated(message),
            Code::NotFound => Self::NotFound(message),
            Code::InvalidArgument => Self::InvalidArgument(message),
            Code::OutOfRange => Self::OutOfRange(message),
            Code::Unavailable => Self::Unavailable(message),
            // A connection that broke under a call: the server went away.
            Code::Unknown if from_transport(&status) => {
                Self::Unavailable(format!("the connection broke: {message}"))
            }
            Code::DeadlineExceeded => Self::DeadlineExceeded(message),
            Code::Cancelled => Self::Cancelled,
            _ => Self::Status(status),
        }
    }
}

/// Whether a status stands for a broken connection rather than an answer: a transport
/// error, or an HTTP/2 or socket error under it (a connection reset in the middle of a
/// response stream arrives as `hyper::Error` over an I/O error).
fn from_transport(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>()
            || error.is::<hyper::Error>()
            || error.is::<std::io::Error>()
        {
            return true;
        }
        source = error.source();
    }
    false
}

impl From<tonic::transport::Error> for Error {
    /// A connection failure, with its causes spelled out ("transport error" alone says
    /// nothing a person can act on).
    fn from(error: tonic::transport::Error) -> Self {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        Self::Unavailable(text)
    }
}

//! One error type for every call, with the server's refusals sorted into variants a
//! caller can match on instead of reading status strings.

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::transfer::RequestId;

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
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        let reason = status
            .get_error_details()
            .error_info()
            .filter(|info| info.domain == DOMAIN)
            .map(|info| info.reason.clone());
        match reason.as_deref() {
            Some("MEDIA_TOO_LARGE") => return Self::TooLarge(message),
            Some("MESSAGE_TOO_LARGE") => return Self::MessageTooLarge(message),
            Some("TOO_MANY_TRANSFERS") => return Self::TooManyTransfers(message),
            Some("RATE_LIMITED") => return Self::TooOften(message),
            Some("TOO_MANY_CHANNELS") => return Self::TooManyChannels(message),
            Some("MEDIA_UNAVAILABLE") => return Self::MediaUnavailable(message),
            Some("NOT_A_MEMBER") => return Self::NotAMember(message),
            Some("TOO_SLOW") => return Self::TooSlow(message),
            Some("TOO_MANY_STREAMS") => return Self::TooManyStreams(message),
            _ => {}
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

/// Whether a status stands for a broken connection rather than an answer.
fn from_transport(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
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

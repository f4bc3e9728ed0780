//! The one error type of the server, and the one place it becomes a gRPC status.
//!
//! Messages of the client-facing variants are sent to the caller and must say what was
//! wrong with the request. Internal detail (paths, storage responses) stays in
//! [`Error::Internal`] and [`Error::Storage`], which are logged and never sent.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of every `google.rpc.ErrorInfo` courier sends.
pub const ERROR_DOMAIN: &str = "courier.v1";

/// Why a well-formed request was refused, for clients to act on without reading
/// messages. Sent as the `reason` of a `google.rpc.ErrorInfo` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An upload is larger than the server accepts.
    MediaTooLarge,
    /// A message's text, file name, thumbnail and payload exceed 32 KiB.
    MessageTooLarge,
    /// The caller already has the most transfers in flight.
    TooManyTransfers,
    /// The caller sent more messages than the rate limit allows.
    RateLimited,
    /// The caller is already a member of the most channels allowed.
    TooManyChannels,
    /// A message points at media that do not exist or have expired.
    MediaUnavailable,
    /// The caller sent to a channel it is not a member of.
    NotAMember,
    /// A Subscribe stream fell too far behind and was ended.
    TooSlow,
    /// The caller already has the most Subscribe streams open.
    TooManyStreams,
}

impl Reason {
    /// The gRPC code of a refusal for this reason.
    pub fn code(self) -> Code {
        match self {
            Self::MediaTooLarge | Self::MessageTooLarge => Code::InvalidArgument,
            Self::TooManyTransfers
            | Self::RateLimited
            | Self::TooManyChannels
            | Self::TooSlow
            | Self::TooManyStreams => Code::ResourceExhausted,
            Self::MediaUnavailable | Self::NotAMember => Code::FailedPrecondition,
        }
    }

    /// The reason as sent in `google.rpc.ErrorInfo.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MediaTooLarge => "MEDIA_TOO_LARGE",
            Self::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Self::TooManyTransfers => "TOO_MANY_TRANSFERS",
            Self::RateLimited => "RATE_LIMITED",
            Self::TooManyChannels => "TOO_MANY_CHANNELS",
            Self::MediaUnavailable => "MEDIA_UNAVAILABLE",
            Self::NotAMember => "NOT_A_MEMBER",
            Self::TooSlow => "TOO_SLOW",
            Self::TooManyStreams => "TOO_MANY_STREAMS",
        }
    }
}

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed or breaks a rule.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named object does not exist, or has expired.
    #[error("{0}")]
    NotFound(String),
    /// A requested offset lies past the end of an object.
    #[error("{0}")]
    OutOfRange(String),
    /// The caller is over a limit (transfers in flight, rate, channels).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request is well formed but the system is not in a state to allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's token is missing, malformed, forged or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// The peer stopped sending or reading for longer than the idle timeout.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The caller cancelled the call.
    #[error("{0}")]
    Cancelled(String),
    /// A rule with a machine-readable [`Reason`] refused the request.
    #[error("{1}")]
    Refused(Reason, String),
    /// The server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state on the server. Logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
    /// The object store failed. Logged, never sent.
    #[error("storage error: {0}")]
    Storage(#[from] object_store::Error),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Cancelled(_) => Code::Cancelled,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Refused(reason, _) => reason.code(),
            Self::Internal(_) | Self::Storage(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Internal(_) | Error::Storage(_) => {
                tracing::error!(error = %error, "request failed");
                Status::internal("internal error; the server log has the details")
            }
            Error::Refused(reason, message) => {
                let details = ErrorDetails::with_error_info(
                    reason.as_str(),
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                );
                Status::with_error_details(reason.code(), message, details)
            }
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

impl From<Status> for Error {
    /// A status that arrives from the transport while reading a client stream: the
    /// client cancelled, or the connection broke.
    fn from(status: Status) -> Self {
        Self::Cancelled(format!("the call ended: {}", status.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_is_not_sent() {
        let status = Status::from(Error::Internal("/srv/data/secret path".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("/srv"));
    }

    #[test]
    fn refusals_carry_their_reason() {
        let status = Status::from(Error::Refused(Reason::RateLimited, "slow down".into()));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "slow down");
        let info = status.get_error_details().error_info().cloned();
        assert_eq!(
            info.map(|i| (i.reason, i.domain)),
            Some(("RATE_LIMITED".into(), ERROR_DOMAIN.into()))
        );
    }

    #[test]
    fn client_errors_keep_their_message() {
        let status = Status::from(Error::invalid("size must be at least 1 byte"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "size must be at least 1 byte");
    }
}

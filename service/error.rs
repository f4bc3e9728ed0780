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
/// messages: the generated `courier.v1.ErrorReason`, whose value names
/// (`ErrorReason::as_str_name`) are sent as the `reason` of a `google.rpc.ErrorInfo`.
pub use crate::pb::ErrorReason as Reason;

/// The gRPC code of a refusal for `reason`, as documented on each value in
/// `proto/courier/v1/error_reason.proto`.
pub fn reason_code(reason: Reason) -> Code {
    match reason {
        Reason::MediaTooLarge | Reason::MessageTooLarge | Reason::ChecksumMismatch => {
            Code::InvalidArgument
        }
        Reason::TooManyTransfers
        | Reason::RateLimited
        | Reason::TooManyChannels
        | Reason::TooSlow
        | Reason::TooManyStreams
        | Reason::OfflineCacheFull
        | Reason::QuotaExceeded => Code::ResourceExhausted,
        Reason::MediaUnavailable
        | Reason::NotAMember
        | Reason::NotAnImage
        | Reason::ImageRefused
        | Reason::UploadOffsetMismatch
        | Reason::MediaRejected
        | Reason::MediaQuarantined => Code::FailedPrecondition,
        Reason::MediaDeleted => Code::NotFound,
        // Never constructed by the server: a refusal always names its reason.
        Reason::Unspecified => Code::Unknown,
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
    /// A header-only upload (SHA-256 and size, no data) of content the caller has not
    /// stored: INVALID_ARGUMENT, worded exactly as any upload that sent too few bytes,
    /// so that it reveals nothing; kept apart only so that it is not counted as a
    /// failed upload (clients offer every upload this way first).
    #[error("{0}")]
    OfferMissed(String),
    /// A rule with a machine-readable [`Reason`] refused the request.
    #[error("{1}")]
    Refused(Reason, String),
    /// A refusal with a [`Reason`] and ErrorInfo metadata (a quota's limit and use).
    #[error("{1}")]
    RefusedWith(Reason, String, std::collections::BTreeMap<String, String>),
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
            Self::InvalidArgument(_) | Self::OfferMissed(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Cancelled(_) => Code::Cancelled,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Refused(reason, _) | Self::RefusedWith(reason, _, _) => reason_code(*reason),
            Self::Storage(e) if store_unreachable(e) => Code::Unavailable,
            Self::Internal(_) | Self::Storage(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Storage(ref e) if store_unreachable(e) => {
                tracing::warn!(error = %error, "the media store is unreachable");
                Status::unavailable("the media store is unreachable right now; try again later")
            }
            Error::Internal(_) | Error::Storage(_) => {
                tracing::error!(error = %error, "request failed");
                Status::internal("internal error; the server log has the details")
            }
            Error::Refused(reason, message) => {
                let details = ErrorDetails::with_error_info(
                    reason.as_str_name(),
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                );
                Status::with_error_details(reason_code(reason), message, details)
            }
            Error::RefusedWith(reason, message, metadata) => {
                let details = ErrorDetails::with_error_info(
                    reason.as_str_name(),
                    ERROR_DOMAIN,
                    metadata
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                );
                Status::with_error_details(reason_code(reason), message, details)
            }
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

/// Whether an object store error means the store could not be reached (a refused,
/// reset or timed-out connection, after object_store's own retries), which is worth a
/// retry later, rather than a fault of the store or of the server.
pub fn store_unreachable(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        source = e.source();
    }
    false
}

impl From<Status> for Error {
    /// A status that arrives while reading a client stream: a frame that is too large
    /// or does not decode is the client's fault and says so; anything else means the
    /// client cancelled or the connection broke.
    fn from(status: Status) -> Self {
        match status.code() {
            Code::InvalidArgument => Self::InvalidArgument(status.message().to_owned()),
            Code::ResourceExhausted => Self::ResourceExhausted(status.message().to_owned()),
            // The transport's own size check, by the frame's length prefix: worded as
            // the codec's refusal (client streams carry frames of at most 4 MiB).
            Code::OutOfRange => Self::ResourceExhausted(
                crate::codec::transport_refusal(&status, "")
                    .map(|refusal| refusal.message().to_owned())
                    .unwrap_or_else(|| status.message().to_owned()),
            ),
            _ => Self::Cancelled(format!("the call ended: {}", status.message())),
        }
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
    fn reason_strings_are_the_proto_value_names() {
        // The wire strings of the API before the enum existed; they must never change.
        let wire = [
            (
                Reason::MediaTooLarge,
                "MEDIA_TOO_LARGE",
                Code::InvalidArgument,
            ),
            (
                Reason::MessageTooLarge,
                "MESSAGE_TOO_LARGE",
                Code::InvalidArgument,
            ),
            (
                Reason::TooManyTransfers,
                "TOO_MANY_TRANSFERS",
                Code::ResourceExhausted,
            ),
            (Reason::RateLimited, "RATE_LIMITED", Code::ResourceExhausted),
            (
                Reason::TooManyChannels,
                "TOO_MANY_CHANNELS",
                Code::ResourceExhausted,
            ),
            (
                Reason::MediaUnavailable,
                "MEDIA_UNAVAILABLE",
                Code::FailedPrecondition,
            ),
            (Reason::NotAMember, "NOT_A_MEMBER", Code::FailedPrecondition),
            (Reason::TooSlow, "TOO_SLOW", Code::ResourceExhausted),
            (
                Reason::TooManyStreams,
                "TOO_MANY_STREAMS",
                Code::ResourceExhausted,
            ),
            (
                Reason::OfflineCacheFull,
                "OFFLINE_CACHE_FULL",
                Code::ResourceExhausted,
            ),
            (Reason::NotAnImage, "NOT_AN_IMAGE", Code::FailedPrecondition),
            (
                Reason::ImageRefused,
                "IMAGE_REFUSED",
                Code::FailedPrecondition,
            ),
        ];
        for (reason, name, code) in wire {
            assert_eq!(reason.as_str_name(), name);
            assert_eq!(Reason::from_str_name(name), Some(reason));
            assert_eq!(reason_code(reason), code, "{name}");
        }
    }

    #[test]
    fn an_unreachable_store_is_unavailable_without_detail() {
        let broken = object_store::client::HttpError::new(
            object_store::client::HttpErrorKind::Connect,
            std::io::Error::other("connect to 10.0.0.7:9000: connection refused"),
        );
        let error = Error::Storage(object_store::Error::Generic {
            store: "S3",
            source: Box::new(broken),
        });
        assert_eq!(error.code(), Code::Unavailable);
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            !status.message().contains("10.0.0.7"),
            "{}",
            status.message()
        );
        let other = Error::Storage(object_store::Error::Generic {
            store: "S3",
            source: "a malformed response".into(),
        });
        assert_eq!(Status::from(other).code(), Code::Internal);
    }

    #[test]
    fn client_errors_keep_their_message() {
        let status = Status::from(Error::invalid("size must be at least 1 byte"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "size must be at least 1 byte");
    }
}

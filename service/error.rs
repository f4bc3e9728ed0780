//! The one error type of the server, and the one place it becomes a gRPC status.
//!
//! Messages of the client-facing variants are sent to the caller and must say what was
//! wrong with the request. Internal detail (paths, storage responses) stays in
//! [`Error::Internal`] and [`Error::Storage`], which are logged and never sent.

use tonic::{Code, Status};

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
    fn client_errors_keep_their_message() {
        let status = Status::from(Error::invalid("size must be at least 1 byte"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "size must be at least 1 byte");
    }
}

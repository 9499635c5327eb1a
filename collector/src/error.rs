//! The collector's error vocabulary and its one mapping to HTTP statuses and gRPC codes.

use loupe_storage::AuthError;

use crate::wal::WalError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request is malformed (400 / INVALID_ARGUMENT).
    #[error("{0}")]
    BadRequest(String),
    /// The request is over the size limit after decompression (413 / RESOURCE_EXHAUSTED).
    #[error("{0}")]
    TooLarge(String),
    /// Content type or encoding we do not accept (415 / INVALID_ARGUMENT).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Missing or wrong credentials (401 / UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// Temporarily unable to accept data; retry later (503 + Retry-After / UNAVAILABLE).
    #[error("{0}")]
    Overloaded(String),
    /// Our fault (500 / INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl IngestError {
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            IngestError::BadRequest(_) => S::BAD_REQUEST,
            IngestError::TooLarge(_) => S::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType(_) => S::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Unauthenticated(_) => S::UNAUTHORIZED,
            IngestError::Overloaded(_) => S::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            IngestError::BadRequest(_) | IngestError::UnsupportedMediaType(_) => C::InvalidArgument,
            IngestError::TooLarge(_) => C::ResourceExhausted,
            IngestError::Unauthenticated(_) => C::Unauthenticated,
            IngestError::Overloaded(_) => C::Unavailable,
            IngestError::Internal(_) => C::Internal,
        }
    }

    /// Label for the `loupe_ingest_rejected_requests_total` counter.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::BadRequest(_) => "bad_request",
            IngestError::TooLarge(_) => "too_large",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::Unauthenticated(_) => "unauthenticated",
            IngestError::Overloaded(_) => "overloaded",
            IngestError::Internal(_) => "internal",
        }
    }

    /// Seconds a client should wait before retrying, for overload answers.
    pub fn retry_after_secs(&self) -> Option<u64> {
        matches!(self, IngestError::Overloaded(_)).then_some(1)
    }

    pub fn into_status(self) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), self.to_string())
    }
}

impl From<WalError> for IngestError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Full(_) => IngestError::Overloaded(e.to_string()),
            WalError::Io(_) | WalError::Stopped => {
                IngestError::Overloaded(format!("cannot persist the request: {e}"))
            }
        }
    }
}

impl From<AuthError> for IngestError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidTenant(m) => IngestError::BadRequest(m),
            other => IngestError::Unauthenticated(other.to_string()),
        }
    }
}

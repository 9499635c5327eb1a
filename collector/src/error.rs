//! The collector's error type. Its kinds come from the shared vocabulary
//! ([`loupe_core::ErrorCode`]), which alone maps them to HTTP statuses and gRPC codes; the
//! OTLP edges only choose the envelope (`google.rpc.Status` in the request's encoding, or a
//! gRPC status).

use loupe_core::cpu::Panicked;
use loupe_core::{AuthError, Classify, ErrorCode};
use loupe_wal::WalError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request is over the size limit after decompression.
    #[error("{0}")]
    TooLarge(String),
    /// Content type or encoding we do not accept.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// At one of our own limits (buffer, in-flight bytes, WAL size); retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The disk or the object store is failing; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Our fault.
    #[error("{0}")]
    Internal(String),
}

impl Classify for IngestError {
    fn code(&self) -> ErrorCode {
        match self {
            IngestError::BadRequest(_) => ErrorCode::BadInput,
            IngestError::TooLarge(_) => ErrorCode::TooLarge,
            IngestError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            IngestError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            IngestError::Overloaded(_) => ErrorCode::Overloaded,
            IngestError::Unavailable(_) => ErrorCode::Unavailable,
            IngestError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl IngestError {
    /// Label for the `loupe_ingest_rejected_requests_total` counter.
    pub fn reason(&self) -> &'static str {
        self.code().as_str()
    }

    pub fn into_status(self) -> tonic::Status {
        tonic::Status::new(
            tonic::Code::from_i32(self.code().grpc_code() as i32),
            self.to_string(),
        )
    }
}

impl From<WalError> for IngestError {
    fn from(e: WalError) -> Self {
        let msg = match &e {
            WalError::Io(_) | WalError::Stopped => format!("cannot persist the request: {e}"),
            _ => e.to_string(),
        };
        match e.code() {
            ErrorCode::Overloaded => IngestError::Overloaded(msg),
            ErrorCode::TooLarge => IngestError::TooLarge(msg),
            _ => IngestError::Unavailable(msg),
        }
    }
}

impl From<AuthError> for IngestError {
    fn from(e: AuthError) -> Self {
        match e.code() {
            ErrorCode::BadInput => IngestError::BadRequest(e.to_string()),
            _ => IngestError::Unauthenticated(e.to_string()),
        }
    }
}

impl From<Panicked> for IngestError {
    fn from(e: Panicked) -> Self {
        IngestError::Internal(e.to_string())
    }
}

//! The storage error vocabulary, classified (through [`Classify`]) by whose fault a failure
//! is, so that the HTTP and gRPC layers map it to a status without knowing storage internals.

use loupe_core::{Classify, ErrorCode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("invalid storage url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("object store {op} of {path:?} failed: {source}")]
    ObjectStore {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("catalog conflict: {0}")]
    Conflict(String),
    #[error("corrupt {what} at {path:?}: {reason}")]
    Corrupt {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("parquet error on {path:?}: {reason}")]
    Parquet { path: String, reason: String },
    #[error("{0}")]
    BadInput(String),
    /// The object store could not do the work now; a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug on our side (a panicked task).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Classify for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            StorageError::BadInput(_) | StorageError::InvalidUrl { .. } => ErrorCode::BadInput,
            StorageError::ObjectStore { source, .. } => match source {
                // An object a catalog entry names is missing: our inconsistency, not the
                // caller's "not found" (callers that expect absence check `is_missing`).
                object_store::Error::NotFound { .. } => ErrorCode::Internal,
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => ErrorCode::Conflict,
                _ => ErrorCode::Unavailable,
            },
            StorageError::Conflict(_) => ErrorCode::Conflict,
            StorageError::Unavailable(_) => ErrorCode::Unavailable,
            StorageError::Corrupt { .. }
            | StorageError::Parquet { .. }
            | StorageError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl StorageError {
    /// True when the failure is an object that does not exist (for example a data file that
    /// garbage collection deleted after a newer catalog dropped it).
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            StorageError::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }

    pub(crate) fn store(
        op: &'static str,
        path: impl ToString,
        source: object_store::Error,
    ) -> Self {
        StorageError::ObjectStore {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn parquet(path: impl ToString, reason: impl ToString) -> Self {
        StorageError::Parquet {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<loupe_core::cpu::Panicked> for StorageError {
    fn from(e: loupe_core::cpu::Panicked) -> Self {
        StorageError::Internal(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

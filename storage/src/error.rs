//! The storage error vocabulary, classified by whose fault a failure is so that the HTTP and
//! gRPC layers can map it to a status without knowing storage internals.

use thiserror::Error;

/// Whose fault a failure is; drives HTTP status and gRPC code at the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid (400 / INVALID_ARGUMENT).
    BadInput,
    /// The thing asked for does not exist (404 / NOT_FOUND).
    NotFound,
    /// Someone else changed the same thing first; retrying may succeed.
    Conflict,
    /// A dependency (the object store) failed; retrying later may succeed (503 / UNAVAILABLE).
    Unavailable,
    /// A bug or corrupt data on our side (500 / INTERNAL).
    Internal,
}

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("invalid tenant name {name:?}: expected 1 to 64 characters of a-z, 0-9, '_' or '-'")]
    InvalidTenant { name: String },
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
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::InvalidTenant { .. } | StorageError::BadInput(_) => ErrorKind::BadInput,
            StorageError::InvalidUrl { .. } => ErrorKind::BadInput,
            StorageError::ObjectStore { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => ErrorKind::Conflict,
                _ => ErrorKind::Unavailable,
            },
            StorageError::Conflict(_) => ErrorKind::Conflict,
            StorageError::Corrupt { .. } | StorageError::Parquet { .. } => ErrorKind::Internal,
        }
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

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

//! The query service's error vocabulary and its JSON error body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use loupe_storage::{AuthError, ErrorKind, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            QueryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            QueryError::BadRequest(_) => "bad_request",
            QueryError::NotFound(_) => "not_found",
            QueryError::Unauthenticated(_) => "unauthenticated",
            QueryError::Unavailable(_) => "unavailable",
            QueryError::Internal(_) => "internal",
        }
    }
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        match e.kind() {
            ErrorKind::BadInput => QueryError::BadRequest(e.to_string()),
            ErrorKind::NotFound => QueryError::NotFound(e.to_string()),
            ErrorKind::Conflict | ErrorKind::Unavailable => QueryError::Unavailable(e.to_string()),
            ErrorKind::Internal => QueryError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for QueryError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidTenant(m) => QueryError::BadRequest(m),
            other => QueryError::Unauthenticated(other.to_string()),
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        if matches!(self, QueryError::Internal(_)) {
            tracing::error!(error = %self, "query failed");
        }
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut resp = (self.status(), Json(body)).into_response();
        if matches!(self, QueryError::Unauthenticated(_)) {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

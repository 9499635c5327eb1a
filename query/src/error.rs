//! The query service's error type and its JSON error body
//! `{"error": {"code": "...", "message": "..."}}`. Kinds come from the shared vocabulary
//! ([`loupe_core::ErrorCode`]), which alone maps them to HTTP statuses; the Jaeger, Tempo, Loki
//! and Prometheus adapters choose their own envelope around the same code and message.

use axum::Json;
use axum::response::{IntoResponse, Response};
use loupe_core::{AuthError, Classify, ErrorCode};
use loupe_storage::StorageError;
use serde::Serialize;
use utoipa::ToSchema;

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

/// The JSON error body (for the OpenAPI document).
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl Classify for QueryError {
    fn code(&self) -> ErrorCode {
        match self {
            QueryError::BadRequest(_) => ErrorCode::BadInput,
            QueryError::NotFound(_) => ErrorCode::NotFound,
            QueryError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            QueryError::Unavailable(_) => ErrorCode::Unavailable,
            QueryError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        match e.code() {
            ErrorCode::BadInput | ErrorCode::TooLarge | ErrorCode::UnsupportedMediaType => {
                QueryError::BadRequest(e.to_string())
            }
            ErrorCode::NotFound => QueryError::NotFound(e.to_string()),
            ErrorCode::Unauthenticated => QueryError::Unauthenticated(e.to_string()),
            ErrorCode::Conflict | ErrorCode::Overloaded | ErrorCode::Unavailable => {
                QueryError::Unavailable(e.to_string())
            }
            ErrorCode::Internal => QueryError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for QueryError {
    fn from(e: AuthError) -> Self {
        match e.code() {
            ErrorCode::BadInput => QueryError::BadRequest(e.to_string()),
            _ => QueryError::Unauthenticated(e.to_string()),
        }
    }
}

impl From<loupe_core::cpu::Panicked> for QueryError {
    fn from(e: loupe_core::cpu::Panicked) -> Self {
        QueryError::Internal(e.to_string())
    }
}

impl QueryError {
    /// The error as a plain-text body with its status (and `Retry-After` when it has one):
    /// the envelope of the APIs that answer errors as text (Tempo, Loki). `api` names the API
    /// in the log line of an internal error.
    pub fn plain_text(self, api: &str) -> Response {
        let code = self.code();
        if matches!(self, QueryError::Internal(_)) {
            tracing::error!(error = %self, api, "query failed");
        }
        let mut resp = (code.http_status(), self.to_string()).into_response();
        if let Some(secs) = code.retry_after_secs() {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        if matches!(self, QueryError::Internal(_)) {
            tracing::error!(error = %self, "query failed");
        }
        let code = self.code();
        let body =
            serde_json::json!({"error": {"code": code.as_str(), "message": self.to_string()}});
        let mut resp = (code.http_status(), Json(body)).into_response();
        if let Some(secs) = code.retry_after_secs() {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if code == ErrorCode::Unauthenticated {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

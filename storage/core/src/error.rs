//! One error vocabulary for every crate and every transport.
//!
//! Each crate keeps its own typed error (`IngestError`, `QueryError`, `StorageError`, ...)
//! and says, through [`Classify`], which [`ErrorCode`] a failure is: whose fault it is and
//! whether a retry can help. The mapping from a code to an HTTP status, a gRPC code and a
//! retry hint lives here and nowhere else; the OTLP, native, Jaeger (and later Loki,
//! Prometheus, Tempo) adapters only choose the envelope the message travels in.

use http::StatusCode;

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or asks for something invalid.
    BadInput,
    /// The request is larger than a configured limit.
    TooLarge,
    /// The content type or encoding is not one we accept.
    UnsupportedMediaType,
    /// Credentials are missing or wrong.
    Unauthenticated,
    /// The thing asked for does not exist.
    NotFound,
    /// Someone else changed the same thing first; retrying after a reload may succeed.
    Conflict,
    /// We are at a limit we set ourselves (memory, queue, write-ahead log); retry later.
    Overloaded,
    /// A dependency (the object store, the disk) is failing; retry later.
    Unavailable,
    /// A bug or damaged data on our side.
    Internal,
}

/// gRPC status codes (numbers as in the gRPC specification), without a gRPC dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum GrpcCode {
    InvalidArgument = 3,
    NotFound = 5,
    ResourceExhausted = 8,
    Aborted = 10,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// Seconds a client should wait before retrying an overload or outage answer.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ErrorCode {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadInput => StatusCode::BAD_REQUEST,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Overloaded | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> GrpcCode {
        match self {
            ErrorCode::BadInput | ErrorCode::UnsupportedMediaType => GrpcCode::InvalidArgument,
            ErrorCode::TooLarge => GrpcCode::ResourceExhausted,
            ErrorCode::Unauthenticated => GrpcCode::Unauthenticated,
            ErrorCode::NotFound => GrpcCode::NotFound,
            ErrorCode::Conflict => GrpcCode::Aborted,
            ErrorCode::Overloaded | ErrorCode::Unavailable => GrpcCode::Unavailable,
            ErrorCode::Internal => GrpcCode::Internal,
        }
    }

    /// The code's name in JSON error bodies and in the `reason` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadInput => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// `Retry-After` (HTTP) / the wait before a retry, for answers a retry can fix.
    pub fn retry_after_secs(self) -> Option<u64> {
        matches!(self, ErrorCode::Overloaded | ErrorCode::Unavailable).then_some(RETRY_AFTER_SECS)
    }

    /// Whether an OTLP client should retry a request refused with this code.
    pub fn is_retryable(self) -> bool {
        self.retry_after_secs().is_some()
    }
}

/// Implemented by every crate's error type: which [`ErrorCode`] a failure is.
pub trait Classify {
    fn code(&self) -> ErrorCode;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_a_status_and_a_grpc_code() {
        let all = [
            ErrorCode::BadInput,
            ErrorCode::TooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unauthenticated,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Overloaded,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        for c in all {
            let s = c.http_status();
            assert!(s.is_client_error() || s.is_server_error(), "{c:?}");
            // Only server-side, passing conditions ask for a retry.
            assert_eq!(
                c.retry_after_secs().is_some(),
                s == StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(ErrorCode::TooLarge.grpc_code() as i32, 8);
        assert_eq!(ErrorCode::Overloaded.grpc_code() as i32, 14);
        assert_eq!(
            ErrorCode::Unauthenticated.http_status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

//! PromQL: parsed by `promql-parser`, evaluated here. A query is planned
//! ([`fetch::plan`]: every selector and the time range it needs), its series are read
//! through [`MetricService`] (files and fresh samples), then the expression is evaluated on
//! the CPU pool for every step at once ([`eval`], [`functions`], [`range`], [`aggregate`],
//! [`binary`]).
//!
//! Semantics follow the current Prometheus (3.x): range selectors and the lookback window
//! are left-open, `(t - range, t]`. Prometheus 2.42 closed them on the left; the two differ
//! only for a sample exactly `range` before an evaluation time.

pub mod aggregate;
pub mod binary;
pub mod eval;
pub mod fetch;
pub mod functions;
pub mod range;
pub mod service;
pub mod value;

#[cfg(test)]
mod tests;

pub use service::{MetricService, QueryResult};

use loupe_core::{Classify, ErrorCode};

use crate::error::QueryError;

/// How a PromQL request failed, in Prometheus's error types.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query or a parameter is malformed (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The query is valid but cannot be evaluated over this data (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// Reading the data failed.
    #[error("{0}")]
    Query(#[from] QueryError),
}

impl EvalError {
    /// Prometheus's `errorType` and the HTTP status.
    pub fn kind(&self) -> (&'static str, http::StatusCode) {
        match self {
            EvalError::BadData(_) => ("bad_data", http::StatusCode::BAD_REQUEST),
            EvalError::Execution(_) => ("execution", http::StatusCode::UNPROCESSABLE_ENTITY),
            EvalError::Query(q) => match q.code() {
                ErrorCode::BadInput => ("bad_data", http::StatusCode::BAD_REQUEST),
                ErrorCode::Unavailable | ErrorCode::Overloaded => {
                    ("unavailable", http::StatusCode::SERVICE_UNAVAILABLE)
                }
                c => ("internal", c.http_status()),
            },
        }
    }
}

impl From<loupe_storage::StorageError> for EvalError {
    fn from(e: loupe_storage::StorageError) -> Self {
        EvalError::Query(e.into())
    }
}

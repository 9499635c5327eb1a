//! TraceQL, Tempo's trace query language, written from its documentation (Tempo's grammar is
//! AGPL and no maintained Rust crate parses it).
//!
//! - [`lexer`] and [`parser`]: text → [`ast::SpansetExpr`], with type checks (`check.rs`); what
//!   we do not support answers a [`TraceQlError`] naming it (HTTP 400).
//! - [`eval`]: the expression on one whole trace → the matched spanset.
//! - [`plan`]: the span predicate that narrows a search to candidate traces before they are
//!   read whole; [`search`] runs a search with it.
//!
//! Golden tests live in `golden/`: `parse.txt` (query → canonical tree or error) and
//! `eval.txt` (query → matching spans of a fixed trace set). `LOUPE_UPDATE_GOLDEN=1 cargo
//! nextest run -p loupe-query traceql` rewrites the expected halves after a deliberate change.

pub mod ast;
mod check;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod plan;
pub mod search;

pub use ast::SpansetExpr;
pub use eval::{Matched, TraceView};
pub use parser::{parse, parse_field};

use crate::error::QueryError;

/// A query TraceQL cannot run, with the byte offset where the problem starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at offset {pos})")]
pub struct TraceQlError {
    pub pos: usize,
    pub message: String,
}

impl TraceQlError {
    pub fn at(pos: usize, message: impl Into<String>) -> Self {
        TraceQlError {
            pos,
            message: message.into(),
        }
    }

    pub fn unsupported(pos: usize, what: &str) -> Self {
        TraceQlError::at(pos, format!("not supported: {what}"))
    }
}

impl From<TraceQlError> for QueryError {
    fn from(e: TraceQlError) -> Self {
        QueryError::BadRequest(format!("invalid TraceQL query: {e}"))
    }
}

#[cfg(test)]
pub(crate) mod golden;

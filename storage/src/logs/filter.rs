//! What a log search asks for, as one predicate on records (fresh and stored alike) and the
//! catalog-level test that skips files which cannot hold a match.

use std::sync::Arc;

use crate::catalog::FileEntry;
use crate::logs::expr::LogExpr;
use crate::logs::index::tokens::{Term, text_matches};
use crate::logs::model::LogRecord;
use crate::model::TraceId;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Time range, `[start, end]` in unix nanoseconds.
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub service: Option<String>,
    /// Only records at least this severe (OTLP severity number).
    pub min_severity: Option<i32>,
    /// Only records at most this severe.
    pub max_severity: Option<i32>,
    pub trace_id: Option<TraceId>,
    /// Each must occur in the body: its tokens in a row, ignoring ASCII case (see
    /// [`crate::logs::index::tokens`]).
    pub terms: Vec<String>,
    /// `key = value` on the record's attributes or else its resource's (values compared as
    /// text, as span tag filters are).
    pub attributes: Vec<(String, String)>,
    /// Any other condition (alternatives, negations, wildcards, ranges), which must hold too.
    pub expr: Option<LogExpr>,
    /// A check beyond all the above (a LogQL pipeline), run last, on records only.
    pub residual: Option<Residual>,
}

/// A check of a whole record that the index cannot help with.
#[derive(Clone)]
pub struct Residual(pub Arc<dyn Fn(&LogRecord) -> bool + Send + Sync>);

impl std::fmt::Debug for Residual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Residual(..)")
    }
}

impl PartialEq for Residual {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

impl LogFilter {
    /// Whether a file may hold a match (time range, service, trace-id filter).
    pub fn may_hold(&self, f: &FileEntry) -> bool {
        f.overlaps(self.start_unix_nano, self.end_unix_nano)
            && self
                .service
                .as_ref()
                .is_none_or(|s| f.services.iter().any(|x| x == s))
            && match (&self.trace_id, &f.trace_filter) {
                (Some(id), Some(filter)) => filter.may_contain(id),
                _ => true,
            }
    }

    /// Terms as the matcher compares them (tokenized). Call once per search.
    pub fn prepared_terms(&self) -> Vec<Term> {
        self.terms.iter().map(|t| Term::new(t)).collect()
    }

    /// Whether `r` matches; `terms` from [`Self::prepared_terms`].
    pub fn matches(&self, r: &LogRecord, terms: &[Term]) -> bool {
        if r.time_unix_nano < self.start_unix_nano || r.time_unix_nano > self.end_unix_nano {
            return false;
        }
        if self.service.as_ref().is_some_and(|s| s != r.service_name()) {
            return false;
        }
        if self.min_severity.is_some_and(|m| r.severity_number < m)
            || self.max_severity.is_some_and(|m| r.severity_number > m)
        {
            return false;
        }
        if self.trace_id.is_some() && self.trace_id != r.trace_id {
            return false;
        }
        for (k, v) in &self.attributes {
            if r.attribute(k).is_none_or(|a| a.to_filter_string() != *v) {
                return false;
            }
        }
        text_matches(&r.body_text(), terms)
            && self.expr.as_ref().is_none_or(|e| e.matches(r))
            && self.residual.as_ref().is_none_or(|k| (k.0)(r))
    }

    /// Whether the filter asks only for a time range, service and severity.
    pub fn is_plain(&self) -> bool {
        self.terms.is_empty()
            && self.attributes.is_empty()
            && self.trace_id.is_none()
            && self.expr.is_none()
            && self.residual.is_none()
    }
}

/// Which lines a search returns first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

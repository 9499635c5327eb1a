//! LogQL, the query language of Grafana Loki, over Loupe's logs: the tokens ([`lexer`]),
//! tree ([`ast`]) and parser ([`parser`]), a record's labels as Loki shows OTLP logs
//! ([`labels`]), the pipeline run on each line ([`pipeline`], [`template`]) and the metric
//! evaluator ([`eval`]). Golden tests in `golden/` (`golden.rs`).
//!
//! A query runs as a [`Plan`]: what the storage search can narrow by (the selector's
//! `service_name`, other stream labels equal to a value, line filters before the line is
//! reformatted, `trace_id = "..."`) goes into a [`LogFilter`]; the whole selector and pipeline
//! then decide on each candidate record.
//!
//! Why our own parser: the one LogQL crate that is kept up (`logql-parser`) is AGPL-3.0,
//! which this Apache-2.0 project cannot take, and the older `logql` crate has not changed
//! since 2022 and lacks most of the pipeline stages.

pub mod ast;
pub mod eval;
pub mod labels;
pub mod lexer;
pub mod parser;
pub mod pipeline;
pub mod run;
pub mod template;

#[cfg(test)]
pub(crate) mod golden;

use std::sync::Arc;

use loupe_storage::logs::{Cond, LogExpr, LogFilter, LogRecord, Pattern, Residual, ValueTest};
use loupe_storage::model::parse_trace_id;

pub use ast::Query;
pub use parser::parse;

use crate::error::QueryError;
use ast::{LabelFilter, LineOp, LogQuery, MatchOp, Stage};
use labels::{Cat, Labels, STREAM_ATTRIBUTES, label_name};
use pipeline::Entry;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogqlError {
    /// Not LogQL, with where.
    #[error("parse error at line {line}, col {col}: {msg}")]
    Parse {
        line: usize,
        col: usize,
        msg: String,
    },
    /// LogQL that Loupe does not evaluate.
    #[error("unsupported LogQL: {0}")]
    Unsupported(String),
    /// A query that would read or return too much.
    #[error("{0}")]
    Limit(String),
    /// A metric query over lines its pipeline could not read.
    #[error("{0}")]
    Pipeline(String),
}

impl LogqlError {
    /// A parse error at byte `at` of `q`.
    pub fn parse(q: &str, at: usize, msg: String) -> Self {
        let at = at.min(q.len());
        let before = &q[..q.floor_char_boundary(at)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LogqlError::Parse { line, col, msg }
    }
}

impl From<LogqlError> for QueryError {
    fn from(e: LogqlError) -> Self {
        QueryError::BadRequest(e.to_string())
    }
}

/// A log query ready to run: its storage narrowing and its exact check.
#[derive(Debug, Clone)]
pub struct Plan {
    pub log: Arc<LogQuery>,
}

impl Plan {
    pub fn new(log: LogQuery) -> Plan {
        Plan { log: Arc::new(log) }
    }

    /// The line after the selector and pipeline, if they keep it.
    pub fn entry(&self, r: &LogRecord) -> Option<Entry> {
        let labels = Labels::of_record(r);
        let stream_ok = self.log.selector.iter().all(|m| {
            let v = match labels.0.get(&m.name) {
                Some((v, Cat::Stream)) => v.as_str(),
                _ => "",
            };
            m.matches(v)
        });
        if !stream_ok {
            return None;
        }
        let mut e = Entry {
            time_unix_nano: r.time_unix_nano,
            line: r.body_text().into_owned(),
            labels,
        };
        for s in &self.log.stages {
            if !pipeline::apply_stage(s, &mut e) {
                return None;
            }
        }
        Some(e)
    }

    /// Narrows `f` by what the storage can test, without the exact check.
    pub fn narrow(&self, f: &mut LogFilter) {
        let mut conds = Vec::new();
        for m in &self.log.selector {
            if m.op != MatchOp::Eq {
                continue;
            }
            if m.name == "service_name" && f.service.is_none() {
                f.service = Some(m.value.clone());
            } else if let Some(key) = STREAM_ATTRIBUTES.iter().find(|k| label_name(k) == m.name) {
                conds.push(LogExpr::Cond(Cond::Resource(
                    key.to_string(),
                    ValueTest::Eq(m.value.clone()),
                )));
            }
        }
        let (mut formatted, mut parsed) = (false, false);
        for s in &self.log.stages {
            match s {
                Stage::LineFormat(_) | Stage::Decolorize => formatted = true,
                Stage::Json(_)
                | Stage::Logfmt { .. }
                | Stage::Regexp(_)
                | Stage::Pattern { .. } => {
                    // A parser may set a label of its own name (`trace_id` from the line).
                    parsed = true
                }
                Stage::Line(l) if !formatted => {
                    let each: Vec<LogExpr> = match l.op {
                        LineOp::Contains | LineOp::NotContains => l
                            .values
                            .iter()
                            .map(|v| LogExpr::Cond(Cond::Contains(v.clone())))
                            .collect(),
                        LineOp::Match | LineOp::NotMatch => l
                            .res
                            .iter()
                            .map(|r| LogExpr::Cond(Cond::Matches(Pattern(r.re.clone()))))
                            .collect(),
                    };
                    let any = if each.len() == 1 {
                        each.into_iter().next().unwrap_or(LogExpr::All(Vec::new()))
                    } else {
                        LogExpr::Any(each)
                    };
                    conds.push(match l.op {
                        LineOp::Contains | LineOp::Match => any,
                        _ => LogExpr::Not(Box::new(any)),
                    });
                }
                Stage::Labels(LabelFilter::Str(m))
                    if m.name == "trace_id"
                        && m.op == MatchOp::Eq
                        && !parsed
                        && f.trace_id.is_none() =>
                {
                    if let Some(id) = parse_trace_id(&m.value) {
                        f.trace_id = Some(id);
                    }
                }
                Stage::LabelFormat(_) | Stage::Drop(_) | Stage::Keep(_) => break,
                _ => {}
            }
        }
        if !conds.is_empty() {
            if let Some(e) = f.expr.take() {
                conds.insert(0, e);
            }
            f.expr = Some(LogExpr::All(conds));
        }
    }

    /// A filter for searching: narrowed, with the exact check as its residual.
    pub fn search_filter(&self, mut f: LogFilter) -> LogFilter {
        self.narrow(&mut f);
        let plan = self.clone();
        f.residual = Some(Residual(Arc::new(move |r| plan.entry(r).is_some())));
        f
    }
}

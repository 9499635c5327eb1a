//! What a query reads before it is evaluated: every vector selector, with the time range its
//! uses need (lookback, ranges, offsets, `@`, subqueries, as Prometheus's
//! `FindMinMaxTime`), merged per distinct selector. The evaluator then runs synchronously over
//! the fetched series, off the async runtime.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use loupe_storage::metrics::{LabelMatcher, METRIC_NAME, MatchOp};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::promql::EvalError;

/// Times of one query (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct QueryTimes {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub lookback: i64,
    /// The step of subqueries that give none.
    pub default_subquery_step: i64,
}

/// One selector to read, over `[start, end]`.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub key: String,
    pub matchers: Vec<LabelMatcher>,
    pub start: i64,
    pub end: i64,
}

pub fn millis(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
        None => 0,
    }
}

/// The fixed evaluation time of an `@` modifier.
pub fn at_ms(at: &Option<AtModifier>, q: &QueryTimes) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(q.start),
        Some(AtModifier::End) => Some(q.end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        }),
    }
}

/// A selector's matchers (its name as a `__name__` matcher), in a canonical order.
pub fn matchers(vs: &VectorSelector) -> Result<Vec<LabelMatcher>, EvalError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EvalError::BadData(format!(
            "selector {vs}: alternatives of matchers (`or` inside braces) are not supported"
        )));
    }
    let mut out: Vec<LabelMatcher> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| LabelMatcher {
            name: m.name.clone(),
            op: match &m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(r) => MatchOp::Re(r.clone()),
                PMatchOp::NotRe(r) => MatchOp::NotRe(r.clone()),
            },
            value: m.value.clone(),
        })
        .collect();
    if let Some(name) = &vs.name {
        out.push(LabelMatcher::equal(METRIC_NAME, name));
    }
    if out.iter().all(|m| m.matches("")) {
        return Err(EvalError::BadData(format!(
            "vector selector must contain at least one non-empty matcher: {vs}"
        )));
    }
    out.sort_by(|a, b| {
        (&a.name, op_text(&a.op), &a.value).cmp(&(&b.name, op_text(&b.op), &b.value))
    });
    Ok(out)
}

fn op_text(op: &MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    }
}

/// The key under which a selector's series are fetched (its matchers; not its offset or `@`).
pub fn key(m: &[LabelMatcher]) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|m| format!("{}{}{:?}", m.name, op_text(&m.op), m.value))
        .collect();
    parts.join(",")
}

/// Every selector of `expr` with the range it must be read over.
pub fn plan(expr: &Expr, q: &QueryTimes) -> Result<Vec<Fetch>, EvalError> {
    let mut out: BTreeMap<String, Fetch> = BTreeMap::new();
    walk(expr, q.start, q.end, q, &mut out)?;
    Ok(out.into_values().collect())
}

fn add(
    vs: &VectorSelector,
    lo: i64,
    hi: i64,
    range: i64,
    q: &QueryTimes,
    out: &mut BTreeMap<String, Fetch>,
) -> Result<(), EvalError> {
    let m = matchers(vs)?;
    let (lo, hi) = match at_ms(&vs.at, q) {
        Some(t) => (t, t),
        None => (lo, hi),
    };
    let off = offset_ms(&vs.offset);
    let (start, end) = (lo - off - range, hi - off);
    let k = key(&m);
    let e = out.entry(k.clone()).or_insert(Fetch {
        key: k,
        matchers: m,
        start,
        end,
    });
    e.start = e.start.min(start);
    e.end = e.end.max(end);
    Ok(())
}

fn walk(
    expr: &Expr,
    lo: i64,
    hi: i64,
    q: &QueryTimes,
    out: &mut BTreeMap<String, Fetch>,
) -> Result<(), EvalError> {
    match expr {
        Expr::VectorSelector(vs) => add(vs, lo, hi, q.lookback, q, out),
        Expr::MatrixSelector(ms) => add(&ms.vs, lo, hi, millis(&ms.range), q, out),
        Expr::Subquery(sq) => {
            let (lo, hi) = match at_ms(&sq.at, q) {
                Some(t) => (t, t),
                None => (lo, hi),
            };
            let off = offset_ms(&sq.offset);
            walk(&sq.expr, lo - off - millis(&sq.range), hi - off, q, out)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, lo, hi, q, out)?;
            }
            walk(&a.expr, lo, hi, q, out)
        }
        Expr::Unary(u) => walk(&u.expr, lo, hi, q, out),
        Expr::Binary(b) => {
            walk(&b.lhs, lo, hi, q, out)?;
            walk(&b.rhs, lo, hi, q, out)
        }
        Expr::Paren(p) => walk(&p.expr, lo, hi, q, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, lo, hi, q, out)?;
            }
            Ok(())
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(EvalError::BadData("unsupported expression".into())),
    }
}

//! Boolean log conditions: what a search asks beyond the plain conjunction [`LogFilter`]
//! holds in its own fields (any of, none of, wildcards, value ranges), as one tree that
//! records are checked against ([`LogExpr::matches`]) and that narrows an index lookup where
//! it can (`crate::logs::index::query`).
//!
//! Words match as [`LogFilter::terms`] do (their tokens in a row in the body). A word with
//! `*` (any run) or `?` (one character) matches a line with a token that fits it, ignoring
//! ASCII case. A value with wildcards matches the whole value, case and all. A range compares
//! numbers as numbers when both sides are numbers, text as text otherwise.
//!
//! [`LogFilter`]: crate::logs::LogFilter
//! [`LogFilter::terms`]: crate::logs::LogFilter::terms

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::OnceLock;

use regex::Regex;

use crate::logs::index::tokens::{Term, tokens};
use crate::logs::model::LogRecord;
use crate::model::{AttrValue, TraceId};

/// A `*`/`?` pattern, compiled.
#[derive(Debug, Clone)]
pub struct Glob {
    pub pattern: String,
    re: Regex,
}

impl PartialEq for Glob {
    fn eq(&self, o: &Self) -> bool {
        self.pattern == o.pattern
    }
}

impl Glob {
    /// `None` when `pattern` has no wildcard.
    pub fn new(pattern: &str) -> Option<Glob> {
        if !pattern.contains(['*', '?']) {
            return None;
        }
        let mut re = String::from("^");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push('$');
        // Only literals, `.` and `.*`: always a valid, linear-time expression.
        let re = Regex::new(&re).ok()?;
        Some(Glob {
            pattern: pattern.to_string(),
            re,
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    /// The literal text before the first wildcard.
    pub fn prefix(&self) -> &str {
        let end = self.pattern.find(['*', '?']).unwrap_or(self.pattern.len());
        &self.pattern[..end]
    }
}

/// A bound value of a range: a number when it reads as one.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Num(f64),
    Text(String),
}

impl Scalar {
    pub fn parse(s: &str) -> Scalar {
        match s.parse::<f64>() {
            Ok(n) if n.is_finite() => Scalar::Num(n),
            _ => Scalar::Text(s.to_string()),
        }
    }

    /// How `v` compares to this bound (`None`: incomparable, a number against text).
    fn cmp_value(&self, v: &AttrValue) -> Option<Ordering> {
        match self {
            Scalar::Num(n) => {
                let x = match v {
                    AttrValue::Int(i) => *i as f64,
                    AttrValue::Double(d) => *d,
                    AttrValue::Str(s) => s.trim().parse::<f64>().ok()?,
                    _ => return None,
                };
                x.partial_cmp(n)
            }
            Scalar::Text(t) => Some(v.to_filter_string().as_str().cmp(t.as_str())),
        }
    }
}

/// How a field's value is tested.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueTest {
    Eq(String),
    Glob(Glob),
    Range(Bound<Scalar>, Bound<Scalar>),
}

impl ValueTest {
    fn matches_value(&self, v: &AttrValue) -> bool {
        match self {
            ValueTest::Eq(s) => v.to_filter_string() == *s,
            ValueTest::Glob(g) => g.matches(&v.to_filter_string()),
            ValueTest::Range(lo, hi) => {
                let above = match lo {
                    Bound::Unbounded => true,
                    Bound::Included(b) => b.cmp_value(v).is_some_and(|o| o.is_ge()),
                    Bound::Excluded(b) => b.cmp_value(v).is_some_and(|o| o.is_gt()),
                };
                let below = match hi {
                    Bound::Unbounded => true,
                    Bound::Included(b) => b.cmp_value(v).is_some_and(|o| o.is_le()),
                    Bound::Excluded(b) => b.cmp_value(v).is_some_and(|o| o.is_lt()),
                };
                above && below
            }
        }
    }

    fn matches_str(&self, s: &str) -> bool {
        match self {
            ValueTest::Eq(v) => v == s,
            _ => self.matches_value(&AttrValue::Str(s.to_string())),
        }
    }
}

/// One condition on a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// The term's tokens in a row in the body.
    Words(Term),
    /// Some token of the body fits the (lower-cased) pattern.
    TokenGlob(Glob),
    Service(ValueTest),
    /// The severity number in `[min, max]`.
    Severity(i32, i32),
    TraceId(TraceId),
    /// An attribute of the record, or else of its resource.
    Attribute(String, ValueTest),
    /// An attribute of the resource only.
    Resource(String, ValueTest),
    /// The body contains this text, case and all (LogQL's `|=`).
    Contains(String),
    /// The body has a match of this expression (LogQL's `|~`).
    Matches(Pattern),
}

/// A regular expression, compared by its text.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogExpr {
    /// Every one holds (true when empty).
    All(Vec<LogExpr>),
    /// At least one holds.
    Any(Vec<LogExpr>),
    Not(Box<LogExpr>),
    Cond(Cond),
}

/// A record being checked, with its body's tokens worked out at most once.
struct Line<'a> {
    r: &'a LogRecord,
    body: std::borrow::Cow<'a, str>,
    words: OnceLock<Vec<String>>,
}

impl Line<'_> {
    fn words(&self) -> &[String] {
        self.words.get_or_init(|| tokens(&self.body))
    }
}

impl LogExpr {
    pub fn matches(&self, r: &LogRecord) -> bool {
        let line = Line {
            r,
            body: r.body_text(),
            words: OnceLock::new(),
        };
        self.eval(&line)
    }

    fn eval(&self, l: &Line<'_>) -> bool {
        match self {
            LogExpr::All(xs) => xs.iter().all(|x| x.eval(l)),
            LogExpr::Any(xs) => xs.iter().any(|x| x.eval(l)),
            LogExpr::Not(x) => !x.eval(l),
            LogExpr::Cond(c) => match c {
                Cond::Words(t) => {
                    if t.tokens.is_empty() {
                        return l.body.to_ascii_lowercase().contains(&t.lowered);
                    }
                    l.words()
                        .windows(t.tokens.len())
                        .any(|w| w.iter().zip(&t.tokens).all(|(a, b)| a == b))
                }
                Cond::TokenGlob(g) => l.words().iter().any(|w| g.matches(w)),
                Cond::Service(v) => v.matches_str(l.r.service_name()),
                Cond::Severity(lo, hi) => (*lo..=*hi).contains(&l.r.severity_number),
                Cond::TraceId(id) => l.r.trace_id.as_ref() == Some(id),
                Cond::Attribute(k, v) => l.r.attribute(k).is_some_and(|a| v.matches_value(a)),
                Cond::Resource(k, v) => {
                    l.r.resource
                        .attributes
                        .get(k)
                        .is_some_and(|a| v.matches_value(a))
                }
                Cond::Contains(s) => l.body.contains(s.as_str()),
                Cond::Matches(p) => p.0.is_match(&l.body),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attrs, Resource, Scope};
    use std::sync::Arc;

    fn rec(body: &str, status: AttrValue) -> LogRecord {
        LogRecord {
            time_unix_nano: 1,
            observed_unix_nano: 1,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: AttrValue::Str(body.into()),
            attributes: Attrs(vec![("status".into(), status)]),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: String::new(),
            resource: Arc::new(Resource {
                service_name: "checkout".into(),
                attributes: Attrs::default(),
            }),
            scope: Arc::new(Scope::default()),
        }
    }

    fn c(c: Cond) -> LogExpr {
        LogExpr::Cond(c)
    }

    #[test]
    fn globs_ranges_and_connectives() {
        let r = rec("Payment TIMEOUT after 30s", AttrValue::Int(503));
        let glob = |p: &str| Glob::new(p).unwrap();
        assert!(c(Cond::TokenGlob(glob("time*"))).matches(&r));
        assert!(c(Cond::TokenGlob(glob("?0s"))).matches(&r));
        assert!(!c(Cond::TokenGlob(glob("*outs"))).matches(&r));
        assert_eq!(glob("ab*c?d").prefix(), "ab");
        assert!(Glob::new("plain").is_none());
        assert!(Glob::new("a.b*").unwrap().matches("a.bc") && !glob("a.b*").matches("axbc"));
        let range = |lo, hi| c(Cond::Attribute("status".into(), ValueTest::Range(lo, hi)));
        let num = |n: f64| Scalar::Num(n);
        assert!(range(Bound::Included(num(500.0)), Bound::Excluded(num(600.0))).matches(&r));
        assert!(!range(Bound::Excluded(num(503.0)), Bound::Unbounded).matches(&r));
        // A number stored as text compares as a number; text bounds compare as text.
        let text = rec("x", AttrValue::Str("503".into()));
        assert!(range(Bound::Included(num(500.0)), Bound::Unbounded).matches(&text));
        let t = |s: &str| Scalar::Text(s.into());
        assert!(range(Bound::Included(t("4")), Bound::Included(t("6"))).matches(&text));
        assert!(
            !range(Bound::Included(num(1.0)), Bound::Unbounded)
                .matches(&rec("x", AttrValue::Str("n/a".into())))
        );
        let svc = |p: &str| c(Cond::Service(ValueTest::Glob(glob(p))));
        let any = LogExpr::Any(vec![svc("pay*"), c(Cond::Severity(13, 16))]);
        assert!(any.matches(&r));
        let all = LogExpr::All(vec![
            svc("check*"),
            LogExpr::Not(Box::new(c(Cond::Words(Term::new("payment timeout"))))),
        ]);
        assert!(!all.matches(&r));
        assert!(LogExpr::All(vec![]).matches(&r));
    }
}

//! The LogQL tree, and its canonical text (`Display`), which parses back to the same tree.

use std::fmt;

use regex::Regex;

use super::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    Nre,
}

impl MatchOp {
    fn text(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// A compiled, fully anchored regular expression (as label matchers are), compared by text.
#[derive(Debug, Clone)]
pub struct Re {
    pub text: String,
    pub re: Regex,
}

impl PartialEq for Re {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text && self.re.as_str() == o.re.as_str()
    }
}

/// `name op "value"` on a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// For `=~` and `!~`: the value anchored at both ends.
    pub re: Option<Re>,
}

impl Matcher {
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(r)) => r.re.is_match(v),
            (MatchOp::Nre, Some(r)) => !r.re.is_match(v),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Match,
    /// `!~`
    NotMatch,
}

/// `|= "a" or "b"`: a line filter with its alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct LineFilter {
    pub op: LineOp,
    pub values: Vec<String>,
    /// For `|~` / `!~`: each value compiled (unanchored).
    pub res: Vec<Re>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
        }
    }
}

/// What a numeric label filter compares: a number, a duration (in seconds) or a byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Number,
    Duration,
    Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    Str(Matcher),
    /// `name cmp value`, with `text` as written (`10s`, `20KB`, `500`).
    Num {
        name: String,
        cmp: Cmp,
        unit: Unit,
        value: f64,
        text: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    None,
    Duration,
    Bytes,
}

/// One step of a pattern: literal text, or a capture (`<_>` captures nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum PatternPart {
    Literal(String),
    Capture(Option<String>),
}

/// `label_format` entries: `dst=src` renames, `dst="{{…}}"` sets from a template.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFormat {
    Rename { dst: String, src: String },
    Template { dst: String, template: Template },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Line(LineFilter),
    /// `| json` or `| json a="b.c", d="e[0]"`.
    Json(Vec<(String, String)>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<(String, String)>,
    },
    Regexp(Re),
    Pattern {
        text: String,
        parts: Vec<PatternPart>,
    },
    Labels(LabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFormat>),
    /// Labels to drop: by name, or only where a matcher holds.
    Drop(Vec<Matcher>),
    /// Labels to keep (by name, or only where a matcher holds); the rest are dropped.
    Keep(Vec<Matcher>),
    Decolorize,
}

/// A stream selector and its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    pub selector: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
    /// Label filters after the unwrap (on `__error__` mostly).
    pub filters: Vec<LabelFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
    AvgOverTime,
    SumOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    FirstOverTime,
    LastOverTime,
    QuantileOverTime,
    AbsentOverTime,
}

pub const RANGE_FNS: &[(&str, RangeFn)] = &[
    ("count_over_time", RangeFn::CountOverTime),
    ("rate", RangeFn::Rate),
    ("bytes_over_time", RangeFn::BytesOverTime),
    ("bytes_rate", RangeFn::BytesRate),
    ("avg_over_time", RangeFn::AvgOverTime),
    ("sum_over_time", RangeFn::SumOverTime),
    ("min_over_time", RangeFn::MinOverTime),
    ("max_over_time", RangeFn::MaxOverTime),
    ("stddev_over_time", RangeFn::StddevOverTime),
    ("stdvar_over_time", RangeFn::StdvarOverTime),
    ("first_over_time", RangeFn::FirstOverTime),
    ("last_over_time", RangeFn::LastOverTime),
    ("quantile_over_time", RangeFn::QuantileOverTime),
    ("absent_over_time", RangeFn::AbsentOverTime),
];

impl RangeFn {
    pub fn name(self) -> &'static str {
        RANGE_FNS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether the function reads unwrapped values (and so needs `| unwrap`).
    pub fn needs_unwrap(self) -> bool {
        !matches!(
            self,
            RangeFn::CountOverTime
                | RangeFn::Rate
                | RangeFn::BytesOverTime
                | RangeFn::BytesRate
                | RangeFn::AbsentOverTime
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RangeAgg {
    pub func: RangeFn,
    /// `quantile_over_time`'s φ.
    pub param: Option<f64>,
    pub log: LogQuery,
    pub unwrap: Option<Unwrap>,
    pub range_ns: i64,
    pub offset_ns: i64,
    /// `by`/`without` of unwrapped range functions.
    pub grouping: Option<Grouping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VecOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
}

pub const VEC_OPS: &[(&str, VecOp)] = &[
    ("sum", VecOp::Sum),
    ("avg", VecOp::Avg),
    ("min", VecOp::Min),
    ("max", VecOp::Max),
    ("count", VecOp::Count),
    ("stddev", VecOp::Stddev),
    ("stdvar", VecOp::Stdvar),
    ("topk", VecOp::Topk),
    ("bottomk", VecOp::Bottomk),
];

impl VecOp {
    pub fn name(self) -> &'static str {
        VEC_OPS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Range(RangeAgg),
    Vector {
        op: VecOp,
        /// `topk`/`bottomk`'s k.
        k: Option<usize>,
        grouping: Option<Grouping>,
        inner: Box<Metric>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Log(LogQuery),
    Metric(Metric),
}

/// A Go-quoted string.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration in Prometheus's notation (`1h30m`, `250ms`).
pub fn duration_text(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut ms = ns / 1_000_000;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if out.is_empty() {
        out = format!("{ns}ns");
    }
    out
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.text(), quote(&self.value))
    }
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilter::And(a, b) => write!(f, "({a} and {b})"),
            LabelFilter::Or(a, b) => write!(f, "({a} or {b})"),
            LabelFilter::Str(m) => write!(f, "{m}"),
            LabelFilter::Num {
                name, cmp, text, ..
            } => write!(f, "{name}{}{text}", cmp.text()),
        }
    }
}

fn params(f: &mut fmt::Formatter<'_>, ps: &[(String, String)]) -> fmt::Result {
    for (i, (k, v)) in ps.iter().enumerate() {
        write!(f, "{}{k}={}", if i == 0 { " " } else { ", " }, quote(v))?;
    }
    Ok(())
}

fn names(f: &mut fmt::Formatter<'_>, ms: &[Matcher]) -> fmt::Result {
    for (i, m) in ms.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        if m.op == MatchOp::Eq && m.value.is_empty() && m.re.is_none() {
            f.write_str(&m.name)?;
        } else {
            write!(f, "{m}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Line(l) => {
                let op = match l.op {
                    LineOp::Contains => "|=",
                    LineOp::NotContains => "!=",
                    LineOp::Match => "|~",
                    LineOp::NotMatch => "!~",
                };
                let vs: Vec<String> = l.values.iter().map(|v| quote(v)).collect();
                write!(f, "{op} {}", vs.join(" or "))
            }
            Stage::Json(ps) => {
                f.write_str("| json")?;
                params(f, ps)
            }
            Stage::Logfmt {
                strict,
                keep_empty,
                params: ps,
            } => {
                f.write_str("| logfmt")?;
                if *strict {
                    f.write_str(" --strict")?;
                }
                if *keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                params(f, ps)
            }
            Stage::Regexp(r) => write!(f, "| regexp {}", quote(&r.text)),
            Stage::Pattern { text, .. } => write!(f, "| pattern {}", quote(text)),
            Stage::Labels(l) => write!(f, "| {l}"),
            Stage::LineFormat(t) => write!(f, "| line_format {}", quote(&t.text)),
            Stage::LabelFormat(fs) => {
                f.write_str("| label_format")?;
                for (i, l) in fs.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    match l {
                        LabelFormat::Rename { dst, src } => write!(f, "{dst}={src}")?,
                        LabelFormat::Template { dst, template } => {
                            write!(f, "{dst}={}", quote(&template.text))?
                        }
                    }
                }
                Ok(())
            }
            Stage::Drop(ms) => {
                f.write_str("| drop")?;
                names(f, ms)
            }
            Stage::Keep(ms) => {
                f.write_str("| keep")?;
                names(f, ms)
            }
            Stage::Decolorize => f.write_str("| decolorize"),
        }
    }
}

impl fmt::Display for LogQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms: Vec<String> = self.selector.iter().map(|m| m.to_string()).collect();
        write!(f, "{{{}}}", ms.join(", "))?;
        for s in &self.stages {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grouping::By(ls) => write!(f, "by ({})", ls.join(", ")),
            Grouping::Without(ls) => write!(f, "without ({})", ls.join(", ")),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Range(r) => {
                write!(f, "{}(", r.func.name())?;
                if let Some(p) = r.param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{}", r.log)?;
                if let Some(u) = &r.unwrap {
                    match u.conversion {
                        Conversion::None => write!(f, " | unwrap {}", u.label)?,
                        Conversion::Duration => write!(f, " | unwrap duration({})", u.label)?,
                        Conversion::Bytes => write!(f, " | unwrap bytes({})", u.label)?,
                    }
                    for l in &u.filters {
                        write!(f, " | {l}")?;
                    }
                }
                write!(f, " [{}]", duration_text(r.range_ns))?;
                if r.offset_ns != 0 {
                    write!(f, " offset {}", duration_text(r.offset_ns))?;
                }
                f.write_str(")")?;
                if let Some(g) = &r.grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            Metric::Vector {
                op,
                k,
                grouping,
                inner,
            } => {
                write!(f, "{}", op.name())?;
                if let Some(g) = grouping {
                    write!(f, " {g} ")?;
                }
                f.write_str("(")?;
                if let Some(k) = k {
                    write!(f, "{k}, ")?;
                }
                write!(f, "{inner})")
            }
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Log(l) => write!(f, "{l}"),
            Query::Metric(m) => write!(f, "{m}"),
        }
    }
}

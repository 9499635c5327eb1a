//! The TraceQL syntax tree. `Display` prints a canonical, fully parenthesized form that the
//! golden tests compare (and that re-parses to the same tree).

use std::fmt;
use std::sync::Arc;

use loupe_storage::model::{SpanKind, StatusCode};

/// A spanset expression: filters combined by spanset operators, optionally piped.
#[derive(Debug, Clone, PartialEq)]
pub enum SpansetExpr {
    /// `{ cond }`; `{}` is `Filter(Cond::True)`.
    Filter(Cond),
    /// Both sides match; the result is the union of their spans.
    And(Box<SpansetExpr>, Box<SpansetExpr>),
    /// Either side matches; the union.
    Or(Box<SpansetExpr>, Box<SpansetExpr>),
    /// `a > b`: spans of `b` whose parent is in `a`.
    Child(Box<SpansetExpr>, Box<SpansetExpr>),
    /// `a >> b`: spans of `b` with an ancestor in `a`.
    Descendant(Box<SpansetExpr>, Box<SpansetExpr>),
    /// `input | stage | ...`.
    Pipeline(Box<SpansetExpr>, Vec<Stage>),
}

/// A pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `| { cond }`: keeps the spans of the spanset that satisfy `cond`.
    Filter(Cond),
    /// `| count() > 2`, `| avg(duration) > 1s`: keeps the spanset when the aggregate holds.
    Aggregate {
        func: AggFunc,
        field: Option<Field>,
        op: CmpOp,
        value: Static,
    },
    /// `| select(span.a, resource.b)`: returns these attributes with the matched spans.
    Select(Vec<Field>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

/// A condition on one span.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    True,
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Cmp(Comparison),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: Field,
    pub op: CmpOp,
    pub value: Static,
    /// The anchored regex of `=~` / `!~`, compiled once.
    pub regex: Option<Regex>,
}

/// A compiled regex compared by its source.
#[derive(Debug, Clone)]
pub struct Regex(pub Arc<regex::Regex>);

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Re,
    NotRe,
}

/// What a comparison reads from a span.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Intrinsic(Intrinsic),
    Attr { scope: Scope, name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `.x`: the span's attribute, else its resource's.
    Any,
    Span,
    Resource,
    /// Any of the span's events.
    Event,
    /// Any of the span's links.
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    RootName,
    RootServiceName,
    TraceDuration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(i64),
    Status(StatusCode),
    Kind(SpanKind),
    Nil,
}

impl SpansetExpr {
    /// Every field the expression's conditions compare, in first-seen order (Tempo returns
    /// their values with the matched spans).
    pub fn condition_fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields(&self, out: &mut Vec<Field>) {
        match self {
            SpansetExpr::Filter(c) => c.collect_fields(out),
            SpansetExpr::And(a, b)
            | SpansetExpr::Or(a, b)
            | SpansetExpr::Child(a, b)
            | SpansetExpr::Descendant(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            SpansetExpr::Pipeline(input, stages) => {
                input.collect_fields(out);
                for s in stages {
                    if let Stage::Filter(c) = s {
                        c.collect_fields(out);
                    }
                }
            }
        }
    }

    /// Every field the expression reads: its conditions, aggregates and `select()`s.
    pub fn all_fields(&self) -> Vec<Field> {
        let mut out = self.condition_fields();
        self.collect_stage_fields(&mut out);
        out
    }

    fn collect_stage_fields(&self, out: &mut Vec<Field>) {
        let mut add = |f: &Field| {
            if !out.contains(f) {
                out.push(f.clone());
            }
        };
        match self {
            SpansetExpr::Filter(_) => {}
            SpansetExpr::And(a, b)
            | SpansetExpr::Or(a, b)
            | SpansetExpr::Child(a, b)
            | SpansetExpr::Descendant(a, b) => {
                a.collect_stage_fields(out);
                b.collect_stage_fields(out);
            }
            SpansetExpr::Pipeline(input, stages) => {
                for s in stages {
                    match s {
                        Stage::Aggregate { field: Some(f), .. } => add(f),
                        Stage::Select(fields) => fields.iter().for_each(&mut add),
                        _ => {}
                    }
                }
                input.collect_stage_fields(out);
            }
        }
    }
}

impl Cond {
    fn collect_fields(&self, out: &mut Vec<Field>) {
        match self {
            Cond::True => {}
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Cond::Cmp(c) => {
                if !out.contains(&c.field) {
                    out.push(c.field.clone());
                }
            }
        }
    }
}

impl Intrinsic {
    pub fn name(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Kind => "kind",
            Intrinsic::Duration => "duration",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::TraceDuration => "traceDuration",
        }
    }

    pub const ALL: [Intrinsic; 8] = [
        Intrinsic::Duration,
        Intrinsic::Kind,
        Intrinsic::Name,
        Intrinsic::RootName,
        Intrinsic::RootServiceName,
        Intrinsic::Status,
        Intrinsic::StatusMessage,
        Intrinsic::TraceDuration,
    ];
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Re => "=~",
            CmpOp::NotRe => "!~",
        }
    }
}

impl AggFunc {
    pub fn as_str(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Sum => "sum",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Intrinsic(i) => f.write_str(i.name()),
            Field::Attr { scope, name } => {
                let scope = match scope {
                    Scope::Any => "",
                    Scope::Span => "span",
                    Scope::Resource => "resource",
                    Scope::Event => "event",
                    Scope::Link => "link",
                };
                let plain = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
                if plain {
                    write!(f, "{scope}.{name}")
                } else {
                    write!(f, "{scope}.{}", quote(name))
                }
            }
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Static::Str(s) => f.write_str(&quote(s)),
            Static::Int(i) => write!(f, "{i}"),
            Static::Float(v) => write!(f, "{v:?}"),
            Static::Bool(b) => write!(f, "{b}"),
            Static::Duration(ns) => write!(f, "{ns}ns"),
            Static::Status(s) => f.write_str(s.as_str()),
            Static::Kind(k) => f.write_str(k.as_str()),
            Static::Nil => f.write_str("nil"),
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::True => f.write_str("true"),
            Cond::And(a, b) => write!(f, "({a} && {b})"),
            Cond::Or(a, b) => write!(f, "({a} || {b})"),
            Cond::Cmp(c) => write!(f, "{} {} {}", c.field, c.op.as_str(), c.value),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Filter(c) => write!(f, "{{ {c} }}"),
            Stage::Aggregate {
                func,
                field,
                op,
                value,
            } => {
                let field = field.as_ref().map(|x| x.to_string()).unwrap_or_default();
                write!(f, "{}({field}) {} {value}", func.as_str(), op.as_str())
            }
            Stage::Select(fields) => {
                let list: Vec<String> = fields.iter().map(|x| x.to_string()).collect();
                write!(f, "select({})", list.join(", "))
            }
        }
    }
}

impl fmt::Display for SpansetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(c) => write!(f, "{{ {c} }}"),
            SpansetExpr::And(a, b) => write!(f, "({a} && {b})"),
            SpansetExpr::Or(a, b) => write!(f, "({a} || {b})"),
            SpansetExpr::Child(a, b) => write!(f, "({a} > {b})"),
            SpansetExpr::Descendant(a, b) => write!(f, "({a} >> {b})"),
            SpansetExpr::Pipeline(input, stages) => {
                write!(f, "({input}")?;
                for s in stages {
                    write!(f, " | {s}")?;
                }
                f.write_str(")")
            }
        }
    }
}

//! Evaluates a TraceQL expression on one whole trace. A filter yields the trace's spans that
//! satisfy it (empty: the trace does not match); `&&` needs both sides non-empty and returns
//! their union; `||` the union; `a > b` the spans of `b` whose parent is in `a`; `a >> b` those
//! with an ancestor in `a`; pipeline stages filter the spanset, keep or drop it by an
//! aggregate, or name attributes to return with it.
//!
//! Values compare by type: numbers with numbers (integers and floats mixed), durations with
//! durations, strings with strings (`=~`/`!~` anchored), booleans by equality, `!= nil` for
//! presence. A missing attribute or a type mismatch makes the comparison false, as in Tempo.
//! `event.x` and `link.x` hold when any event or link of the span satisfies the comparison.

use std::collections::{HashMap, HashSet};

use loupe_storage::model::{AttrValue, SpanRecord};

use super::ast::{
    AggFunc, CmpOp, Comparison, Cond, Field, Intrinsic, Scope, SpansetExpr, Stage, Static,
};

/// What matched in one trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matched {
    /// Indices into the trace's spans, ascending.
    pub spans: Vec<usize>,
    /// Attributes `select()` asked for, to return with the spans.
    pub select: Vec<Field>,
}

/// A trace prepared for evaluation: parents by index, root and duration.
pub struct TraceView<'a> {
    pub spans: &'a [SpanRecord],
    parent: Vec<Option<usize>>,
    root: Option<usize>,
    duration: i64,
}

impl<'a> TraceView<'a> {
    pub fn new(spans: &'a [SpanRecord]) -> Self {
        let by_id: HashMap<[u8; 8], usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let parent: Vec<Option<usize>> = spans
            .iter()
            .map(|s| s.parent_span_id.and_then(|p| by_id.get(&p).copied()))
            .collect();
        // The root: a span without a parent id; else the earliest span whose parent is absent.
        let root = spans
            .iter()
            .position(|s| s.parent_span_id.is_none())
            .or_else(|| {
                (0..spans.len())
                    .filter(|&i| parent[i].is_none())
                    .min_by_key(|&i| spans[i].start_unix_nano)
            });
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_nano()).max().unwrap_or(0);
        TraceView {
            spans,
            parent,
            root,
            duration: end.saturating_sub(start),
        }
    }

    pub fn root(&self) -> Option<&SpanRecord> {
        self.root.map(|i| &self.spans[i])
    }

    pub fn duration_nano(&self) -> i64 {
        self.duration
    }

    /// The matched spanset, or `None` when the trace does not match.
    pub fn eval(&self, expr: &SpansetExpr) -> Option<Matched> {
        let m = self.eval_inner(expr);
        (!m.spans.is_empty()).then_some(m)
    }

    fn eval_inner(&self, expr: &SpansetExpr) -> Matched {
        match expr {
            SpansetExpr::Filter(c) => Matched {
                spans: (0..self.spans.len())
                    .filter(|&i| self.holds(c, i))
                    .collect(),
                select: Vec::new(),
            },
            SpansetExpr::And(a, b) => {
                let (a, b) = (self.eval_inner(a), self.eval_inner(b));
                if a.spans.is_empty() || b.spans.is_empty() {
                    Matched::default()
                } else {
                    union(a, b)
                }
            }
            SpansetExpr::Or(a, b) => union(self.eval_inner(a), self.eval_inner(b)),
            SpansetExpr::Child(a, b) => {
                let parents: HashSet<usize> = self.eval_inner(a).spans.into_iter().collect();
                let mut m = self.eval_inner(b);
                m.spans
                    .retain(|&i| self.parent[i].is_some_and(|p| parents.contains(&p)));
                m
            }
            SpansetExpr::Descendant(a, b) => {
                let ancestors: HashSet<usize> = self.eval_inner(a).spans.into_iter().collect();
                let mut m = self.eval_inner(b);
                m.spans.retain(|&i| self.has_ancestor_in(i, &ancestors));
                m
            }
            SpansetExpr::Pipeline(input, stages) => {
                let mut m = self.eval_inner(input);
                for stage in stages {
                    if m.spans.is_empty() {
                        break;
                    }
                    match stage {
                        Stage::Filter(c) => m.spans.retain(|&i| self.holds(c, i)),
                        Stage::Aggregate {
                            func,
                            field,
                            op,
                            value,
                        } => {
                            if !self.aggregate_holds(&m.spans, *func, field.as_ref(), *op, value) {
                                m.spans.clear();
                            }
                        }
                        Stage::Select(fields) => {
                            for f in fields {
                                if !m.select.contains(f) {
                                    m.select.push(f.clone());
                                }
                            }
                        }
                    }
                }
                m
            }
        }
    }

    fn has_ancestor_in(&self, mut i: usize, set: &HashSet<usize>) -> bool {
        // Bounded by the trace's size, so a parent cycle in bad data cannot loop forever.
        for _ in 0..self.spans.len() {
            match self.parent[i] {
                Some(p) if set.contains(&p) => return true,
                Some(p) => i = p,
                None => return false,
            }
        }
        false
    }

    pub fn holds(&self, c: &Cond, i: usize) -> bool {
        match c {
            Cond::True => true,
            Cond::And(a, b) => self.holds(a, i) && self.holds(b, i),
            Cond::Or(a, b) => self.holds(a, i) || self.holds(b, i),
            Cond::Cmp(cmp) => self.compare(cmp, i),
        }
    }

    fn compare(&self, c: &Comparison, i: usize) -> bool {
        let s = &self.spans[i];
        match &c.field {
            Field::Attr {
                scope: Scope::Event,
                name,
            } => {
                let mut values = s.events.iter().map(|e| e.attributes.get(name));
                if c.value == Static::Nil {
                    let present = s.events.iter().any(|e| e.attributes.get(name).is_some());
                    return present == (c.op == CmpOp::Ne);
                }
                values.any(|v| v.is_some_and(|v| compare_value(&attr_value(v), c)))
            }
            Field::Attr {
                scope: Scope::Link,
                name,
            } => {
                if c.value == Static::Nil {
                    let present = s.links.iter().any(|l| l.attributes.get(name).is_some());
                    return present == (c.op == CmpOp::Ne);
                }
                s.links.iter().any(|l| {
                    l.attributes
                        .get(name)
                        .is_some_and(|v| compare_value(&attr_value(v), c))
                })
            }
            field => match self.value(field, i) {
                None => c.value == Static::Nil && c.op == CmpOp::Eq,
                Some(_) if c.value == Static::Nil => c.op == CmpOp::Ne,
                Some(v) => compare_value(&v, c),
            },
        }
    }

    /// The value of `field` on span `i` (`None` when absent). Not for event/link scopes.
    pub fn value(&self, field: &Field, i: usize) -> Option<Static> {
        let s = &self.spans[i];
        Some(match field {
            Field::Intrinsic(Intrinsic::Name) => Static::Str(s.name.clone()),
            Field::Intrinsic(Intrinsic::Status) => Static::Status(s.status_code),
            Field::Intrinsic(Intrinsic::StatusMessage) => Static::Str(s.status_message.clone()),
            Field::Intrinsic(Intrinsic::Kind) => Static::Kind(s.kind),
            Field::Intrinsic(Intrinsic::Duration) => Static::Duration(s.duration_nano),
            Field::Intrinsic(Intrinsic::RootName) => Static::Str(self.root()?.name.clone()),
            Field::Intrinsic(Intrinsic::RootServiceName) => {
                Static::Str(self.root()?.service_name().to_string())
            }
            Field::Intrinsic(Intrinsic::TraceDuration) => Static::Duration(self.duration),
            Field::Attr { scope, name } => {
                let v = match scope {
                    Scope::Span => s.attributes.get(name),
                    Scope::Resource => s.resource.attributes.get(name),
                    Scope::Any => s
                        .attributes
                        .get(name)
                        .or_else(|| s.resource.attributes.get(name)),
                    Scope::Event => s.events.iter().find_map(|e| e.attributes.get(name)),
                    Scope::Link => s.links.iter().find_map(|l| l.attributes.get(name)),
                };
                match v {
                    Some(v) => attr_value(v),
                    None if name == "service.name"
                        && matches!(scope, Scope::Resource | Scope::Any) =>
                    {
                        Static::Str(s.service_name().to_string())
                    }
                    None => return None,
                }
            }
        })
    }

    fn aggregate_holds(
        &self,
        spans: &[usize],
        func: AggFunc,
        field: Option<&Field>,
        op: CmpOp,
        want: &Static,
    ) -> bool {
        let got = match (func, field) {
            (AggFunc::Count, _) => Some(Static::Int(spans.len() as i64)),
            (_, Some(field)) => {
                let values: Vec<f64> = spans
                    .iter()
                    .filter_map(|&i| self.value(field, i))
                    .filter_map(|v| number(&v))
                    .collect();
                if values.is_empty() {
                    None
                } else {
                    let v = match func {
                        AggFunc::Avg => values.iter().sum::<f64>() / values.len() as f64,
                        AggFunc::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                        AggFunc::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        AggFunc::Sum | AggFunc::Count => values.iter().sum(),
                    };
                    Some(Static::Float(v))
                }
            }
            _ => None,
        };
        let Some(got) = got else { return false };
        let (Some(a), Some(b)) = (number(&got), number(want)) else {
            return false;
        };
        ordered(a.partial_cmp(&b), op)
    }
}

fn union(a: Matched, b: Matched) -> Matched {
    let mut spans = a.spans;
    spans.extend(b.spans);
    spans.sort_unstable();
    spans.dedup();
    let mut select = a.select;
    for f in b.select {
        if !select.contains(&f) {
            select.push(f);
        }
    }
    Matched { spans, select }
}

pub fn attr_value(v: &AttrValue) -> Static {
    match v {
        AttrValue::Str(s) => Static::Str(s.clone()),
        AttrValue::Int(i) => Static::Int(*i),
        AttrValue::Double(d) => Static::Float(*d),
        AttrValue::Bool(b) => Static::Bool(*b),
        other => Static::Str(other.to_filter_string()),
    }
}

/// Numbers and durations as f64 (durations in nanoseconds).
fn number(v: &Static) -> Option<f64> {
    match v {
        Static::Int(i) => Some(*i as f64),
        Static::Float(f) => Some(*f),
        Static::Duration(d) => Some(*d as f64),
        _ => None,
    }
}

fn ordered(o: Option<std::cmp::Ordering>, op: CmpOp) -> bool {
    use std::cmp::Ordering::*;
    match (o, op) {
        (None, _) => false,
        (Some(o), CmpOp::Eq) => o == Equal,
        (Some(o), CmpOp::Ne) => o != Equal,
        (Some(o), CmpOp::Gt) => o == Greater,
        (Some(o), CmpOp::Ge) => o != Less,
        (Some(o), CmpOp::Lt) => o == Less,
        (Some(o), CmpOp::Le) => o != Greater,
        (Some(_), CmpOp::Re | CmpOp::NotRe) => false,
    }
}

fn compare_value(v: &Static, c: &Comparison) -> bool {
    if let Some(re) = &c.regex {
        return match v {
            Static::Str(s) => re.0.is_match(s) == (c.op == CmpOp::Re),
            _ => false,
        };
    }
    let o = match (v, &c.value) {
        (Static::Str(a), Static::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        (Static::Bool(a), Static::Bool(b)) => Some(a.cmp(b)),
        (Static::Status(a), Static::Status(b)) => Some((*a as u8).cmp(&(*b as u8))),
        (Static::Kind(a), Static::Kind(b)) => Some((*a as u8).cmp(&(*b as u8))),
        (Static::Duration(a), Static::Duration(b)) => Some(a.cmp(b)),
        (Static::Int(a), Static::Int(b)) => Some(a.cmp(b)),
        (a @ (Static::Int(_) | Static::Float(_)), b @ (Static::Int(_) | Static::Float(_))) => {
            number(a)
                .zip(number(b))
                .and_then(|(a, b)| a.partial_cmp(&b))
        }
        _ => None,
    };
    ordered(o, c.op)
}

//! Narrows a TraceQL search before whole traces are read: from the expression, a span
//! predicate ([`SpanFilter`]) that some span of every matching trace must satisfy. Scanning the
//! files with it (the same pruned scan as the Jaeger and native searches) gives the candidate
//! traces; the full expression is then evaluated on each candidate's spans.
//!
//! The predicate is only ever weaker than the query (conditions it cannot express are left
//! out), so no matching trace is missed: `{ a && b }` keeps the equalities of `a` and `b`;
//! `x && y` and the structural operators need both sides, so they keep the stronger side;
//! `x || y` keeps nothing but the time range. [`requirements`] lists every side's predicate:
//! a matching trace has a span for each, so the search intersects their candidate sets.

use loupe_storage::spans::schema::{self, AttrColumn};
use loupe_storage::spans::{Projection, SpanFilter};

use super::ast::{CmpOp, Cond, Field, Intrinsic, Scope, SpansetExpr, Static};

/// The span predicate every matching trace satisfies with at least one span, within the
/// search's time range.
pub fn candidate_filter(
    expr: &SpansetExpr,
    start_unix_nano: i64,
    end_unix_nano: i64,
) -> SpanFilter {
    // The strongest requirement; with none, only the time range.
    requirements(expr, start_unix_nano, end_unix_nano)
        .into_iter()
        .next()
        .unwrap_or(SpanFilter {
            start_unix_nano,
            end_unix_nano,
            ..Default::default()
        })
}

/// Every span predicate a matching trace satisfies (each with some span), strongest first;
/// predicates with no condition are left out.
pub fn requirements(
    expr: &SpansetExpr,
    start_unix_nano: i64,
    end_unix_nano: i64,
) -> Vec<SpanFilter> {
    fn walk(expr: &SpansetExpr, out: &mut Vec<SpanFilter>) {
        match expr {
            SpansetExpr::Filter(c) => {
                let mut f = SpanFilter::default();
                conjuncts(c, &mut f);
                if f.score() > 0 {
                    out.push(f);
                }
            }
            SpansetExpr::And(a, b) | SpansetExpr::Child(a, b) | SpansetExpr::Descendant(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            SpansetExpr::Or(..) => {}
            SpansetExpr::Pipeline(input, _) => walk(input, out),
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out);
    for f in &mut out {
        f.start_unix_nano = start_unix_nano;
        f.end_unix_nano = end_unix_nano;
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.score()));
    out.dedup();
    out
}

/// The columns evaluating `expr` on whole traces reads: the trace structure and summary
/// columns, and the columns of the fields it uses (an attribute's promoted column and, in
/// files that hold the key there, the JSON attribute columns).
pub fn projection(expr: &SpansetExpr) -> Projection {
    let mut p = Projection::summary();
    for field in expr.all_fields() {
        match field {
            Field::Intrinsic(Intrinsic::StatusMessage) => p.columns.push(schema::STATUS_MESSAGE),
            Field::Intrinsic(_) => {}
            Field::Attr {
                scope: Scope::Event,
                ..
            } => p.columns.push(schema::EVENTS),
            Field::Attr {
                scope: Scope::Link, ..
            } => p.columns.push(schema::LINKS),
            Field::Attr { name, .. } => {
                if let Some(AttrColumn::Promoted { column, .. }) = schema::column_for_key(&name) {
                    p.columns.push(column);
                }
                if !matches!(schema::column_for_key(&name), Some(AttrColumn::ServiceName)) {
                    p.json_keys.push(name);
                }
            }
        }
    }
    p.columns.sort_unstable();
    p.columns.dedup();
    p
}

/// For `{ cond } | count() > N` (or `>=`): the fewest spans matching the candidate predicate a
/// trace needs. The predicate is weaker than `cond`, so a trace with fewer cannot match.
pub fn min_spans(expr: &SpansetExpr) -> Option<u32> {
    use super::ast::{AggFunc, Stage};
    let SpansetExpr::Pipeline(input, stages) = expr else {
        return None;
    };
    if !matches!(**input, SpansetExpr::Filter(_)) {
        return None;
    }
    let Some(Stage::Aggregate {
        func: AggFunc::Count,
        op,
        value,
        ..
    }) = stages.first()
    else {
        return None;
    };
    let n = match value {
        Static::Int(i) => *i as f64,
        Static::Float(f) => *f,
        _ => return None,
    };
    let min = match op {
        CmpOp::Gt => n.floor() + 1.0,
        CmpOp::Ge => n.ceil(),
        _ => return None,
    };
    Some(min.clamp(0.0, u32::MAX as f64) as u32)
}

/// Adds what the top-level `&&` chain of `c` says that a [`SpanFilter`] can express.
fn conjuncts(c: &Cond, f: &mut SpanFilter) {
    match c {
        Cond::And(a, b) => {
            conjuncts(a, f);
            conjuncts(b, f);
        }
        Cond::True | Cond::Or(..) => {}
        Cond::Cmp(cmp) => match (&cmp.field, cmp.op, &cmp.value) {
            (Field::Intrinsic(Intrinsic::Name), CmpOp::Eq, Static::Str(s)) => {
                f.name = Some(s.clone());
            }
            (Field::Intrinsic(Intrinsic::StatusMessage), CmpOp::Eq, Static::Str(s)) => {
                f.status_message = Some(s.clone());
            }
            (Field::Intrinsic(Intrinsic::Status), CmpOp::Eq, Static::Status(s)) => {
                f.status = Some(*s);
            }
            (Field::Intrinsic(Intrinsic::Status), CmpOp::Ne, Static::Status(s)) => {
                f.status_not = Some(*s);
            }
            (Field::Intrinsic(Intrinsic::Kind), CmpOp::Eq, Static::Kind(k)) => {
                f.kind = Some(*k);
            }
            (Field::Intrinsic(Intrinsic::Duration), op, Static::Duration(d)) => match op {
                CmpOp::Gt => raise_min(f, d.saturating_add(1)),
                CmpOp::Ge => raise_min(f, *d),
                CmpOp::Lt => lower_max(f, d.saturating_sub(1)),
                CmpOp::Le => lower_max(f, *d),
                CmpOp::Eq => {
                    raise_min(f, *d);
                    lower_max(f, *d);
                }
                _ => {}
            },
            (
                Field::Attr {
                    scope: Scope::Any | Scope::Resource,
                    name,
                },
                CmpOp::Eq,
                Static::Str(s),
            ) if name == "service.name" => f.service = Some(s.clone()),
            (
                Field::Attr {
                    scope: Scope::Any | Scope::Span | Scope::Resource,
                    name,
                },
                CmpOp::Eq,
                v @ (Static::Str(_) | Static::Int(_) | Static::Bool(_)),
            ) => {
                // Tags match the span's or its resource's attribute by its printed value,
                // which is at least as wide as any of these scopes.
                let printed = match v {
                    Static::Str(s) => s.clone(),
                    other => other.to_string(),
                };
                f.tags.push((name.clone(), printed));
            }
            _ => {}
        },
    }
}

fn raise_min(f: &mut SpanFilter, v: i64) {
    f.min_duration_nano = Some(f.min_duration_nano.map_or(v, |m| m.max(v)));
}

fn lower_max(f: &mut SpanFilter, v: i64) {
    f.max_duration_nano = Some(f.max_duration_nano.map_or(v, |m| m.min(v)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traceql::parse;
    use loupe_storage::model::{SpanKind, StatusCode};

    fn plan(q: &str) -> SpanFilter {
        candidate_filter(&parse(q).unwrap(), 0, 10)
    }

    #[test]
    fn equalities_of_one_filter_are_pushed_down() {
        let f = plan(
            r#"{ resource.service.name = "api" && span.http.status_code = 500 && status = error && duration > 1s && kind = server }"#,
        );
        assert_eq!(f.service.as_deref(), Some("api"));
        assert_eq!(
            f.tags,
            vec![("http.status_code".to_string(), "500".to_string())]
        );
        assert_eq!(f.status, Some(StatusCode::Error));
        assert_eq!(f.kind, Some(SpanKind::Server));
        assert_eq!(f.min_duration_nano, Some(1_000_000_001));
        assert_eq!((f.start_unix_nano, f.end_unix_nano), (0, 10));
    }

    #[test]
    fn alternatives_and_regexes_keep_only_the_time_range() {
        let time_only = SpanFilter {
            end_unix_nano: 10,
            ..Default::default()
        };
        assert_eq!(plan(r#"{ name = "a" } || { name = "b" }"#), time_only);
        assert_eq!(plan(r#"{ name = "a" || name = "b" }"#), time_only);
        assert_eq!(plan(r#"{ name =~ "a.*" }"#), time_only);
        assert_eq!(plan(r#"{ .x != "a" }"#), time_only);
    }

    #[test]
    fn every_side_of_a_conjunction_is_a_requirement() {
        let q = parse(r#"({ name = "a" } >> { name = "b" && status = error }) && { .x = 1 } || { kind = client }"#).unwrap();
        assert!(
            requirements(&q, 0, 10).is_empty(),
            "an alternative requires nothing"
        );
        let q =
            parse(r#"{ name = "a" } >> { name = "b" && status = error } | count() > 1"#).unwrap();
        let r = requirements(&q, 0, 10);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name.as_deref(), Some("b"), "strongest first");
        assert_eq!(r[1].name.as_deref(), Some("a"));
        assert!(
            r.iter()
                .all(|f| (f.start_unix_nano, f.end_unix_nano) == (0, 10))
        );
    }

    #[test]
    fn projections_read_what_the_query_uses() {
        let p = projection(&parse(r#"{ span.http.route = "/a" && .custom = 1 && resource.service.name = "x" && statusMessage = "m" } | select(event.e)"#).unwrap());
        for c in [
            "http_route",
            schema::STATUS_MESSAGE,
            schema::EVENTS,
            schema::TRACE_ID,
            schema::DURATION,
        ] {
            assert!(p.columns.contains(&c), "{c} in {:?}", p.columns);
        }
        assert!(!p.columns.contains(&schema::LINKS));
        assert_eq!(
            p.json_keys,
            vec!["http.route".to_string(), "custom".to_string()]
        );
        let p = projection(&parse("{ duration > 1s }").unwrap());
        let mut summary = Projection::summary().columns;
        summary.sort_unstable();
        assert_eq!((p.columns, p.json_keys.len()), (summary, 0));
    }

    #[test]
    fn deep_or_long_queries_are_refused_not_a_stack_overflow() {
        let deep = format!("{}{{}}{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("more than 32 deep"), "{e}");
        let long = vec!["{}"; 2000].join(" > ");
        assert!(parse(&long).unwrap_err().message.contains("too complex"));
        let nested = format!("{{ {}.a = 1{} }}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&nested).unwrap_err().message.contains("deep"));
        let ok = format!("{}{{}}{}", "(".repeat(32), ")".repeat(32));
        assert!(parse(&ok).is_ok());
        let fine = vec!["{ .a = 1 }"; 100].join(" && ");
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn a_count_threshold_bounds_the_matching_spans() {
        let m = |q: &str| min_spans(&parse(q).unwrap());
        assert_eq!(m("{ .a = 1 } | count() > 2"), Some(3));
        assert_eq!(m("{ .a = 1 } | count() >= 2.5"), Some(3));
        assert_eq!(m("{ .a = 1 } | count() < 2"), None);
        assert_eq!(m("({ .a = 1 } && { .b = 1 }) | count() > 2"), None);
        assert_eq!(m("{ .a = 1 } | { .b = 2 } | count() > 2"), None);
    }

    #[test]
    fn conjunctions_of_spansets_keep_the_stronger_side() {
        let f = plan(r#"{ name = "a" } >> { name = "b" && status = error }"#);
        assert_eq!(f.name.as_deref(), Some("b"));
        assert_eq!(f.status, Some(StatusCode::Error));
        let f = plan(r#"({ kind = client } | count() > 2) && {}"#);
        assert_eq!(f.kind, Some(SpanKind::Client));
    }
}

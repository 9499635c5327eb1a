//! Tempo's autocomplete: `/api/v2/search/tags` (scopes resource, span, event, link,
//! intrinsic) and `/api/v2/search/tag/{tag}/values` (typed: string, int, float, bool,
//! keyword), plus their v1 forms. Names and values come from the most recent
//! [`SAMPLE_TRACES`] traces in range that match `q`, read whole; a partial `q` (as typed)
//! keeps its complete conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use loupe_storage::TenantId;
use loupe_storage::model::{AttrValue, SpanRecord};
use serde_json::json;

use super::search::{MAX_LIMIT, param, range};
use super::{TempoError, json_response, tenant};
use crate::error::QueryError;
use crate::state::QueryState;
use crate::traceql::ast::{Field, Intrinsic, Scope, SpansetExpr, Static};
use crate::traceql::{self, TraceView, parse, parse_field};

/// Traces read to answer a tag names or values request.
pub const SAMPLE_TRACES: usize = 200;

/// The complete conditions of a possibly partial query (`{ .a = "x" && .b` → `{ .a = "x" }`).
fn lenient(q: &str) -> SpansetExpr {
    if let Ok(e) = parse(q) {
        return e;
    }
    let inner = q.trim().trim_start_matches('{').trim_end_matches('}');
    let parts: Vec<&str> = inner
        .split("&&")
        .filter(|p| parse(&format!("{{ {p} }}")).is_ok())
        .collect();
    parse(&format!("{{ {} }}", parts.join(" && ")))
        .unwrap_or(SpansetExpr::Filter(crate::traceql::ast::Cond::True))
}

/// The matched spans of the most recent traces in range that match `q`.
async fn sample(
    st: &QueryState,
    t: &TenantId,
    query: &str,
) -> Result<Vec<(Vec<SpanRecord>, Vec<usize>)>, QueryError> {
    let expr = lenient(&param(query, "q").unwrap_or_default());
    let r =
        traceql::search::search_whole(&st.traces, t, Arc::new(expr), range(query)?, SAMPLE_TRACES)
            .await?;
    Ok(r.hits
        .into_iter()
        .map(|h| (h.trace, h.matched.spans))
        .collect())
}

const INTRINSICS: [&str; 16] = [
    "duration",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "status",
    "statusMessage",
    "traceDuration",
    "span:duration",
    "span:kind",
    "span:name",
    "span:status",
    "span:statusMessage",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
];

/// Attribute names per scope in the sample.
fn names(sample: &[(Vec<SpanRecord>, Vec<usize>)]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for scope in ["resource", "span"] {
        out.insert(scope, BTreeSet::new());
    }
    for (trace, matched) in sample {
        for &i in matched {
            let s = &trace[i];
            let mut add = |scope: &'static str, keys: &mut dyn Iterator<Item = &String>| {
                out.entry(scope).or_default().extend(keys.cloned());
            };
            add("span", &mut s.attributes.0.iter().map(|(k, _)| k));
            add(
                "resource",
                &mut s.resource.attributes.0.iter().map(|(k, _)| k),
            );
            for e in &s.events {
                add("event", &mut e.attributes.0.iter().map(|(k, _)| k));
            }
            for l in &s.links {
                add("link", &mut l.attributes.0.iter().map(|(k, _)| k));
            }
        }
    }
    out
}

fn scope_param(query: &str) -> Result<Option<String>, QueryError> {
    match param(query, "scope").as_deref() {
        None | Some("") | Some("none") | Some("all") => Ok(None),
        Some(s @ ("resource" | "span" | "event" | "link" | "intrinsic" | "instrumentation")) => {
            Ok(Some(s.to_string()))
        }
        Some(other) => Err(QueryError::BadRequest(format!("invalid scope: {other}"))),
    }
}

/// The `scope` asked for (`None`: all) and the attribute names per scope in the sample that
/// it covers (none for `intrinsic`).
async fn scoped_names(
    st: &QueryState,
    headers: &HeaderMap,
    query: &str,
) -> Result<(Option<String>, BTreeMap<&'static str, BTreeSet<String>>), TempoError> {
    let t = tenant(st, headers)?;
    let scope = scope_param(query)?;
    if scope.as_deref() == Some("intrinsic") {
        return Ok((scope, BTreeMap::new()));
    }
    let mut by_scope = names(&sample(st, &t, query).await?);
    by_scope.retain(|name, _| scope.as_deref().is_none_or(|s| s == *name));
    Ok((scope, by_scope))
}

pub async fn tags_v2(
    State(st): State<QueryState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, TempoError> {
    let (scope, by_scope) = scoped_names(&st, &headers, &query.unwrap_or_default()).await?;
    let mut scopes: Vec<_> = by_scope
        .into_iter()
        .map(|(name, tags)| json!({"name": name, "tags": tags}))
        .collect();
    if scope.as_deref().is_none_or(|s| s == "intrinsic") {
        scopes.push(json!({"name": "intrinsic", "tags": INTRINSICS}));
    }
    Ok(json_response(&json!({"scopes": scopes, "metrics": {}})))
}

/// v1 lists names without scopes; intrinsics only when asked for with `scope=intrinsic`.
pub async fn tags_v1(
    State(st): State<QueryState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, TempoError> {
    let (scope, by_scope) = scoped_names(&st, &headers, &query.unwrap_or_default()).await?;
    let mut all: BTreeSet<String> = by_scope.into_values().flatten().collect();
    if scope.as_deref() == Some("intrinsic") {
        all.extend(INTRINSICS.iter().map(|s| s.to_string()));
    }
    Ok(json_response(&json!({"tagNames": all, "metrics": {}})))
}

/// Typed values of `field` in the sample: (type, value).
async fn values(
    st: &QueryState,
    t: &TenantId,
    field: &Field,
    query: &str,
) -> Result<BTreeSet<(&'static str, String)>, QueryError> {
    let mut out = BTreeSet::new();
    match field {
        Field::Intrinsic(Intrinsic::Status) => {
            for v in ["ok", "error", "unset"] {
                out.insert(("keyword", v.to_string()));
            }
            return Ok(out);
        }
        Field::Intrinsic(Intrinsic::Kind) => {
            for v in [
                "client",
                "server",
                "producer",
                "consumer",
                "internal",
                "unspecified",
            ] {
                out.insert(("keyword", v.to_string()));
            }
            return Ok(out);
        }
        Field::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration) => return Ok(out),
        _ => {}
    }
    let limit = param(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(MAX_LIMIT);
    for (trace, matched) in sample(st, t, query).await? {
        let view = TraceView::new(&trace);
        for &i in &matched {
            let s = &trace[i];
            let mut add = |v: &AttrValue| {
                out.insert(typed(v));
            };
            match field {
                Field::Attr {
                    scope: Scope::Event,
                    name,
                } => s
                    .events
                    .iter()
                    .filter_map(|e| e.attributes.get(name))
                    .for_each(&mut add),
                Field::Attr {
                    scope: Scope::Link,
                    name,
                } => s
                    .links
                    .iter()
                    .filter_map(|l| l.attributes.get(name))
                    .for_each(&mut add),
                _ => match view.value(field, i) {
                    Some(Static::Str(v)) => {
                        out.insert(("string", v));
                    }
                    Some(Static::Int(v)) => {
                        out.insert(("int", v.to_string()));
                    }
                    Some(Static::Float(v)) => {
                        out.insert(("float", v.to_string()));
                    }
                    Some(Static::Bool(v)) => {
                        out.insert(("bool", v.to_string()));
                    }
                    _ => {}
                },
            }
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

fn typed(v: &AttrValue) -> (&'static str, String) {
    match v {
        AttrValue::Str(s) => ("string", s.clone()),
        AttrValue::Int(i) => ("int", i.to_string()),
        AttrValue::Double(d) => ("float", d.to_string()),
        AttrValue::Bool(b) => ("bool", b.to_string()),
        other => ("string", other.to_filter_string()),
    }
}

pub async fn tag_values_v2(
    State(st): State<QueryState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, TempoError> {
    let t = tenant(&st, &headers)?;
    let field = parse_field(&tag).map_err(|e| {
        QueryError::BadRequest(format!(
            "please provide a valid tagName: {tag:?}: {}",
            e.message
        ))
    })?;
    let query = query.unwrap_or_default();
    let vals = values(&st, &t, &field, &query).await?;
    let mut body = json!({"metrics": {}});
    if !vals.is_empty() {
        body["tagValues"] = vals
            .into_iter()
            .map(|(ty, v)| json!({"type": ty, "value": v}))
            .collect();
    }
    Ok(json_response(&body))
}

/// v1 names tags without scopes: `service.name`, `http.method`, or an intrinsic.
pub async fn tag_values_v1(
    State(st): State<QueryState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, TempoError> {
    let t = tenant(&st, &headers)?;
    let field = match tag.as_str() {
        "status.code" => Field::Intrinsic(Intrinsic::Status),
        t if t.starts_with('.') || t.contains(':') || INTRINSICS.contains(&t) => parse_field(t)
            .map_err(|e| QueryError::BadRequest(format!("invalid tag {t:?}: {}", e.message)))?,
        t => Field::Attr {
            scope: Scope::Any,
            name: t.to_string(),
        },
    };
    let query = query.unwrap_or_default();
    let vals: BTreeSet<String> = values(&st, &t, &field, &query)
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    Ok(json_response(&json!({"tagValues": vals, "metrics": {}})))
}

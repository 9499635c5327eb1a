//! Tempo's `/api/search`: `q` (TraceQL; empty means `{}`) or, without `q`, the older `tags`/
//! `minDuration`/`maxDuration`, `limit` (default 20, at most 1000), `spss` (spans per
//! spanset, default 3), `start`/`end` in unix seconds (default: the last hour). Each trace
//! carries its root, its duration, per-service counts and the matched spans with the values of
//! the attributes the query compared or `select()`ed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use loupe_storage::TenantId;
use loupe_storage::model::{AttrValue, StatusCode as SpanStatus};
use loupe_storage::spans::SpanFilter;
use serde::Serialize;
use serde_json::{Value, json};

use super::{TempoError, json_response, seconds_range, tenant};
use crate::error::QueryError;
use crate::params::{finish_filter, now_nanos, parse_duration, parse_tags};
use crate::state::QueryState;
use crate::tempo::otlp::any_value_json;
use crate::traceql::ast::{Field, Intrinsic, Scope, Static};
use crate::traceql::search::Hit;
use crate::traceql::{self, Matched, TraceView, parse};

const DEFAULT_RANGE_NANOS: i64 = 3_600_000_000_000;
pub(super) const MAX_LIMIT: usize = 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceMeta {
    #[serde(rename = "traceID")]
    trace_id: String,
    root_service_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    root_trace_name: String,
    start_time_unix_nano: String,
    #[serde(skip_serializing_if = "is_zero")]
    duration_ms: u32,
    span_set: SpanSet,
    span_sets: Vec<SpanSet>,
    service_stats: BTreeMap<String, ServiceStats>,
}

#[derive(Serialize, Clone)]
struct SpanSet {
    spans: Vec<SpanMeta>,
    matched: u32,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct SpanMeta {
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    start_time_unix_nano: String,
    duration_nanos: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceStats {
    span_count: u32,
    #[serde(skip_serializing_if = "is_zero")]
    error_count: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

struct SearchParams {
    q: Option<String>,
    tags: Vec<(String, String)>,
    min_duration: Option<i64>,
    max_duration: Option<i64>,
    limit: usize,
    spss: usize,
    range: (i64, i64),
}

fn positive(k: &str, v: &str) -> Result<usize, QueryError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| QueryError::BadRequest(format!("invalid {k}: must be a positive number")))
}

/// `start`/`end` in unix seconds with Tempo's defaults (the last hour).
pub(super) fn range(query: &str) -> Result<(i64, i64), QueryError> {
    let (start, end) = seconds_range(query)?;
    let end = end.unwrap_or_else(now_nanos);
    Ok((
        start.unwrap_or(end.saturating_sub(DEFAULT_RANGE_NANOS)),
        end,
    ))
}

pub(super) fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl SearchParams {
    fn parse(query: &str) -> Result<Self, QueryError> {
        let mut p = SearchParams {
            q: None,
            tags: Vec::new(),
            min_duration: None,
            max_duration: None,
            limit: 20,
            spss: 3,
            range: range(query)?,
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "q" => p.q = Some(v.into_owned()),
                "tags" if !v.trim().is_empty() => p.tags.extend(parse_tags(&v)?),
                "minDuration" if !v.is_empty() => p.min_duration = Some(parse_duration(&v)?),
                "maxDuration" if !v.is_empty() => p.max_duration = Some(parse_duration(&v)?),
                "limit" if !v.is_empty() => p.limit = positive("limit", &v)?.min(MAX_LIMIT),
                "spss" if !v.is_empty() => p.spss = positive("spss", &v)?,
                _ => {}
            }
        }
        if p.q.is_some() && !p.tags.is_empty() {
            return Err(QueryError::BadRequest(
                "invalid request: can't specify tags and q in the same query".into(),
            ));
        }
        Ok(p)
    }
}

pub async fn search(
    State(st): State<QueryState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, TempoError> {
    let t = tenant(&st, &headers)?;
    let p = SearchParams::parse(query.as_deref().unwrap_or(""))?;
    let (found, fields, inspected) = match &p.q {
        Some(q) => {
            let q = if q.trim().is_empty() { "{}" } else { q };
            let expr = parse(q).map_err(QueryError::from)?;
            let fields = expr.condition_fields();
            let r =
                traceql::search::search(&st.traces, &t, Arc::new(expr), p.range, p.limit).await?;
            (r.hits, fields, r.inspected_traces)
        }
        None => legacy_search(&st, &t, &p).await?,
    };
    let traces: Vec<TraceMeta> = found
        .iter()
        .map(|f| trace_meta(f, &fields, p.spss))
        .collect();
    let mut body = json!({
        "metrics": {"inspectedTraces": inspected, "completedJobs": 1, "totalJobs": 1},
    });
    if !traces.is_empty() {
        body["traces"] = serde_json::to_value(traces).unwrap_or_default();
    }
    Ok(json_response(&body))
}

/// The search Tempo had before TraceQL: tags (logfmt) and duration bounds on one span.
async fn legacy_search(
    st: &QueryState,
    t: &TenantId,
    p: &SearchParams,
) -> Result<(Vec<Hit>, Vec<Field>, usize), QueryError> {
    let mut f = SpanFilter {
        tags: p.tags.clone(),
        min_duration_nano: p.min_duration,
        max_duration_nano: p.max_duration,
        ..Default::default()
    };
    finish_filter(&mut f, Some(p.range.0), Some(p.range.1), None)?;
    let traces = st.traces.search(t, &f, p.limit).await?;
    let inspected = traces.len();
    let found = traces
        .into_iter()
        .map(|(id, trace)| {
            let spans = (0..trace.len()).filter(|&i| f.matches(&trace[i])).collect();
            Hit {
                id,
                trace,
                matched: Matched {
                    spans,
                    select: Vec::new(),
                },
            }
        })
        .collect();
    let fields = p
        .tags
        .iter()
        .map(|(k, _)| Field::Attr {
            scope: Scope::Any,
            name: k.clone(),
        })
        .collect();
    Ok((found, fields, inspected))
}

fn trace_meta(f: &Hit, fields: &[Field], spss: usize) -> TraceMeta {
    let view = TraceView::new(&f.trace);
    let start = f.trace.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let mut stats: BTreeMap<String, ServiceStats> = BTreeMap::new();
    for s in &f.trace {
        let e = stats
            .entry(s.service_name().to_string())
            .or_insert(ServiceStats {
                span_count: 0,
                error_count: 0,
            });
        e.span_count += 1;
        if s.status_code == SpanStatus::Error {
            e.error_count += 1;
        }
    }
    let mut shown: Vec<Field> = fields.to_vec();
    for s in &f.matched.select {
        if !shown.contains(s) {
            shown.push(s.clone());
        }
    }
    let spans = f
        .matched
        .spans
        .iter()
        .take(spss)
        .map(|&i| {
            let s = &f.trace[i];
            SpanMeta {
                span_id: hex::encode(s.span_id),
                name: s.name.clone(),
                start_time_unix_nano: s.start_unix_nano.to_string(),
                duration_nanos: s.duration_nano.max(0).to_string(),
                attributes: shown
                    .iter()
                    .filter_map(|field| span_attribute(&view, field, i))
                    .collect(),
            }
        })
        .collect();
    let set = SpanSet {
        spans,
        matched: f.matched.spans.len() as u32,
    };
    let root = view.root();
    TraceMeta {
        trace_id: hex::encode(f.id),
        root_service_name: root
            .map(|r| r.service_name().to_string())
            .unwrap_or_else(|| "<root span not yet received>".to_string()),
        root_trace_name: root.map(|r| r.name.clone()).unwrap_or_default(),
        start_time_unix_nano: start.to_string(),
        duration_ms: u32::try_from(view.duration_nano() / 1_000_000).unwrap_or(u32::MAX),
        span_set: set.clone(),
        span_sets: vec![set],
        service_stats: stats,
    }
}

/// A matched span's value of a field the query used, as Tempo returns it: the bare key and
/// an OTLP value. Fields the span already carries (name, duration) and trace-level ones are
/// left out.
fn span_attribute(view: &TraceView, field: &Field, i: usize) -> Option<Value> {
    let key = match field {
        Field::Attr { name, .. } => name.clone(),
        Field::Intrinsic(
            Intrinsic::Name
            | Intrinsic::Duration
            | Intrinsic::RootName
            | Intrinsic::RootServiceName
            | Intrinsic::TraceDuration,
        ) => return None,
        Field::Intrinsic(i) => i.name().to_string(),
    };
    let value = match view.value(field, i)? {
        Static::Str(s) => json!({"stringValue": s}),
        Static::Int(v) => json!({"intValue": v.to_string()}),
        Static::Float(v) => any_value_json(&AttrValue::Double(v)),
        Static::Bool(b) => json!({"boolValue": b}),
        Static::Duration(ns) => {
            json!({"stringValue": format!("{:?}", std::time::Duration::from_nanos(ns.max(0) as u64))})
        }
        Static::Status(s) => json!({"stringValue": s.as_str()}),
        Static::Kind(k) => json!({"stringValue": k.as_str()}),
        Static::Nil => return None,
    };
    Some(json!({"key": key, "value": value}))
}

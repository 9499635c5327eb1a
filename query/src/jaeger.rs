//! Jaeger-compatible query API under `/jaeger/api` (the HTTP JSON API of jaeger-query that
//! Grafana's Jaeger data source and the Jaeger UI use): services, operations, trace search and
//! trace by id. A thin adapter over [`TraceService`]: OTLP spans become Jaeger spans with
//! `span.kind`, `otel.status_code`, `error=true` on error spans, resource attributes as
//! process tags, events as logs and links as `FOLLOWS_FROM` references.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::HeaderMap;
use loupe_core::Classify;
use loupe_storage::TenantId;
use loupe_storage::model::{AttrValue, Attrs, SpanKind, SpanRecord, StatusCode};
use loupe_storage::spans::SpanFilter;
use serde_json::{Value, json};

use crate::error::QueryError;
use crate::native::parse_trace_id_param;
use crate::params::{finish_filter, parse_duration, parse_limit, parse_tags, parse_time};
use crate::state::QueryState;

/// Jaeger's error envelope.
struct JaegerError(QueryError);

impl From<QueryError> for JaegerError {
    fn from(e: QueryError) -> Self {
        JaegerError(e)
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let status = self.0.code().http_status();
        let body = json!({"data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": status.as_u16(), "msg": self.0.to_string()}]});
        (status, Json(body)).into_response()
    }
}

fn ok(data: Value, total: usize) -> Json<Value> {
    Json(json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null}))
}

fn tenant(st: &QueryState, h: &HeaderMap) -> Result<TenantId, QueryError> {
    let g = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    Ok(st
        .resolver
        .resolve(g("authorization"), g("x-scope-orgid"))?)
}

fn tag(key: &str, v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({"key": key, "type": "string", "value": s}),
        AttrValue::Bool(b) => json!({"key": key, "type": "bool", "value": b}),
        AttrValue::Int(i) => json!({"key": key, "type": "int64", "value": i}),
        AttrValue::Double(d) if d.is_finite() => json!({"key": key, "type": "float64", "value": d}),
        other => json!({"key": key, "type": "string", "value": other.to_filter_string()}),
    }
}

fn tags(attrs: &Attrs) -> Vec<Value> {
    attrs.0.iter().map(|(k, v)| tag(k, v)).collect()
}

fn span_tags(s: &SpanRecord) -> Vec<Value> {
    let mut out = tags(&s.attributes);
    if s.kind != SpanKind::Unspecified {
        out.push(json!({"key": "span.kind", "type": "string", "value": s.kind.as_str()}));
    }
    match s.status_code {
        StatusCode::Error => {
            out.push(json!({"key": "error", "type": "bool", "value": true}));
            out.push(json!({"key": "otel.status_code", "type": "string", "value": "ERROR"}));
        }
        StatusCode::Ok => {
            out.push(json!({"key": "otel.status_code", "type": "string", "value": "OK"}))
        }
        StatusCode::Unset => {}
    }
    if !s.status_message.is_empty() {
        out.push(
            json!({"key": "otel.status_description", "type": "string", "value": s.status_message}),
        );
    }
    if !s.scope.name.is_empty() {
        out.push(json!({"key": "otel.scope.name", "type": "string", "value": s.scope.name}));
    }
    if !s.scope.version.is_empty() {
        out.push(json!({"key": "otel.scope.version", "type": "string", "value": s.scope.version}));
    }
    out
}

/// One trace in Jaeger's JSON model.
pub fn jaeger_trace(spans: &[SpanRecord]) -> Value {
    let mut processes: Vec<(Value, String)> = Vec::new();
    let mut process_of: HashMap<*const loupe_storage::model::Resource, String> = HashMap::new();
    let trace_id = spans
        .first()
        .map(|s| hex::encode(s.trace_id))
        .unwrap_or_default();
    let jspans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let key = std::sync::Arc::as_ptr(&s.resource);
            let pid = match process_of.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let ptags: Vec<Value> = s
                        .resource
                        .attributes
                        .0
                        .iter()
                        .filter(|(k, _)| k != "service.name")
                        .map(|(k, v)| tag(k, v))
                        .collect();
                    let process = json!({"serviceName": s.service_name(), "tags": ptags});
                    // Spans decoded from files do not share resources: reuse equal processes.
                    let pid = match processes.iter().find(|(p, _)| *p == process) {
                        Some((_, id)) => id.clone(),
                        None => {
                            let id = format!("p{}", processes.len() + 1);
                            processes.push((process, id.clone()));
                            id
                        }
                    };
                    process_of.insert(key, pid.clone());
                    pid
                }
            };
            let mut refs: Vec<Value> = Vec::new();
            if let Some(p) = s.parent_span_id {
                refs.push(json!({"refType": "CHILD_OF", "traceID": hex::encode(s.trace_id), "spanID": hex::encode(p)}));
            }
            for l in &s.links {
                refs.push(json!({"refType": "FOLLOWS_FROM", "traceID": hex::encode(l.trace_id), "spanID": hex::encode(l.span_id)}));
            }
            let logs: Vec<Value> = s
                .events
                .iter()
                .map(|e| {
                    let mut fields = vec![json!({"key": "event", "type": "string", "value": e.name})];
                    fields.extend(tags(&e.attributes));
                    json!({"timestamp": e.time_unix_nano / 1000, "fields": fields})
                })
                .collect();
            json!({
                "traceID": hex::encode(s.trace_id),
                "spanID": hex::encode(s.span_id),
                "operationName": s.name,
                "references": refs,
                "flags": 1,
                "startTime": s.start_unix_nano / 1000,
                "duration": s.duration_nano / 1000,
                "tags": span_tags(s),
                "logs": logs,
                "processID": pid,
                "warnings": null,
            })
        })
        .collect();
    let processes: serde_json::Map<String, Value> =
        processes.into_iter().map(|(p, id)| (id, p)).collect();
    json!({"traceID": trace_id, "spans": jspans, "processes": processes, "warnings": null})
}

async fn services(
    State(st): State<QueryState>,
    headers: HeaderMap,
) -> Result<Json<Value>, JaegerError> {
    let t = tenant(&st, &headers)?;
    let list = st.traces.services(&t, None).await?;
    let n = list.len();
    Ok(ok(json!(list), n))
}

async fn service_operations(
    State(st): State<QueryState>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Result<Json<Value>, JaegerError> {
    let t = tenant(&st, &headers)?;
    let mut names: Vec<String> = st
        .traces
        .operations(&t, &service, None)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.dedup();
    let n = names.len();
    Ok(ok(json!(names), n))
}

async fn operations(
    State(st): State<QueryState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, JaegerError> {
    let t = tenant(&st, &headers)?;
    let q = q.unwrap_or_default();
    let mut service = None;
    let mut kind = None;
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        match &*k {
            "service" => service = Some(v.to_string()),
            "spanKind" if !v.is_empty() => kind = Some(v.to_string()),
            _ => {}
        }
    }
    let service =
        service.ok_or_else(|| QueryError::BadRequest("parameter 'service' is required".into()))?;
    let ops: Vec<Value> = st
        .traces
        .operations(&t, &service, None)
        .await?
        .into_iter()
        .filter(|(_, k)| kind.as_deref().is_none_or(|want| want == k.as_str()))
        .map(|(n, k)| json!({"name": n, "spanKind": k.as_str()}))
        .collect();
    let n = ops.len();
    Ok(ok(json!(ops), n))
}

/// Jaeger search parameters: times in microseconds, `lookback`, `tags` as JSON or logfmt,
/// repeated `tag=key:value`.
fn jaeger_filter(q: &str) -> Result<(SpanFilter, usize), QueryError> {
    let mut f = SpanFilter::default();
    let (mut start, mut end, mut lookback, mut limit) = (None, None, None, 20usize);
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match &*k {
            "service" => f.service = Some(v.to_string()),
            "operation" => f.name = Some(v.to_string()),
            "tags" => f.tags.extend(parse_tags(v)?),
            "tag" => {
                let (key, val) = v.split_once(':').ok_or_else(|| {
                    QueryError::BadRequest(format!("invalid tag {v:?}: expected key:value"))
                })?;
                f.tags.push((key.to_string(), val.to_string()));
            }
            "minDuration" => f.min_duration_nano = Some(parse_duration(v)?),
            "maxDuration" => f.max_duration_nano = Some(parse_duration(v)?),
            "start" => start = Some(parse_time(v, 1000, "start")?),
            "end" => end = Some(parse_time(v, 1000, "end")?),
            "lookback" if v != "custom" => lookback = Some(parse_duration(v)?),
            "limit" => limit = parse_limit(v, 1500)?,
            _ => {}
        }
    }
    finish_filter(&mut f, start, end, lookback)?;
    Ok((f, limit))
}

async fn find_traces(
    State(st): State<QueryState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, JaegerError> {
    let t = tenant(&st, &headers)?;
    let q = q.unwrap_or_default();
    // Jaeger also answers ?traceID=a&traceID=b with those traces.
    let ids: Vec<[u8; 16]> = url::form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| k == "traceID")
        .map(|(_, v)| parse_trace_id_param(&v))
        .collect::<Result<_, _>>()?;
    if !ids.is_empty() {
        let found = st.traces.traces(&t, &ids).await?;
        let data: Vec<Value> = ids
            .iter()
            .filter_map(|id| found.get(id))
            .map(|s| jaeger_trace(s))
            .collect();
        // Jaeger lists each id it did not find as an error of the response, not a failure.
        let missing: Vec<Value> = ids
            .iter()
            .filter(|id| !found.contains_key(*id))
            .map(|id| json!({"msg": "trace not found", "traceID": hex::encode(id)}))
            .collect();
        let n = data.len();
        let errors = if missing.is_empty() {
            Value::Null
        } else {
            json!(missing)
        };
        return Ok(Json(
            json!({"data": data, "total": n, "limit": 0, "offset": 0, "errors": errors}),
        ));
    }
    let (filter, limit) = jaeger_filter(&q)?;
    let traces = st.traces.search(&t, &filter, limit).await?;
    let data: Vec<Value> = traces
        .iter()
        .map(|(_, spans)| jaeger_trace(spans))
        .collect();
    let n = data.len();
    Ok(ok(json!(data), n))
}

async fn get_trace(
    State(st): State<QueryState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, JaegerError> {
    let t = tenant(&st, &headers)?;
    let tid = parse_trace_id_param(&id)?;
    let spans = st
        .traces
        .trace(&t, tid)
        .await?
        .ok_or_else(|| QueryError::NotFound("trace not found".into()))?;
    Ok(ok(json!([jaeger_trace(&spans)]), 1))
}

/// `/api/dependencies?endTs=&lookback=` (milliseconds; default now and 24 h): cross-service
/// parent → child call counts.
async fn dependencies(
    State(st): State<QueryState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, JaegerError> {
    let t = tenant(&st, &headers)?;
    let (mut end_ms, mut lookback_ms) = (None, 24 * 3_600_000i64);
    for (k, v) in url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        let ms = |what: &str| {
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    QueryError::BadRequest(format!(
                        "invalid {what} {v:?}: expected milliseconds (a non-negative integer)"
                    ))
                })
        };
        match &*k {
            "endTs" if !v.is_empty() => end_ms = Some(ms("endTs")?),
            "lookback" if !v.is_empty() => lookback_ms = ms("lookback")?,
            _ => {}
        }
    }
    let end = end_ms.map_or_else(crate::params::now_nanos, |m| m.saturating_mul(1_000_000));
    let start = end.saturating_sub(lookback_ms.saturating_mul(1_000_000));
    let edges = st.traces.dependencies(&t, start, end).await?;
    let data: Vec<Value> = edges
        .into_iter()
        .map(|((parent, child), n)| json!({"parent": parent, "child": child, "callCount": n}))
        .collect();
    let n = data.len();
    Ok(ok(Value::Array(data), n))
}

async fn not_found() -> JaegerError {
    JaegerError(QueryError::NotFound("no such Jaeger API endpoint".into()))
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/jaeger/api/services", get(services))
        .route(
            "/jaeger/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/jaeger/api/operations", get(operations))
        .route("/jaeger/api/traces", get(find_traces))
        .route("/jaeger/api/traces/{trace_id}", get(get_trace))
        .route("/jaeger/api/dependencies", get(dependencies))
        .route("/jaeger/api/{*rest}", get(not_found))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaeger_search_params() {
        let (f, limit) = jaeger_filter(
            "service=checkout&operation=charge&tags=%7B%22error%22%3A%22true%22%2C%22http.route%22%3A%22%2Fpay%22%7D&minDuration=1.2s&start=1700000000000000&end=1700000060000000&limit=5",
        )
        .unwrap();
        assert_eq!(f.service.as_deref(), Some("checkout"));
        assert_eq!(f.name.as_deref(), Some("charge"));
        assert_eq!(f.status, Some(StatusCode::Error));
        assert_eq!(f.tags, vec![("http.route".to_string(), "/pay".to_string())]);
        assert_eq!(f.min_duration_nano, Some(1_200_000_000));
        assert_eq!(f.start_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(limit, 5);
        let (f, _) = jaeger_filter("operation=x").unwrap();
        assert_eq!(f.service, None, "search without a service works");
        // The same validation as the native API (shared in params::finish_filter).
        assert!(jaeger_filter("service=a&start=2000&end=1000").is_err());
        assert!(jaeger_filter("service=a&minDuration=2s&maxDuration=1s").is_err());
        assert_eq!(
            jaeger_filter("service=a&limit=5000").unwrap().1,
            1500,
            "clamped"
        );
        let (f, _) = jaeger_filter("service=a&end=1700000000000000&lookback=2h").unwrap();
        assert_eq!(f.end_unix_nano - f.start_unix_nano, 7_200_000_000_000);
    }
}

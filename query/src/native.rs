//! The native JSON API under `/api/v1` (used by the web UI), described by the OpenAPI
//! document served at `/api/v1/openapi.json`.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use loupe_storage::model::{SpanRecord, StatusCode, parse_trace_id};
use loupe_storage::spans::SpanFilter;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, QueryError};
use crate::params::{complete_filter, parse_duration, parse_limit, parse_tags, parse_time};
pub use crate::state::{QueryState, Tenant};

#[derive(Serialize, ToSchema)]
pub struct ServicesResponse {
    pub services: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    /// unspecified, internal, server, client, producer or consumer.
    pub span_kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct OperationsResponse {
    pub operations: Vec<Operation>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStats {
    pub name: String,
    pub span_count: u64,
    pub error_count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service_name: String,
    pub root_span_name: String,
    /// Unix nanoseconds, as a string (exceeds JSON's safe integers).
    pub start_time_unix_nano: String,
    pub duration_nanos: i64,
    pub span_count: u64,
    pub error_count: u64,
    pub services: Vec<ServiceStats>,
    /// With a TraceQL query (`q`): the spans it matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched_span_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    pub traces: Vec<TraceSummary>,
    pub limit: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpanStatus {
    /// unset, ok or error.
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpanJson {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for root spans.
    pub parent_span_id: String,
    pub name: String,
    pub kind: String,
    pub service_name: String,
    pub start_time_unix_nano: String,
    pub duration_nanos: i64,
    pub status: SpanStatus,
    /// Span attributes with their OTLP types as JSON types.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    #[schema(value_type = Object)]
    pub resource: serde_json::Value,
    #[schema(value_type = Object)]
    pub scope: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub events: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub links: serde_json::Value,
    pub trace_state: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceResponse {
    pub trace_id: String,
    pub spans: Vec<SpanJson>,
}

pub fn span_json(s: &SpanRecord) -> SpanJson {
    SpanJson {
        trace_id: hex::encode(s.trace_id),
        span_id: hex::encode(s.span_id),
        parent_span_id: s.parent_span_id.map(hex::encode).unwrap_or_default(),
        name: s.name.clone(),
        kind: s.kind.as_str().to_string(),
        service_name: s.service_name().to_string(),
        start_time_unix_nano: s.start_unix_nano.to_string(),
        duration_nanos: s.duration_nano,
        status: SpanStatus {
            code: s.status_code.as_str().to_string(),
            message: s.status_message.clone(),
        },
        attributes: serde_json::to_value(&s.attributes).unwrap_or_default(),
        resource: serde_json::to_value(&s.resource.attributes).unwrap_or_default(),
        scope: serde_json::json!({"name": s.scope.name, "version": s.scope.version}),
        events: serde_json::Value::Array(
            s.events
                .iter()
                .map(|e| {
                    serde_json::json!({"timeUnixNano": e.time_unix_nano.to_string(), "name": e.name, "attributes": e.attributes})
                })
                .collect(),
        ),
        links: serde_json::Value::Array(
            s.links
                .iter()
                .map(|l| {
                    serde_json::json!({"traceId": hex::encode(l.trace_id), "spanId": hex::encode(l.span_id), "traceState": l.trace_state, "attributes": l.attributes})
                })
                .collect(),
        ),
        trace_state: s.trace_state.clone(),
    }
}

/// The root of a trace: a span without a parent in the trace, earliest first.
pub fn root_span(spans: &[SpanRecord]) -> Option<&SpanRecord> {
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| (s.parent_span_id.is_some(), s.start_unix_nano))
}

pub fn summarize(id: &[u8; 16], spans: &[SpanRecord]) -> TraceSummary {
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_unix_nano())
        .max()
        .unwrap_or(start);
    let mut services: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in spans {
        let e = services.entry(s.service_name()).or_default();
        e.0 += 1;
        e.1 += (s.status_code == StatusCode::Error) as u64;
    }
    let root = root_span(spans);
    TraceSummary {
        trace_id: hex::encode(id),
        root_service_name: root
            .map(|r| r.service_name().to_string())
            .unwrap_or_default(),
        root_span_name: root.map(|r| r.name.clone()).unwrap_or_default(),
        start_time_unix_nano: start.to_string(),
        duration_nanos: end - start,
        span_count: spans.len() as u64,
        error_count: services.values().map(|v| v.1).sum(),
        services: services
            .into_iter()
            .map(|(name, (span_count, error_count))| ServiceStats {
                name: name.to_string(),
                span_count,
                error_count,
            })
            .collect(),
        matched_span_ids: Vec::new(),
    }
}

pub fn parse_trace_id_param(s: &str) -> Result<[u8; 16], QueryError> {
    // Jaeger and some SDKs print 64-bit ids as 16 hex digits: left-pad them.
    let padded;
    let s = if s.len() < 32 && !s.is_empty() {
        padded = format!("{s:0>32}");
        &padded
    } else {
        s
    };
    parse_trace_id(s).ok_or_else(|| {
        QueryError::BadRequest(format!("invalid trace id {s:?}: expected 32 hex digits"))
    })
}

#[utoipa::path(get, path = "/api/v1/traces/{traceId}", tag = "traces",
    params(("traceId" = String, Path, description = "32 hex digits")),
    responses((status = 200, body = TraceResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn get_trace(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<TraceResponse>, QueryError> {
    let tid = parse_trace_id_param(&id)?;
    let spans = st
        .traces
        .trace(&tenant, tid)
        .await?
        .ok_or_else(|| QueryError::NotFound(format!("trace {} not found", hex::encode(tid))))?;
    Ok(Json(TraceResponse {
        trace_id: hex::encode(tid),
        spans: spans.iter().map(span_json).collect(),
    }))
}

/// Parameters of trace search, from a query string (`tags` may repeat). The filter is `None`
/// when it can match nothing (an inverted time or duration range): the answer is empty.
pub fn search_filter(query: &str) -> Result<(Option<SpanFilter>, usize), QueryError> {
    let mut f = SpanFilter::default();
    let (mut start, mut end, mut limit) = (None, None, 20usize);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match &*k {
            "service" => f.service = Some(v.to_string()),
            "operation" | "name" => f.name = Some(v.to_string()),
            "tags" | "tag" => f.tags.extend(parse_tags(v)?),
            "status" => {
                f.status = Some(StatusCode::parse(v).ok_or_else(|| {
                    QueryError::BadRequest(format!(
                        "invalid status {v:?}: expected error, ok or unset"
                    ))
                })?)
            }
            "minDuration" => f.min_duration_nano = Some(parse_duration(v)?),
            "maxDuration" => f.max_duration_nano = Some(parse_duration(v)?),
            "start" => start = Some(parse_time(v, 1_000_000, "start")?),
            "end" => end = Some(parse_time(v, 1_000_000, "end")?),
            "limit" => limit = parse_limit(v, 1000)?,
            _ => {}
        }
    }
    let possible = complete_filter(&mut f, start, end, None).is_ok();
    Ok((possible.then_some(f), limit))
}

/// The TraceQL query of a search, if any.
fn traceql_param(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == "q" && !v.trim().is_empty())
        .map(|(_, v)| v.into_owned())
}

/// Whether the form sets span conditions (beyond the time range and limit).
fn has_form_conditions(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| {
        !v.trim().is_empty()
            && matches!(
                &*k,
                "service"
                    | "operation"
                    | "name"
                    | "tags"
                    | "tag"
                    | "status"
                    | "minDuration"
                    | "maxDuration"
            )
    })
}

#[utoipa::path(get, path = "/api/v1/traces", tag = "traces",
    params(
        ("service" = Option<String>, Query, description = "service.name of a matching span"),
        ("operation" = Option<String>, Query, description = "span name"),
        ("tags" = Option<Vec<String>>, Query, description = "key=value (repeatable; logfmt or JSON object)"),
        ("status" = Option<String>, Query, description = "error, ok or unset"),
        ("minDuration" = Option<String>, Query, description = "Go duration, e.g. 100ms"),
        ("maxDuration" = Option<String>, Query, description = "Go duration"),
        ("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default end - 1h"),
        ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default now"),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 20"),
        ("q" = Option<String>, Query, description = "a TraceQL query, e.g. { resource.service.name = \"api\" && status = error }; with form conditions too, a trace must satisfy both")),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn search_traces(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<SearchResponse>, QueryError> {
    let query = q.as_deref().unwrap_or("");
    let (filter, limit) = search_filter(query)?;
    let traceql = traceql_param(query);
    let Some(filter) = filter else {
        return Ok(Json(SearchResponse {
            traces: Vec::new(),
            limit,
        }));
    };
    if let Some(traceql) = traceql {
        let expr = crate::traceql::parse(&traceql)?;
        let range = (filter.start_unix_nano, filter.end_unix_nano);
        let also = has_form_conditions(query).then_some(filter);
        let found = crate::traceql::search::search_also(
            &st.traces,
            &tenant,
            std::sync::Arc::new(expr),
            range,
            limit,
            also,
        )
        .await?;
        let traces = found
            .hits
            .iter()
            .map(|h| {
                let mut s = summarize(&h.id, &h.trace);
                s.matched_span_ids = h
                    .matched
                    .spans
                    .iter()
                    .map(|&i| hex::encode(h.trace[i].span_id))
                    .collect();
                s
            })
            .collect();
        return Ok(Json(SearchResponse { traces, limit }));
    }
    // Summaries need a few columns of each trace, not its attributes.
    let summary = loupe_storage::spans::Projection::summary();
    let traces = st
        .traces
        .search_projected(&tenant, &filter, limit, Some(&summary))
        .await?;
    Ok(Json(SearchResponse {
        traces: traces
            .iter()
            .map(|(id, spans)| summarize(id, spans))
            .collect(),
        limit,
    }))
}

fn range_param(query: &str) -> Result<Option<(i64, i64)>, QueryError> {
    let (mut s, mut e) = (None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "start" => s = Some(parse_time(&v, 1_000_000, "start")?),
            "end" => e = Some(parse_time(&v, 1_000_000, "end")?),
            _ => {}
        }
    }
    Ok(match (s, e) {
        (None, None) => None,
        (s, e) => Some((s.unwrap_or(i64::MIN), e.unwrap_or(i64::MAX))),
    })
}

#[utoipa::path(get, path = "/api/v1/services", tag = "services",
    params(("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339"), ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339")),
    responses((status = 200, body = ServicesResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_services(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<ServicesResponse>, QueryError> {
    let range = range_param(q.as_deref().unwrap_or(""))?;
    Ok(Json(ServicesResponse {
        services: st.traces.services(&tenant, range).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/services/{service}/operations", tag = "services",
    params(("service" = String, Path), ("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339"), ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339")),
    responses((status = 200, body = OperationsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_operations(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    Path(service): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<OperationsResponse>, QueryError> {
    let range = range_param(q.as_deref().unwrap_or(""))?;
    let ops = st.traces.operations(&tenant, &service, range).await?;
    Ok(Json(OperationsResponse {
        operations: ops
            .into_iter()
            .map(|(name, kind)| Operation {
                name,
                span_kind: kind.as_str().to_string(),
            })
            .collect(),
    }))
}

async fn not_found() -> QueryError {
    QueryError::NotFound("no such API endpoint".into())
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/v1/traces", get(search_traces))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/services", get(list_services))
        .route(
            "/api/v1/services/{service}/operations",
            get(list_operations),
        )
        .route("/api/v1/stats", get(crate::stats::stats))
        .route("/api/v1/logs", get(crate::logs::native::search_logs))
        .route(
            "/api/v1/logs/histogram",
            get(crate::logs::histogram::log_histogram),
        )
        .route("/api/v1/logs/facets", get(crate::logs::facets::log_facets))
        .route("/api/v1/logs/tail", get(crate::logs::tail::tail_logs))
        .route(
            "/api/v1/logs/context",
            get(crate::logs::context::log_context),
        )
        .route("/api/{*rest}", get(not_found))
        .with_state(state)
}

#[cfg(test)]
#[path = "native_tests.rs"]
mod tests;

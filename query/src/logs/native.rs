//! `GET /api/v1/logs`: log search of the native API (see [`super::syntax`] for `query`).

use axum::Json;
use axum::extract::{RawQuery, State};
use loupe_storage::logs::{LogFilter, LogQuery, LogRecord, Order};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, QueryError};
use crate::params::{parse_limit, parse_time};
use crate::state::{QueryState, Tenant};

/// Most lines one search returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
const HOUR_NANOS: i64 = 3_600_000_000_000;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Unix nanoseconds, as a string (exceeds JSON's safe integers).
    pub time_unix_nano: String,
    pub observed_time_unix_nano: String,
    /// OTLP severity number (1–24; 0 unspecified).
    pub severity_number: i32,
    pub severity_text: String,
    pub service_name: String,
    /// The body: a string, or the structured value (object, array, number, ...) as sent.
    pub body: serde_json::Value,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    #[schema(value_type = Object)]
    pub resource: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    pub scope_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub event_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct LogsResponse {
    pub logs: Vec<LogLine>,
    pub limit: usize,
}

pub fn log_json(r: &LogRecord) -> LogLine {
    LogLine {
        time_unix_nano: r.time_unix_nano.to_string(),
        observed_time_unix_nano: r.observed_unix_nano.to_string(),
        severity_number: r.severity_number,
        severity_text: r.severity_text.clone(),
        service_name: r.service_name().to_string(),
        body: serde_json::to_value(&r.body).unwrap_or_default(),
        attributes: serde_json::to_value(&r.attributes).unwrap_or_default(),
        resource: serde_json::to_value(&r.resource.attributes).unwrap_or_default(),
        trace_id: r.trace_id.map(hex::encode),
        span_id: r.span_id.map(hex::encode),
        scope_name: r.scope.name.clone(),
        event_name: r.event_name.clone(),
    }
}

/// The search a request's query string asks for.
pub fn log_query(query: &str) -> Result<LogQuery, QueryError> {
    let (mut start, mut end, mut limit, mut order) =
        (None, None, DEFAULT_LIMIT, Order::NewestFirst);
    let mut filter = LogFilter::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "query" => super::syntax::apply(&v, &mut filter)?,
            "start" => start = Some(parse_time(&v, 1_000_000, "start")?),
            "end" => end = Some(parse_time(&v, 1_000_000, "end")?),
            "limit" => limit = parse_limit(&v, MAX_LIMIT)?,
            "order" => {
                order = match &*v {
                    "newest" => Order::NewestFirst,
                    "oldest" => Order::OldestFirst,
                    other => {
                        return Err(QueryError::BadRequest(format!(
                            "invalid order {other:?}: expected newest or oldest"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    filter.end_unix_nano = end.unwrap_or(now);
    filter.start_unix_nano = start.unwrap_or(filter.end_unix_nano.saturating_sub(HOUR_NANOS));
    Ok(LogQuery {
        filter,
        limit,
        order,
    })
}

#[utoipa::path(get, path = "/api/v1/logs", tag = "logs",
    params(
        ("query" = Option<String>, Query, description = "conditions, all of which must hold: words and \"phrases\" in the body (whole tokens in a row, ignoring case; a token is a run of letters and digits), service:NAME, trace_id:ID, severity:LEVEL, severity>=LEVEL, severity<=LEVEL, key:value on an attribute (attributes.key:value, resource.key:value)"),
        ("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default end - 1h"),
        ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default now"),
        ("limit" = Option<usize>, Query, description = "1 to 1000 (larger values are clamped), default 100"),
        ("order" = Option<String>, Query, description = "newest (default) or oldest first")),
    responses((status = 200, body = LogsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn search_logs(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<LogsResponse>, QueryError> {
    let q = log_query(q.as_deref().unwrap_or(""))?;
    let found = st.logs.search(&tenant, &q).await?;
    Ok(Json(LogsResponse {
        logs: found.iter().map(log_json).collect(),
        limit: q.limit,
    }))
}

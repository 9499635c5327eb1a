//! Grafana Tempo's HTTP API under `/tempo`, so Grafana's Tempo data source works unchanged
//! with the URL `http://host:7070/tempo`: `/api/echo` (its health check), trace by id (v1 and
//! v2, protobuf when `Accept` names `application/protobuf`, else JSON), `/api/search` with
//! TraceQL, and tag names and values for autocomplete. Answers follow Tempo's shapes; errors
//! are plain text with the HTTP status, as Tempo writes them.
//!
//! - [`otlp`]: spans back to OTLP (protobuf and Tempo's JSON).
//! - [`search`]: `/api/search`; [`tags`]: tag names and values for autocomplete.

pub mod otlp;
pub mod search;
pub mod tags;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use loupe_storage::TenantId;
use loupe_storage::model::parse_trace_id;
use prost::Message;
use serde_json::{Value, json};

use crate::error::QueryError;
use crate::params::parse_time;
use crate::state::QueryState;

/// An error in Tempo's envelope: the status and a plain-text message.
pub struct TempoError(pub QueryError);

impl From<QueryError> for TempoError {
    fn from(e: QueryError) -> Self {
        TempoError(e)
    }
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        self.0.plain_text("tempo")
    }
}

fn tenant(st: &QueryState, headers: &HeaderMap) -> Result<TenantId, TempoError> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    st.resolver
        .resolve(h("authorization"), h("x-scope-orgid"))
        .map_err(|e| TempoError(e.into()))
}

/// Whether the client asked for protobuf (Tempo checks `Accept` by substring).
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf"))
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn protobuf_response(bytes: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/protobuf")],
        Body::from(bytes),
    )
        .into_response()
}

/// `start`/`end` in unix seconds, both optional; `end` must not precede `start`.
pub fn seconds_range(query: &str) -> Result<(Option<i64>, Option<i64>), QueryError> {
    let (mut start, mut end) = (None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "start" if !v.is_empty() => start = Some(parse_time(&v, 1_000_000_000, "start")?),
            "end" if !v.is_empty() => end = Some(parse_time(&v, 1_000_000_000, "end")?),
            _ => {}
        }
    }
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(QueryError::BadRequest(format!(
            "http parameter start must be before end. received start={} end={}",
            s / 1_000_000_000,
            e / 1_000_000_000
        )));
    }
    Ok((start, end))
}

fn trace_id(id: &str) -> Result<loupe_storage::model::TraceId, QueryError> {
    parse_trace_id(id).ok_or_else(|| {
        QueryError::BadRequest(format!(
            "invalid trace id {id:?}: expected up to 32 hex characters"
        ))
    })
}

/// A trace by id for the tenant of `headers`; `start`/`end` in `query` are validated.
async fn lookup(
    st: &QueryState,
    headers: &HeaderMap,
    id: &str,
    query: Option<&str>,
) -> Result<Option<Vec<loupe_storage::model::SpanRecord>>, TempoError> {
    let t = tenant(st, headers)?;
    seconds_range(query.unwrap_or(""))?;
    let id = trace_id(id)?;
    Ok(st.traces.trace(&t, id).await?)
}

async fn echo() -> &'static str {
    "echo"
}

async fn buildinfo() -> Response {
    json_response(&json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// `/api/traces/{id}`: Tempo's v1 answer, a bare `Trace`; 404 with an empty body when absent.
async fn trace_v1(
    State(st): State<QueryState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let Some(spans) = lookup(&st, &headers, &id, q.as_deref()).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    Ok(if wants_protobuf(&headers) {
        protobuf_response(otlp::traces_data(&spans).encode_to_vec())
    } else {
        json_response(&otlp::trace_json(&spans, "batches"))
    })
}

/// `/api/v2/traces/{id}`: a `TraceByIDResponse` whose `trace` (field 1) is always present,
/// empty when the trace is not found, as Tempo answers (Grafana reads it without a check).
async fn trace_v2(
    State(st): State<QueryState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let spans = lookup(&st, &headers, &id, q.as_deref())
        .await?
        .unwrap_or_default();
    Ok(if wants_protobuf(&headers) {
        let trace = otlp::traces_data(&spans).encode_to_vec();
        // TraceByIDResponse { trace = 1 }: the embedded message, length-delimited.
        let mut out = Vec::with_capacity(trace.len() + 8);
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(trace.len() as u64, &mut out);
        out.extend_from_slice(&trace);
        protobuf_response(out)
    } else {
        json_response(&json!({
            "trace": otlp::trace_json(&spans, "resourceSpans"),
            "metrics": {},
        }))
    })
}

async fn not_found(Path(rest): Path<String>) -> TempoError {
    TempoError(QueryError::NotFound(format!(
        "no such Tempo API endpoint: /tempo/{rest}"
    )))
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/tempo/api/echo", get(echo))
        .route("/tempo/api/status/buildinfo", get(buildinfo))
        .route("/tempo/api/traces/{trace_id}", get(trace_v1))
        .route("/tempo/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/tempo/api/search", get(search::search))
        .route("/tempo/api/search/tags", get(tags::tags_v1))
        .route("/tempo/api/v2/search/tags", get(tags::tags_v2))
        .route(
            "/tempo/api/search/tag/{tag}/values",
            get(tags::tag_values_v1),
        )
        .route(
            "/tempo/api/v2/search/tag/{tag}/values",
            get(tags::tag_values_v2),
        )
        .route("/tempo/{*rest}", get(not_found))
        .with_state(state)
}

#[cfg(test)]
mod tests;

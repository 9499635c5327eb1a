//! Grafana Loki's HTTP API under `/loki`, so Grafana's Loki data source works unchanged with
//! the URL `http://host:7070/loki`: LogQL queries ([`query`]), label browsing and index
//! statistics ([`labels`]), detected labels and fields ([`detected`]) and live tail over a
//! websocket ([`tail`]). Answers follow Loki's JSON shapes; errors are plain text with the
//! HTTP status, as Loki writes them. Parameters come from the query string, or from a form
//! body on POST, as Loki takes them.

pub mod detected;
pub mod labels;
pub mod query;
pub mod tail;

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, header};
use loupe_storage::TenantId;
use serde_json::Value;

use crate::error::QueryError;
use crate::logql::parser::duration_ns;
use crate::state::QueryState;

/// An error in Loki's envelope: the status and a plain-text message.
pub struct LokiError(pub QueryError);

impl<E: Into<QueryError>> From<E> for LokiError {
    fn from(e: E) -> Self {
        LokiError(e.into())
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        self.0.plain_text("loki")
    }
}

pub type LokiResult = Result<Response, LokiError>;

fn bad(msg: impl Into<String>) -> LokiError {
    LokiError(QueryError::BadRequest(msg.into()))
}

pub fn json(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// A request's tenant, headers and parameters (query string, then a POST form body).
pub struct LokiRequest {
    pub tenant: TenantId,
    pub headers: HeaderMap,
    pub params: Vec<(String, String)>,
}

impl FromRequest<QueryState> for LokiRequest {
    type Rejection = LokiError;

    async fn from_request(req: Request, st: &QueryState) -> Result<Self, LokiError> {
        let (tenant, headers, params) = crate::state::form_request(req, st).await?;
        Ok(LokiRequest {
            tenant,
            headers,
            params,
        })
    }
}

const HOUR_NS: i64 = 3_600_000_000_000;

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A Loki timestamp: float seconds (with a `.`), integer seconds (up to 10 digits) or
/// nanoseconds, or RFC 3339.
pub fn parse_timestamp(name: &str, v: &str) -> Result<i64, LokiError> {
    let err = || {
        bad(format!(
            "invalid {name} {v:?}: expected unix seconds or nanoseconds, or RFC 3339"
        ))
    };
    if v.contains('.')
        && let Ok(f) = v.parse::<f64>()
    {
        if !f.is_finite() || f.abs() > 9.2e9 {
            return Err(err());
        }
        return Ok((f * 1e9).round() as i64);
    }
    match v.parse::<i64>() {
        Ok(n) if v.trim_start_matches('-').len() <= 10 => {
            n.checked_mul(1_000_000_000).ok_or_else(err)
        }
        Ok(n) => Ok(n),
        Err(_) => chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(err),
    }
}

/// A duration as Loki takes `step` and `since`: Prometheus notation or float seconds.
pub fn parse_step(name: &str, v: &str) -> Result<i64, LokiError> {
    if let Ok(f) = v.parse::<f64>() {
        if (0.0..9.2e9).contains(&f) {
            return Ok((f * 1e9).round() as i64);
        }
    } else if let Some(ns) = duration_ns(v).filter(|n| *n >= 0) {
        return Ok(ns);
    }
    Err(bad(format!(
        "invalid {name} {v:?}: expected a duration such as 30s or 5m, or seconds"
    )))
}

impl LokiRequest {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `start` and `end` (default: the hour before now, or `since` before the end).
    pub fn range(&self) -> Result<(i64, i64), LokiError> {
        let end = match self.get("end") {
            Some(v) if !v.is_empty() => parse_timestamp("end", v)?,
            _ => now_ns(),
        };
        let start = match (self.get("start"), self.get("since")) {
            (Some(v), _) if !v.is_empty() => parse_timestamp("start", v)?,
            (_, Some(s)) if !s.is_empty() => end.saturating_sub(parse_step("since", s)?),
            _ => end.saturating_sub(HOUR_NS),
        };
        Ok((start, end))
    }

    pub fn limit(&self, default: usize, max: usize) -> Result<usize, LokiError> {
        match self.get("limit") {
            None | Some("") => Ok(default),
            Some(v) => {
                let n: usize = v
                    .parse()
                    .map_err(|_| bad(format!("invalid limit {v:?}: expected a whole number")))?;
                if n == 0 {
                    return Err(bad("limit must be a positive value"));
                }
                if n > max {
                    return Err(bad(format!(
                        "max entries limit per query exceeded, limit > max_entries_limit ({n} > {max})"
                    )));
                }
                Ok(n)
            }
        }
    }
}

async fn buildinfo() -> Response {
    json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn not_found(State(_): State<QueryState>) -> LokiError {
    LokiError(QueryError::NotFound("no such Loki API endpoint".into()))
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route(
            "/loki/api/v1/query_range",
            get(query::query_range).post(query::query_range),
        )
        .route("/loki/api/v1/query", get(query::query).post(query::query))
        .route(
            "/loki/api/v1/labels",
            get(labels::labels).post(labels::labels),
        )
        .route(
            "/loki/api/v1/label",
            get(labels::labels).post(labels::labels),
        )
        .route(
            "/loki/api/v1/label/{name}/values",
            get(labels::label_values).post(labels::label_values),
        )
        .route(
            "/loki/api/v1/series",
            get(labels::series).post(labels::series),
        )
        .route(
            "/loki/api/v1/index/stats",
            get(labels::index_stats).post(labels::index_stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(labels::volume).post(labels::volume),
        )
        .route(
            "/loki/api/v1/index/volume_range",
            get(labels::volume_range).post(labels::volume_range),
        )
        .route(
            "/loki/api/v1/detected_labels",
            get(detected::detected_labels).post(detected::detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(detected::detected_fields).post(detected::detected_fields),
        )
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(detected::detected_field_values).post(detected::detected_field_values),
        )
        .route("/loki/api/v1/tail", get(tail::tail))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route("/loki/{*rest}", get(not_found).post(not_found))
        .with_state(state)
}

#[cfg(test)]
mod tests;

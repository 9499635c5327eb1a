//! `GET /api/v1/logs/context`: the lines around one line — those just before and just after
//! it from the same pod (`k8s.pod.name`), or from the same service when the line has no pod —
//! as a log explorer shows when a line is opened.

use axum::Json;
use axum::extract::{RawQuery, State};
use loupe_storage::logs::{LogFilter, LogQuery, Order};
use serde::Serialize;
use utoipa::ToSchema;

use super::native::{LogLine, log_json};
use crate::error::{ErrorBody, QueryError};
use crate::params::parse_limit;
use crate::state::{QueryState, Tenant};

/// Most lines on each side.
pub const MAX_SIDE: usize = 500;
const DEFAULT_SIDE: usize = 10;
/// How far from the line its context is looked for.
const WINDOW_NANOS: i64 = 24 * 3_600_000_000_000;

#[derive(Serialize, ToSchema)]
pub struct ContextResponse {
    /// Lines before the given time, oldest first.
    pub before: Vec<LogLine>,
    /// Lines at exactly the given time (the line itself among them), in search order.
    pub at: Vec<LogLine>,
    /// Lines after the given time, oldest first.
    pub after: Vec<LogLine>,
}

#[utoipa::path(get, path = "/api/v1/logs/context", tag = "logs",
    params(
        ("time" = String, Query, description = "the line's timeUnixNano"),
        ("service" = String, Query, description = "the line's serviceName"),
        ("pod" = Option<String>, Query, description = "the line's k8s.pod.name, when it has one: the context is that pod's lines"),
        ("before" = Option<usize>, Query, description = "lines before, 0 to 500 (larger values are clamped), default 10"),
        ("after" = Option<usize>, Query, description = "lines after, 0 to 500 (larger values are clamped), default 10")),
    responses((status = 200, body = ContextResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn log_context(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<ContextResponse>, QueryError> {
    let raw = q.as_deref().unwrap_or("");
    let (mut time, mut service, mut pod) = (None, None, None);
    let (mut before, mut after) = (DEFAULT_SIDE, DEFAULT_SIDE);
    let side = |v: &str| -> Result<usize, QueryError> {
        if v.trim() == "0" {
            return Ok(0);
        }
        parse_limit(v, MAX_SIDE)
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match &*k {
            "time" => {
                let t: u128 = v.trim().parse().map_err(|_| {
                    QueryError::BadRequest(format!(
                        "invalid time {v:?}: expected the line's timeUnixNano"
                    ))
                })?;
                time = Some(t.min(i64::MAX as u128) as i64);
            }
            "service" => service = Some(v.into_owned()),
            "pod" => pod = Some(v.into_owned()).filter(|p| !p.is_empty()),
            "before" => before = side(&v)?,
            "after" => after = side(&v)?,
            _ => {}
        }
    }
    let missing = |what: &str| QueryError::BadRequest(format!("missing {what}: the line's {what}"));
    let time = time.ok_or_else(|| missing("time"))?;
    let service = service.ok_or_else(|| missing("service"))?;
    let base = LogFilter {
        service: Some(service),
        attributes: pod
            .map(|p| vec![("k8s.pod.name".to_string(), p)])
            .unwrap_or_default(),
        ..LogFilter::default()
    };
    let around = |start: i64, end: i64, limit: usize, order: Order| LogQuery {
        filter: LogFilter {
            start_unix_nano: start,
            end_unix_nano: end,
            ..base.clone()
        },
        limit,
        order,
    };
    let mut earlier = Vec::new();
    if before > 0 && time > 0 {
        let q = around(
            time.saturating_sub(WINDOW_NANOS),
            time - 1,
            before,
            Order::NewestFirst,
        );
        earlier = st.logs.search(&tenant, &q).await?;
        earlier.reverse();
    }
    let at = st
        .logs
        .search(&tenant, &around(time, time, MAX_SIDE, Order::OldestFirst))
        .await?;
    let mut later = Vec::new();
    if after > 0 && time < i64::MAX {
        let q = around(
            time + 1,
            time.saturating_add(WINDOW_NANOS),
            after,
            Order::OldestFirst,
        );
        later = st.logs.search(&tenant, &q).await?;
    }
    Ok(Json(ContextResponse {
        before: earlier.iter().map(log_json).collect(),
        at: at.iter().map(log_json).collect(),
        after: later.iter().map(log_json).collect(),
    }))
}

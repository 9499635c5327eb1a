//! `GET /api/v1/logs/histogram`: how many lines match a search, per time bucket and severity
//! level (the bars a log explorer draws above its results; Grafana's log volume).

use axum::Json;
use axum::extract::{RawQuery, State};
use loupe_storage::logs::LEVELS;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, QueryError};
use crate::params::parse_duration;
use crate::state::{QueryState, Tenant};

/// Most buckets one histogram has.
pub const MAX_BUCKETS: i64 = 1000;
/// Buckets when no step is given.
const DEFAULT_BUCKETS: i64 = 60;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LevelCounts {
    /// unknown, trace, debug, info, warn, error or fatal.
    pub level: String,
    /// Lines per bucket, in bucket order.
    pub counts: Vec<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistogramResponse {
    /// Start of the first bucket, unix milliseconds.
    pub start: i64,
    /// Bucket width in milliseconds.
    pub step_ms: f64,
    /// Start of each bucket, unix milliseconds.
    pub times: Vec<i64>,
    /// One series per level, all levels, in severity order.
    pub series: Vec<LevelCounts>,
    pub total: u64,
}

/// The bucket width: `step` as given, or the range cut in 60; never so small that the range
/// makes more than [`MAX_BUCKETS`] (a smaller or zero step is widened to that, as the
/// response's `stepMs` says).
fn step_nanos(step: Option<&str>, range_nanos: i64) -> Result<i64, QueryError> {
    let range = range_nanos.max(0) as u128 + 1;
    let step = match step {
        Some(s) => parse_duration(s)?.max(0) as u128,
        None => range.div_ceil(DEFAULT_BUCKETS as u128),
    };
    let finest = range.div_ceil(MAX_BUCKETS as u128);
    Ok(step.max(finest).max(1).min(i64::MAX as u128) as i64)
}

#[utoipa::path(get, path = "/api/v1/logs/histogram", tag = "logs",
    params(
        ("query" = Option<String>, Query, description = "the search, as for /api/v1/logs"),
        ("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default end - 1h"),
        ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default now"),
        ("step" = Option<String>, Query, description = "bucket width as a duration (30s, 1m, 250ms); default the range / 60; widened to the range / 1000 when smaller")),
    responses((status = 200, body = HistogramResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn log_histogram(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<HistogramResponse>, QueryError> {
    let raw = q.as_deref().unwrap_or("");
    let query = super::native::log_query(raw)?;
    let filter = query.filter;
    // A start after the end is an empty range, as for the search: one empty bucket.
    let step = url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == "step")
        .map(|(_, v)| v.into_owned());
    let range = filter.end_unix_nano.saturating_sub(filter.start_unix_nano);
    let step = step_nanos(step.as_deref(), range)?;
    let h = st.logs.histogram(&tenant, &filter, step).await?;
    let times = (0..h.counts.len() as i64)
        .map(|i| {
            h.start_unix_nano
                .saturating_add(i.saturating_mul(h.step_nanos))
                / 1_000_000
        })
        .collect();
    let series: Vec<LevelCounts> = LEVELS
        .iter()
        .enumerate()
        .map(|(l, name)| LevelCounts {
            level: name.to_string(),
            counts: h.counts.iter().map(|b| b[l]).collect(),
        })
        .collect();
    Ok(Json(HistogramResponse {
        start: h.start_unix_nano / 1_000_000,
        step_ms: h.step_nanos as f64 / 1e6,
        times,
        total: series.iter().flat_map(|s| &s.counts).sum(),
        series,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_default_to_sixty_buckets_and_never_make_more_than_the_most() {
        let hour = 3_600_000_000_000;
        assert_eq!(step_nanos(None, hour - 1).unwrap(), 60_000_000_000);
        assert_eq!(step_nanos(Some("5m"), hour - 1).unwrap(), 300_000_000_000);
        assert_eq!(step_nanos(Some("1ms"), hour - 1).unwrap(), 3_600_000_000);
        assert_eq!(step_nanos(Some("0"), hour - 1).unwrap(), 3_600_000_000);
        assert_eq!(step_nanos(Some("1ms"), 0).unwrap(), 1_000_000);
        assert!(step_nanos(Some("soon"), hour).is_err());
    }
}

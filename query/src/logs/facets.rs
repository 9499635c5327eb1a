//! `GET /api/v1/logs/facets`: the most frequent values of a field among the newest lines a
//! search matches (a sample, as Kibana's field list and Grafana's detected fields use), so a
//! user sees at a glance which services, levels, pods or status codes the lines come from
//! and can filter by one.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use loupe_storage::logs::LogRecord;
use loupe_storage::logs::histogram::{LEVELS, level_of};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, QueryError};
use crate::params::parse_limit;
use crate::state::{QueryState, Tenant};

/// Most lines one facet request samples.
pub const MAX_SAMPLE: usize = 10_000;
const DEFAULT_SAMPLE: usize = 1000;
const DEFAULT_VALUES: usize = 10;
const MAX_VALUES: usize = 100;

#[derive(Serialize, ToSchema)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct FacetResponse {
    pub field: String,
    /// Lines looked at: the newest that match, at most `sample`.
    pub sampled: u64,
    /// Of those, lines without the field.
    pub missing: u64,
    /// The most frequent values, most frequent first (ties by value).
    pub values: Vec<FacetValue>,
}

/// A line's value of `field`: `service` (`service.name`), `severity` (`level`: the level
/// name), or an attribute of the record or else of its resource.
fn value_of(r: &LogRecord, field: &str) -> Option<String> {
    match field {
        "service" | "service.name" | "service_name" => Some(r.service_name().to_string()),
        "severity" | "level" => Some(LEVELS[level_of(r.severity_number)].to_string()),
        other => {
            let key = other
                .strip_prefix("attributes.")
                .or_else(|| other.strip_prefix("resource."))
                .unwrap_or(other);
            r.attribute(key).map(|v| v.to_filter_string())
        }
    }
}

/// Counts of `field` over `lines`: (values most frequent first, at most `top`; missing).
fn count(lines: &[LogRecord], field: &str, top: usize) -> (Vec<FacetValue>, u64) {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut missing = 0;
    for r in lines {
        match value_of(r, field) {
            Some(v) => *counts.entry(v).or_default() += 1,
            None => missing += 1,
        }
    }
    let mut values: Vec<FacetValue> = counts
        .into_iter()
        .map(|(value, count)| FacetValue { value, count })
        .collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(top);
    (values, missing)
}

#[utoipa::path(get, path = "/api/v1/logs/facets", tag = "logs",
    params(
        ("field" = String, Query, description = "service, severity (or level), or an attribute key of the record or its resource (attributes.KEY and resource.KEY work too)"),
        ("query" = Option<String>, Query, description = "the search, as for /api/v1/logs"),
        ("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default end - 1h"),
        ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default now"),
        ("sample" = Option<usize>, Query, description = "how many of the newest matching lines to count, 1 to 10000 (larger values are clamped), default 1000"),
        ("limit" = Option<usize>, Query, description = "how many values to return, 1 to 100 (larger values are clamped), default 10")),
    responses((status = 200, body = FacetResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn log_facets(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<FacetResponse>, QueryError> {
    let raw = q.as_deref().unwrap_or("");
    let (mut field, mut sample, mut top) = (None, DEFAULT_SAMPLE, DEFAULT_VALUES);
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match &*k {
            "field" => field = Some(v.trim().to_string()),
            "sample" => sample = parse_limit(&v, MAX_SAMPLE)?,
            "limit" => top = parse_limit(&v, MAX_VALUES)?,
            _ => {}
        }
    }
    let field = field.filter(|f| !f.is_empty()).ok_or_else(|| {
        QueryError::BadRequest("missing field: name the field to count (e.g. service)".into())
    })?;
    // The search's own `limit` is the number of values here: parse the rest without it.
    let rest: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(raw.as_bytes())
                .filter(|(k, _)| k == "query" || k == "start" || k == "end"),
        )
        .finish();
    let mut q = super::native::log_query(&rest)?;
    q.limit = sample;
    let lines = st.logs.search(&tenant, &q).await?;
    let (values, missing) = count(&lines, &field, top);
    Ok(Json(FacetResponse {
        field,
        sampled: lines.len() as u64,
        missing,
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_storage::model::{AttrValue, Attrs, Resource, Scope};
    use std::sync::Arc;

    fn line(service: &str, severity: i32, status: Option<i64>) -> LogRecord {
        LogRecord {
            time_unix_nano: 1,
            observed_unix_nano: 1,
            severity_number: severity,
            severity_text: String::new(),
            body: AttrValue::Str("x".into()),
            attributes: Attrs(
                status
                    .map(|s| ("http.status_code".to_string(), AttrValue::Int(s)))
                    .into_iter()
                    .collect(),
            ),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: String::new(),
            resource: Arc::new(Resource {
                service_name: service.into(),
                attributes: Attrs(vec![(
                    "k8s.pod.name".into(),
                    AttrValue::Str(format!("{service}-0")),
                )]),
            }),
            scope: Arc::new(Scope::default()),
        }
    }

    #[test]
    fn values_are_counted_most_frequent_first() {
        let lines = vec![
            line("web", 9, Some(200)),
            line("web", 17, Some(500)),
            line("cart", 17, Some(500)),
            line("cart", 9, None),
            line("web", 13, Some(500)),
        ];
        let pairs = |field: &str| {
            let (v, missing) = count(&lines, field, 10);
            let v: Vec<(String, u64)> = v.into_iter().map(|f| (f.value, f.count)).collect();
            (v, missing)
        };
        let s = |x: &str| x.to_string();
        assert_eq!(pairs("service").0, vec![(s("web"), 3), (s("cart"), 2)]);
        assert_eq!(
            pairs("level").0,
            vec![(s("error"), 2), (s("info"), 2), (s("warn"), 1)]
        );
        assert_eq!(
            pairs("attributes.http.status_code"),
            (vec![(s("500"), 3), (s("200"), 1)], 1)
        );
        assert_eq!(pairs("resource.k8s.pod.name").0[0], (s("web-0"), 3));
        assert_eq!(count(&lines, "service", 1).0.len(), 1);
    }
}

//! Prometheus's HTTP API under `/prometheus/api/v1`, so Grafana's Prometheus data source
//! works with the URL `http://host:7070/prometheus` (queries, the metric browser,
//! autocomplete): `query`, `query_range`, `series`, `labels`, `label/{name}/values`,
//! `metadata`, `query_exemplars`, `status/buildinfo`. Parameters come from the query string
//! or a form body on POST, as Prometheus takes them; answers and errors have Prometheus's
//! JSON shapes (`{"status":"error","errorType":"bad_data","error":"..."}`).

use axum::Router;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use loupe_storage::TenantId;
use loupe_storage::metrics::{LabelMatcher, Labels};
use serde_json::{Map, Value, json};

use crate::promql::service::{LOOKBACK_MS, QueryResult};
use crate::promql::value::format_float;
use crate::promql::{EvalError, fetch};
use crate::state::QueryState;

pub struct PromError(EvalError);

impl<E: Into<EvalError>> From<E> for PromError {
    fn from(e: E) -> Self {
        PromError(e.into())
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let (kind, status) = self.0.kind();
        let body = json!({"status": "error", "errorType": kind, "error": self.0.to_string()});
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

type PromResult = Result<Response, PromError>;

fn bad(msg: impl Into<String>) -> PromError {
    PromError(EvalError::BadData(msg.into()))
}

fn success(data: Value) -> Response {
    let body = json!({"status": "success", "data": data});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A request's tenant and parameters (query string, then a form body on POST).
pub struct PromRequest {
    tenant: TenantId,
    params: Vec<(String, String)>,
}

impl FromRequest<QueryState> for PromRequest {
    type Rejection = PromError;

    async fn from_request(req: Request, st: &QueryState) -> Result<Self, PromError> {
        let (tenant, _, params) = crate::state::form_request(req, st)
            .await
            .map_err(|e| PromError(EvalError::Query(e)))?;
        Ok(PromRequest { tenant, params })
    }
}

impl PromRequest {
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, PromError> {
        self.get(name).map_or(Ok(default), |v| parse_time(name, v))
    }

    /// `match[]` selectors.
    fn selectors(&self) -> Result<Vec<Vec<LabelMatcher>>, PromError> {
        self.all("match[]")
            .into_iter()
            .map(|s| match promql_parser::parser::parse(s) {
                Ok(promql_parser::parser::Expr::VectorSelector(vs)) => Ok(fetch::matchers(&vs)?),
                Ok(_) => Err(bad(format!(
                    "invalid parameter \"match[]\": {s:?} is not a series selector"
                ))),
                Err(e) => Err(bad(format!("invalid parameter \"match[]\": {e}"))),
            })
            .collect()
    }

    fn lookback(&self) -> Result<i64, PromError> {
        self.get("lookback_delta")
            .map_or(Ok(LOOKBACK_MS), |v| parse_duration("lookback_delta", v))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Prometheus's times: unix seconds (fractions allowed) or RFC 3339.
pub fn parse_time(name: &str, v: &str) -> Result<i64, PromError> {
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() && f.abs() < 9.2e12 {
            return Ok((f * 1000.0).round() as i64);
        }
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    Err(bad(format!(
        "invalid parameter \"{name}\": cannot parse \"{v}\" to a valid timestamp"
    )))
}

/// Prometheus's durations: float seconds or `1h30m`.
pub fn parse_duration(name: &str, v: &str) -> Result<i64, PromError> {
    if let Ok(f) = v.parse::<f64>() {
        if (0.0..9.2e12).contains(&f) {
            return Ok((f * 1000.0).round() as i64);
        }
    } else if let Ok(d) = promql_parser::util::parse_duration(v) {
        return Ok(d.as_millis() as i64);
    }
    Err(bad(format!(
        "invalid parameter \"{name}\": cannot parse \"{v}\" to a valid duration"
    )))
}

fn labels_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for (k, v) in l.iter() {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

fn point(t: i64, v: f64) -> Value {
    json!([t as f64 / 1000.0, format_float(v)])
}

fn result_json(r: QueryResult) -> Value {
    match r {
        QueryResult::Scalar(t, v) => json!({"resultType": "scalar", "result": point(t, v)}),
        QueryResult::String(t, s) => {
            json!({"resultType": "string", "result": [t as f64 / 1000.0, s]})
        }
        QueryResult::Vector(v) => json!({
            "resultType": "vector",
            "result": v.iter().map(|(l, t, x)| json!({"metric": labels_json(l), "value": point(*t, *x)})).collect::<Vec<_>>(),
        }),
        QueryResult::Matrix(m) => json!({
            "resultType": "matrix",
            "result": m.iter().map(|(l, pts)| json!({
                "metric": labels_json(l),
                "values": pts.iter().map(|(t, x)| point(*t, *x)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
}

async fn query(State(st): State<QueryState>, req: PromRequest) -> PromResult {
    let q = req
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": query is empty"))?;
    let t = req.time("time", now_ms())?;
    let r = st
        .metrics
        .instant(&req.tenant, q, t, req.lookback()?)
        .await?;
    Ok(success(result_json(r)))
}

async fn query_range(State(st): State<QueryState>, req: PromRequest) -> PromResult {
    let q = req
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": query is empty"))?;
    let start = req
        .get("start")
        .ok_or_else(|| bad("invalid parameter \"start\": missing"))?;
    let end = req
        .get("end")
        .ok_or_else(|| bad("invalid parameter \"end\": missing"))?;
    let step = req
        .get("step")
        .ok_or_else(|| bad("invalid parameter \"step\": missing"))?;
    let (start, end) = (parse_time("start", start)?, parse_time("end", end)?);
    let step = parse_duration("step", step)?;
    let r = st
        .metrics
        .range(&req.tenant, q, start, end, step, req.lookback()?)
        .await?;
    Ok(success(result_json(r)))
}

/// The default range of metadata queries without `start`/`end`: Prometheus's whole
/// database; here the retention any file can have.
fn range_of(req: &PromRequest) -> Result<(i64, i64), PromError> {
    Ok((
        req.time("start", 0)?,
        req.time("end", i64::MAX / 1_000_000)?,
    ))
}

async fn series(State(st): State<QueryState>, req: PromRequest) -> PromResult {
    let sel = req.selectors()?;
    if sel.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let (start, end) = range_of(&req)?;
    let limit = limit(&req)?;
    let s = st.metrics.series(&req.tenant, &sel, start, end).await?;
    Ok(success(Value::Array(
        s.iter().take(limit).map(|l| labels_json(l)).collect(),
    )))
}

fn limit(req: &PromRequest) -> Result<usize, PromError> {
    match req.get("limit") {
        None => Ok(usize::MAX),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Ok(usize::MAX),
            Ok(n) => Ok(n),
            Err(_) => Err(bad(format!(
                "invalid parameter \"limit\": cannot parse {v:?}"
            ))),
        },
    }
}

async fn labels(State(st): State<QueryState>, req: PromRequest) -> PromResult {
    let (start, end) = range_of(&req)?;
    let names = st
        .metrics
        .label_names(&req.tenant, &req.selectors()?, start, end)
        .await?;
    let limit = limit(&req)?;
    Ok(success(json!(
        names.into_iter().take(limit).collect::<Vec<_>>()
    )))
}

async fn label_values(
    State(st): State<QueryState>,
    Path(name): Path<String>,
    req: PromRequest,
) -> PromResult {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad(format!("invalid label name: {name:?}")));
    }
    let (start, end) = range_of(&req)?;
    let values = st
        .metrics
        .label_values(&req.tenant, &name, &req.selectors()?, start, end)
        .await?;
    let limit = limit(&req)?;
    Ok(success(json!(
        values.into_iter().take(limit).collect::<Vec<_>>()
    )))
}

async fn metadata(State(st): State<QueryState>, req: PromRequest) -> PromResult {
    let limit = limit(&req)?;
    let metric = req.get("metric");
    let end = now_ms();
    let all = st.metrics.metadata(&req.tenant, 0, end).await?;
    let mut out = Map::new();
    for m in all
        .into_iter()
        .filter(|m| metric.is_none_or(|n| n == m.metric))
        .take(limit)
    {
        out.insert(
            m.metric.clone(),
            json!([{"type": m.kind, "help": m.help, "unit": m.unit}]),
        );
    }
    Ok(success(Value::Object(out)))
}

/// The exemplars of the series the query's selectors select, per series, in Prometheus's
/// shape (`seriesLabels`, `exemplars: [{labels, value, timestamp}]`); `start` and `end`
/// default to all time.
async fn query_exemplars(State(st): State<QueryState>, req: PromRequest) -> PromResult {
    let q = req
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": query is empty"))?;
    let start = req.time("start", i64::MIN / 2)?;
    let end = req.time("end", i64::MAX / 2)?;
    if end < start {
        return Err(bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let found = st.metrics.exemplars(&req.tenant, q, start, end).await?;
    Ok(success(Value::Array(
        found
            .iter()
            .map(|s| {
                json!({
                    "seriesLabels": labels_json(&s.labels),
                    "exemplars": s.exemplars.iter().map(|e| json!({
                        "labels": labels_json(&e.labels),
                        "value": format_float(e.v),
                        "timestamp": e.t as f64 / 1000.0,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": "2.42.0",
        "revision": concat!("loupe-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": "error", "errorType": "not_found", "error": format!("no such endpoint: {}", req.uri().path())}).to_string(),
    )
        .into_response()
}

pub fn router(state: QueryState) -> Router {
    let p = |s: &str| format!("/prometheus/api/v1/{s}");
    Router::new()
        .route(&p("query"), get(query).post(query))
        .route(&p("query_range"), get(query_range).post(query_range))
        .route(&p("series"), get(series).post(series))
        .route(&p("labels"), get(labels).post(labels))
        .route(&p("label/{name}/values"), get(label_values))
        .route(&p("metadata"), get(metadata))
        .route(
            &p("query_exemplars"),
            get(query_exemplars).post(query_exemplars),
        )
        .route(&p("status/buildinfo"), get(buildinfo))
        .route("/prometheus/api/v1/{*rest}", get(not_found).post(not_found))
        .with_state(state)
}

//! `/loki/api/v1/query_range` and `/loki/api/v1/query`: LogQL log queries answer `streams`,
//! metric queries `matrix` (range) or `vector` (instant), in Loki's shapes. With the header
//! `X-Loki-Response-Encoding-Flags: categorize-labels` (which Grafana sends), a stream's
//! labels are its stream labels only and each line carries its structured metadata and
//! parsed labels apart, as Loki 3 answers; without it every label is a stream label.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::State;
use loupe_storage::logs::Order;
use serde_json::{Value, json};

use super::{LokiRequest, LokiResult, bad, json as respond, now_ns, parse_step, parse_timestamp};
use crate::logql::ast::Query;
use crate::logql::eval::{Series, Steps};
use crate::logql::labels::Cat;
use crate::logql::pipeline::Entry;
use crate::logql::{Plan, parse, run};
use crate::state::QueryState;

/// Lines a log query returns when it does not say.
const DEFAULT_LIMIT: usize = 100;
/// Most lines one log query returns (Loki's `max_entries_limit_per_query`).
pub const MAX_LIMIT: usize = 5000;

fn order(req: &LokiRequest) -> Result<Order, super::LokiError> {
    match req.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("backward") => Ok(Order::NewestFirst),
        Some("forward") => Ok(Order::OldestFirst),
        Some(other) => Err(bad(format!(
            "invalid direction {other:?}: expected forward or backward"
        ))),
    }
}

fn categorized(req: &LokiRequest) -> bool {
    req.headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|f| f.trim() == "categorize-labels"))
}

fn seconds(ns: i64) -> Value {
    let s = ns as f64 / 1e9;
    if ns % 1_000_000_000 == 0 {
        json!(ns / 1_000_000_000)
    } else {
        json!(s)
    }
}

/// A sample value as Prometheus writes it.
pub fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn stats(started: Instant, entries: usize) -> Value {
    let secs = started.elapsed().as_secs_f64();
    json!({"summary": {
        "execTime": secs,
        "queueTime": 0,
        "totalEntriesReturned": entries,
        "totalLinesProcessed": 0,
        "totalBytesProcessed": 0,
        "bytesProcessedPerSecond": 0,
        "linesProcessedPerSecond": 0,
        "subqueries": 0,
        "shards": 1,
        "splits": 0,
        "totalPostFilterLines": entries,
    }})
}

/// Entries grouped into Loki streams.
pub fn streams_json(entries: &[Entry], categorize: bool) -> Vec<Value> {
    let mut streams: BTreeMap<BTreeMap<String, String>, Vec<Value>> = BTreeMap::new();
    for e in entries {
        let key = if categorize {
            e.labels.of(&[Cat::Stream])
        } else {
            e.labels.all()
        };
        let mut value = vec![json!(e.time_unix_nano.to_string()), json!(e.line)];
        if categorize {
            let meta = e.labels.of(&[Cat::Meta]);
            let parsed = e.labels.of(&[Cat::Parsed]);
            if !meta.is_empty() || !parsed.is_empty() {
                let mut extra = serde_json::Map::new();
                if !meta.is_empty() {
                    extra.insert("structuredMetadata".into(), json!(meta));
                }
                if !parsed.is_empty() {
                    extra.insert("parsed".into(), json!(parsed));
                }
                value.push(Value::Object(extra));
            }
        }
        streams.entry(key).or_default().push(Value::Array(value));
    }
    streams
        .into_iter()
        .map(|(stream, values)| json!({"stream": stream, "values": values}))
        .collect()
}

fn matrix_json(series: &[Series]) -> Vec<Value> {
    series
        .iter()
        .map(|(labels, points)| {
            let values: Vec<Value> = points
                .iter()
                .map(|(t, v)| json!([seconds(*t), value_text(*v)]))
                .collect();
            json!({"metric": labels, "values": values})
        })
        .collect()
}

fn envelope(
    result_type: &str,
    result: Vec<Value>,
    started: Instant,
    entries: usize,
    categorize: bool,
) -> Value {
    let mut data = json!({
        "resultType": result_type,
        "result": result,
        "stats": stats(started, entries),
    });
    if categorize && result_type == "streams" {
        data["encodingFlags"] = json!(["categorize-labels"]);
    }
    json!({"status": "success", "data": data})
}

/// Loki's default step: the range cut in about 250, at least a second.
fn default_step(start: i64, end: i64) -> i64 {
    let secs = ((end - start) as f64 / 1e9 / 250.0).floor().max(1.0);
    (secs * 1e9) as i64
}

pub async fn query_range(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let started = Instant::now();
    let q = req
        .get("query")
        .ok_or_else(|| bad("missing query parameter"))?;
    let (start, end) = req.range()?;
    if end < start {
        return Err(bad("the end timestamp must not be before the start time"));
    }
    let categorize = categorized(&req);
    match parse(q)? {
        Query::Log(log) => {
            let limit = req.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
            let plan = Plan::new(log);
            let entries = run::lines(
                &st.logs,
                &req.tenant,
                &plan,
                start,
                end,
                limit,
                order(&req)?,
            )
            .await?;
            let n = entries.len();
            let result = streams_json(&entries, categorize);
            Ok(respond(envelope("streams", result, started, n, categorize)))
        }
        Query::Metric(m) => {
            let step = match req.get("step") {
                Some(s) if !s.is_empty() => parse_step("step", s)?,
                _ => default_step(start, end),
            };
            if step <= 0 {
                return Err(bad(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer",
                ));
            }
            let steps = Steps { start, end, step };
            let series = run::metric(&st.logs, &req.tenant, &m, steps).await?;
            Ok(respond(envelope(
                "matrix",
                matrix_json(&series),
                started,
                0,
                categorize,
            )))
        }
    }
}

pub async fn query(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let started = Instant::now();
    let q = req
        .get("query")
        .ok_or_else(|| bad("missing query parameter"))?;
    let t = match req.get("time") {
        Some(v) if !v.is_empty() => parse_timestamp("time", v)?,
        _ => now_ns(),
    };
    match parse(q)? {
        Query::Log(_) => Err(bad(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        )),
        Query::Metric(m) => {
            let series = run::metric(&st.logs, &req.tenant, &m, Steps::instant(t)).await?;
            let result: Vec<Value> = series
                .iter()
                .filter_map(|(labels, points)| {
                    points.first().map(
                        |(t, v)| json!({"metric": labels, "value": [seconds(*t), value_text(*v)]}),
                    )
                })
                .collect();
            Ok(respond(envelope("vector", result, started, 0, false)))
        }
    }
}

//! `detected_labels`, `detected_fields` and `detected_field/{name}/values`, which Grafana's
//! Logs Drilldown and Explore use to offer what to filter and group by.
//!
//! Labels are the stream labels of the streams in range, with how many values each has.
//! Fields are found in a sample of the newest matching lines (`line_limit`, default 1000):
//! structured metadata, and the keys of lines that read as a JSON object or as logfmt; each
//! with its type (the one every value has: int, float, boolean, duration, bytes; else
//! string), how many distinct values it has, and the parsers that found it.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use loupe_storage::logs::Order;
use serde_json::{Value, json};

use super::{LokiRequest, LokiResult, bad, json as respond};
use crate::logql::ast::Query;
use crate::logql::labels::Cat;
use crate::logql::parser::{bytes, duration_ns};
use crate::logql::pipeline::{Entry, flatten, logfmt_pairs};
use crate::logql::{Plan, parse, run};
use crate::state::QueryState;

const DEFAULT_LINES: usize = 1000;
const MAX_LINES: usize = 5000;

pub async fn detected_labels(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let streams = super::labels::selected_streams(&st, &req).await?;
    let mut values: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
    for (labels, _) in &streams {
        for (k, v) in labels {
            values.entry(k).or_default().insert(v);
        }
    }
    let detected: Vec<Value> = values
        .iter()
        .map(|(k, vs)| json!({"label": k, "cardinality": vs.len()}))
        .collect();
    Ok(respond(json!({"detectedLabels": detected})))
}

#[derive(Default)]
struct Field {
    values: BTreeSet<String>,
    parsers: BTreeSet<&'static str>,
    json_path: Option<Vec<String>>,
}

fn kind(v: &str) -> &'static str {
    if v == "true" || v == "false" {
        "boolean"
    } else if v.parse::<i64>().is_ok() {
        "int"
    } else if v.parse::<f64>().is_ok() {
        "float"
    } else if v.starts_with(|c: char| c.is_ascii_digit()) && duration_ns(v).is_some() {
        "duration"
    } else if v.starts_with(|c: char| c.is_ascii_digit()) && bytes(v).is_some() {
        "bytes"
    } else {
        "string"
    }
}

/// The fields of sampled lines, by name.
fn fields(entries: &[Entry]) -> BTreeMap<String, Field> {
    let mut out: BTreeMap<String, Field> = BTreeMap::new();
    for e in entries {
        for (k, (v, cat)) in &e.labels.0 {
            if *cat != Cat::Stream {
                out.entry(k.clone()).or_default().values.insert(v.clone());
            }
        }
        let line = e.line.trim_start();
        if line.starts_with('{')
            && let Ok(serde_json::Value::Object(m)) = serde_json::from_str(line)
        {
            let mut found = Vec::new();
            flatten("", &m, &mut found);
            for (k, v) in found {
                let f = out.entry(k.clone()).or_default();
                f.values.insert(v);
                f.parsers.insert("json");
                f.json_path
                    .get_or_insert_with(|| k.split('_').map(str::to_string).collect());
            }
        } else if line.contains('=')
            && let Ok(pairs) = logfmt_pairs(line)
        {
            for (k, v) in pairs {
                if let Some(v) = v {
                    let f = out.entry(crate::logql::labels::label_name(&k)).or_default();
                    f.values.insert(v);
                    f.parsers.insert("logfmt");
                }
            }
        }
    }
    out
}

async fn sample(st: &QueryState, req: &LokiRequest) -> Result<Vec<Entry>, super::LokiError> {
    let (start, end) = req.range()?;
    let q = req
        .get("query")
        .ok_or_else(|| bad("missing query parameter"))?;
    let log = match parse(q)? {
        Query::Log(l) => l,
        Query::Metric(_) => return Err(bad("expected a log query, not a metric query")),
    };
    let lines = match req.get("line_limit") {
        Some(v) if !v.is_empty() => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LINES).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "invalid line_limit {v:?}: expected 1 to {MAX_LINES}"
                ))
            })?,
        _ => DEFAULT_LINES,
    };
    Ok(run::lines(
        &st.logs,
        &req.tenant,
        &Plan::new(log),
        start,
        end,
        lines,
        Order::NewestFirst,
    )
    .await?)
}

pub async fn detected_fields(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let limit = req
        .get("field_limit")
        .or(req.get("limit"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000);
    let entries = sample(&st, &req).await?;
    let found = fields(&entries);
    let out: Vec<Value> = found
        .iter()
        .take(limit)
        .map(|(name, f)| {
            let kinds: BTreeSet<&str> = f.values.iter().map(|v| kind(v)).collect();
            let kind = if kinds.len() == 1 {
                kinds.into_iter().next().unwrap_or("string")
            } else {
                "string"
            };
            let parsers: Value = if f.parsers.is_empty() {
                Value::Null
            } else {
                json!(f.parsers)
            };
            let mut v = json!({"label": name, "type": kind, "cardinality": f.values.len(), "parsers": parsers});
            if let Some(p) = &f.json_path {
                v["jsonPath"] = json!(p);
            }
            v
        })
        .collect();
    Ok(respond(
        json!({"fields": out, "fieldLimit": limit, "limit": limit}),
    ))
}

pub async fn detected_field_values(
    State(st): State<QueryState>,
    Path(name): Path<String>,
    req: LokiRequest,
) -> LokiResult {
    let limit = req
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000);
    let entries = sample(&st, &req).await?;
    let mut found = fields(&entries);
    let values: Vec<String> = found
        .remove(&name)
        .map(|f| f.values.into_iter().take(limit).collect())
        .unwrap_or_default();
    Ok(respond(json!({"values": values})))
}

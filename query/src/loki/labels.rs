//! Label browsing and index statistics: `labels`, `label/{name}/values`, `series`,
//! `index/stats`, `index/volume` and `index/volume_range`. They read the streams that hold
//! lines in the range (see `loupe_storage::logs::streams`), never the lines themselves, except
//! for the byte counts of the statistics and volumes.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use loupe_storage::logs::streams::Buckets;
use serde_json::{Value, json};

use super::{LokiError, LokiRequest, LokiResult, bad, json as respond, parse_step};
use crate::logql::ast::{Matcher, Query};
use crate::logql::{parse, run};
use crate::state::QueryState;

/// The selector of a `query` or `match[]` parameter.
fn selector(q: &str) -> Result<Vec<Matcher>, LokiError> {
    match parse(q)? {
        Query::Log(l) => Ok(l.selector),
        Query::Metric(_) => Err(bad(format!(
            "invalid selector {q:?}: expected a stream selector such as {{service_name=\"web\"}}"
        ))),
    }
}

pub(super) fn query_selector(req: &LokiRequest) -> Result<Option<Vec<Matcher>>, LokiError> {
    match req.get("query") {
        Some(q) if !q.trim().is_empty() => Ok(Some(selector(q)?)),
        _ => Ok(None),
    }
}

fn success(data: Value) -> axum::response::Response {
    respond(json!({"status": "success", "data": data}))
}

/// The streams of the request's range under its `query` selector (all without one), without
/// byte counts.
pub(super) async fn selected_streams(
    st: &QueryState,
    req: &LokiRequest,
) -> Result<Vec<run::Stream>, LokiError> {
    let (start, end) = req.range()?;
    let sel = query_selector(req)?;
    let (streams, _) = run::streams(
        &st.logs,
        &req.tenant,
        sel.as_deref(),
        start,
        end,
        false,
        None,
    )
    .await?;
    Ok(streams)
}

pub async fn labels(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let streams = selected_streams(&st, &req).await?;
    let names: BTreeSet<&String> = streams.iter().flat_map(|(l, _)| l.keys()).collect();
    Ok(success(json!(names)))
}

pub async fn label_values(
    State(st): State<QueryState>,
    Path(name): Path<String>,
    req: LokiRequest,
) -> LokiResult {
    let streams = selected_streams(&st, &req).await?;
    let values: BTreeSet<&String> = streams.iter().filter_map(|(l, _)| l.get(&name)).collect();
    Ok(success(json!(values)))
}

pub async fn series(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let (start, end) = req.range()?;
    let matches: Vec<Vec<Matcher>> = req
        .all("match[]")
        .into_iter()
        .chain(req.all("match"))
        .map(selector)
        .collect::<Result<_, _>>()?;
    let (streams, _) = run::streams(&st.logs, &req.tenant, None, start, end, false, None).await?;
    let found: Vec<&BTreeMap<String, String>> = streams
        .iter()
        .map(|(l, _)| l)
        .filter(|l| {
            matches.is_empty()
                || matches.iter().any(|sel| {
                    sel.iter()
                        .all(|m| m.matches(l.get(&m.name).map_or("", String::as_str)))
                })
        })
        .collect();
    Ok(success(json!(found)))
}

pub async fn index_stats(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let (start, end) = req.range()?;
    let sel = query_selector(&req)?;
    let (streams, files) = run::streams(
        &st.logs,
        &req.tenant,
        sel.as_deref(),
        start,
        end,
        true,
        None,
    )
    .await?;
    let (mut entries, mut bytes) = (0u64, 0u64);
    for (_, s) in &streams {
        entries += s[0].lines;
        bytes += s[0].bytes;
    }
    Ok(respond(json!({
        "streams": streams.len(),
        "chunks": files,
        "entries": entries,
        "bytes": bytes,
    })))
}

/// The labels volumes are grouped by: `targetLabels`, or those the selector names.
fn volume_labels(req: &LokiRequest, sel: &[Matcher]) -> Vec<String> {
    match req.get("targetLabels") {
        Some(t) if !t.trim().is_empty() => t.split(',').map(|s| s.trim().to_string()).collect(),
        _ => {
            let mut ls: Vec<String> = sel.iter().map(|m| m.name.clone()).collect();
            ls.dedup();
            ls
        }
    }
}

/// Bytes per group of streams (and per bucket), largest first, at most `limit` groups.
fn group_volumes(
    streams: Vec<run::Stream>,
    by: &[String],
    aggregate_by_labels: bool,
    limit: usize,
) -> Vec<(BTreeMap<String, String>, Vec<u64>)> {
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<u64>> = BTreeMap::new();
    for (labels, stats) in streams {
        let key: BTreeMap<String, String> = if aggregate_by_labels {
            by.iter()
                .filter(|k| labels.contains_key(*k))
                .map(|k| (k.clone(), String::new()))
                .collect()
        } else {
            by.iter()
                .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect()
        };
        if key.is_empty() {
            continue;
        }
        let g = groups.entry(key).or_insert_with(|| vec![0; stats.len()]);
        for (a, s) in g.iter_mut().zip(&stats) {
            *a += s.bytes;
        }
    }
    let mut out: Vec<_> = groups.into_iter().collect();
    out.sort_by(|a, b| {
        let total = |v: &Vec<u64>| v.iter().sum::<u64>();
        total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
    out.truncate(limit);
    out
}

fn aggregate_by(req: &LokiRequest) -> Result<bool, LokiError> {
    match req.get("aggregateBy") {
        None | Some("") | Some("series") => Ok(false),
        Some("labels") => Ok(true),
        Some(other) => Err(bad(format!(
            "invalid aggregateBy {other:?}: expected series or labels"
        ))),
    }
}

pub async fn volume(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let (start, end) = req.range()?;
    let sel = query_selector(&req)?.ok_or_else(|| bad("missing query parameter"))?;
    let limit = req.limit(100, 10_000)?;
    let by = volume_labels(&req, &sel);
    let (streams, _) =
        run::streams(&st.logs, &req.tenant, Some(&sel), start, end, true, None).await?;
    let result: Vec<Value> = group_volumes(streams, &by, aggregate_by(&req)?, limit)
        .into_iter()
        .map(|(metric, bytes)| {
            json!({"metric": metric, "value": [end / 1_000_000_000, bytes[0].to_string()]})
        })
        .collect();
    Ok(success(json!({"resultType": "vector", "result": result})))
}

pub async fn volume_range(State(st): State<QueryState>, req: LokiRequest) -> LokiResult {
    let (start, end) = req.range()?;
    let sel = query_selector(&req)?.ok_or_else(|| bad("missing query parameter"))?;
    let limit = req.limit(100, 10_000)?;
    let step = match req.get("step") {
        Some(s) if !s.is_empty() => parse_step("step", s)?,
        _ => (((end - start) as f64 / 1e9 / 250.0).floor().max(1.0) * 1e9) as i64,
    };
    if step <= 0 {
        return Err(bad("step must be positive"));
    }
    let n = ((end - start) / step + 1) as usize;
    if n > 11_000 {
        return Err(bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try increasing the value of the step parameter",
        ));
    }
    let buckets = Buckets { start, step, n };
    let by = volume_labels(&req, &sel);
    let (streams, _) = run::streams(
        &st.logs,
        &req.tenant,
        Some(&sel),
        start,
        end,
        true,
        Some(buckets),
    )
    .await?;
    let result: Vec<Value> = group_volumes(streams, &by, aggregate_by(&req)?, limit)
        .into_iter()
        .map(|(metric, bytes)| {
            let values: Vec<Value> = bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b > 0)
                .map(|(i, b)| json!([(start + i as i64 * step) / 1_000_000_000, b.to_string()]))
                .collect();
            json!({"metric": metric, "values": values})
        })
        .collect();
    Ok(success(json!({"resultType": "matrix", "result": result})))
}

//! `/loki/api/v1/tail` over a websocket, as Grafana's live tailing uses it: first the newest
//! `limit` lines since `start` (default: the last hour, 100 lines), oldest first, then every
//! new matching line as it is acknowledged (see `loupe_storage::logs::tail`), each message
//! `{"streams": [...], "dropped_entries": [...]}` in Loki's shape. Lines the client was too
//! slow for are reported in `dropped_entries`.

use std::collections::HashSet;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use loupe_core::TenantId;
use loupe_storage::logs::tail::TailEvent;
use loupe_storage::logs::{LogFilter, Order};
use serde_json::json;

use super::query::streams_json;
use super::{LokiRequest, LokiResult, bad, now_ns, parse_timestamp};
use crate::logql::ast::Query;
use crate::logql::pipeline::Entry;
use crate::logql::{Plan, parse, run};
use crate::state::QueryState;

const DEFAULT_LIMIT: usize = 100;

pub async fn tail(
    State(st): State<QueryState>,
    ws: WebSocketUpgrade,
    req: LokiRequest,
) -> LokiResult {
    let q = req
        .get("query")
        .ok_or_else(|| bad("missing query parameter"))?;
    let log = match parse(q)? {
        Query::Log(l) => l,
        Query::Metric(_) => return Err(bad("tail needs a log query, not a metric query")),
    };
    let start = match req.get("start") {
        Some(v) if !v.is_empty() => parse_timestamp("start", v)?,
        _ => now_ns() - 3_600_000_000_000,
    };
    let limit = req.limit(DEFAULT_LIMIT, super::query::MAX_LIMIT)?;
    let tenant = req.tenant.clone();
    Ok(ws
        .on_upgrade(move |socket| run_tail(st, tenant, Plan::new(log), start, limit, socket))
        .into_response())
}

fn message(entries: &[Entry], dropped: u64) -> Message {
    let dropped: Vec<serde_json::Value> = (0..dropped.min(100))
        .map(|_| json!({"labels": "{}", "timestamp": now_ns().to_string()}))
        .collect();
    let body = json!({
        "streams": streams_json(entries, false),
        "dropped_entries": if dropped.is_empty() { serde_json::Value::Null } else { json!(dropped) },
    });
    Message::Text(body.to_string().into())
}

async fn run_tail(
    st: QueryState,
    tenant: TenantId,
    plan: Plan,
    start: i64,
    limit: usize,
    mut socket: WebSocket,
) {
    // Subscribe before the backfill, so nothing acknowledged in between is missed; what
    // both see is sent once.
    let mut rx = st
        .logs
        .tail(&tenant, plan.search_filter(LogFilter::default()));
    let mut backfill = match run::lines(
        &st.logs,
        &tenant,
        &plan,
        start,
        now_ns(),
        limit,
        Order::NewestFirst,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let _ = socket
                .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1011,
                    reason: e.to_string().into(),
                })))
                .await;
            return;
        }
    };
    backfill.reverse();
    let sent: HashSet<(i64, String)> = backfill
        .iter()
        .map(|e| (e.time_unix_nano, e.line.clone()))
        .collect();
    if !backfill.is_empty() && socket.send(message(&backfill, 0)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = rx.recv() => {
                let msg = match event {
                    Some(TailEvent::Lines(records)) => {
                        let entries: Vec<Entry> = records
                            .iter()
                            .filter_map(|r| plan.entry(r))
                            .filter(|e| !sent.contains(&(e.time_unix_nano, e.line.clone())))
                            .collect();
                        if entries.is_empty() {
                            continue;
                        }
                        message(&entries, 0)
                    }
                    Some(TailEvent::Missed(n)) => message(&[], n),
                    Some(TailEvent::Error(e)) => {
                        tracing::warn!(error = %e, "live tail could not read stored lines");
                        continue;
                    }
                    None => return,
                };
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
        }
    }
}

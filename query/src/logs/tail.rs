//! `GET /api/v1/logs/tail`: live tail as server-sent events. Every new line the search
//! matches arrives as one `log` event (the line as `/api/v1/logs` returns it) within moments
//! of its acknowledgement; a `missed` event says how many exports went by unread when the
//! client fell behind, an `error` event that stored files could not be read (the tail goes
//! on). A comment every 15 s keeps idle connections open. See
//! `loupe_storage::logs::tail` for where the lines come from.

use std::convert::Infallible;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::stream::{self, StreamExt};
use loupe_storage::logs::LogFilter;
use loupe_storage::logs::tail::TailEvent;

use crate::error::{ErrorBody, QueryError};
use crate::logs::native::log_json;
use crate::state::{QueryState, Tenant};

/// The events of one tail message.
fn events(e: TailEvent) -> Vec<Event> {
    let json = |name: &str, v: serde_json::Value| Event::default().event(name).data(v.to_string());
    match e {
        TailEvent::Lines(lines) => lines
            .iter()
            .map(|r| json("log", serde_json::to_value(log_json(r)).unwrap_or_default()))
            .collect(),
        TailEvent::Missed(n) => vec![json("missed", serde_json::json!({ "exports": n }))],
        TailEvent::Error(m) => vec![json("error", serde_json::json!({ "message": m }))],
    }
}

#[utoipa::path(get, path = "/api/v1/logs/tail", tag = "logs",
    params(("query" = Option<String>, Query, description = "the search, as for /api/v1/logs (its time range does not apply: every new line is sent)")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "server-sent events: `log` (data: a LogLine), `missed` (data: {\"exports\": n}), `error` (data: {\"message\": ...})"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn tail_logs(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, QueryError> {
    let mut filter = LogFilter::default();
    for (k, v) in url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        if k == "query" {
            super::syntax::apply(&v, &mut filter)?;
        }
    }
    let rx = st.logs.tail(&tenant, filter);
    let stream = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
        .flat_map(|e| stream::iter(events(e).into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

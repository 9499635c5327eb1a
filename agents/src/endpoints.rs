//! The agent's operational endpoints: `/healthz` (the process answers), `/readyz` (the
//! buffer accepts writes; 503 with the reason while its disk is full or failing) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::buffer::Buffer;

#[derive(Clone)]
struct AppState {
    buffer: Arc<Buffer>,
    metrics: PrometheusHandle,
}

pub fn router(buffer: Arc<Buffer>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render))
        .with_state(AppState { buffer, metrics })
}

async fn ready(State(s): State<AppState>) -> (StatusCode, String) {
    match s.buffer.health() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("buffer cannot be written: {why}\n"),
        ),
    }
}

async fn render(State(s): State<AppState>) -> String {
    metrics::gauge!("loupe_agent_buffer_bytes").set(s.buffer.bytes() as f64);
    metrics::gauge!("loupe_agent_buffer_pending_records").set(s.buffer.pending_records() as f64);
    s.metrics.render()
}

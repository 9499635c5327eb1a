//! Loupe query service: reads traces from the catalog, span files and the collector's fresh
//! data, and serves them over HTTP.
//!
//! - [`service::TraceService`]: the transport-agnostic domain service.
//! - [`native`]: the JSON API under `/api/v1`; [`openapi`]: its OpenAPI document.
//! - [`jaeger`]: the Jaeger-compatible API under `/jaeger/api`.
//! - [`tempo`]: Grafana Tempo's API under `/tempo/api`, with [`traceql`] for its searches.
//! - [`prometheus`]: Prometheus's HTTP API under `/prometheus/api/v1`, with [`promql`] (the
//!   metrics service and the PromQL evaluator).
//! - [`dependencies`]: the service dependency graph, aggregated and cached per hour.
//! - [`stats`]: what the catalog holds per signal (`/api/v1/stats`).
//! - [`state`], [`params`], [`error`]: the state and tenant extractor, parameter parsing and
//!   the error type shared by every adapter.

pub mod dependencies;
pub mod error;
#[cfg(test)]
mod golden;
pub mod jaeger;
pub mod logql;
pub mod logs;
pub mod loki;
pub mod native;
pub mod openapi;
pub mod params;
pub mod prometheus;
pub mod promql;
pub mod service;
pub mod state;
pub mod stats;
pub mod tempo;
pub mod traceql;

pub use state::QueryState;

/// Every query route (native, Jaeger and Tempo APIs), merged.
pub fn router(state: QueryState) -> axum::Router {
    native::router(state.clone())
        .route("/api/v1/openapi.json", axum::routing::get(openapi::serve))
        .merge(jaeger::router(state.clone()))
        .merge(tempo::router(state.clone()))
        .merge(loki::router(state.clone()))
        .merge(prometheus::router(state))
}

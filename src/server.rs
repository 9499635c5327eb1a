//! Wires the roles together: opens storage, the WAL and the catalog, starts the OTLP
//! listeners, the flusher and the lifecycle loop (collector), the query APIs and web UI
//! (query), and the operational endpoints every role has (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use loupe_collector::batcher::BatchLimits;
use loupe_collector::{IngestLimits, Ingester};
use loupe_query::QueryState;
use loupe_query::logs::LogService;
use loupe_query::promql::MetricService;
use loupe_query::service::TraceService;
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::{Fresh, NoFresh};
use loupe_storage::lifecycle::lease::Leases;
use loupe_storage::lifecycle::runner::{self, FormatLifecycle, LifecycleConfig, SignalLifecycle};
use loupe_storage::logs::index::LogIndexReader;
use loupe_storage::logs::{LogFormat, LogRecord};
use loupe_storage::metrics::{MetricFormat, MetricReader, MetricRows};
use loupe_storage::spans::SpanRows;
use loupe_storage::spans::{SpanFormat, SpanReader};
use loupe_storage::store::Storage;
use loupe_wal::{Wal, WalConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

use crate::config::{CommonArgs, Role};
use crate::{demo, telemetry};

#[derive(Clone)]
struct OpsState {
    ingester: Option<Arc<Ingester>>,
    metrics: PrometheusHandle,
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 when this process can do its work; 503 with the reason when it cannot (replaying its
/// write-ahead log, or the log's disk failing). Degraded states are listed in the body.
async fn readyz(State(st): State<OpsState>) -> impl IntoResponse {
    match st.ingester.as_ref().map(|i| i.readiness()) {
        Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        Some(Ok(notes)) if !notes.is_empty() => {
            (StatusCode::OK, format!("ready; {}", notes.join("; ")))
        }
        _ => (StatusCode::OK, "ready".to_string()),
    }
}

async fn metrics(State(st): State<OpsState>) -> impl IntoResponse {
    if let Some(i) = &st.ingester {
        metrics::gauge!("loupe_wal_bytes").set(i.wal().bytes() as f64);
        metrics::gauge!("loupe_buffered_bytes").set(i.buffered_bytes() as f64);
        metrics::gauge!("loupe_buffered_rows").set(i.buffered_rows() as f64);
        metrics::gauge!("loupe_ingest_inflight_bytes").set(i.inflight().used_bytes() as f64);
    }
    st.metrics.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

/// A stable id for this collector, kept beside its WAL: catalog entries name it so replay can
/// skip what this WAL already committed. Written to a temporary file, synced, renamed into
/// place and the directory synced, so it survives power loss before any record is written.
fn node_id(common: &CommonArgs) -> anyhow::Result<String> {
    use std::io::Write;
    let dir = common.wal_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("collector-{}", ulid::Ulid::new().to_string().to_lowercase());
            let tmp = dir.join("node-id.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(id.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(&dir)?.sync_all()
            };
            write().with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

pub async fn run(role: Role) -> anyhow::Result<()> {
    let (common, demo, collector, query) = match role {
        Role::Server(s) => (s.common, s.demo, true, true),
        Role::Collector(c) => (c, false, true, false),
        Role::Query(c) => (c, false, false, true),
    };
    telemetry::init_logging(common.log_format, &common.log)?;
    common.validate()?;
    let role_name = match (collector, query) {
        (true, true) => "server",
        (true, false) => "collector",
        _ => "query",
    };
    tracing::info!(role = role_name, version = env!("CARGO_PKG_VERSION"), config = %common.redacted(), "starting loupe");
    let metrics_handle = telemetry::init_metrics()?;
    let storage_url = common.storage_url()?;
    let storage = Storage::open(&storage_url)?;
    let resolver = common.resolver()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let reader = Arc::new(SpanReader::new(storage.clone()));
    let log_reader = Arc::new(LogIndexReader::new(storage.clone()));
    let metric_reader = Arc::new(MetricReader::new(storage.clone()));
    type FreshSpans = Arc<dyn Fresh<SpanRows>>;
    type FreshLogs = Arc<dyn Fresh<Vec<LogRecord>>>;
    type FreshMetrics = Arc<dyn Fresh<MetricRows>>;
    let (catalog, ingester, fresh, fresh_logs, fresh_metrics): (
        Catalog,
        Option<Arc<Ingester>>,
        FreshSpans,
        FreshLogs,
        FreshMetrics,
    ) = if collector {
        let id = node_id(&common)?;
        let catalog = Catalog::new(storage.clone(), id.clone());
        let mut wal_cfg = WalConfig::new(common.wal_dir());
        wal_cfg.max_bytes = common.wal_max_bytes;
        let (wal, recovery) = Wal::open(wal_cfg).context("cannot open the write-ahead log")?;
        let spans = Arc::new(SpanFormat::new(reader.clone()));
        let limits = IngestLimits {
            max_buffer_bytes: common.max_buffer_bytes,
            max_inflight_bytes: common.max_inflight_bytes,
            batch: BatchLimits::default(),
            retention: common.retention,
            max_future_skew: common.max_future_skew,
            max_log_line_bytes: common.max_log_line_bytes as usize,
            max_series_per_tenant: common.max_series_per_tenant,
        };
        let logs = Arc::new(LogFormat::new(log_reader.clone()));
        let metric_format = Arc::new(MetricFormat::new(metric_reader.clone()));
        let ingester = Arc::new(Ingester::new(
            wal,
            catalog.clone(),
            spans.clone(),
            logs.clone(),
            metric_format.clone(),
            limits,
        ));
        {
            let ingester = ingester.clone();
            let recovery = Arc::new(recovery);
            tokio::spawn(async move { ingester.replay(recovery).await });
        }
        tasks.push(tokio::spawn(
            ingester
                .clone()
                .run_flusher(common.flush_interval, shutdown_rx.clone()),
        ));
        let mut cfg = LifecycleConfig::new(
            common.compaction_interval,
            common.retention,
            common.gc_grace,
        );
        cfg.policy.min_files = common.compaction_min_files;
        let leases = Leases::new(storage.clone(), id, cfg.lease_ttl());
        let signals: Vec<Arc<dyn SignalLifecycle>> = vec![
            Arc::new(FormatLifecycle(spans)),
            Arc::new(FormatLifecycle(logs)),
            Arc::new(FormatLifecycle(metric_format)),
        ];
        tokio::spawn(runner::run(
            catalog.clone(),
            leases,
            signals,
            cfg,
            shutdown_rx.clone(),
        ));
        let fresh: FreshSpans = ingester.traces().batcher().clone();
        let fresh_logs: FreshLogs = ingester.logs().batcher().clone();
        let fresh_metrics: FreshMetrics = ingester.metrics().batcher().clone();
        (catalog, Some(ingester), fresh, fresh_logs, fresh_metrics)
    } else {
        let catalog = Catalog::new(
            storage.clone(),
            format!("query-{}", ulid::Ulid::new().to_string().to_lowercase()),
        );
        (
            catalog,
            None,
            Arc::new(NoFresh) as FreshSpans,
            Arc::new(NoFresh) as FreshLogs,
            Arc::new(NoFresh) as FreshMetrics,
        )
    };

    let max_request = common.max_request_bytes as usize;
    let mut grpc_addr = None;
    let mut otlp_http_addr = None;
    if let Some(ingester) = &ingester {
        let grpc_listener = bind(common.otlp_grpc_addr, "OTLP/gRPC").await?;
        grpc_addr = Some(grpc_listener.local_addr()?);
        let svc =
            loupe_collector::grpc::trace_service(ingester.clone(), resolver.clone(), max_request);
        let logs_svc =
            loupe_collector::grpc::logs_service(ingester.clone(), resolver.clone(), max_request);
        let metrics_svc =
            loupe_collector::grpc::metrics_service(ingester.clone(), resolver.clone(), max_request);
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            let result = tonic::transport::Server::builder()
                .layer(loupe_collector::grpc::OversizeLayer)
                .add_service(svc)
                .add_service(logs_svc)
                .add_service(metrics_svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.changed().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "OTLP/gRPC server failed");
            }
        }));
        let http_listener = bind(common.otlp_http_addr, "OTLP/HTTP").await?;
        otlp_http_addr = Some(http_listener.local_addr()?);
        let app = loupe_collector::http::router(ingester.clone(), resolver.clone(), max_request)
            .layer(TraceLayer::new_for_http());
        tasks.push(tokio::spawn(serve(http_listener, app, shutdown_rx.clone())));
    }

    let ops = OpsState {
        ingester: ingester.clone(),
        metrics: metrics_handle,
    };
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops);
    if query {
        // With a collector in the process its own commits are seen at once; other writers'
        // (collectors sharing the bucket) within this bound, which config keeps below half of
        // the garbage-collection grace.
        let max_age = if collector {
            common.catalog_refresh_interval.min(Duration::from_secs(1))
        } else {
            common.catalog_refresh_interval
        };
        let traces = Arc::new(TraceService::new(catalog.clone(), reader, fresh, max_age));
        let logs = Arc::new(LogService::new(
            catalog.clone(),
            log_reader.clone(),
            fresh_logs,
            max_age,
        ));
        let metrics = Arc::new(MetricService::new(
            catalog.clone(),
            metric_reader.clone(),
            fresh_metrics,
            max_age,
        ));
        app = app
            .merge(loupe_query::router(QueryState {
                traces,
                logs,
                metrics,
                resolver: resolver.clone(),
            }))
            .merge(loupe_ui::router());
    }
    let app = app.layer(TraceLayer::new_for_http());
    let http_listener = bind(common.http_addr, "HTTP (UI, APIs)").await?;
    let http_addr = http_listener.local_addr()?;
    tasks.push(tokio::spawn(serve(http_listener, app, shutdown_rx.clone())));

    tracing::info!(
        http = %http_addr,
        otlp_grpc = grpc_addr.map(|a| a.to_string()),
        otlp_http = otlp_http_addr.map(|a| a.to_string()),
        storage = %storage_url,
        "listening"
    );
    if demo && let Some(addr) = otlp_http_addr {
        tokio::spawn(demo::run(
            addr,
            resolver_token(&common),
            shutdown_rx.clone(),
        ));
        tracing::info!(ui = %format!("http://{http_addr}/traces"), "demo workload started");
    }

    shutdown_signal().await;
    tracing::info!("shutting down: flushing buffered data");
    let _ = shutdown_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The first configured token, so the demo can send data when authentication is on.
fn resolver_token(common: &CommonArgs) -> Option<String> {
    common
        .auth_tokens
        .split(',')
        .find_map(|p| p.split_once('=').map(|(t, _)| t.trim().to_string()))
}

async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

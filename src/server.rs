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
use loupe_collector::batcher::Batcher;
use loupe_collector::wal::{Wal, WalConfig};
use loupe_collector::{IngestLimits, Ingester};
use loupe_query::QueryState;
use loupe_query::service::TraceService;
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::{FreshSpans, NoFresh};
use loupe_storage::lifecycle::{CompactionPolicy, apply_retention, collect_garbage, compact_spans};
use loupe_storage::spans::SpanReader;
use loupe_storage::store::Storage;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

use crate::config::{CommonArgs, Role};
use crate::{demo, telemetry};

/// Objects unreferenced for this long are deleted (queries planned earlier may still read them).
const GARBAGE_GRACE: Duration = Duration::from_secs(600);

#[derive(Clone)]
struct OpsState {
    ingester: Option<Arc<Ingester>>,
    metrics: PrometheusHandle,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<OpsState>) -> impl IntoResponse {
    match &st.ingester {
        Some(i) if !i.is_ready() => (StatusCode::SERVICE_UNAVAILABLE, "replaying write-ahead log"),
        _ => (StatusCode::OK, "ready"),
    }
}

async fn metrics(State(st): State<OpsState>) -> impl IntoResponse {
    if let Some(i) = &st.ingester {
        metrics::gauge!("loupe_wal_bytes").set(i.wal().bytes() as f64);
        metrics::gauge!("loupe_buffered_bytes").set(i.batcher().buffered_bytes() as f64);
        metrics::gauge!("loupe_buffered_spans").set(i.batcher().buffered_spans() as f64);
    }
    st.metrics.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

/// A stable id for this collector, kept beside its WAL: catalog entries name it so replay can
/// skip what this WAL already committed.
fn node_id(common: &CommonArgs) -> anyhow::Result<String> {
    let dir = common.wal_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("collector-{}", ulid::Ulid::new().to_string().to_lowercase());
            std::fs::write(&path, &id)
                .with_context(|| format!("cannot write {}", path.display()))?;
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

async fn lifecycle_loop(
    catalog: Catalog,
    retention: Duration,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let reader = SpanReader::new(catalog.storage().clone());
    let policy = CompactionPolicy::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let tenants = match catalog.list_tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle: cannot list tenants");
                continue;
            }
        };
        for tenant in tenants {
            if let Err(e) = compact_spans(&catalog, &reader, &tenant, &policy).await {
                tracing::warn!(%tenant, error = %e, "compaction failed");
            }
            match apply_retention(&catalog, &tenant, retention).await {
                Ok(n) if n > 0 => {
                    tracing::info!(%tenant, files = n, "retention dropped expired files")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%tenant, error = %e, "retention failed"),
            }
            if let Err(e) = collect_garbage(&catalog, &tenant, GARBAGE_GRACE).await {
                tracing::warn!(%tenant, error = %e, "garbage collection failed");
            }
        }
    }
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

    let (catalog, ingester, fresh): (Catalog, Option<Arc<Ingester>>, Arc<dyn FreshSpans>) =
        if collector {
            let id = node_id(&common)?;
            let catalog = Catalog::new(storage.clone(), id);
            let mut wal_cfg = WalConfig::new(common.wal_dir());
            wal_cfg.max_bytes = common.wal_max_bytes;
            let (wal, records) = Wal::open(wal_cfg).context("cannot open the write-ahead log")?;
            // A batch this large is flushed before the interval: bounds memory under full load.
            let batcher = Arc::new(Batcher::new(64 * 1024));
            let limits = IngestLimits {
                max_buffer_bytes: common.max_buffer_bytes,
            };
            let ingester = Arc::new(Ingester::new(wal, batcher.clone(), catalog.clone(), limits));
            {
                let ingester = ingester.clone();
                let n = records.len();
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    loop {
                        match ingester.replay(records.clone()).await {
                            Ok(replayed) => {
                                tracing::info!(
                                    records = n,
                                    replayed,
                                    elapsed_ms = started.elapsed().as_millis() as u64,
                                    "write-ahead log replayed; ready"
                                );
                                break;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "write-ahead log replay failed; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                });
            }
            tasks.push(tokio::spawn(
                ingester
                    .clone()
                    .run_flusher(common.flush_interval, shutdown_rx.clone()),
            ));
            tokio::spawn(lifecycle_loop(
                catalog.clone(),
                common.retention,
                common.compaction_interval,
                shutdown_rx.clone(),
            ));
            (catalog, Some(ingester), batcher as Arc<dyn FreshSpans>)
        } else {
            let catalog = Catalog::new(
                storage.clone(),
                format!("query-{}", ulid::Ulid::new().to_string().to_lowercase()),
            );
            (catalog, None, Arc::new(NoFresh) as Arc<dyn FreshSpans>)
        };

    let max_request = common.max_request_bytes as usize;
    let mut grpc_addr = None;
    let mut otlp_http_addr = None;
    if let Some(ingester) = &ingester {
        let grpc_listener = bind(common.otlp_grpc_addr, "OTLP/gRPC").await?;
        grpc_addr = Some(grpc_listener.local_addr()?);
        let svc =
            loupe_collector::grpc::trace_service(ingester.clone(), resolver.clone(), max_request);
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            let result = tonic::transport::Server::builder()
                .layer(loupe_collector::grpc::OversizeLayer)
                .add_service(svc)
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
        let max_age = if collector {
            Duration::from_secs(1)
        } else {
            common.catalog_refresh_interval
        };
        let traces = Arc::new(TraceService::new(catalog.clone(), fresh, max_age));
        app = app
            .merge(loupe_query::router(QueryState {
                traces,
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

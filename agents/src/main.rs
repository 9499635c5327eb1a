//! `loupe-agent`: tails the container logs of a node, buffers them on disk and ships them to
//! the collector over OTLP/HTTP. Every setting is a flag and a `LOUPE_AGENT_*` variable
//! (`loupe-agent --help`); `/healthz`, `/readyz` and `/metrics` on `LOUPE_AGENT_HTTP_ADDR`.
//!
//! Threads: the reading loop ([`loupe_agent::collect`]) on its own thread; shipping
//! ([`loupe_agent::ship`]) and the HTTP endpoints on a two-thread runtime; the buffer's
//! writer thread (`loupe-wal`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use loupe_agent::buffer::{Buffer, BufferLimits};
use loupe_agent::collect::CollectSettings;
use loupe_agent::files::{Files, Settings};
use loupe_agent::ship::{Compression, ShipSettings, Shipper};
use loupe_agent::{checkpoint, resource};

fn bytes(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?} (e.g. 256MiB): {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Parser, Debug)]
#[command(
    name = "loupe-agent",
    version,
    about = "Loupe's node agent: container logs under /var/log/pods, buffered on disk, shipped over OTLP/HTTP"
)]
struct Config {
    /// Collector OTLP/HTTP base URL (requests go to /v1/logs and /v1/metrics under it).
    #[arg(
        long,
        env = "LOUPE_AGENT_ENDPOINT",
        default_value = "http://127.0.0.1:4318"
    )]
    endpoint: String,
    /// Directory of pod logs, laid out as the kubelet does.
    #[arg(long, env = "LOUPE_AGENT_PODS_DIR", default_value = "/var/log/pods")]
    pods_dir: PathBuf,
    /// Checkpoints and the on-disk buffer.
    #[arg(
        long,
        env = "LOUPE_AGENT_DATA_DIR",
        default_value = "/var/lib/loupe-agent"
    )]
    data_dir: PathBuf,
    /// This node's name (`k8s.node.name`); default: the host name.
    #[arg(long, env = "LOUPE_AGENT_NODE_NAME")]
    node_name: Option<String>,
    /// Bearer token for the collector.
    #[arg(long, env = "LOUPE_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Disk the buffer may use; reading pauses while it is full.
    #[arg(long, env = "LOUPE_AGENT_BUFFER_BYTES", default_value = "256MiB", value_parser = bytes)]
    buffer_bytes: u64,
    /// Encoded bytes at which a batch is written to the buffer.
    #[arg(long, env = "LOUPE_AGENT_BATCH_BYTES", default_value = "512KiB", value_parser = bytes)]
    batch_bytes: u64,
    /// Longest a batch gathers lines before it is written to the buffer.
    #[arg(long, env = "LOUPE_AGENT_BATCH_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    batch_interval: Duration,
    /// Uncompressed bytes per request to the collector.
    #[arg(long, env = "LOUPE_AGENT_MAX_REQUEST_BYTES", default_value = "2MiB", value_parser = bytes)]
    max_request_bytes: u64,
    /// Request body compression.
    #[arg(long, env = "LOUPE_AGENT_COMPRESSION", value_enum, default_value_t = Compression::Zstd)]
    compression: Compression,
    /// Timeout of one request to the collector.
    #[arg(long, env = "LOUPE_AGENT_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Longest wait between retries, and the probe interval while the collector is down.
    #[arg(long, env = "LOUPE_AGENT_MAX_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
    /// Pause between reads that found nothing new.
    #[arg(long, env = "LOUPE_AGENT_POLL_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// How often the pods directory is scanned for new, rotated and deleted files.
    #[arg(long, env = "LOUPE_AGENT_SCAN_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    scan_interval: Duration,
    /// How long a rotated or deleted file, read to its end, stays open for late writes.
    #[arg(long, env = "LOUPE_AGENT_ROTATE_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    rotate_wait: Duration,
    /// Largest record joined from partial lines; a longer one is shipped in pieces marked
    /// `loupe.log.incomplete` (nothing is cut off). A single line longer than this (plus
    /// 4 KiB for its header) is shipped raw in pieces, marked `loupe.log.unparsed`.
    #[arg(long, env = "LOUPE_AGENT_MAX_RECORD_BYTES", default_value = "1MiB", value_parser = bytes)]
    max_record_bytes: u64,
    /// Join stack traces (Java, Python, Go, Node.js) into one record.
    #[arg(long, env = "LOUPE_AGENT_MULTILINE", default_value_t = true, action = clap::ArgAction::Set)]
    multiline: bool,
    /// How long a stack trace is held for more lines once its stream is quiet.
    #[arg(long, env = "LOUPE_AGENT_MULTILINE_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    multiline_wait: Duration,
    /// How often host metrics (CPU, memory, load, disks, file systems, network) are
    /// collected; 0s turns them off.
    #[arg(long, env = "LOUPE_AGENT_HOST_METRICS_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    host_metrics_interval: Duration,
    /// Where the host's root file system is seen (its /proc and mounts): `/` on the host,
    /// `/host` in the DaemonSet, which mounts it there read-only.
    #[arg(long, env = "LOUPE_AGENT_HOST_ROOT", default_value = "/")]
    host_root: PathBuf,
    /// Prometheus targets scraped into the buffer: `[job=]url`, comma separated
    /// (e.g. `node=http://127.0.0.1:9100/metrics`); empty: none.
    #[arg(long, env = "LOUPE_AGENT_SCRAPE_TARGETS", default_value = "")]
    scrape_targets: String,
    /// How often the targets are scraped (also each scrape's timeout).
    #[arg(long, env = "LOUPE_AGENT_SCRAPE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    scrape_interval: Duration,
    /// Pod metadata (service names, scrape annotations) from the API server: in a pod the
    /// in-cluster address and service account are used; this overrides the address.
    #[arg(long, env = "LOUPE_AGENT_KUBERNETES_API")]
    kubernetes_api: Option<String>,
    /// How often this node's pods are listed.
    #[arg(long, env = "LOUPE_AGENT_KUBERNETES_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    kubernetes_refresh: Duration,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "LOUPE_AGENT_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    http_addr: SocketAddr,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "LOUPE_AGENT_LOG", default_value = "info")]
    log: String,
    /// Log format on stdout.
    #[arg(long, env = "LOUPE_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid LOUPE_AGENT_LOG filter {filter:?}"))?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let r = if json {
        b.json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        b.try_init()
    };
    r.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

fn main() -> anyhow::Result<()> {
    // One malloc arena for all threads: the agent's threads hand buffers to each other,
    // and per-thread arenas held on to a third more memory at 10k lines/s (measured by
    // the benchmark's agent phase) for no speed gained.
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let cfg = Config::parse();
    init_logging(cfg.log_format, &cfg.log)?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        // Per-file gauges of files long gone stop being exported.
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(Duration::from_secs(600)),
        )
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics::counter!("loupe_agent_dropped_total").absolute(0);
    let node = cfg.node_name.clone().or_else(hostname).unwrap_or_default();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        endpoint = %cfg.endpoint,
        pods_dir = %cfg.pods_dir.display(),
        data_dir = %cfg.data_dir.display(),
        node = %node,
        buffer_bytes = cfg.buffer_bytes,
        "starting loupe-agent"
    );
    let api = loupe_agent::kube::ApiClient::new(cfg.kubernetes_api.as_deref(), &node)?;
    if api.is_none() {
        tracing::info!(
            "not in a Kubernetes pod and no LOUPE_AGENT_KUBERNETES_API: resources from log paths alone"
        );
    }
    let pods = api
        .as_ref()
        .map(|_| Arc::new(loupe_agent::kube::PodCache::default()));
    let buffer = Buffer::open(
        &cfg.data_dir.join("buffer"),
        BufferLimits::new(cfg.buffer_bytes),
    )?;
    let files = Files::new(
        Settings {
            pods_dir: cfg.pods_dir.clone(),
            unpack_dir: cfg.data_dir.join("unpacked"),
            rotate_wait: cfg.rotate_wait,
            max_record_bytes: cfg.max_record_bytes as usize,
            multiline_wait: cfg.multiline.then_some(cfg.multiline_wait),
            checkpoint_interval: Duration::from_secs(1),
        },
        checkpoint::Store::new(cfg.data_dir.join("checkpoints")),
        Box::new(resource::from_path(node.clone(), pods.clone())),
        buffer.checkpoints()?,
    )?;
    let host = loupe_agent::host_metrics::HostMetrics::new(cfg.host_root.clone(), node.clone());
    let host_interval = cfg.host_metrics_interval;
    let targets = loupe_agent::scrape::targets(&cfg.scrape_targets).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        targets.is_empty() || !cfg.scrape_interval.is_zero(),
        "LOUPE_AGENT_SCRAPE_INTERVAL must be above zero"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let (buffer, stop, handle) = (buffer.clone(), stop.clone(), rt.handle().clone());
        let settings = CollectSettings {
            batch_bytes: cfg.batch_bytes as usize,
            batch_interval: cfg.batch_interval,
            poll_interval: cfg.poll_interval,
            scan_interval: cfg.scan_interval,
            // Per file and read: every file is read in turn before a round encodes, so this
            // bounds the records alive at once (256 KiB made peak RSS at 10k lines/s 20 MiB,
            // 64 KiB 14 MiB, at the same speed; see BENCHMARKS.md).
            read_bytes: 64 * 1024,
        };
        std::thread::Builder::new()
            .name("loupe-agent-read".into())
            .spawn({
                let pods = pods.clone();
                move || loupe_agent::collect::run(files, buffer, settings, handle, stop, pods)
            })?
    };
    let shipper = Shipper::new(
        buffer.clone(),
        ShipSettings {
            endpoint: cfg.endpoint.clone(),
            token: cfg.token.clone().filter(|t| !t.is_empty()),
            compression: cfg.compression,
            max_request_bytes: cfg.max_request_bytes as usize,
            max_backoff: cfg.max_backoff,
        },
        cfg.request_timeout,
    )?;
    rt.block_on(async move {
        tokio::spawn(shipper.run());
        if let (Some(api), Some(pods)) = (api, pods.clone()) {
            tokio::spawn(api.run(pods, cfg.kubernetes_refresh));
        }
        if !targets.is_empty() || pods.is_some() {
            tokio::spawn(loupe_agent::scrape::run(
                targets,
                pods,
                buffer.clone(),
                cfg.scrape_interval,
            ));
        }
        if !host_interval.is_zero() {
            tokio::spawn(loupe_agent::host_metrics::run(
                host,
                buffer.clone(),
                host_interval,
            ));
        }
        let app = loupe_agent::endpoints::router(buffer, metrics);
        let listener = tokio::net::TcpListener::bind(cfg.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.http_addr))?;
        tracing::info!(http = %listener.local_addr()?, "listening");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        anyhow::Ok(())
    })?;
    stop.store(true, Ordering::Relaxed);
    let _ = reading.join();
    tracing::info!("stopped");
    Ok(())
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("stopping: everything acknowledged is in the buffer");
}

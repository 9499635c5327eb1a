//! The metrics phase: the same seeded scrapes (`metricgen`) remote-written, as Prometheus
//! sends them, to Loupe, to VictoriaMetrics (Debian's `victoria-metrics`) and to Prometheus
//! 2.42 (remote-write receiver), each a real process on loopback; and to Loupe again over
//! OTLP/HTTP (another tenant). Figures:
//!
//! - `samples_ingest_per_cpu_s`: samples per CPU-second of the server process, from the first
//!   request until everything is durable and flushed (Loupe: in committed files; the
//!   others: until their flush endpoint returns); the lower of remote write and OTLP.
//! - `sample_stored_bytes`: Loupe's bytes per sample after compaction (files and the metrics
//!   catalog; compaction with `LOUPE_COMPACTION_MIN_FILES=2`, so the open hour merges too)
//!   against VictoriaMetrics's data and index directories after a forced flush and merge.
//! - `promql_range_p99_ms`: two range queries over the last hour (15 s step) — `sum by (job)
//!   (rate(http_requests_total[5m]))` over ~1,000 series and a `histogram_quantile` over
//!   ~1,100 bucket series — warm, against the same queries on VictoriaMetrics (its result
//!   cache off) and Prometheus. Loupe's answers are checked against Prometheus's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use loupe_storage::TenantId;
use loupe_storage::catalog::Catalog;
use loupe_storage::store::{Signal, Storage};
use serde_json::json;

use crate::figures::{Figure, percentile};
use crate::metricgen::{MetricGen, describe, generate};
use crate::phases::Ctx;
use crate::server::{Running, cpu_split_of, free_port};

pub const FIGURES: &[&str] = &[
    "samples_ingest_per_cpu_s",
    "sample_stored_bytes",
    "promql_range_p99_ms",
];

const SHARDS: usize = 8;

struct Peer {
    child: Running,
    url: String,
}

async fn start_peer(
    bin: &str,
    args: Vec<String>,
    ready: &str,
    port: u16,
    client: &reqwest::Client,
) -> anyhow::Result<Peer> {
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {bin} (run tests/setup.sh)"))?;
    let peer = Peer {
        child: Running(child),
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{}{ready}", peer.url)).send().await
            && r.status().is_success()
        {
            return Ok(peer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{bin} did not become ready")
}

/// Process CPU seconds (user + system) from /proc.
fn cpu_of(pid: u32) -> f64 {
    let (user, system) = cpu_split_of(pid);
    user + system
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Sends every shard's bodies in lock step (round r: each shard's r-th request at once), so
/// every series arrives in order and all shards stay within a scrape of each other, as
/// Prometheus's shards do. Overload answers are retried after a pause.
async fn send(
    client: &reqwest::Client,
    url: &str,
    shards: &[Vec<Bytes>],
    headers: &[(&str, &str)],
) -> anyhow::Result<u64> {
    let rounds = shards.iter().map(Vec::len).max().unwrap_or(0);
    let mut retries = 0;
    for r in 0..rounds {
        let sends = shards
            .iter()
            .filter_map(|s| s.get(r))
            .map(|body| async move {
                let mut retries = 0u64;
                loop {
                    let mut req = client.post(url).body(body.clone());
                    for (k, v) in headers {
                        req = req.header(*k, *v);
                    }
                    let resp = req.send().await?;
                    let status = resp.status();
                    if status.is_success() {
                        return Ok::<u64, anyhow::Error>(retries);
                    }
                    if status == 429 || status == 503 {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    bail!(
                        "POST {url}: {status} {}",
                        resp.text().await.unwrap_or_default()
                    );
                }
            });
        for r in futures::future::join_all(sends).await {
            retries += r?;
        }
    }
    Ok(retries)
}

const RW_HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

async fn stored(dir: &Path, tenant: &str) -> anyhow::Result<(u64, u64, usize)> {
    let storage = Storage::open(&format!("file://{}/objects", dir.display()))?;
    let state = Catalog::new(storage, "bench")
        .refresh(&TenantId::new(tenant)?, Signal::Metrics)
        .await?;
    let bytes = state.files().map(|f| f.bytes).sum();
    let rows = state.files().map(|f| f.rows).sum();
    Ok((bytes, rows, state.files().count()))
}

/// Times `reps` runs of each query (after one warm-up); returns the latencies and the last
/// answers.
async fn time_queries(
    client: &reqwest::Client,
    base: &str,
    queries: &[&str],
    range: (i64, i64),
    reps: usize,
    extra: &str,
) -> anyhow::Result<(Vec<f64>, Vec<serde_json::Value>)> {
    let mut ms = Vec::new();
    let mut answers = Vec::new();
    for q in queries {
        let esc: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let url = format!(
            "{base}/api/v1/query_range?query={esc}&start={}&end={}&step=15{extra}",
            range.0 as f64 / 1000.0,
            range.1 as f64 / 1000.0
        );
        let mut last = serde_json::Value::Null;
        for rep in 0..=reps {
            let (t, body) = crate::phases::timed_get(client, &url).await?;
            if rep > 0 {
                ms.push(t);
            }
            last = body;
        }
        if last["data"]["result"]
            .as_array()
            .is_none_or(|r| r.is_empty())
        {
            bail!("{base}: {q} returned nothing: {last}");
        }
        answers.push(last);
    }
    Ok((ms, answers))
}

/// Whether two range answers hold the same series and values (relative 1e-6).
fn same_answer(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let norm = |v: &serde_json::Value| -> std::collections::BTreeMap<String, Vec<(f64, f64)>> {
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let pts = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p[0].as_f64().unwrap_or(0.0),
                            p[1].as_str()
                                .and_then(|x| x.parse().ok())
                                .unwrap_or(f64::NAN),
                        )
                    })
                    .collect();
                (s["metric"].to_string(), pts)
            })
            .collect()
    };
    let (x, y) = (norm(a), norm(b));
    x.len() == y.len()
        && x.iter().zip(&y).all(|((ka, pa), (kb, pb))| {
            ka == kb
                && pa.len() == pb.len()
                && pa.iter().zip(pb).all(|(p, q)| {
                    p.0 == q.0
                        && ((p.1.is_nan() && q.1.is_nan())
                            || (p.1 - q.1).abs() <= 1e-6 * p.1.abs().max(q.1.abs()).max(1e-9))
                })
        })
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    if !FIGURES.iter().any(|f| ctx.wanted(f)) {
        return Ok(());
    }
    let s = ctx.sizes;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let scrapes = (s.metric_minutes * 60_000 / crate::metricgen::SCRAPE_MS) as usize;
    let start_ms = now - s.metric_minutes * 60_000 - 60_000;
    let mut g = MetricGen::new(
        ctx.args.seed ^ 0x3e7,
        s.metric_services,
        s.metric_pods,
        s.metric_hosts,
        start_ms,
        scrapes,
    );
    let data = Arc::new(generate(&mut g, SHARDS));
    eprintln!("metrics: {}", describe(&data));
    let samples = data.samples as f64;
    let client = &ctx.client;

    // Loupe: remote write, then OTLP (another tenant), compaction off while timed.
    let dir = ctx.data_dir().join("metrics");
    std::fs::create_dir_all(&dir)?;
    let server = ctx.start_in(&dir, &[("LOUPE_COMPACTION_INTERVAL", "1h".to_string())])?;
    server.wait_ready(client).await?;
    let split0 = server.cpu_split();
    let cpu0 = server.cpu_seconds();
    let wall = Instant::now();
    let rw_retries = send(
        client,
        &format!("http://{}/prometheus/api/v1/write", server.otlp_http),
        &data.remote_write,
        &RW_HEADERS,
    )
    .await?;
    server.wait_flushed(client).await?;
    let (rw_cpu, rw_wall) = (server.cpu_seconds() - cpu0, wall.elapsed().as_secs_f64());
    let split1 = server.cpu_split();
    let cpu0 = server.cpu_seconds();
    let wall = Instant::now();
    let otlp_retries = send(
        client,
        &format!("http://{}/v1/metrics", server.otlp_http),
        &data.otlp,
        &[
            ("content-type", "application/x-protobuf"),
            ("x-scope-orgid", "otlp"),
        ],
    )
    .await?;
    server.wait_flushed(client).await?;
    let (otlp_cpu, otlp_wall) = (server.cpu_seconds() - cpu0, wall.elapsed().as_secs_f64());
    let split2 = server.cpu_split();
    // User and system seconds of each protocol's phase.
    let split = |a: (f64, f64), b: (f64, f64)| json!({"user_s": b.0 - a.0, "system_s": b.1 - a.1});
    let (rw_split, otlp_split) = (split(split0, split1), split(split1, split2));
    let rss = server.rss_peak_mib();
    server.stop()?;
    let (flushed_bytes, rows, flushed_files) = stored(&dir, "default").await?;
    if rows != data.samples {
        bail!(
            "the catalog holds {rows} samples, {} were sent",
            data.samples
        );
    }
    // Compaction, then the stored size.
    // Every file that can merge does, the open hour's too (in steady state it merges once
    // it has four files; a bench's burst may leave it fewer).
    let server = ctx.start_in(
        &dir,
        &[
            ("LOUPE_COMPACTION_INTERVAL", "1s".to_string()),
            ("LOUPE_COMPACTION_MIN_FILES", "2".to_string()),
        ],
    )?;
    server.wait_ready(client).await?;
    let mut last = (0, 0, 0);
    let mut stable = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while stable < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stored(&dir, "default").await?;
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    let (file_bytes, rows_after, files) = last;
    if rows_after != data.samples {
        bail!(
            "after compaction the catalog holds {rows_after} samples, {} were sent",
            data.samples
        );
    }
    let catalog_bytes = dir_bytes(&dir.join("objects/default/_catalog/metrics"));
    let loupe_bytes = file_bytes + catalog_bytes;

    // VictoriaMetrics.
    let vm_port = free_port()?;
    let vm_dir = dir.join("victoria-metrics");
    let vm = start_peer(
        "/usr/bin/victoria-metrics",
        vec![
            format!("-storageDataPath={}", vm_dir.display()),
            format!("-httpListenAddr=127.0.0.1:{vm_port}"),
            "-retentionPeriod=100y".into(),
            "-loggerLevel=ERROR".into(),
            "-search.latencyOffset=0s".into(),
        ],
        "/health",
        vm_port,
        client,
    )
    .await?;
    let vm_pid = vm.child.0.id();
    let cpu0 = cpu_of(vm_pid);
    let wall = Instant::now();
    send(
        client,
        &format!("{}/api/v1/write", vm.url),
        &data.remote_write,
        &RW_HEADERS,
    )
    .await?;
    client
        .get(format!("{}/internal/force_flush", vm.url))
        .send()
        .await?
        .error_for_status()?;
    let (vm_cpu, vm_wall) = (cpu_of(vm_pid) - cpu0, wall.elapsed().as_secs_f64());
    let month = chrono_month(start_ms);
    client
        .get(format!(
            "{}/internal/force_merge?partition_prefix={month}",
            vm.url
        ))
        .send()
        .await?
        .error_for_status()?;
    let mut vm_bytes = 0;
    let mut stable = 0;
    while stable < 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = dir_bytes(&vm_dir.join("data")) + dir_bytes(&vm_dir.join("indexdb"));
        stable = if now == vm_bytes { stable + 1 } else { 0 };
        vm_bytes = now;
    }

    // Prometheus 2.42.
    let prom_port = free_port()?;
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir)?;
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n")?;
    let prom = start_peer(
        "/usr/bin/prometheus",
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", prom_dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
        "/-/ready",
        prom_port,
        client,
    )
    .await?;
    let prom_pid = prom.child.0.id();
    let cpu0 = cpu_of(prom_pid);
    let wall = Instant::now();
    send(
        client,
        &format!("{}/api/v1/write", prom.url),
        &data.remote_write,
        &RW_HEADERS,
    )
    .await?;
    let (prom_cpu, prom_wall) = (cpu_of(prom_pid) - cpu0, wall.elapsed().as_secs_f64());

    // Range queries over the last hour of data.
    let queries = [
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))",
    ];
    let range = (data.end_ms - 3_600_000 + 500, data.end_ms);
    let reps = s.search_repeat * 4;
    let loupe_url = format!("http://{}/prometheus", server.http);
    let (loupe_ms, loupe_answers) =
        time_queries(client, &loupe_url, &queries, range, reps, "").await?;
    let (vm_ms, _) = time_queries(client, &vm.url, &queries, range, reps, "&nocache=1").await?;
    let (prom_ms, prom_answers) =
        time_queries(client, &prom.url, &queries, range, reps, "").await?;
    let agrees: Vec<bool> = loupe_answers
        .iter()
        .zip(&prom_answers)
        .map(|(a, b)| same_answer(a, b))
        .collect();
    server.stop()?;
    drop((vm, prom));

    let rw_rate = samples / rw_cpu.max(1e-9);
    let otlp_rate = samples / otlp_cpu.max(1e-9);
    let vm_rate = samples / vm_cpu.max(1e-9);
    let prom_rate = samples / prom_cpu.max(1e-9);
    ctx.emit(
        Figure::new("samples_ingest_per_cpu_s", rw_rate.min(otlp_rate), "samples/cpu_s", Some(">= 200000"),
            json!({"samples": data.samples, "series": data.series, "remote_write_per_cpu_s": rw_rate, "otlp_per_cpu_s": otlp_rate,
                "remote_write_cpu_s": rw_cpu, "remote_write_wall_s": rw_wall, "otlp_cpu_s": otlp_cpu, "otlp_wall_s": otlp_wall,
                "retries": rw_retries + otlp_retries, "remote_write_retries": rw_retries, "otlp_retries": otlp_retries,
                "remote_write_cpu_split": rw_split, "otlp_cpu_split": otlp_split, "server_rss_peak_mib": rss,
                "victoria_metrics_per_cpu_s": vm_rate, "victoria_metrics_cpu_s": vm_cpu, "victoria_metrics_wall_s": vm_wall,
                "prometheus_per_cpu_s": prom_rate, "prometheus_cpu_s": prom_cpu, "prometheus_wall_s": prom_wall,
                "requests": "remote write as Prometheus sends it: one sample per series entry, 2,000 per request, snappy; OTLP/HTTP protobuf, one resource per target, ~2,000 points per request; 8 shards in lock step",
                "counted": "server process user+system CPU from the first request until everything is in committed files (Loupe), until /internal/force_flush returned (VictoriaMetrics), until the last request was answered (Prometheus, in its head block)"}))
        .with_baseline(vm_rate),
    );
    let per_sample = loupe_bytes as f64 / samples;
    let vm_per_sample = vm_bytes as f64 / samples;
    ctx.emit(
        Figure::new("sample_stored_bytes", per_sample, "bytes/sample", Some("<= 1.0"),
            json!({"samples": data.samples, "loupe_file_bytes": file_bytes, "loupe_catalog_bytes": catalog_bytes, "files": files,
                "before_compaction_bytes_per_sample": flushed_bytes as f64 / samples, "files_before_compaction": flushed_files,
                "victoria_metrics_bytes": vm_bytes, "victoria_metrics_is": "data and indexdb directories after /internal/force_flush and /internal/force_merge"}))
        .with_baseline(vm_per_sample),
    );
    let (p99, vm_p99, prom_p99) = (
        percentile(&loupe_ms, 0.99),
        percentile(&vm_ms, 0.99),
        percentile(&prom_ms, 0.99),
    );
    ctx.emit(
        Figure::new("promql_range_p99_ms", p99, "ms", Some("<= 200"),
            json!({"queries": queries, "runs": loupe_ms.len(), "p50_ms": percentile(&loupe_ms, 0.5),
                "victoria_metrics_p99_ms": vm_p99, "victoria_metrics_p50_ms": percentile(&vm_ms, 0.5),
                "prometheus_p99_ms": prom_p99, "prometheus_p50_ms": percentile(&prom_ms, 0.5),
                "answers_equal_prometheus": agrees, "range": "the last hour, 15 s step, warm; VictoriaMetrics with nocache=1"}))
        .with_baseline(vm_p99),
    );
    Ok(())
}

/// `YYYY_MM` of a time (VictoriaMetrics's partition names).
fn chrono_month(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}_{m:02}")
}

//! The agent phase: the real `loupe-agent` (next to `loupe`, same profile) tailing CRI log
//! files under a pods directory the harness writes, buffering on disk and shipping to a
//! real `loupe server`. Figures:
//!
//! - `agent_max_mb_per_cpu_s`: files written beforehand (realistic lines from `loggen`, in
//!   eight containers), read, buffered and shipped at full speed; MB of file text per
//!   CPU-second of the agent, from its start until every line is shipped.
//! - `agent_cpu_pct_at_10k_lines_s` and `agent_rss_mib_at_10k_lines_s`: ten containers
//!   written at 10,000 lines a second in all; the agent's CPU over the run after a warm-up,
//!   in percent of one core, and its peak resident memory.
//! - `agent_lag_p99_ms`: in the same run, a marker line every 100 ms; from its write to its
//!   arrival on the server's live tail (`/api/v1/logs/tail`), so the figure is the agent's
//!   path (poll, batch, buffer fsync, ship) plus the collector's ack, not the server's
//!   flush interval.
//!
//! No agent runs beside ours here; the reference (Fluent Bit 5.1 on a machine like
//! this, parse only: 10.1% of a core and 17.3 MiB at 10k lines/s, 27.6 MB per CPU-second)
//! is quoted in the figures' data, not measured.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::figures::{Figure, percentile};
use crate::loggen::LogGen;
use crate::phases::{Ctx, now_ns};
use crate::server::{Running, cpu_split_of, free_port, rss_peak_mib_of, sample};

pub const FIGURES: &[&str] = &[
    "agent_max_mb_per_cpu_s",
    "agent_cpu_pct_at_10k_lines_s",
    "agent_rss_mib_at_10k_lines_s",
    "agent_lag_p99_ms",
];

const REFERENCE: &str = "Fluent Bit 5.1, parse only, as the issue quotes it (not run here)";

struct Agent {
    child: Running,
    http: String,
}

impl Agent {
    fn start(
        bin: &Path,
        pods: &Path,
        data: &Path,
        endpoint: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        let http = format!("127.0.0.1:{}", free_port()?);
        let mut cmd = Command::new(bin);
        cmd.env("LOUPE_AGENT_ENDPOINT", endpoint)
            .env("LOUPE_AGENT_PODS_DIR", pods)
            .env("LOUPE_AGENT_DATA_DIR", data)
            .env("LOUPE_AGENT_HTTP_ADDR", &http)
            .env("LOUPE_AGENT_NODE_NAME", "bench")
            .env("LOUPE_AGENT_LOG", "warn")
            // Log lines only: the figures are the agent's cost of tailing and shipping logs.
            .env("LOUPE_AGENT_HOST_METRICS_INTERVAL", "0s")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Agent {
            child: Running(child),
            http,
        })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn cpu(&self) -> (f64, f64) {
        cpu_split_of(self.pid())
    }

    /// The sample of `name` with exactly `labels` (as written: `signal="logs"`; empty: none).
    async fn metric(&self, client: &reqwest::Client, name: &str, labels: &str) -> Option<f64> {
        let text = client
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        sample(&text, name, labels)
    }

    async fn wait_up(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!("http://{}/healthz", self.http))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("loupe-agent did not answer /healthz")
    }
}

fn rfc3339(ns: u64) -> String {
    chrono::DateTime::from_timestamp((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
        .unwrap_or_default()
}

/// A container's log directory under `pods`.
fn container(pods: &Path, i: usize) -> anyhow::Result<PathBuf> {
    let d = pods.join(format!("bench_app-{i}_uid{i}")).join("app");
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    if !FIGURES.iter().any(|f| ctx.wanted(f)) {
        return Ok(());
    }
    let bin = ctx.bin().with_file_name("loupe-agent");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --workspace --bins)",
            bin.display()
        );
    }
    let dir = ctx.data_dir().join("agent");
    std::fs::create_dir_all(&dir)?;
    let server = ctx.start_in(&dir.join("server"), &[])?;
    server.wait_ready(&ctx.client).await?;
    let endpoint = format!("http://{}", server.otlp_http);
    if ctx.wanted("agent_max_mb_per_cpu_s") {
        full_speed(ctx, &bin, &dir, &endpoint).await?;
    }
    if [
        "agent_cpu_pct_at_10k_lines_s",
        "agent_rss_mib_at_10k_lines_s",
        "agent_lag_p99_ms",
    ]
    .iter()
    .any(|f| ctx.wanted(f))
    {
        steady(ctx, &bin, &dir, &endpoint, &server).await?;
    }
    server.stop()?;
    Ok(())
}

/// Bytes written beforehand for the full-speed figure.
fn full_speed_bytes(mode: &str) -> u64 {
    match mode {
        "smoke" => 4 << 20,
        "quick" => 64 << 20,
        _ => 256 << 20,
    }
}

async fn full_speed(ctx: &Ctx<'_>, bin: &Path, dir: &Path, endpoint: &str) -> anyhow::Result<()> {
    let pods = dir.join("pods-full");
    let target = full_speed_bytes(ctx.sizes.mode);
    let mut generator = LogGen::new(ctx.args.seed ^ 0xa6e7, now_ns() - 300_000_000_000);
    let mut files: Vec<_> = (0..8)
        .map(|i| -> anyhow::Result<_> {
            Ok(std::io::BufWriter::new(std::fs::File::create(
                container(&pods, i)?.join("0.log"),
            )?))
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut bytes, mut lines) = (0u64, 0u64);
    while bytes < target {
        let l = generator.line();
        let text = format!("{} stdout F {}\n", rfc3339(l.time_unix_nano), l.text);
        files[(lines % 8) as usize].write_all(text.as_bytes())?;
        bytes += text.len() as u64;
        lines += 1;
    }
    for mut f in files {
        f.flush()?;
    }
    let agent = Agent::start(
        bin,
        &pods,
        &dir.join("agent-full"),
        endpoint,
        &[("LOUPE_AGENT_BUFFER_BYTES", "4GiB")],
    )?;
    let started = Instant::now();
    agent.wait_up(&ctx.client).await?;
    loop {
        let read = agent
            .metric(&ctx.client, "loupe_agent_bytes_read_total", "")
            .await
            .unwrap_or(0.0);
        let shipped = agent
            .metric(&ctx.client, "loupe_agent_shipped_total", "signal=\"logs\"")
            .await
            .unwrap_or(0.0);
        if read >= bytes as f64 && shipped >= lines as f64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!(
                "the agent read {read} of {bytes} bytes and shipped {shipped} of {lines} lines in 15 minutes"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let (user, system) = agent.cpu();
    let cpu = user + system;
    let rss = rss_peak_mib_of(agent.pid());
    ctx.emit(Figure::new(
        "agent_max_mb_per_cpu_s",
        bytes as f64 / 1e6 / cpu.max(1e-9),
        "MB/CPU-s",
        Some(">= 150"),
        json!({"bytes": bytes, "lines": lines, "files": 8, "cpu_s": cpu, "cpu_split": {"user": user, "system": system},
            "wall_s": wall, "rss_peak_mib": rss, "reference": {"mb_per_cpu_s": 27.6, "what": REFERENCE},
            "measured": "pre-written CRI files read, buffered on disk and shipped (zstd OTLP/HTTP) to a real loupe server; agent CPU from start until every line was acknowledged"}),
    ));
    Ok(())
}

/// Seconds of the 10k-lines/s run (after a 3 s warm-up).
fn steady_secs(mode: &str) -> u64 {
    match mode {
        "smoke" => 4,
        "quick" => 20,
        _ => 60,
    }
}

async fn steady(
    ctx: &Ctx<'_>,
    bin: &Path,
    dir: &Path,
    endpoint: &str,
    server: &crate::server::Server,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    const CONTAINERS: usize = 10;
    const WARMUP: Duration = Duration::from_secs(3);
    let pods = dir.join("pods-steady");
    let dirs: Vec<PathBuf> = (0..CONTAINERS)
        .map(|i| container(&pods, i))
        .collect::<anyhow::Result<_>>()?;
    let agent = Agent::start(bin, &pods, &dir.join("agent-steady"), endpoint, &[])?;
    agent.wait_up(&ctx.client).await?;
    let tail = ctx
        .client
        .get(format!(
            "http://{}/api/v1/logs/tail?query=lagprobe",
            server.http
        ))
        .send()
        .await?
        .error_for_status()?;
    let mut events = tail.bytes_stream();
    let run = Duration::from_secs(steady_secs(ctx.sizes.mode));
    let seed = ctx.args.seed;
    // The writer: 100 lines every 10 ms over ten files; every tenth tick one of them is a
    // marker, sent to the tail reader with the time it was written.
    let (marks_tx, mut marks_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let writer = std::thread::spawn(move || -> anyhow::Result<u64> {
        let mut generator = LogGen::new(seed ^ 0x57ea, now_ns());
        let started = Instant::now();
        let (mut tick, mut lines) = (0u64, 0u64);
        let mut files: Vec<std::fs::File> = dirs
            .iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join("0.log"))
            })
            .collect::<Result<_, _>>()?;
        while started.elapsed() < WARMUP + run {
            for (i, f) in files.iter_mut().enumerate() {
                let mut text = String::new();
                for j in 0..10 {
                    let ts = rfc3339(now_ns());
                    if i == 0 && j == 0 && tick % 10 == 0 {
                        text += &format!("{ts} stdout F lagprobe {tick} written\n");
                    } else {
                        text += &format!("{ts} stdout F {}\n", generator.line().text);
                    }
                    lines += 1;
                }
                f.write_all(text.as_bytes())?;
                if i == 0 && tick % 10 == 0 {
                    let _ = marks_tx.send((tick, Instant::now()));
                }
            }
            tick += 1;
            let next = started + Duration::from_millis(10 * tick);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok(lines)
    });
    let started = Instant::now();
    tokio::time::sleep(WARMUP).await;
    let cpu0 = agent.cpu();
    let t0 = Instant::now();
    // Marker arrivals, read while the writer runs and a little after.
    let mut written: std::collections::HashMap<u64, Instant> = Default::default();
    let mut lag_ms = Vec::new();
    let mut buf = String::new();
    let deadline = started + WARMUP + run + Duration::from_secs(10);
    let mut cpu1 = None;
    while Instant::now() < deadline {
        if cpu1.is_none() && started.elapsed() >= WARMUP + run {
            cpu1 = Some((agent.cpu(), t0.elapsed()));
        }
        while let Ok((k, at)) = marks_rx.try_recv() {
            written.insert(k, at);
        }
        match tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            Ok(Some(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk?)),
            Ok(None) => bail!("the live tail ended"),
            Err(_) => {}
        }
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let arrived = Instant::now();
            while let Ok((k, at)) = marks_rx.try_recv() {
                written.insert(k, at);
            }
            if let Some(k) = event
                .split("lagprobe ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|k| k.parse::<u64>().ok())
                && let Some(at) = written.remove(&k)
            {
                // Markers of the warm-up are not counted.
                if at >= started + WARMUP {
                    lag_ms.push(arrived.saturating_duration_since(at).as_secs_f64() * 1e3);
                }
            }
        }
        if cpu1.is_some() && written.is_empty() && writer.is_finished() {
            break;
        }
    }
    let lines = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let ((u1, s1), secs) = cpu1.unwrap_or((agent.cpu(), t0.elapsed()));
    let cpu = (u1 - cpu0.0) + (s1 - cpu0.1);
    let pct = cpu / secs.as_secs_f64() * 100.0;
    let rss = rss_peak_mib_of(agent.pid());
    let expected = run.as_millis() as usize / 100;
    if lag_ms.len() < expected / 2 {
        bail!(
            "only {} of about {expected} markers reached the live tail",
            lag_ms.len()
        );
    }
    let dropped = agent
        .metric(&ctx.client, "loupe_agent_dropped_total", "")
        .await;
    ctx.emit(Figure::new(
        "agent_cpu_pct_at_10k_lines_s",
        pct,
        "% of a core",
        Some("<= 5"),
        json!({"seconds": secs.as_secs_f64(), "cpu_split": {"user": u1 - cpu0.0, "system": s1 - cpu0.1},
            "lines_written": lines, "containers": CONTAINERS, "dropped": dropped,
            "reference": {"cpu_pct": 10.1, "what": REFERENCE}}),
    ));
    ctx.emit(Figure::new(
        "agent_rss_mib_at_10k_lines_s",
        rss,
        "MiB",
        Some("<= 16"),
        json!({"measured": "VmHWM of the agent at the end of the 10k lines/s run",
            "reference": {"rss_mib": 17.3, "what": REFERENCE}}),
    ));
    ctx.emit(Figure::new(
        "agent_lag_p99_ms",
        percentile(&lag_ms, 0.99),
        "ms",
        Some("<= 2000"),
        json!({"markers": lag_ms.len(), "p50_ms": percentile(&lag_ms, 0.5), "max_ms": percentile(&lag_ms, 1.0),
            "measured": "from a marker line's write to its event on the server's live tail, at 10k lines/s"}),
    ));
    Ok(())
}

//! The logs phase: generated Kubernetes container logs sent over OTLP/HTTP (protobuf) to a
//! fresh server, as the node agent will send them; ingest speed in MB of raw log text per
//! server CPU-second (from the first send until the lines are in files), and the stored size
//! (every byte of the log files) against `zstd -3` of the same raw text.

use std::sync::Arc;

use bytes::Bytes;
use loupe_storage::TenantId;
use loupe_storage::catalog::Catalog;
use loupe_storage::store::{Signal, Storage};
use prost::Message;
use serde_json::json;

use crate::figures::Figure;
use crate::load::{Protocol, send_all_to};
use crate::loggen::{LogGen, requests};
use crate::phases::Ctx;

pub const FIGURES: &[&str] = &["logs_ingest_mb_per_cpu_s", "log_stored_vs_zstd3"];

const LINES_PER_REQUEST: usize = 1000;

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    if !FIGURES.iter().any(|f| ctx.wanted(f)) {
        return Ok(());
    }
    let n = ctx.sizes.log_lines;
    // Lines of the last few minutes (inside every time window the server accepts).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut generator = LogGen::new(0x10_65, now - 600_000_000_000);
    let lines: Vec<_> = (0..n).map(|_| generator.line()).collect();
    let raw: usize = lines.iter().map(|l| l.text.len() + 1).sum();
    let zstd = {
        let mut text = Vec::with_capacity(raw);
        for l in &lines {
            text.extend_from_slice(l.text.as_bytes());
            text.push(b'\n');
        }
        zstd::bulk::compress(&text, 3)?.len()
    };
    let bodies: Vec<Bytes> = requests(&lines, LINES_PER_REQUEST)
        .iter()
        .map(|r| Bytes::from(r.encode_to_vec()))
        .collect();
    let otlp_bytes: usize = bodies.iter().map(Bytes::len).sum();
    eprintln!(
        "generated {n} log lines, {:.1} MB of text, {:.1} MB OTLP",
        raw as f64 / 1e6,
        otlp_bytes as f64 / 1e6
    );

    let server = ctx.start(&[("LOUPE_COMPACTION_INTERVAL", "1h".to_string())])?;
    server.wait_ready(&ctx.client).await?;
    let cpu0 = server.cpu_seconds();
    let wall = std::time::Instant::now();
    let retries = send_all_to(
        Protocol::Http,
        server.otlp_http,
        Arc::new(bodies),
        ctx.sizes.concurrency,
        "logs",
    )
    .await?;
    server.wait_flushed(&ctx.client).await?;
    let cpu = server.cpu_seconds() - cpu0;
    let elapsed = wall.elapsed().as_secs_f64();
    let storage = Storage::open(&format!("file://{}/objects", ctx.data_dir().display()))?;
    let state = Catalog::new(storage, "bench")
        .refresh(&TenantId::default_tenant(), Signal::Logs)
        .await?;
    let (rows, stored): (u64, u64) = state
        .files()
        .fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes));
    if rows != n as u64 {
        anyhow::bail!("the catalog holds {rows} log lines, {n} were sent");
    }
    ctx.emit(Figure::new(
        "logs_ingest_mb_per_cpu_s",
        raw as f64 / 1e6 / cpu.max(1e-9),
        "MB/cpu_s",
        Some(">= 25"),
        json!({"lines": n, "raw_text_bytes": raw, "otlp_bytes": otlp_bytes, "server_cpu_s": cpu,
            "wall_s": elapsed, "overload_retries": retries, "lines_per_request": LINES_PER_REQUEST,
            "counted": "server process user+system CPU from the first send until every line is in a committed file"}),
    ));
    ctx.emit(
        Figure::new(
            "log_stored_vs_zstd3",
            stored as f64 / zstd as f64,
            "ratio",
            Some("<= 1.0"),
            json!({"stored_bytes": stored, "files": state.files().count(), "zstd3_bytes": zstd,
                "raw_text_bytes": raw, "baseline_is": "zstd -3 of the raw log text (one line per record)"}),
        )
        .with_baseline_ratio(zstd as f64, stored as f64 / zstd as f64),
    );
    server.stop()?;
    Ok(())
}

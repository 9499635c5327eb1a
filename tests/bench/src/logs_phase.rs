//! The logs phase: generated Kubernetes container logs sent over OTLP/HTTP (protobuf) to a
//! fresh server, as the node agent will send them; ingest speed in MB of raw log text per
//! server CPU-second (from the first send until the lines are in files), and the stored size
//! (every byte of the log files) against `zstd -3` of the same raw text; then warm searches
//! through the native API: a needle (one request or trace id over the whole data set) and a
//! common term (newest 100), the severity histogram, and the time from a line's ack to its
//! arrival on a live tail (server-sent events). ClickHouse (chdb) stores the same lines and
//! answers the same searches, as the baseline of the stored size and the searches.

use std::sync::Arc;

use bytes::Bytes;
use loupe_storage::TenantId;
use loupe_storage::catalog::Catalog;
use loupe_storage::store::{Signal, Storage};
use prost::Message;
use serde_json::json;

use crate::figures::{Figure, percentile};
use crate::load::{Protocol, send_all_to};
use crate::loggen::{LogGen, requests};
use crate::phases::Ctx;

pub const FIGURES: &[&str] = &[
    "logs_ingest_mb_per_cpu_s",
    "log_stored_vs_zstd3",
    "log_search_p99_ms",
    "log_term_search_p99_ms",
    "log_histogram_p99_ms",
    "log_ack_to_tail_p99_ms",
];

/// Lines sent one at a time to a live tail.
const TAIL_PROBES: usize = 50;

/// Needles looked up per run.
const NEEDLES: usize = 20;

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
    // Its own data dir, so the trace phases' servers do not compact these files.
    let dir = ctx.data_dir().join("logs");
    std::fs::create_dir_all(&dir)?;
    let server = ctx.start_in(&dir, &[("LOUPE_COMPACTION_INTERVAL", "1h".to_string())])?;
    server.wait_ready(&ctx.client).await?;
    let Ingested {
        raw,
        zstd,
        otlp_bytes,
        cpu,
        elapsed,
        retries,
        stored,
        state,
    } = ingest(ctx, &server, &dir, &lines).await?;
    // Searches over everything sent (a minute of margin on both sides).
    let (start_ms, end_ms) = (
        lines[0].time_unix_nano / 1_000_000 - 60_000,
        lines[n - 1].time_unix_nano / 1_000_000 + 60_000,
    );
    let needles: Vec<&str> = lines
        .iter()
        .step_by((n / NEEDLES).max(1))
        .filter_map(|l| l.needle.as_deref())
        .take(NEEDLES)
        .collect();
    let chdb = clickhouse(ctx, &dir, &lines, &needles, (start_ms, end_ms))?;
    let real = real_programs(ctx, n).await?;
    eprintln!("real programs' logs: {real}");
    ctx.emit(Figure::new(
        "logs_ingest_mb_per_cpu_s",
        raw as f64 / 1e6 / cpu.max(1e-9),
        "MB/cpu_s",
        Some(">= 25"),
        json!({"lines": n, "raw_text_bytes": raw, "otlp_bytes": otlp_bytes, "server_cpu_s": cpu,
            "wall_s": elapsed, "overload_retries": retries, "lines_per_request": LINES_PER_REQUEST,
            "counted": "server process user+system CPU from the first send until every line is in a committed file",
            "real_programs": real.clone()}),
    ));
    ctx.emit(
        Figure::new(
            "log_stored_vs_zstd3",
            stored as f64 / zstd as f64,
            "ratio",
            Some("<= 1.0"),
            json!({"stored_bytes": stored, "files": state.files().count(), "zstd3_bytes": zstd,
                "raw_text_bytes": raw, "baseline_is": "zstd -3 of the raw log text (one line per record)",
                "clickhouse_bytes": chdb.stored_bytes,
                "clickhouse_vs_zstd3": chdb.stored_bytes as f64 / zstd as f64,
                "real_programs": real,
                "clickhouse_is": "chdb MergeTree ordered by (service, time), body zstd(3) with a tokenbf_v1 index, after OPTIMIZE FINAL; service, time and body only (Loupe also keeps severity, attributes, resource, trace context)"}),
        )
        .with_baseline_ratio(zstd as f64, stored as f64 / zstd as f64),
    );
    let search = |query: &str, limit: usize| {
        let q: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        format!(
            "http://{}/api/v1/logs?query={q}&start={start_ms}&end={end_ms}&limit={limit}",
            server.http
        )
    };
    let gets = || {
        server.counter(
            &ctx.client,
            "loupe_object_store_requests_total",
            r#"op="get""#,
        )
    };
    let mut needle_ms = Vec::new();
    let mut gets_per_pass = Vec::new();
    for pass in 0..2 {
        let gets0 = gets().await?;
        for needle in &needles {
            let (ms, body) = crate::phases::timed_get(&ctx.client, &search(needle, 100)).await?;
            let found = body["logs"].as_array().map_or(0, Vec::len);
            if found == 0 {
                anyhow::bail!("needle {needle} not found: {body}");
            }
            if pass == 1 {
                needle_ms.push(ms);
            }
        }
        let per_query = (gets().await? - gets0) / needles.len() as f64;
        gets_per_pass.push(per_query);
    }
    let mut term_ms = Vec::new();
    for pass in 0..=ctx.sizes.search_repeat {
        let (ms, body) = crate::phases::timed_get(&ctx.client, &search("completed", 100)).await?;
        if body["logs"].as_array().map_or(0, Vec::len) != 100 {
            anyhow::bail!("the term search found fewer than 100 lines: {body}");
        }
        if pass > 0 {
            term_ms.push(ms);
        }
    }
    let (needle_p99, chdb_needle_p99) = (
        percentile(&needle_ms, 0.99),
        percentile(&chdb.needle_ms, 0.99),
    );
    ctx.emit(Figure::new(
        "log_search_p99_ms",
        needle_p99,
        "ms",
        Some("<= 200"),
        json!({"needles": needles.len(), "p50_ms": percentile(&needle_ms, 0.5), "lines": n,
            "files": state.files().count(),
            "gets_per_query_cold": gets_per_pass[0], "gets_per_query_warm": gets_per_pass[1],
            "clickhouse_p99_ms": chdb_needle_p99, "clickhouse_p50_ms": percentile(&chdb.needle_ms, 0.5),
            "query": "one request or trace id over the whole data set, limit 100, warm (the second pass over the same needles); object-store GETs per query, averaged over the first pass (the server had read nothing of the files; index and Parquet footers stay cached after the first query) and over the second"}),
    )
    .with_baseline_ratio(chdb_needle_p99, needle_p99 / chdb_needle_p99.max(1e-9)));
    ctx.emit(
        Figure::new(
            "log_term_search_p99_ms",
            percentile(&term_ms, 0.99),
            "ms",
            Some("<= 200"),
            json!({"runs": term_ms.len(), "p50_ms": percentile(&term_ms, 0.5), "lines": n,
            "query": "completed (in about a third of the lines), newest 100, warm",
            "clickhouse_p99_ms": percentile(&chdb.term_ms, 0.99)}),
        )
        .with_baseline_ratio(
            percentile(&chdb.term_ms, 0.99),
            percentile(&term_ms, 0.99) / percentile(&chdb.term_ms, 0.99).max(1e-9),
        ),
    );
    // The severity histogram of the last hour (every line sent is in it), 60 buckets.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let histogram_url = format!(
        "http://{}/api/v1/logs/histogram?start={}&end={now_ms}&step=1m",
        server.http,
        now_ms - 3_600_000
    );
    let mut histogram_ms = Vec::new();
    for pass in 0..=ctx.sizes.search_repeat {
        let (ms, body) = crate::phases::timed_get(&ctx.client, &histogram_url).await?;
        if body["total"].as_u64() != Some(n as u64) {
            anyhow::bail!(
                "the histogram counts {} lines, {n} were sent",
                body["total"]
            );
        }
        if pass > 0 {
            histogram_ms.push(ms);
        }
    }
    ctx.emit(Figure::new(
        "log_histogram_p99_ms",
        percentile(&histogram_ms, 0.99),
        "ms",
        Some("<= 200"),
        json!({"runs": histogram_ms.len(), "p50_ms": percentile(&histogram_ms, 0.5), "lines": n,
            "query": "every line of the last hour by severity level, 1-minute buckets, warm"}),
    ));
    if ctx.wanted("log_ack_to_tail_p99_ms") {
        let (ack_ms, send_ms) = tail_latency(ctx, &server).await?;
        ctx.emit(Figure::new(
            "log_ack_to_tail_p99_ms",
            percentile(&ack_ms, 0.99),
            "ms",
            Some("<= 2000"),
            json!({"lines": ack_ms.len(), "p50_ms": percentile(&ack_ms, 0.5),
                "send_to_tail_p99_ms": percentile(&send_ms, 0.99),
                "measured": "one OTLP/JSON export of one line at a time, after the searches; from the export's 200 response to the line's event on GET /api/v1/logs/tail (0 when the event came first)"}),
        ));
    }
    server.stop()?;
    Ok(())
}

/// Sends [`TAIL_PROBES`] lines one at a time with a live tail open; per line, the time from
/// its ack to its tail event, and from its send.
async fn tail_latency(
    ctx: &Ctx<'_>,
    server: &crate::server::Server,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    use futures::StreamExt;
    use std::time::{Duration, Instant};
    let resp = ctx
        .client
        .get(format!(
            "http://{}/api/v1/logs/tail?query=tailprobe",
            server.http
        ))
        .send()
        .await?
        .error_for_status()?;
    let mut events = resp.bytes_stream();
    let mut buf = String::new();
    let (mut ack_ms, mut send_ms) = (Vec::new(), Vec::new());
    for i in 0..TAIL_PROBES {
        let body = format!("tailprobe {i} arrived");
        let export = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tail"}}]},
            "scopeLogs": [{"logRecords": [{"body": {"stringValue": body}}]}]}]});
        let sent = Instant::now();
        let post = ctx
            .client
            .post(format!("http://{}/v1/logs", server.otlp_http))
            .header("content-type", "application/json")
            .body(export.to_string())
            .send();
        // The event may come before the answer: read both at once.
        let wait_event = async {
            loop {
                if buf.contains(&body) {
                    buf.clear();
                    return Ok::<Instant, anyhow::Error>(Instant::now());
                }
                match tokio::time::timeout(Duration::from_secs(30), events.next()).await {
                    Ok(Some(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk?)),
                    _ => anyhow::bail!("line {i} did not arrive on the tail within 30 s"),
                }
            }
        };
        let (answer, arrived) = tokio::join!(
            async {
                let r = post.await?.error_for_status()?;
                Ok::<Instant, anyhow::Error>({
                    let at = Instant::now();
                    drop(r);
                    at
                })
            },
            wait_event
        );
        let (acked, arrived) = (answer?, arrived?);
        ack_ms.push(arrived.saturating_duration_since(acked).as_secs_f64() * 1e3);
        send_ms.push((arrived - sent).as_secs_f64() * 1e3);
    }
    Ok((ack_ms, send_ms))
}

/// ClickHouse's figures on the same lines (see `chdb_baseline.py`).
struct ClickHouse {
    stored_bytes: u64,
    needle_ms: Vec<f64>,
    term_ms: Vec<f64>,
}

/// Loads the lines into ClickHouse (chdb) and runs the same needle and term searches.
fn clickhouse(
    ctx: &Ctx<'_>,
    dir: &std::path::Path,
    lines: &[crate::loggen::Line],
    needles: &[&str],
    (start_ms, end_ms): (u64, u64),
) -> anyhow::Result<ClickHouse> {
    use std::io::Write;
    let path = dir.join("lines.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for l in lines {
        serde_json::to_writer(
            &mut out,
            &json!({"service": l.service, "time": l.time_unix_nano, "body": l.text}),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    let job = json!({
        "lines": path, "needles": needles, "term": "completed",
        "start": start_ms * 1_000_000, "end": end_ms * 1_000_000, "limit": 100,
        "repeat": ctx.sizes.search_repeat,
    });
    let v = crate::searches::python_job(ctx.args, "chdb_baseline.py", &job, "ClickHouse (chdb)")?;
    std::fs::remove_file(&path)?;
    let floats = |a: &serde_json::Value| -> Vec<f64> {
        a.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    eprintln!(
        "clickhouse (chdb): {} bytes stored, loaded in {:.1} s",
        v["stored_bytes"],
        v["load_s"].as_f64().unwrap_or_default()
    );
    Ok(ClickHouse {
        stored_bytes: v["stored_bytes"].as_u64().unwrap_or_default(),
        needle_ms: floats(&v["needle_ms"]),
        term_ms: floats(&v["term_ms"]),
    })
}

/// What sending lines to a server cost and left stored.
struct Ingested {
    raw: usize,
    zstd: usize,
    otlp_bytes: usize,
    cpu: f64,
    elapsed: f64,
    retries: u64,
    stored: u64,
    state: std::sync::Arc<loupe_storage::catalog::CatalogState>,
}

/// Sends `lines` over OTLP/HTTP (protobuf) to `server` (whose objects are under `dir`) and
/// waits until every line is in a committed file.
async fn ingest(
    ctx: &Ctx<'_>,
    server: &crate::server::Server,
    dir: &std::path::Path,
    lines: &[crate::loggen::Line],
) -> anyhow::Result<Ingested> {
    let n = lines.len();
    let raw: usize = lines.iter().map(|l| l.text.len() + 1).sum();
    let zstd = {
        let mut text = Vec::with_capacity(raw);
        for l in lines {
            text.extend_from_slice(l.text.as_bytes());
            text.push(b'\n');
        }
        zstd::bulk::compress(&text, 3)?.len()
    };
    let bodies: Vec<Bytes> = requests(lines, LINES_PER_REQUEST)
        .iter()
        .map(|r| Bytes::from(r.encode_to_vec()))
        .collect();
    let otlp_bytes: usize = bodies.iter().map(Bytes::len).sum();
    eprintln!(
        "{n} log lines, {:.1} MB of text, {:.1} MB OTLP",
        raw as f64 / 1e6,
        otlp_bytes as f64 / 1e6
    );
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
    let storage = Storage::open(&format!("file://{}/objects", dir.display()))?;
    let state = Catalog::new(storage, "bench")
        .refresh(&TenantId::default_tenant(), Signal::Logs)
        .await?;
    let (rows, stored): (u64, u64) = state
        .files()
        .fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes));
    if rows != n as u64 {
        anyhow::bail!("the catalog holds {rows} log lines, {n} were sent");
    }
    Ok(Ingested {
        raw,
        zstd,
        otlp_bytes,
        cpu,
        elapsed,
        retries,
        stored,
        state,
    })
}

/// The ingest speed and stored size of lines real programs wrote (see [`crate::real_logs`]),
/// each on a fresh server.
async fn real_programs(ctx: &Ctx<'_>, max: usize) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    let dir = ctx.data_dir().join("real-logs");
    for (name, get) in [
        (
            "nginx",
            crate::real_logs::nginx
                as fn(&std::path::Path, usize) -> anyhow::Result<Vec<crate::loggen::Line>>,
        ),
        ("postgres", crate::real_logs::postgres),
    ] {
        let lines = get(&dir, max)?;
        let data = dir.join(format!("{name}-server"));
        std::fs::create_dir_all(&data)?;
        let server = ctx.start_in(&data, &[("LOUPE_COMPACTION_INTERVAL", "1h".to_string())])?;
        server.wait_ready(&ctx.client).await?;
        let i = ingest(ctx, &server, &data, &lines).await?;
        server.stop()?;
        out.insert(
            name.to_string(),
            json!({"lines": lines.len(), "raw_text_bytes": i.raw, "mb_per_cpu_s": i.raw as f64 / 1e6 / i.cpu.max(1e-9),
                "stored_bytes": i.stored, "zstd3_bytes": i.zstd, "stored_vs_zstd3": i.stored as f64 / i.zstd as f64}),
        );
    }
    Ok(serde_json::Value::Object(out))
}

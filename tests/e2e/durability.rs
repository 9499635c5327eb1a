//! Acknowledged means durable: SIGKILL right after acknowledged exports loses nothing, a
//! restart neither loses nor duplicates spans whether or not they were flushed, and a kill
//! loop under concurrent load, frequent flushes and compaction loses and duplicates nothing, for
//! spans, log lines and remote-written metric samples.

use std::time::Duration;

use crate::harness::{Server, env_refs, fixed_addrs, get_json, metric, stored_rows};
use crate::load::{Load, tally, verify_exactly_once};
use crate::otlp::{post_proto, random_trace_id, trace_request};

async fn span_count(server: &Server, id: &[u8; 16]) -> usize {
    let (status, body) = get_json(
        &server.url(&format!("/api/v1/traces/{}", hex::encode(id))),
        None,
    )
    .await;
    if status != 200 {
        return 0;
    }
    body["spans"].as_array().map_or(0, |s| s.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A flush interval of an hour: acknowledged data exists only in the WAL when killed.
    let slow = [("LOUPE_FLUSH_INTERVAL", "1h")];
    let server = Server::start(&["server"], dir.path(), &slow);
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    let mut ids = Vec::new();
    for i in 0..40 {
        let id = random_trace_id();
        let resp = post_proto(&url, &trace_request(&format!("svc-{}", i % 4), id, 5), None).await;
        assert_eq!(resp.status(), 200);
        ids.push(id);
    }
    server.kill9();

    let server = Server::start(&["server"], dir.path(), &slow);
    server.wait_ready().await;
    for id in &ids {
        assert_eq!(
            span_count(&server, id).await,
            5,
            "trace {} after kill -9",
            hex::encode(id)
        );
    }
    // Now flush some, add more, kill again: flushed data is not replayed twice.
    let stopped = server.stop();
    assert!(stopped.success(), "clean shutdown flushes");
    let server = Server::start(&["server"], dir.path(), &slow);
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    let extra = random_trace_id();
    assert_eq!(
        post_proto(&url, &trace_request("svc-x", extra, 3), None)
            .await
            .status(),
        200
    );
    server.kill9();
    let server = Server::start(&["server"], dir.path(), &slow);
    server.wait_ready().await;
    for id in &ids {
        assert_eq!(span_count(&server, id).await, 5);
    }
    assert_eq!(span_count(&server, &extra).await, 3);
    let (_, services) = get_json(&server.url("/api/v1/services"), None).await;
    assert_eq!(services["services"].as_array().unwrap().len(), 5);
    // The API de-duplicates by span id; the catalog must not need it: after a clean stop
    // every span is in a committed file exactly once.
    assert!(server.stop().success());
    let server = Server::start(&["server"], dir.path(), &slow);
    server.wait_ready().await;
    assert_eq!(
        stored_rows(&server, "traces").await,
        40 * 5 + 3,
        "no duplicates after replay"
    );
}

/// A random duration in `[lo, hi)` milliseconds.
fn jitter(lo: u64, hi: u64) -> Duration {
    let r = u64::from_le_bytes(random_trace_id()[..8].try_into().unwrap());
    Duration::from_millis(lo + r % (hi - lo))
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_loop_under_concurrent_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fixed_addrs();
    env.extend([
        ("LOUPE_FLUSH_INTERVAL", "100ms".to_string()),
        ("LOUPE_COMPACTION_INTERVAL", "1s".to_string()),
        ("LOUPE_GC_GRACE", "2s".to_string()),
        ("LOUPE_CATALOG_REFRESH_INTERVAL", "500ms".to_string()),
        // A small buffer: under this load exports often wait for a flush to make room, so
        // kills land while some wait (before their WAL append) and others are being answered.
        ("LOUPE_MAX_BUFFER_BYTES", "16KiB".to_string()),
    ]);
    let env = env_refs(&env);
    let server = Server::start(&["server"], dir.path(), &env);
    let otlp = format!("http://{}", server.otlp_http.unwrap());
    let load = Load::start(&[otlp], 16, Duration::from_millis(2));
    let mut server = Some(server);
    let mut waits = 0.0;
    for round in 0..6 {
        // Kill at a random moment: sometimes during replay, mostly under full load.
        let live = if round % 3 == 0 {
            jitter(50, 400)
        } else {
            jitter(700, 2500)
        };
        tokio::time::sleep(live).await;
        if let Some(s) = server.as_ref() {
            waits += metric(s, "loupe_ingest_buffer_waits_total", "")
                .await
                .unwrap_or(0.0);
        }
        server.take().unwrap().kill9();
        tokio::time::sleep(jitter(10, 200)).await;
        server = Some(Server::start(&["server"], dir.path(), &env));
    }
    let server = server.unwrap();
    server.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = load.stop().await;
    let (acked, refused, not_sent, unknown) = tally(&sent);
    eprintln!(
        "kill loop: {acked} acked, {refused} refused, {not_sent} not sent, {unknown} unknown, {waits} buffer waits"
    );
    assert!(acked > 1000, "the load was real: {acked} acknowledged");
    assert!(waits > 0.0, "exports waited for room in the buffer");
    // A clean stop flushes everything; the next start replays nothing twice.
    assert!(server.stop().success());
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    verify_exactly_once(&server, &sent).await;
}

/// Kills the server four times at random moments while `tasks` export, restarting it each
/// time; once the tasks are done, stops it cleanly and starts it again, ready.
async fn kill_while_exporting(
    server: Server,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> Server {
    let mut server = Some(server);
    for _ in 0..4 {
        tokio::time::sleep(jitter(200, 700)).await;
        server.take().unwrap().kill9();
        tokio::time::sleep(jitter(10, 100)).await;
        server = Some(Server::start(&["server"], dir, env));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(server.take().unwrap().stop().success());
    let server = Server::start(&["server"], dir, env);
    server.wait_ready().await;
    server
}

/// Fixed addresses (kept across restarts), flushes every 100 ms and compaction every
/// second: the setting of the exporter kill loops.
fn churn_env() -> Vec<(&'static str, String)> {
    let mut env = fixed_addrs();
    env.push(("LOUPE_FLUSH_INTERVAL", "100ms".to_string()));
    env.push(("LOUPE_COMPACTION_INTERVAL", "1s".to_string()));
    env
}

/// Log exporters under kill -9, with flushes every 100 ms and compaction (which rebuilds the
/// log files' indexes) every second: every acknowledged line is stored once, no line twice,
/// and nothing appears that was not sent; lines are found through the index by their words.
/// Lines are few enough (≤ 1000) for one search to list.
#[tokio::test(flavor = "multi_thread")]
async fn kill_loop_with_log_exporters_loses_and_duplicates_no_line() {
    use std::sync::{Arc, Mutex};
    const TASKS: usize = 8;
    const LINES: usize = 110;
    let dir = tempfile::tempdir().unwrap();
    let env = churn_env();
    let env = env_refs(&env);
    let server = Server::start(&["server"], dir.path(), &env);
    let url = server.otlp_url("/v1/logs");
    // (body, outcome): Some(true) acked, Some(false) refused, None unknown (cut off).
    type Outcomes = Vec<(String, Option<bool>)>;
    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (url, outcomes) = (url.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..LINES {
                let body = format!("kill-loop-line-{task}-{n}");
                let export = serde_json::json!({"resourceLogs": [{
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "kl"}}]},
                    "scopeLogs": [{"logRecords": [{"body": {"stringValue": body}}]}]}]});
                let outcome = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(export.to_string())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(r) => Some(r.status().is_success()),
                    Err(_) => None,
                };
                outcomes.lock().unwrap().push((body, outcome));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let server = kill_while_exporting(server, dir.path(), &env, tasks).await;
    // The checks read merged files: compaction (before or after the last kill) rebuilt their
    // indexes. Either a merged file exists already or enough small ones are left to merge.
    let storage =
        loupe_storage::store::Storage::open(&format!("file://{}/objects", dir.path().display()))
            .unwrap();
    let catalog = loupe_storage::catalog::Catalog::new(storage, "kill-loop-check");
    crate::harness::eventually(60, "a merged log file", || async {
        let state = catalog
            .refresh(
                &loupe_storage::TenantId::default_tenant(),
                loupe_storage::Signal::Logs,
            )
            .await
            .ok()?;
        state.files().any(|f| f.level > 0).then_some(())
    })
    .await;
    let (status, found) = get_json(
        &server.url("/api/v1/logs?query=service%3Akl&limit=1000&order=oldest"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let mut stored: Vec<String> = found["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["body"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    let outcomes = outcomes.lock().unwrap().clone();
    let acked: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| *o == Some(true))
        .map(|(b, _)| b)
        .collect();
    eprintln!(
        "log kill loop: {} sent, {} acked, {} stored",
        outcomes.len(),
        acked.len(),
        stored.len()
    );
    assert!(acked.len() > 100, "the load was real");
    let before = stored.len();
    stored.dedup();
    assert_eq!(before, stored.len(), "no line stored twice");
    for b in &acked {
        assert!(stored.binary_search(b).is_ok(), "acknowledged {b} lost");
    }
    // Found by their words through the index of whatever files hold them now.
    for b in acked.iter().step_by(40) {
        let (status, found) = get_json(
            &server.url(&format!("/api/v1/logs?query=service%3Akl+{b}&limit=10")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{found}");
        let bodies: Vec<&str> = found["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["body"].as_str().unwrap())
            .collect();
        assert_eq!(bodies, [b.as_str()], "a search for {b}");
    }
    for s in &stored {
        assert!(
            outcomes.iter().any(|(b, o)| b == s && *o != Some(false)),
            "{s} stored but refused or never sent"
        );
    }
    assert_eq!(
        stored_rows(&server, "logs").await as usize,
        stored.len(),
        "the catalog holds each line once"
    );
}

/// Remote-write exporters under kill -9, with flushes every 100 ms, compaction every second
/// and batches sealed by bytes: every acknowledged sample is stored once, and nothing is stored that was refused
/// or never sent. After each restart the series cache is empty and its order check starts
/// again from the stored data's absence (the first sample of each series is taken).
#[tokio::test(flavor = "multi_thread")]
async fn kill_loop_with_remote_write_exporters_loses_and_duplicates_no_sample() {
    use loupe_collector::prom::wire::{Label, Sample, TimeSeries, WriteRequest};
    use std::sync::{Arc, Mutex};
    const TASKS: usize = 8;
    const SAMPLES: i64 = 110;
    let dir = tempfile::tempdir().unwrap();
    // A small buffer budget: metric batches seal by bytes (half of it) all the time.
    let mut env = churn_env();
    env.push(("LOUPE_MAX_BUFFER_BYTES", "2KiB".to_string()));
    let env = env_refs(&env);
    let server = Server::start(&["server"], dir.path(), &env);
    let url = server.otlp_url("/prometheus/api/v1/write");
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 300_000;
    // (task, n, outcome): Some(true) acked, Some(false) refused, None unknown (cut off).
    type Outcomes = Vec<(usize, i64, Option<bool>)>;
    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (url, outcomes) = (url.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..SAMPLES {
                let req = WriteRequest {
                    timeseries: vec![TimeSeries {
                        labels: vec![
                            Label {
                                name: "__name__".into(),
                                value: "kl_metric".into(),
                            },
                            Label {
                                name: "task".into(),
                                value: task.to_string(),
                            },
                        ],
                        samples: vec![Sample {
                            value: n as f64,
                            timestamp: base + n * 1000,
                        }],
                        exemplars: vec![],
                    }],
                    metadata: vec![],
                };
                let body = snap::raw::Encoder::new()
                    .compress_vec(&prost::Message::encode_to_vec(&req))
                    .unwrap();
                let outcome = match reqwest::Client::new()
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "snappy")
                    .body(body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(r) => Some(r.status().is_success()),
                    Err(_) => None,
                };
                outcomes.lock().unwrap().push((task, n, outcome));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let server = kill_while_exporting(server, dir.path(), &env, tasks).await;
    // Every raw sample of the series, as a range vector at the end.
    let end = (base + SAMPLES * 1000 + 1000) as f64 / 1000.0;
    let (status, found) = get_json(
        &server.url(&format!(
            "/prometheus/api/v1/query?query=kl_metric%5B10m%5D&time={end}"
        )),
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let mut stored: Vec<(usize, i64)> = Vec::new();
    for s in found["data"]["result"].as_array().unwrap() {
        let task: usize = s["metric"]["task"].as_str().unwrap().parse().unwrap();
        for p in s["values"].as_array().unwrap() {
            let n: i64 = p[1].as_str().unwrap().parse::<f64>().unwrap() as i64;
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            assert_eq!(
                t,
                base + n * 1000,
                "sample {n} of task {task} at its own time"
            );
            stored.push((task, n));
        }
    }
    stored.sort();
    let outcomes = outcomes.lock().unwrap().clone();
    let acked: Vec<(usize, i64)> = outcomes
        .iter()
        .filter(|(_, _, o)| *o == Some(true))
        .map(|(t, n, _)| (*t, *n))
        .collect();
    eprintln!(
        "remote-write kill loop: {} sent, {} acked, {} stored",
        outcomes.len(),
        acked.len(),
        stored.len()
    );
    assert!(acked.len() > 100, "the load was real");
    let before = stored.len();
    stored.dedup();
    assert_eq!(before, stored.len(), "no sample returned twice");
    for a in &acked {
        assert!(
            stored.binary_search(a).is_ok(),
            "acknowledged sample {a:?} lost"
        );
    }
    for s in &stored {
        assert!(
            outcomes
                .iter()
                .any(|(t, n, o)| (*t, *n) == *s && *o != Some(false)),
            "{s:?} stored but refused or never sent"
        );
    }
    // The files hold each sample once (no duplicate rows for queries to hide), once
    // compaction has had its turn.
    crate::harness::eventually(30, "the catalog holding each sample once", || async {
        (stored_rows(&server, "metrics").await as usize == stored.len()).then_some(())
    })
    .await;
}

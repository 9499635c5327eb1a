//! Acknowledged means durable: SIGKILL right after acknowledged exports loses nothing, a
//! restart neither loses nor duplicates spans whether or not they were flushed, and a kill
//! loop under concurrent load, frequent flushes and compaction loses and duplicates nothing.

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

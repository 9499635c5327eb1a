//! Acknowledged means durable: SIGKILL right after acknowledged exports loses nothing, and
//! a restart neither loses nor duplicates spans whether or not they were flushed.

use crate::harness::{Server, get_json};
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
        assert_eq!(
            span_count(&server, id).await,
            5,
            "no duplicates after replay"
        );
    }
    assert_eq!(span_count(&server, &extra).await, 3);
    let (_, services) = get_json(&server.url("/api/v1/services"), None).await;
    assert_eq!(services["services"].as_array().unwrap().len(), 5);
}

//! The demo's services log every request: through an OTLP log SDK (checkout), as JSON lines
//! (cart) and as logfmt lines (inventory) with their context only in the text. Every line
//! carries a trace id, and that trace holds a span of the line's service.

use crate::harness::{Server, eventually, get_json};

#[tokio::test(flavor = "multi_thread")]
async fn demo_logs_of_every_style_lead_to_their_traces() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server", "--demo"], dir.path(), &[]);
    server.wait_ready().await;
    for service in ["checkout", "cart", "inventory"] {
        let line = eventually(30, "a demo log line", || async {
            let (_, b) = get_json(
                &server.url(&format!("/api/v1/logs?limit=1&query=service%3A{service}")),
                None,
            )
            .await;
            b["logs"].as_array()?.first().cloned()
        })
        .await;
        let id = line["traceId"]
            .as_str()
            .unwrap_or_else(|| panic!("{service}: no trace id on {line}"));
        assert_eq!(line["spanId"].as_str().map(str::len), Some(16), "{line}");
        let trace = eventually(15, "the line's trace", || async {
            let (s, b) = get_json(&server.url(&format!("/api/v1/traces/{id}")), None).await;
            (s == 200).then_some(b)
        })
        .await;
        let services: Vec<&str> = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["serviceName"].as_str().unwrap())
            .collect();
        assert!(services.contains(&service), "{service}: {services:?}");
    }
}

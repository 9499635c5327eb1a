//! Live tail (`GET /api/v1/logs/tail`, server-sent events): new matching lines arrive, others
//! do not, from the all-in-one server (at ack) and from a query role apart (once flushed);
//! Loki's tail over a websocket backfills, then follows.

use crate::harness::{EventStream, Server, get_json, post_log_lines};

#[tokio::test(flavor = "multi_thread")]
async fn live_tail_delivers_new_matching_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[("LOUPE_FLUSH_INTERVAL", "1h")]);
    server.wait_ready().await;
    let (status, body) = get_json(&server.url("/api/v1/logs/tail?query=%22open"), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not closed")
    );

    let mut tail =
        EventStream::open(&server.url("/api/v1/logs/tail?query=needle+service%3Atl")).await;
    let logs = server.otlp_url("/v1/logs");
    post_log_lines(&logs, "tl", &["nothing here", "a needle, first"]).await;
    post_log_lines(&logs, "other", &["a needle elsewhere"]).await;
    post_log_lines(&logs, "tl", &["needle again"]).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let (event, line) = tail.next(10).await.expect("tailed line within 10 s");
        assert_eq!(event, "log", "{line}");
        assert_eq!(line["serviceName"], "tl", "{line}");
        got.push(line["body"].as_str().unwrap().to_string());
    }
    assert_eq!(got, vec!["a needle, first", "needle again"]);
    assert!(tail.next(1).await.is_none(), "nothing else matches");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_role_tails_what_the_collector_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let objects = format!("file://{}/shared", dir.path().display());
    let env = [
        ("LOUPE_STORAGE_URL", objects.as_str()),
        ("LOUPE_FLUSH_INTERVAL", "200ms"),
    ];
    let collector = Server::start(&["collector"], &dir.path().join("collector"), &env);
    let query = Server::start(&["query"], &dir.path().join("query"), &env);
    collector.wait_ready().await;
    query.wait_ready().await;
    let mut tail = EventStream::open(&query.url("/api/v1/logs/tail?query=apart")).await;
    // The tail's first catalog poll marks what exists; lines acked after it are new.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    post_log_lines(
        &collector.otlp_url("/v1/logs"),
        "qa",
        &["seen apart", "unseen"],
    )
    .await;
    let (event, line) = tail.next(15).await.expect("tailed line within 15 s");
    assert_eq!(
        (event.as_str(), &line["body"]),
        ("log", &serde_json::json!("seen apart"))
    );
    assert!(tail.next(2).await.is_none(), "nothing else matches");
}

/// The text of the next websocket message, waiting at most `secs`.
async fn next_text<S>(ws: &mut S, secs: u64) -> Option<serde_json::Value>
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(secs), ws.next())
            .await
            .ok()??
            .ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).ok();
        }
    }
}

fn lines_of(msg: &serde_json::Value) -> Vec<String> {
    msg["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .map(|v| v[1].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn loki_tail_over_a_websocket_backfills_then_follows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[("LOUPE_FLUSH_INTERVAL", "1h")]);
    server.wait_ready().await;
    let logs = server.otlp_url("/v1/logs");
    post_log_lines(&logs, "lt", &["wsneedle before the tail", "unrelated"]).await;
    let query: String =
        url::form_urlencoded::byte_serialize(r#"{service_name="lt"} |= "wsneedle""#.as_bytes())
            .collect();
    let url = format!(
        "ws://{}/loki/api/v1/tail?query={query}&limit=10",
        server.http
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket");
    let first = next_text(&mut ws, 10).await.expect("backfill");
    assert_eq!(
        lines_of(&first),
        vec!["wsneedle before the tail"],
        "{first}"
    );
    assert_eq!(first["streams"][0]["stream"]["service_name"], "lt");
    post_log_lines(&logs, "lt", &["no match", "wsneedle after"]).await;
    let next = next_text(&mut ws, 10)
        .await
        .expect("tailed line within 10 s");
    assert_eq!(lines_of(&next), vec!["wsneedle after"], "{next}");
    // A metric query cannot be tailed.
    let bad = format!(
        "ws://{}/loki/api/v1/tail?query={}",
        server.http,
        url::form_urlencoded::byte_serialize(r#"rate({a="b"}[1m])"#.as_bytes()).collect::<String>()
    );
    let err = tokio_tungstenite::connect_async(&bad).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

//! `loupe collector` and `loupe query` run apart on one object store.

use crate::harness::{Server, eventually, get_json};
use crate::otlp::{post_proto, random_trace_id, trace_request};

#[tokio::test(flavor = "multi_thread")]
async fn collector_and_query_run_apart_on_shared_storage() {
    let dir = tempfile::tempdir().unwrap();
    let objects = format!("file://{}/shared", dir.path().display());
    let env = [
        ("LOUPE_STORAGE_URL", objects.as_str()),
        ("LOUPE_CATALOG_REFRESH_INTERVAL", "200ms"),
    ];
    let collector = Server::start(&["collector"], &dir.path().join("collector"), &env);
    let query = Server::start(&["query"], &dir.path().join("query"), &env);
    collector.wait_ready().await;
    query.wait_ready().await;
    assert!(query.otlp_http.is_none(), "the query role does not ingest");
    let (s, _) = get_json(&collector.url("/api/v1/services"), None).await;
    assert_eq!(s, 404, "the collector role serves no query API");

    let id = random_trace_id();
    assert_eq!(
        post_proto(
            &collector.otlp_url("/v1/traces"),
            &trace_request("apart", id, 7),
            None
        )
        .await
        .status(),
        200
    );
    let body = eventually(20, "trace visible to the query role", || async {
        let (s, b) = get_json(
            &query.url(&format!("/jaeger/api/traces/{}", hex::encode(id))),
            None,
        )
        .await;
        (s == 200).then_some(b)
    })
    .await;
    assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), 7);
    // A browser navigation gets the app; an API client asking for an unknown path gets JSON.
    let ui = reqwest::Client::new()
        .get(query.url("/traces"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ui.contains("<div id=\"app\">"), "{ui}");
    let (status, body) = get_json(&query.url("/api/v1/nothing"), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    // The query role serves the Loki API.
    let (status, body) = get_json(&query.url("/loki/api/v1/labels"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    // The query role serves the Tempo API.
    let echo = reqwest::get(query.url("/tempo/api/echo")).await.unwrap();
    assert_eq!(echo.status(), 200);
}

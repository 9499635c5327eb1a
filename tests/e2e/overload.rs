//! Overload: when the unflushed buffer is over budget, ingest answers 503 + Retry-After over
//! HTTP and UNAVAILABLE over gRPC, never drops silently, and what was accepted stays.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::harness::{Server, get_json};
use crate::otlp::{post_proto, random_trace_id, trace_request};

#[tokio::test(flavor = "multi_thread")]
async fn over_budget_ingest_is_refused_with_retry_hints() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny buffer and no flush: the second export finds the buffer full.
    let env = [
        ("LOUPE_MAX_BUFFER_BYTES", "1KiB"),
        ("LOUPE_FLUSH_INTERVAL", "1h"),
    ];
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    let first = random_trace_id();
    assert_eq!(
        post_proto(&url, &trace_request("svc", first, 20), None)
            .await
            .status(),
        200
    );

    let resp = post_proto(&url, &trace_request("svc", random_trace_id(), 2), None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let mut client = TraceServiceClient::connect(format!("http://{}", server.otlp_grpc.unwrap()))
        .await
        .unwrap();
    let err = client
        .export(trace_request("svc", random_trace_id(), 2))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("buffer is full"),
        "{}",
        err.message()
    );

    let (s, body) = get_json(
        &server.url(&format!("/api/v1/traces/{}", hex::encode(first))),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["spans"].as_array().unwrap().len(), 20);
    let (_, metrics) = get_json(&server.url("/metrics"), None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("reason=\"overloaded\"} 1")
    );
}

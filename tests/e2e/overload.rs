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

/// A request body that sends its first half at once and the rest after a pause, so that
/// concurrent requests hold their partial bodies at the same time.
fn slow_body(bytes: Vec<u8>) -> reqwest::Body {
    use futures::StreamExt;
    let half = bytes.len() / 2;
    let (a, b) = (bytes[..half].to_vec(), bytes[half..].to_vec());
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(a)]).chain(futures::stream::once(
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            Ok(b)
        },
    ));
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bytes_in_flight_are_bounded_across_requests() {
    use futures::StreamExt;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    // One request may hold up to 5 × 2 MiB while decoded; twelve concurrent 1.5 MiB bodies
    // hold 12 × 0.75 MiB after their first halves — over the 10 MiB budget.
    let env = [
        ("LOUPE_MAX_REQUEST_BYTES", "2MiB"),
        ("LOUPE_MAX_INFLIGHT_BYTES", "10MiB"),
        ("LOUPE_MAX_BUFFER_BYTES", "256MiB"),
    ];
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    let client = reqwest::Client::new();
    let mut req = trace_request("big", random_trace_id(), 1);
    let pad = "x".repeat(1500 * 1024);
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(crate::otlp::str_kv("pad", &pad));
    let body = req.encode_to_vec();
    let statuses: Vec<(u16, Option<String>)> = futures::stream::iter(0..12)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let resp = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(slow_body(body))
                    .send()
                    .await
                    .expect("post");
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (status, retry)
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refused = statuses.iter().filter(|(s, _)| *s == 503).count();
    assert_eq!(ok + refused, 12, "only 200 and 503: {statuses:?}");
    assert!(
        ok > 0 && refused > 0,
        "some fit, the rest were refused: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|(s, r)| *s == 200 || r.as_deref() == Some("1")),
        "refusals carry Retry-After"
    );
    assert!(
        crate::harness::metric(&server, "loupe_ingest_inflight_refusals_total", "")
            .await
            .unwrap_or(0.0)
            >= refused as f64
    );
    // Nothing stays reserved once the requests are answered.
    assert_eq!(
        crate::harness::metric(&server, "loupe_ingest_inflight_bytes", "").await,
        Some(0.0)
    );
}

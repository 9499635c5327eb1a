//! Every bad input gets the right status and a message saying what is wrong, the server keeps
//! serving, and data accepted earlier stays intact.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

use crate::harness::{Server, get_json};
use crate::otlp::{post_proto, random_trace_id, trace_request};

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn post(
    url: &str,
    ct: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", ct)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.expect("post");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

fn proto_message(body: &[u8]) -> String {
    RpcStatus::decode(body)
        .expect("google.rpc.Status body")
        .message
}

fn json_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("json status body");
    v["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_clear_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["server"],
        dir.path(),
        &[("LOUPE_MAX_REQUEST_BYTES", "256KiB")],
    );
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    let good = random_trace_id();
    assert_eq!(
        post_proto(&url, &trace_request("before", good, 4), None)
            .await
            .status(),
        200
    );

    let (s, ct, body) = post(
        &url,
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!((s, ct.as_str()), (400, "application/x-protobuf"));
    assert!(
        proto_message(&body).contains("invalid OTLP protobuf"),
        "{}",
        proto_message(&body)
    );

    let (s, ct, body) = post(
        &url,
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!((s, ct.as_str()), (400, "application/json"));
    assert!(json_message(&body).contains("invalid OTLP/JSON"));

    let (s, _, body) = post(&url, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(s, 415);
    assert!(json_message(&body).contains("unsupported content-type"));

    let (s, _, body) = post(&url, "application/x-protobuf", None, Vec::new()).await;
    assert_eq!(s, 400);
    assert!(proto_message(&body).contains("empty"));

    let (s, _, body) = post(&url, "application/x-protobuf", None, vec![0u8; 300 * 1024]).await;
    assert_eq!(s, 413);
    assert!(proto_message(&body).contains("exceeds the limit"));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 64 * 1024 * 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 256 * 1024);
    let (s, _, body) = post(&url, "application/x-protobuf", Some("gzip"), bomb).await;
    assert_eq!(s, 413);
    assert!(proto_message(&body).contains("after gzip decompression"));

    let (s, _, body) = post(&url, "application/x-protobuf", Some("br"), vec![1, 2, 3]).await;
    assert_eq!(s, 415);
    assert!(proto_message(&body).contains("content-encoding"));

    // Invalid ids: the bad spans are rejected through partial success, the good ones kept.
    let mixed_id = random_trace_id();
    let mut req = trace_request("mixed", mixed_id, 4);
    req.resource_spans[0].scope_spans[0].spans[2].span_id = vec![1, 2, 3];
    req.resource_spans[0].scope_spans[0].spans[3].trace_id = vec![9; 5];
    let resp = post_proto(&url, &req, None).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let parsed =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(body)
            .unwrap();
    let partial = parsed.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("span_id must be 8 bytes"),
        "{}",
        partial.error_message
    );

    // Same over OTLP/JSON: zstd-compressed JSON with an end before its start, a span ending in
    // 2262 and one starting in 1970.
    let t = crate::otlp::now_ns() - 5_000_000_000;
    let (t, t1) = (t.to_string(), (t + 1_000_000_000).to_string());
    let json = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": hex::encode(random_trace_id()), "spanId": "0102030405060708", "name": "ok", "kind": 2,
             "startTimeUnixNano": t, "endTimeUnixNano": t1},
            {"traceId": hex::encode(random_trace_id()), "spanId": "0102030405060709", "name": "backwards",
             "startTimeUnixNano": t1, "endTimeUnixNano": t},
            {"traceId": hex::encode(random_trace_id()), "spanId": "010203040506070a", "name": "far future",
             "startTimeUnixNano": t, "endTimeUnixNano": "9223372036854775807"},
            {"traceId": hex::encode(random_trace_id()), "spanId": "010203040506070b", "name": "epoch",
             "startTimeUnixNano": "1", "endTimeUnixNano": t}]}]}]});
    let z = zstd::encode_all(&serde_json::to_vec(&json).unwrap()[..], 3).unwrap();
    let (s, _, body) = post(&url, "application/json", Some("zstd"), z).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "3");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(msg.contains("before start"), "{msg}");
    assert!(msg.contains("LOUPE_MAX_FUTURE_SKEW"), "{msg}");
    assert!(msg.contains("older than the retention window"), "{msg}");

    // gRPC: over-limit → RESOURCE_EXHAUSTED, invalid ids → partial success.
    let mut client = TraceServiceClient::connect(format!("http://{}", server.otlp_grpc.unwrap()))
        .await
        .unwrap();
    let mut big = trace_request("big", random_trace_id(), 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(300 * 1024);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let mut req = trace_request("grpc-mixed", random_trace_id(), 3);
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![];
    let resp = client.export(req).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

    // Still serving, earlier data intact, the valid half of the mixed request kept.
    let (s, _) = get_json(&server.url("/healthz"), None).await;
    assert_eq!(s, 200);
    let (s, body) = get_json(
        &server.url(&format!("/api/v1/traces/{}", hex::encode(good))),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["spans"].as_array().unwrap().len(), 4);
    let (_, body) = get_json(
        &server.url(&format!("/api/v1/traces/{}", hex::encode(mixed_id))),
        None,
    )
    .await;
    assert_eq!(body["spans"].as_array().unwrap().len(), 2);

    // Query-side bad inputs.
    let (s, body) = get_json(&server.url("/api/v1/traces/not-hex"), None).await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid trace id")
    );
    let (s, _) = get_json(
        &server.url(&format!(
            "/api/v1/traces/{}",
            hex::encode(random_trace_id())
        )),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, body) = get_json(&server.url("/api/v1/traces?minDuration=fast"), None).await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid duration")
    );
    let (s, body) = get_json(&server.url("/jaeger/api/traces?service=a&start=soon"), None).await;
    assert_eq!(s, 400);
    assert!(
        body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("invalid start"),
        "{body}"
    );
    // A synthetic tag with another value is an ordinary tag, as in Jaeger: no match, no error.
    let (s, body) = get_json(
        &server.url("/jaeger/api/traces?service=a&tags=span.kind%3Dsideways"),
        None,
    )
    .await;
    assert_eq!((s, &body["data"]), (200, &serde_json::json!([])), "{body}");
    // Jaeger answers a multi-id lookup with what it found and lists the missing ids.
    let missing = hex::encode(random_trace_id());
    let (s, body) = get_json(
        &server.url(&format!("/jaeger/api/traces?traceID={missing}")),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"], serde_json::json!([]));
    assert_eq!(body["errors"][0]["traceID"], missing.as_str());
    assert_eq!(body["errors"][0]["msg"], "trace not found");

    let (_, metrics) = get_json(&server.url("/metrics"), None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(
            "loupe_ingest_rejected_requests_total{protocol=\"http\",reason=\"too_large\"} 2"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("loupe_ingest_rejected_spans_total"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_log_inputs_get_clear_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["server"],
        dir.path(),
        &[("LOUPE_MAX_LOG_LINE_BYTES", "1KiB")],
    );
    server.wait_ready().await;
    let url = server.otlp_url("/v1/logs");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let export = |bodies: &[String]| {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .map(|b| serde_json::json!({"timeUnixNano": now.to_string(), "body": {"stringValue": b}}))
            .collect();
        serde_json::to_vec(&serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bad"}}]},
            "scopeLogs": [{"logRecords": records}]}]}))
        .unwrap()
    };
    // One huge line among good ones: refused with the reason, the others kept.
    let body = export(&["kept one".into(), "x".repeat(2000), "kept two".into()]);
    let (s, _, resp) = post(&url, "application/json", None, body).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1", "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("log body of 2000 bytes exceeds the limit of 1024 bytes"),
        "{msg}"
    );
    // Malformed bodies: 400 with what is wrong, in the request's encoding.
    let (s, _, resp) = post(
        &url,
        "application/json",
        None,
        b"{\"resourceLogs\": 5}".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(json_message(&resp).contains("invalid OTLP/JSON ExportLogsServiceRequest"));
    let (s, _, resp) = post(
        &url,
        "application/x-protobuf",
        None,
        b"\x0a\xff\xff".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(proto_message(&resp).contains("invalid OTLP protobuf ExportLogsServiceRequest"));
    // Invalid UTF-8 in a protobuf string field is malformed protobuf (OTLP strings are UTF-8).
    let mut bad_utf8 = Vec::new();
    // ResourceLogs{ ScopeLogs{ LogRecord{ severity_text: 0xff } } }
    let record = [0x1a, 0x01, 0xff];
    let scope = [&[0x12, record.len() as u8][..], &record].concat();
    let resource = [&[0x12, scope.len() as u8][..], &scope].concat();
    bad_utf8.extend([0x0a, resource.len() as u8]);
    bad_utf8.extend(resource);
    let (s, _, resp) = post(&url, "application/x-protobuf", None, bad_utf8).await;
    assert_eq!(s, 400);
    assert!(
        proto_message(&resp).contains("invalid OTLP protobuf"),
        "{}",
        proto_message(&resp)
    );
    // Bad search syntax: 400 naming it.
    let (s, body) = get_json(&server.url("/api/v1/logs?query=severity%3Aloud"), None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.to_string().contains("unknown severity"), "{body}");
    let (s, body) = get_json(&server.url("/api/v1/logs?query=(a+OR+b"), None).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.to_string().contains("parenthesis is not closed"),
        "{body}"
    );
    // LogQL: bad syntax, what Loupe does not evaluate, and expressions too large to compile
    // answer 400 in plain text naming the problem. A pathological expression for a
    // backtracking engine runs in linear time here, and answers.
    let loki = |q: &str| {
        server.url(&format!(
            "/loki/api/v1/query_range?query={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        ))
    };
    for (q, want) in [
        (
            r#"{service_name="bad"} |= "x" |"#,
            "parse error at line 1, col 30: syntax error: unexpected end of input",
        ),
        (
            r#"sum(rate({service_name="bad"}[1m])) > 1"#,
            "unsupported LogQL: comparisons",
        ),
        (
            r#"{service_name="bad"} |> "<_> x""#,
            "unsupported LogQL: pattern line filters",
        ),
        (r#"{service_name=~"(x{1000}){1000}"}"#, "exceeds size limit"),
        (
            r#"{service_name="bad"} | line_format "{{ if .a }}""#,
            "unsupported template",
        ),
    ] {
        let resp = reqwest::get(loki(q)).await.unwrap();
        assert_eq!(resp.status(), 400, "{q}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(want), "{q}: {text}");
    }
    let (s, body) = get_json(
        &loki(r#"{service_name="bad"} |~ "(k+)+e+p+t+ (o+)+n+e+$""#),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["data"]["result"][0]["values"][0][1], "kept one",
        "{body}"
    );
    // What was accepted is all there.
    let (s, body) = get_json(&server.url("/api/v1/logs?query=service%3Abad"), None).await;
    assert_eq!(s, 200);
    let mut lines: Vec<&str> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["body"].as_str().unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, ["kept one", "kept two"]);
}

//! Building OTLP trace requests for tests.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn random_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let t = now_ns() as u128 ^ (std::process::id() as u128) << 64;
    let r = t.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
        ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
    id.copy_from_slice(&r.to_be_bytes());
    id
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn str_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A trace of `n` spans (a root and children) from `service`.
pub fn trace_request(service: &str, trace_id: [u8; 16], n: usize) -> ExportTraceServiceRequest {
    let start = now_ns() - 1_000_000_000;
    let spans = (0..n)
        .map(|i| Span {
            trace_id: trace_id.to_vec(),
            span_id: ((i as u64 + 1) | 0x0100_0000_0000_0000)
                .to_be_bytes()
                .to_vec(),
            parent_span_id: if i == 0 {
                vec![]
            } else {
                0x0100_0000_0000_0001u64.to_be_bytes().to_vec()
            },
            name: if i == 0 {
                "GET /root".into()
            } else {
                format!("child-{i}")
            },
            kind: 2,
            start_time_unix_nano: start + i as u64 * 1000,
            end_time_unix_nano: start + 5_000_000 + i as u64 * 1000,
            attributes: vec![str_kv("test.marker", "e2e")],
            status: (i == 1).then(|| Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![str_kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub async fn post_proto(
    url: &str,
    req: &ExportTraceServiceRequest,
    token: Option<&str>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("post")
}

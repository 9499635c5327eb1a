//! The wire fast path against the general path (prost decoding + conversion): the same rows
//! for every request the fast path takes, and the general path for every one it leaves.

use bytes::Bytes;
use loupe_storage::spans::SpanRows;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue as Array, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::wire::rows_from_wire;
use super::{Encoding, TimeWindow, to_span_records};
use crate::traces::decode_request;

const T0: u64 = 1_700_000_000_000_000_000;

fn kv(k: &str, v: Option<any_value::Value>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.map(|v| AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(v.into()))
}

fn i(v: i64) -> Option<any_value::Value> {
    Some(any_value::Value::IntValue(v))
}

/// Every kind of value, nesting, duplicate and mistyped promoted keys.
fn odd_attributes(n: u8) -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        kv("http.route", s(&format!("/r/{n}"))),
        kv("http.request.method", i(7)), // promoted string key, int value
        kv("http.response.status_code", s("200")), // promoted int key, string value
        kv("http.response.status_code", i(503)),
        kv("flag", Some(BoolValue(n.is_multiple_of(2)))),
        kv("ratio", Some(DoubleValue(0.25))),
        kv("nan", Some(DoubleValue(f64::NAN))),
        kv("inf", Some(DoubleValue(f64::NEG_INFINITY))),
        kv("raw", Some(BytesValue(vec![0, 159, 255]))),
        kv(
            "list",
            Some(ArrayValue(Array {
                values: vec![
                    AnyValue { value: s("a") },
                    AnyValue { value: i(-3) },
                    AnyValue { value: None },
                    AnyValue {
                        value: Some(ArrayValue(Array {
                            values: vec![AnyValue { value: s("deep") }],
                        })),
                    },
                ],
            })),
        ),
        kv(
            "map",
            Some(KvlistValue(KeyValueList {
                values: vec![kv("inner", s("x")), kv("empty", None)],
            })),
        ),
        kv("missing", None),
        KeyValue {
            key: "empty.any".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
        kv("unicode \"quoted\" \\ ключ", s("значение\n\t")),
        kv("flag", s("again")), // duplicate key
    ]
}

fn span(trace: u8, id: u8, parent: Option<u8>, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        trace_state: if id.is_multiple_of(3) {
            "k=v".into()
        } else {
            String::new()
        },
        name: format!("op {id}"),
        kind: (id % 7) as i32, // 6 is out of range
        start_time_unix_nano: T0 + id as u64,
        end_time_unix_nano: T0 + id as u64 * 10,
        attributes: attrs,
        events: (0..id % 3)
            .map(|e| Event {
                time_unix_nano: T0 + e as u64,
                name: format!("event {e}"),
                attributes: vec![kv("exception.type", s("E")), kv("n", i(e as i64))],
                ..Default::default()
            })
            .collect(),
        links: vec![
            Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                trace_state: "t=1".into(),
                attributes: vec![kv("link.kind", s("follows"))],
                ..Default::default()
            },
            // Wrong widths: dropped on both paths.
            Link {
                trace_id: vec![9; 3],
                span_id: vec![8; 8],
                ..Default::default()
            },
        ]
        .into_iter()
        .take((id % 2) as usize * 2)
        .collect(),
        status: (!id.is_multiple_of(4)).then(|| Status {
            message: if id % 4 == 2 {
                "card declined".into()
            } else {
                String::new()
            },
            code: (id % 4) as i32,
        }),
        flags: 0x100,
        ..Default::default()
    }
}

fn odd_request() -> ExportTraceServiceRequest {
    let resource = |attrs: Vec<KeyValue>| {
        Some(Resource {
            attributes: attrs,
            ..Default::default()
        })
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(vec![
                    kv("service.name", s("checkout")),
                    kv("k8s.pod.name", s("checkout-1")),
                    kv("k8s.namespace.name", i(3)), // promoted, mistyped
                    kv("host.name", s("node-1")),
                    kv("service.name", s("checkout-2")), // the last one counts
                ]),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            version: "1.2".into(),
                            attributes: vec![kv("scope.attr", s("x"))],
                            ..Default::default()
                        }),
                        spans: (1..=6)
                            .map(|n| span(1, n, Some(1), odd_attributes(n)))
                            .collect(),
                        ..Default::default()
                    },
                    ScopeSpans {
                        scope: None,
                        spans: vec![span(2, 9, None, vec![])],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            // No resource; a non-string service name; an empty one; a resource without spans.
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(3, 10, None, vec![kv("a", s("b"))])],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource(vec![kv("service.name", i(5)), kv("r", s("1"))]),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(4, 11, None, vec![])],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource(vec![kv("service.name", s("")), kv("only.unused", s("1"))]),
                scope_spans: vec![],
                ..Default::default()
            },
        ],
    }
}

/// The general path's rows for an export.
fn general(bytes: &[u8]) -> SpanRows {
    let req = ExportTraceServiceRequest::decode(bytes).unwrap();
    SpanRows::from_records(&to_span_records(req)).unwrap()
}

fn assert_same_rows(bytes: &[u8]) {
    let (fast, spans) = rows_from_wire(bytes, &TimeWindow::unbounded()).expect("fast path");
    let slow = general(bytes);
    assert_eq!(spans as usize, slow.batch().num_rows());
    assert_eq!(fast.json_keys(), slow.json_keys());
    assert_eq!(fast.batch(), slow.batch());
    assert_eq!(
        format!("{:?}", fast.records().unwrap()),
        format!("{:?}", slow.records().unwrap())
    );
}

#[test]
fn the_fast_path_builds_the_rows_of_the_general_path() {
    assert_same_rows(&odd_request().encode_to_vec());
}

#[test]
fn random_exports_build_the_same_rows_on_both_paths() {
    let mut rng = StdRng::seed_from_u64(7);
    let keys = [
        "http.route",
        "db.system",
        "x",
        "http.response.status_code",
        "k8s.pod.name",
    ];
    for _ in 0..200 {
        let mut req = ExportTraceServiceRequest::default();
        for r in 0..rng.random_range(0..3) {
            let attrs = (0..rng.random_range(0..4))
                .map(|_| {
                    let k = keys[rng.random_range(0..keys.len())];
                    match rng.random_range(0..3) {
                        0 => kv(k, s(&format!("v{}", rng.random_range(0..3)))),
                        1 => kv(k, i(rng.random_range(-5..5))),
                        _ => kv(k, None),
                    }
                })
                .chain([kv("service.name", s(&format!("svc{r}")))])
                .collect();
            let spans = (0..rng.random_range(0..5))
                .map(|n| {
                    let attrs = (0..rng.random_range(0..5))
                        .map(|_| {
                            let k = keys[rng.random_range(0..keys.len())];
                            if rng.random_bool(0.5) {
                                kv(k, s("v"))
                            } else {
                                kv(k, i(1))
                            }
                        })
                        .collect();
                    span(rng.random_range(1..9), n + 1, None, attrs)
                })
                .collect();
            req.resource_spans.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let bytes = req.encode_to_vec();
        if !bytes.is_empty() {
            assert_same_rows(&bytes);
        }
    }
}

#[test]
fn unknown_fields_are_skipped() {
    let mut bytes = odd_request().encode_to_vec();
    // Field 99, varint 1; field 98, length-delimited "ab".
    bytes.extend([0x98, 0x06, 0x01, 0x92, 0x06, 0x02, b'a', b'b']);
    assert_same_rows(&bytes);
}

#[test]
fn what_the_fast_path_leaves_gets_the_general_paths_answer() {
    let window = TimeWindow::unbounded();
    let good = odd_request().encode_to_vec();
    // Empty, truncated, and a string that is not UTF-8: errors from the general path.
    for bad in [Vec::new(), good[..good.len() - 3].to_vec(), {
        let mut req = odd_request();
        req.resource_spans[0].scope_spans[0].spans[0].name = "x".into();
        let mut b = req.encode_to_vec();
        let at = b.windows(3).position(|w| w == [0x2a, 0x01, b'x']).unwrap();
        b[at + 2] = 0xff;
        b
    }] {
        assert!(rows_from_wire(&bad, &window).is_none());
        let err = decode_request(Bytes::from(bad), Encoding::Protobuf, window);
        assert!(err.is_err());
    }
    // One invalid span among valid ones: partial success, the rest kept.
    let mut req = odd_request();
    req.resource_spans[0].scope_spans[0].spans[2].span_id = vec![0; 8];
    let bytes = req.encode_to_vec();
    assert!(rows_from_wire(&bytes, &window).is_none());
    let decoded = decode_request(Bytes::from(bytes), Encoding::Protobuf, window).unwrap();
    assert_eq!(decoded.validated.rejected, 1);
    assert_eq!(decoded.validated.accepted, 8);
    assert!(
        decoded
            .validated
            .message
            .contains("span_id must not be all zeros")
    );
    // A span outside the time window.
    let narrow = TimeWindow {
        oldest_unix_nano: T0 + 5,
        newest_unix_nano: u64::MAX,
    };
    assert!(rows_from_wire(&good, &narrow).is_none());
    // A resource sent twice (prost merges them): the general path.
    let mut twice = Vec::new();
    let rs = ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s("a"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![span(1, 1, None, vec![])],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut inner = rs.encode_to_vec();
    inner.push(0x0a); // field 1 (resource), length-delimited
    inner.extend(
        Resource {
            attributes: vec![kv("extra", s("b"))],
            ..Default::default()
        }
        .encode_length_delimited_to_vec(),
    );
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut twice);
    prost::encoding::encode_varint(inner.len() as u64, &mut twice);
    twice.extend(inner);
    assert!(rows_from_wire(&twice, &window).is_none());
    let rows = decode_request(Bytes::from(twice), Encoding::Protobuf, window).unwrap();
    assert_eq!(rows.validated.accepted, 1);
}

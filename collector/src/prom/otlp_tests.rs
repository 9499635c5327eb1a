use super::*;
use crate::prom::wire::WriteRequest;
use loupe_storage::metrics::model::STALE_NAN_BITS;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point,
};
use prost::Message;

/// Converts with a fresh cache and no time limits; the rows as the WAL would hold them.
fn run(
    req: ExportMetricsServiceRequest,
    tenant: &TenantId,
    deltas: &Deltas,
) -> (WriteRequest, u64, String, Applied) {
    let cache = SeriesCache::new(1000);
    let cx = Context {
        tenant,
        deltas,
        cache: &cache,
        window: TimeWindow::unbounded(),
    };
    let (rows, problems, applied, _) = convert(&req.encode_to_vec(), cx).unwrap();
    let w = WriteRequest::decode(&crate::prom::wire::encode_rows(&rows)[..]).unwrap();
    (w, problems.rejected, problems.message(), applied)
}
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "cart"),
                    s("service.namespace", "shop"),
                    s("service.instance.id", "pod-1"),
                    s("k8s.pod.name", "cart-7d9"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "app".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn point(t: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn sum(
    name: &str,
    unit: &str,
    monotonic: bool,
    delta: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: "d".into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: if delta {
                AggregationTemporality::Delta as i32
            } else {
                AggregationTemporality::Cumulative as i32
            },
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

fn texts(w: &WriteRequest) -> Vec<String> {
    w.timeseries
        .iter()
        .flat_map(|ts| {
            let l = Labels::new(
                ts.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
            );
            ts.samples
                .iter()
                .map(move |s| format!("{l} {} @{}", s.value, s.timestamp))
        })
        .collect()
}

const MS: u64 = 1_000_000;

#[test]
fn sums_gauges_and_resources_become_prometheus_series() {
    let tenant = TenantId::new("t").unwrap();
    let deltas = Deltas::default();
    let req = request(vec![
        sum(
            "http.requests",
            "{request}",
            true,
            false,
            vec![point(1000 * MS, 5.0, vec![s("http.route", "/a")])],
        ),
        sum(
            "queue.depth",
            "",
            false,
            false,
            vec![point(1000 * MS, 3.0, vec![])],
        ),
        Metric {
            name: "temp".into(),
            unit: "Cel".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    flags: 1, // no recorded value
                    ..point(2000 * MS, 0.0, vec![])
                }],
            })),
            ..Default::default()
        },
    ]);
    let (w, rejected, _, _) = run(req, &tenant, &deltas);
    assert_eq!(rejected, 0);
    let t = texts(&w);
    let scope = "instance=\"pod-1\", job=\"shop/cart\", otel_scope_name=\"app\", otel_scope_version=\"1.2\"";
    assert_eq!(
        t[0],
        format!("http_requests_total{{http_route=\"/a\", {scope}}} 5 @1000")
    );
    assert_eq!(t[1], format!("queue_depth{{{scope}}} 3 @1000"));
    assert!(t[2].starts_with(&format!("temp_celsius{{{scope}}} NaN @2000")));
    let stale = &w.timeseries[2].samples[0];
    assert_eq!(stale.value.to_bits(), STALE_NAN_BITS);
    assert_eq!(
        t[3],
        "target_info{instance=\"pod-1\", job=\"shop/cart\", k8s_pod_name=\"cart-7d9\"} 1 @2000"
    );
    let kinds: Vec<(String, i32)> = w
        .metadata
        .iter()
        .map(|m| (m.metric_family_name.clone(), m.r#type))
        .collect();
    assert!(kinds.contains(&("http_requests_total".into(), 1)));
    assert!(kinds.contains(&("queue_depth".into(), 2)));
}

#[test]
fn deltas_accumulate_per_series_and_undo_takes_them_back() {
    let tenant = TenantId::new("t").unwrap();
    let deltas = Deltas::default();
    let m = |t: u64, v: f64| {
        request(vec![sum(
            "jobs",
            "",
            true,
            true,
            vec![point(t * MS, v, vec![])],
        )])
    };
    let (w, _, _, _) = run(m(1000, 2.0), &tenant, &deltas);
    assert_eq!(w.timeseries[0].samples[0].value, 2.0);
    let (w, _, _, applied) = run(m(2000, 3.0), &tenant, &deltas);
    assert_eq!(w.timeseries[0].samples[0].value, 5.0);
    deltas.undo(applied);
    let (w, _, _, _) = run(m(2000, 3.0), &tenant, &deltas);
    assert_eq!(
        w.timeseries[0].samples[0].value, 5.0,
        "the retried export counts once"
    );
    let other = TenantId::new("u").unwrap();
    let (w, _, _, _) = run(m(2000, 1.0), &other, &deltas);
    assert_eq!(
        w.timeseries[0].samples[0].value, 1.0,
        "tenants keep their own totals"
    );
}

#[test]
fn histograms_summaries_and_exponential_histograms_become_buckets() {
    let tenant = TenantId::new("t").unwrap();
    let deltas = Deltas::default();
    let req = request(vec![
        Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        time_unix_nano: 1000 * MS,
                        count: 6,
                        sum: Some(1.5),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![0.1, 0.5],
                        ..Default::default()
                    },
                    HistogramDataPoint {
                        time_unix_nano: 1000 * MS,
                        count: 1,
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![0.1, 0.5],
                        ..Default::default()
                    },
                ],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.latency".into(),
            unit: "ms".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: 1000 * MS,
                    count: 4,
                    sum: 10.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.99,
                        value: 7.0,
                    }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
        Metric {
            name: "size".into(),
            unit: "By".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: 1000 * MS,
                    count: 5,
                    sum: Some(20.0),
                    scale: 0,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![3, 1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ]);
    let (w, rejected, problems, _) = run(req, &tenant, &deltas);
    assert_eq!(rejected, 1);
    assert!(
        problems.contains("2 bucket counts for 2 bounds"),
        "{problems:?}"
    );
    let resource = ["instance", "job", "otel_scope_name", "otel_scope_version"];
    let t: Vec<String> = w
        .timeseries
        .iter()
        .flat_map(|ts| {
            let own: Vec<String> = ts
                .labels
                .iter()
                .filter(|l| l.name != "__name__" && !resource.contains(&l.name.as_str()))
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
                .unwrap_or_default();
            let head = if own.is_empty() {
                name
            } else {
                format!("{name}{{{}}}", own.join(", "))
            };
            ts.samples
                .iter()
                .map(move |s| format!("{head} {} @{}", s.value, s.timestamp))
        })
        .collect();
    let want = [
        "http_server_request_duration_seconds_bucket{le=\"0.1\"} 1 @1000",
        "http_server_request_duration_seconds_bucket{le=\"0.5\"} 3 @1000",
        "http_server_request_duration_seconds_bucket{le=\"+Inf\"} 6 @1000",
        "http_server_request_duration_seconds_sum 1.5 @1000",
        "http_server_request_duration_seconds_count 6 @1000",
        "rpc_latency_milliseconds{quantile=\"0.99\"} 7 @1000",
        "rpc_latency_milliseconds_sum 10 @1000",
        "rpc_latency_milliseconds_count 4 @1000",
        "size_bytes_bucket{le=\"0\"} 1 @1000",
        "size_bytes_bucket{le=\"4\"} 4 @1000",
        "size_bytes_bucket{le=\"8\"} 5 @1000",
        "size_bytes_bucket{le=\"+Inf\"} 5 @1000",
        "size_bytes_sum 20 @1000",
        "size_bytes_count 5 @1000",
    ];
    for w in want {
        assert!(t.iter().any(|x| x == w), "missing {w} in {t:#?}");
    }
}

#[test]
fn samples_older_than_the_acknowledged_newest_are_refused_and_repeats_are_taken_once() {
    let tenant = TenantId::new("t").unwrap();
    let deltas = Deltas::default();
    let cache = SeriesCache::new(100);
    let cx = || Context {
        tenant: &tenant,
        deltas: &deltas,
        cache: &cache,
        window: TimeWindow::unbounded(),
    };
    let g = |t: u64, v: f64| {
        request(vec![sum(
            "queue.depth",
            "",
            false,
            false,
            vec![point(t * MS, v, vec![])],
        )])
    };
    // Each export also writes the resource's target_info at its time.
    let (rows, p, _, newest) = convert(&g(2000, 5.0).encode_to_vec(), cx()).unwrap();
    assert_eq!((rows.points.len(), p.rejected), (2, 0));
    // Not durable yet: the same sample again is not taken for a repeat.
    let (rows, _, _, _) = convert(&g(2000, 5.0).encode_to_vec(), cx()).unwrap();
    assert_eq!(rows.points.len(), 2);
    cache.advance(&tenant, &newest);
    let (rows, p, _, _) = convert(&g(2000, 5.0).encode_to_vec(), cx()).unwrap();
    assert_eq!(
        (rows.points.len(), p.rejected),
        (0, 0),
        "the same sample again: taken, not stored"
    );
    let (rows, p, _, _) = convert(&g(2000, 6.0).encode_to_vec(), cx()).unwrap();
    assert_eq!((rows.points.len(), p.rejected), (0, 1), "{}", p.message());
    assert!(
        p.message().contains("duplicate sample for timestamp"),
        "{}",
        p.message()
    );
    let (rows, p, _, _) = convert(&g(1000, 1.0).encode_to_vec(), cx()).unwrap();
    assert_eq!((rows.points.len(), p.rejected), (0, 2));
    assert!(
        p.message().contains("out of order sample"),
        "{}",
        p.message()
    );
    let (rows, p, _, _) = convert(&g(3000, 1.0).encode_to_vec(), cx()).unwrap();
    assert_eq!((rows.points.len(), p.rejected), (2, 0));
}

#[test]
fn exemplars_land_on_their_series_and_histogram_bucket_with_trace_ids() {
    use opentelemetry_proto::tonic::metrics::v1::Exemplar as E;
    let tenant = TenantId::new("t").unwrap();
    let deltas = Deltas::default();
    let ex = |v: f64, trace: u8| E {
        time_unix_nano: 999 * MS,
        value: Some(exemplar::Value::AsDouble(v)),
        trace_id: vec![trace; 16],
        span_id: vec![7; 8],
        filtered_attributes: vec![s("user.id", "u1")],
    };
    let mut counter = point(1000 * MS, 3.0, vec![]);
    counter.exemplars = vec![ex(1.0, 0xab)];
    let long = E {
        filtered_attributes: vec![s("stack", &"x".repeat(200))],
        ..ex(1.0, 0xcd)
    };
    counter.exemplars.push(long);
    let req = request(vec![
        sum("jobs", "", true, false, vec![counter]),
        Metric {
            name: "latency".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: 1000 * MS,
                    count: 3,
                    sum: Some(9.0),
                    bucket_counts: vec![1, 1, 1],
                    explicit_bounds: vec![0.1, 0.5],
                    exemplars: vec![ex(0.05, 1), ex(0.5, 2), ex(7.0, 3)],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ]);
    let (w, rejected, message, _) = run(req, &tenant, &deltas);
    assert_eq!(rejected, 0, "exemplars are not points: {message}");
    assert!(
        message.contains("exemplar of jobs_total") && message.contains("over Prometheus's limit"),
        "{message}"
    );
    let mut got: Vec<String> = w
        .timeseries
        .iter()
        .flat_map(|ts| {
            let series = Labels::new(
                ts.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
            );
            let le = series.get("le").unwrap_or("-").to_string();
            let name = series.name().to_string();
            ts.exemplars.iter().map(move |e| {
                let l: Vec<String> = e
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, &l.value[..l.value.len().min(4)]))
                    .collect();
                format!(
                    "{name} le={le} {} @{} {}",
                    e.value,
                    e.timestamp,
                    l.join(",")
                )
            })
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "jobs_total le=- 1 @999 span_id=0707,trace_id=abab,user_id=u1",
            "latency_seconds_bucket le=+Inf 7 @999 span_id=0707,trace_id=0303,user_id=u1",
            "latency_seconds_bucket le=0.1 0.05 @999 span_id=0707,trace_id=0101,user_id=u1",
            "latency_seconds_bucket le=0.5 0.5 @999 span_id=0707,trace_id=0202,user_id=u1",
        ]
    );
}

/// A length-delimited field `tag` holding `body`.
fn wrap(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::bytes::encode(tag, &body.to_vec(), &mut out);
    out
}

#[test]
fn the_in_place_reader_reads_what_prost_reads_and_refuses_what_it_cannot() {
    use prost::encoding::{double, fixed64, message};
    let tenant = TenantId::new("t").unwrap();
    let deltas = Deltas::default();
    // A delta histogram point written unusually: attributes apart from each other, counts
    // and bounds one field each (not packed).
    let mut p = Vec::new();
    message::encode(9, &s("http.route", "/a"), &mut p);
    fixed64::encode(3, &(1000 * MS), &mut p);
    message::encode(9, &s("http.method", "GET"), &mut p);
    fixed64::encode(4, &3, &mut p);
    for c in [1u64, 2] {
        fixed64::encode(6, &c, &mut p);
    }
    double::encode(7, &0.5, &mut p);
    double::encode(5, &1.25, &mut p);
    let mut hist = wrap(1, &p);
    prost::encoding::int32::encode(2, &(AggregationTemporality::Delta as i32), &mut hist);
    let mut metric = wrap(1, b"latency");
    metric.extend(wrap(3, b"s"));
    metric.extend(wrap(9, &hist));
    let mut rm = wrap(
        1,
        &opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: vec![s("service.name", "api")],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    rm.extend(wrap(2, &wrap(2, &metric)));
    let body = wrap(1, &rm);
    let cache = SeriesCache::new(100);
    let (other, third) = (SeriesCache::new(100), SeriesCache::new(100));
    let cx = |cache| Context {
        tenant: &tenant,
        deltas: &deltas,
        cache,
        window: TimeWindow::unbounded(),
    };
    let (direct, problems, applied, _) = convert(&body, cx(&cache)).unwrap();
    assert_eq!(problems.rejected, 0, "{}", problems.message());
    deltas.undo(applied);
    let canonical = ExportMetricsServiceRequest::decode(&body[..])
        .unwrap()
        .encode_to_vec();
    assert_ne!(canonical, body);
    let (via_prost, _, applied, _) = convert(&canonical, cx(&other)).unwrap();
    deltas.undo(applied);
    let text = |rows: &MetricRows| {
        let mut t: Vec<String> = rows
            .points
            .iter()
            .map(|p| format!("{} {}", rows.series[p.series as usize], p.v))
            .collect();
        t.sort();
        t
    };
    assert_eq!(text(&direct), text(&via_prost));
    assert!(
        text(&direct).contains(&"latency_seconds_bucket{http_method=\"GET\", http_route=\"/a\", job=\"api\", le=\"0.5\"} 1".to_string()),
        "{:?}",
        text(&direct)
    );
    // Truncated: refused, and the deltas it added taken back.
    assert!(convert(&body[..body.len() - 3], cx(&cache)).is_err());
    let (again, _, _, _) = convert(&body, cx(&third)).unwrap();
    assert_eq!(text(&again), text(&direct), "nothing counted twice");
}

#[test]
fn malformed_protobuf_gets_prosts_reason_and_a_valid_export_decodes_either_way() {
    let tenant = TenantId::new("t").unwrap();
    let params = || crate::prom::MetricParams {
        window: TimeWindow::unbounded(),
        tenant: tenant.clone(),
        deltas: Arc::new(Deltas::default()),
        cache: Arc::new(SeriesCache::new(100)),
    };
    let body = request(vec![sum(
        "jobs",
        "",
        true,
        false,
        vec![point(MS, 1.0, vec![])],
    )])
    .encode_to_vec();
    let cut = bytes::Bytes::copy_from_slice(&body[..body.len() - 2]);
    let Err(e) = crate::prom::decode_otlp(cut, crate::otlp::Encoding::Protobuf, params()) else {
        panic!("a truncated export was accepted");
    };
    assert!(
        e.to_string()
            .contains("invalid OTLP protobuf ExportMetricsServiceRequest"),
        "{e}"
    );
    let ok = crate::prom::decode_otlp(body.into(), crate::otlp::Encoding::Protobuf, params())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.decoded.validated.accepted, 2,
        "the point and target_info"
    );
}

//! The demo services' metrics, as an OpenTelemetry SDK's HTTP server instrumentation records
//! them: `http.server.request.duration` (a histogram in seconds with the semantic
//! conventions' bucket bounds, by method, route and status code), cumulative from the
//! service's start, exported over OTLP/HTTP every few seconds next to its traces and logs.
//! In Prometheus terms: `http_server_request_duration_seconds_bucket/_sum/_count{job="shop/<service>"}`.
//! Like an SDK's aligned-bucket exemplar reservoir, each export carries the last request of
//! every bucket since the previous export as an exemplar with its trace and span id.

use std::collections::HashMap;
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics, exemplar, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The semantic conventions' advised bounds for `http.server.request.duration`.
const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Clone)]
struct Hist {
    counts: [u64; BOUNDS.len() + 1],
    sum: f64,
    /// Per bucket, the last request since the last export.
    exemplars: [Option<Exemplar>; BOUNDS.len() + 1],
}

/// One service's request durations since it started.
pub struct Recorder {
    start_ns: u64,
    hists: Mutex<HashMap<(String, &'static str, u16), Hist>>,
}

impl Recorder {
    pub fn new(start_ns: u64) -> Self {
        Recorder {
            start_ns,
            hists: Mutex::new(HashMap::new()),
        }
    }

    /// One request, made in the span `span` of the trace `trace`, ended at `now_ns`.
    pub fn record(
        &self,
        method: &str,
        route: &'static str,
        code: u16,
        seconds: f64,
        (trace, span, now_ns): ([u8; 16], [u8; 8], u64),
    ) {
        let Ok(mut h) = self.hists.lock() else { return };
        let e = h.entry((method.to_string(), route, code)).or_insert(Hist {
            counts: [0; BOUNDS.len() + 1],
            sum: 0.0,
            exemplars: Default::default(),
        });
        let b = BOUNDS
            .iter()
            .position(|&u| seconds <= u)
            .unwrap_or(BOUNDS.len());
        e.counts[b] += 1;
        e.sum += seconds;
        e.exemplars[b] = Some(Exemplar {
            time_unix_nano: now_ns,
            value: Some(exemplar::Value::AsDouble(seconds)),
            trace_id: trace.to_vec(),
            span_id: span.to_vec(),
            ..Default::default()
        });
    }

    /// The cumulative histogram at `now_ns` (`None` before the first request).
    fn snapshot(&self, now_ns: u64) -> Option<Metric> {
        let mut h = self.hists.lock().ok()?;
        if h.is_empty() {
            return None;
        }
        let s = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let data_points = h
            .iter_mut()
            .map(|((method, route, code), hist)| HistogramDataPoint {
                exemplars: hist.exemplars.iter_mut().filter_map(Option::take).collect(),
                attributes: vec![
                    s(
                        "http.request.method",
                        any_value::Value::StringValue(method.clone()),
                    ),
                    s(
                        "http.route",
                        any_value::Value::StringValue(route.to_string()),
                    ),
                    s(
                        "http.response.status_code",
                        any_value::Value::IntValue(*code as i64),
                    ),
                ],
                start_time_unix_nano: self.start_ns,
                time_unix_nano: now_ns,
                count: hist.counts.iter().sum(),
                sum: Some(hist.sum),
                bucket_counts: hist.counts.to_vec(),
                explicit_bounds: BOUNDS.to_vec(),
                ..Default::default()
            })
            .collect();
        Some(Metric {
            name: "http.server.request.duration".into(),
            description: "Duration of HTTP server requests.".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        })
    }
}

/// Every service's metrics as one export.
pub fn export<'a>(
    parts: impl Iterator<Item = (&'a Recorder, &'a Resource)>,
    now_ns: u64,
) -> Option<ExportMetricsServiceRequest> {
    let resource_metrics: Vec<ResourceMetrics> = parts
        .filter_map(|(r, res)| {
            let m = r.snapshot(now_ns)?;
            Some(ResourceMetrics {
                resource: Some(res.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "loupe-demo".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: vec![m],
                    ..Default::default()
                }],
                ..Default::default()
            })
        })
        .collect();
    (!resource_metrics.is_empty()).then_some(ExportMetricsServiceRequest { resource_metrics })
}

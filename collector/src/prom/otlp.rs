//! OTLP metrics → Prometheus series (the OpenTelemetry specification's Prometheus
//! compatibility rules), into a remote-write [`WriteRequest`] so both protocols share one
//! write-ahead-log payload and one validation:
//!
//! - gauge → the name (with its unit); sum → `_total` when monotonic, else a gauge;
//!   histogram → `_bucket{le}` (cumulative, `+Inf` = count), `_sum`, `_count`; exponential
//!   histogram → the same `_bucket{le}` series with every bucket's upper bound (full
//!   resolution, so `histogram_quantile` works on it); summary → `{quantile}`, `_sum`,
//!   `_count`.
//! - Resource: `service.namespace`/`service.name` → `job`, `service.instance.id` →
//!   `instance`; the other resource attributes go to one `target_info` series per resource.
//!   Scope name and version → `otel_scope_name`, `otel_scope_version`.
//! - Delta temporality is made cumulative by [`Deltas`]: a running total per output series
//!   and tenant, kept in memory. The WAL holds the cumulative values, so replay rebuilds the
//!   same samples; after a restart totals start again from zero, which queries see as a
//!   counter reset (`rate` handles it). An export that fails after conversion takes its
//!   deltas back ([`Deltas::undo`]), so a retry does not count them twice.
//! - A point flagged "no recorded value" becomes a Prometheus stale marker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use loupe_core::TenantId;
use loupe_storage::metrics::Labels;
use loupe_storage::metrics::model::STALE_NAN_BITS;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point,
};

use crate::prom::names::{Kind, float_label, label_name, metric_name};
use crate::prom::wire::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest, type_code};

const NO_RECORDED_VALUE: u32 = 1;
/// Running totals kept before idle ones (an hour without a point) are dropped.
const MAX_DELTA_SERIES: usize = 1 << 20;

/// Running totals of delta series, per tenant and output series.
#[derive(Default)]
pub struct Deltas {
    totals: Mutex<HashMap<(TenantId, Labels), (f64, Instant)>>,
}

/// The deltas one conversion added, to take back if its export fails.
#[derive(Default)]
pub struct Applied(Vec<((TenantId, Labels), f64)>);

impl Deltas {
    fn add(&self, key: (TenantId, Labels), delta: f64, applied: &mut Applied) -> f64 {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        if totals.len() >= MAX_DELTA_SERIES {
            totals.retain(|_, (_, at)| at.elapsed().as_secs() < 3600);
        }
        let e = totals.entry(key.clone()).or_insert((0.0, Instant::now()));
        e.0 += delta;
        e.1 = Instant::now();
        applied.0.push((key, delta));
        e.0
    }

    /// Takes back the deltas of an export that was not accepted.
    pub fn undo(&self, applied: Applied) {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (key, delta) in applied.0 {
            if let Some(e) = totals.get_mut(&key) {
                e.0 -= delta;
            }
        }
    }
}

fn value_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        _ => crate::otlp::convert::any_value(v.clone()).to_filter_string(),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
        .filter(|s| !s.is_empty())
}

/// Labels from attributes (sanitized names; of names that collide, values joined by `;` in
/// key order, as the specification says).
fn attr_labels(attrs: &[KeyValue], out: &mut Vec<(String, String)>) {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut mine: Vec<(String, String)> = Vec::new();
    for kv in sorted {
        let v = kv.value.as_ref().map(value_text).unwrap_or_default();
        let name = label_name(&kv.key);
        match mine.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => {
                old.push(';');
                old.push_str(&v);
            }
            None => mine.push((name, v)),
        }
    }
    out.extend(mine);
}

struct Out<'a> {
    tenant: &'a TenantId,
    deltas: &'a Deltas,
    applied: Applied,
    series: HashMap<Labels, usize>,
    req: WriteRequest,
}

impl Out<'_> {
    fn push(&mut self, labels: Labels, t_nano: u64, v: f64, delta: bool) {
        let v = if delta && !v.is_nan() {
            self.deltas
                .add((self.tenant.clone(), labels.clone()), v, &mut self.applied)
        } else {
            v
        };
        let sample = Sample {
            value: v,
            timestamp: (t_nano / 1_000_000) as i64,
        };
        let i = *self.series.entry(labels.clone()).or_insert_with(|| {
            self.req.timeseries.push(TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.into(),
                        value: v.into(),
                    })
                    .collect(),
                samples: Vec::new(),
                exemplars: Vec::new(),
            });
            self.req.timeseries.len() - 1
        });
        self.req.timeseries[i].samples.push(sample);
    }
}

fn with(base: &[(String, String)], extra: &[(&str, String)]) -> Labels {
    let mut pairs = base.to_vec();
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Labels::new(pairs)
}

fn stale_or(flags: u32, v: f64) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 {
        f64::from_bits(STALE_NAN_BITS)
    } else {
        v
    }
}

/// The cumulative `le` buckets of an exponential histogram: negative buckets, the zero
/// bucket, positive buckets, each with its upper bound.
fn exponential_buckets(
    scale: i32,
    zero_threshold: f64,
    zero_count: u64,
    negative: Option<&Buckets>,
    positive: Option<&Buckets>,
) -> Vec<(f64, u64)> {
    let base = 2f64.powf(2f64.powi(-scale));
    let bound = |index: i64| base.powf(index as f64);
    let mut out = Vec::new();
    let mut total = 0u64;
    if let Some(n) = negative {
        // Bucket i holds [-base^(i+1), -base^i): from the most negative up.
        for (k, c) in n.bucket_counts.iter().enumerate().rev() {
            total += c;
            out.push((-bound(n.offset as i64 + k as i64), total));
        }
    }
    total += zero_count;
    out.push((zero_threshold, total));
    if let Some(p) = positive {
        for (k, c) in p.bucket_counts.iter().enumerate() {
            total += c;
            out.push((bound(p.offset as i64 + k as i64 + 1), total));
        }
    }
    out
}

/// Converts an export; returns the series, problems (points left out) and the deltas applied.
pub fn convert(
    req: ExportMetricsServiceRequest,
    tenant: &TenantId,
    deltas: &Deltas,
) -> (WriteRequest, u64, Vec<String>, Applied) {
    let mut out = Out {
        tenant,
        deltas,
        applied: Applied::default(),
        series: HashMap::new(),
        req: WriteRequest::default(),
    };
    let mut rejected = 0u64;
    let mut problems = Vec::new();
    let mut metadata: HashMap<String, MetricMetadata> = HashMap::new();
    for rm in req.resource_metrics {
        let rattrs = rm.resource.map(|r| r.attributes).unwrap_or_default();
        let service = attr(&rattrs, "service.name").unwrap_or_else(|| "unknown_service".into());
        let job = match attr(&rattrs, "service.namespace") {
            Some(ns) => format!("{ns}/{service}"),
            None => service,
        };
        let instance = attr(&rattrs, "service.instance.id").unwrap_or_default();
        let mut base = vec![("job".to_string(), job), ("instance".to_string(), instance)];
        let info: Vec<KeyValue> = rattrs
            .iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .cloned()
            .collect();
        let mut newest = 0u64;
        for sm in rm.scope_metrics {
            let mut scoped = base.clone();
            if let Some(s) = &sm.scope {
                scoped.push(("otel_scope_name".into(), s.name.clone()));
                scoped.push(("otel_scope_version".into(), s.version.clone()));
            }
            for m in sm.metrics {
                newest = newest.max(convert_metric(
                    m,
                    &scoped,
                    &mut out,
                    &mut rejected,
                    &mut problems,
                    &mut metadata,
                ));
            }
        }
        if !info.is_empty() && newest > 0 {
            let mut labels = Vec::new();
            attr_labels(&info, &mut labels);
            base.retain(|(_, v)| !v.is_empty());
            labels.extend(base);
            labels.push(("__name__".into(), "target_info".into()));
            out.push(Labels::new(labels), newest, 1.0, false);
            metadata.insert(
                "target_info".into(),
                MetricMetadata {
                    r#type: type_code("gauge"),
                    metric_family_name: "target_info".into(),
                    help: "Target metadata".into(),
                    unit: String::new(),
                },
            );
        }
    }
    let mut meta: Vec<MetricMetadata> = metadata.into_values().collect();
    meta.sort_by(|a, b| a.metric_family_name.cmp(&b.metric_family_name));
    out.req.metadata = meta;
    (out.req, rejected, problems, out.applied)
}

/// Converts one metric; returns the newest point time seen (0 if none).
fn convert_metric(
    m: Metric,
    scoped: &[(String, String)],
    out: &mut Out,
    rejected: &mut u64,
    problems: &mut Vec<String>,
    metadata: &mut HashMap<String, MetricMetadata>,
) -> u64 {
    let mut newest = 0;
    let mut meta = |family: &str, kind: &str| {
        metadata.insert(
            family.to_string(),
            MetricMetadata {
                r#type: type_code(kind),
                metric_family_name: family.to_string(),
                help: m.description.clone(),
                unit: m.unit.clone(),
            },
        );
    };
    let named = |extra: &[(&str, String)], attrs: &[KeyValue], name: &str| {
        let mut pairs = scoped.to_vec();
        attr_labels(attrs, &mut pairs);
        pairs.push(("__name__".into(), name.to_string()));
        with(&pairs, extra)
    };
    let delta_of = |t: i32| t == AggregationTemporality::Delta as i32;
    match m.data {
        Some(Data::Gauge(g)) => {
            let name = metric_name(&m.name, &m.unit, Kind::Gauge);
            meta(&name, "gauge");
            for p in g.data_points {
                let Some(v) = number(&p.value) else {
                    *rejected += 1;
                    problems.push(format!("gauge {:?} has a point without a value", m.name));
                    continue;
                };
                newest = newest.max(p.time_unix_nano);
                out.push(
                    named(&[], &p.attributes, &name),
                    p.time_unix_nano,
                    stale_or(p.flags, v),
                    false,
                );
            }
        }
        Some(Data::Sum(s)) => {
            let kind = if s.is_monotonic {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            let name = metric_name(&m.name, &m.unit, kind);
            meta(&name, if s.is_monotonic { "counter" } else { "gauge" });
            let delta = delta_of(s.aggregation_temporality);
            for p in s.data_points {
                let Some(v) = number(&p.value) else {
                    *rejected += 1;
                    problems.push(format!("sum {:?} has a point without a value", m.name));
                    continue;
                };
                newest = newest.max(p.time_unix_nano);
                let v = stale_or(p.flags, v);
                out.push(named(&[], &p.attributes, &name), p.time_unix_nano, v, delta);
            }
        }
        Some(Data::Histogram(h)) => {
            let name = metric_name(&m.name, &m.unit, Kind::Other);
            meta(&name, "histogram");
            let delta = delta_of(h.aggregation_temporality);
            for p in h.data_points {
                if !p.bucket_counts.is_empty()
                    && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                {
                    *rejected += 1;
                    problems.push(format!(
                        "histogram {:?} has {} bucket counts for {} bounds (must be one more)",
                        m.name,
                        p.bucket_counts.len(),
                        p.explicit_bounds.len()
                    ));
                    continue;
                }
                newest = newest.max(p.time_unix_nano);
                let t = p.time_unix_nano;
                let f = |v: f64| stale_or(p.flags, v);
                let mut total = 0u64;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    total += c;
                    let le = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    if le == f64::INFINITY {
                        continue;
                    }
                    let b = named(
                        &[("le", float_label(le))],
                        &p.attributes,
                        &format!("{name}_bucket"),
                    );
                    out.push(b, t, f(total as f64), delta);
                }
                let inf = named(
                    &[("le", "+Inf".into())],
                    &p.attributes,
                    &format!("{name}_bucket"),
                );
                out.push(inf, t, f(p.count as f64), delta);
                if let Some(sum) = p.sum {
                    out.push(
                        named(&[], &p.attributes, &format!("{name}_sum")),
                        t,
                        f(sum),
                        delta,
                    );
                }
                out.push(
                    named(&[], &p.attributes, &format!("{name}_count")),
                    t,
                    f(p.count as f64),
                    delta,
                );
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            let name = metric_name(&m.name, &m.unit, Kind::Other);
            meta(&name, "histogram");
            let delta = delta_of(h.aggregation_temporality);
            for p in h.data_points {
                if !(-10..=20).contains(&p.scale) {
                    *rejected += 1;
                    problems.push(format!(
                        "exponential histogram {:?} has scale {} (must be in [-10, 20])",
                        m.name, p.scale
                    ));
                    continue;
                }
                newest = newest.max(p.time_unix_nano);
                let t = p.time_unix_nano;
                let f = |v: f64| stale_or(p.flags, v);
                for (le, cum) in exponential_buckets(
                    p.scale,
                    p.zero_threshold,
                    p.zero_count,
                    p.negative.as_ref(),
                    p.positive.as_ref(),
                ) {
                    let b = named(
                        &[("le", float_label(le))],
                        &p.attributes,
                        &format!("{name}_bucket"),
                    );
                    out.push(b, t, f(cum as f64), delta);
                }
                let inf = named(
                    &[("le", "+Inf".into())],
                    &p.attributes,
                    &format!("{name}_bucket"),
                );
                out.push(inf, t, f(p.count as f64), delta);
                if let Some(sum) = p.sum {
                    out.push(
                        named(&[], &p.attributes, &format!("{name}_sum")),
                        t,
                        f(sum),
                        delta,
                    );
                }
                out.push(
                    named(&[], &p.attributes, &format!("{name}_count")),
                    t,
                    f(p.count as f64),
                    delta,
                );
            }
        }
        Some(Data::Summary(s)) => {
            let name = metric_name(&m.name, &m.unit, Kind::Other);
            meta(&name, "summary");
            for p in s.data_points {
                newest = newest.max(p.time_unix_nano);
                let t = p.time_unix_nano;
                let f = |v: f64| stale_or(p.flags, v);
                for q in &p.quantile_values {
                    let l = named(
                        &[("quantile", float_label(q.quantile))],
                        &p.attributes,
                        &name,
                    );
                    out.push(l, t, f(q.value), false);
                }
                out.push(
                    named(&[], &p.attributes, &format!("{name}_sum")),
                    t,
                    f(p.sum),
                    false,
                );
                out.push(
                    named(&[], &p.attributes, &format!("{name}_count")),
                    t,
                    f(p.count as f64),
                    false,
                );
            }
        }
        None => {
            *rejected += 1;
            problems.push(format!("metric {:?} has no data", m.name));
        }
    }
    newest
}

fn number(v: &Option<number_data_point::Value>) -> Option<f64> {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;

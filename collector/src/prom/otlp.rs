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
use std::sync::Arc;

use loupe_core::TenantId;
use loupe_storage::metrics::model::{Point, STALE_NAN_BITS};
use loupe_storage::metrics::{Labels, MetricMeta, MetricRows};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, Metric, exemplar,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};

use crate::otlp::TimeWindow;
use crate::prom::cache::SeriesCache;
pub use crate::prom::deltas::{Applied, Deltas};
use crate::prom::names::{Kind, float_label, label_name, metric_name};
use crate::prom::validate::Problems;

const NO_RECORDED_VALUE: u32 = 1;

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
    cache: &'a SeriesCache,
    window: TimeWindow,
    applied: Applied,
    /// Row series by label pointer.
    index: HashMap<*const Labels, u32>,
    /// Per row series: its cache hash and newest sample (acknowledged before, then this
    /// export's).
    newest: Vec<(u64, Option<(i64, u64)>)>,
    rows: MetricRows,
    problems: Problems,
    key: Vec<u8>,
}

impl Out<'_> {
    /// The labels of a point: from the series cache when this combination of scope, name,
    /// extra labels and attributes was seen before, else built, checked against the limit
    /// and remembered. `None` when the tenant's series limit refuses it.
    fn series(
        &mut self,
        scope_key: &[u8],
        scoped: &[(String, String)],
        name: &str,
        extra: &[(&str, String)],
        attrs: &[KeyValue],
    ) -> Option<Resolved> {
        self.key.clear();
        self.key.push(1);
        self.key.extend_from_slice(scope_key);
        self.key.extend_from_slice(name.as_bytes());
        for (k, v) in extra {
            self.key.push(0xfe);
            self.key.extend_from_slice(k.as_bytes());
            self.key.push(0xfd);
            self.key.extend_from_slice(v.as_bytes());
        }
        for kv in attrs {
            self.key.push(0xfc);
            self.key.extend_from_slice(kv.key.as_bytes());
            self.key.push(0xfd);
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => self.key.extend_from_slice(s.as_bytes()),
                Some(_) => self.key.extend_from_slice(
                    value_text(kv.value.as_ref().unwrap_or(&AnyValue::default())).as_bytes(),
                ),
                None => {}
            }
        }
        let hash = twox_hash::XxHash3_64::oneshot(&self.key);
        if let Some(k) = self.cache.get(self.tenant, hash, &self.key) {
            return Some((k.labels, hash, k.last));
        }
        let mut pairs = scoped.to_vec();
        attr_labels(attrs, &mut pairs);
        pairs.push(("__name__".into(), name.to_string()));
        let labels = Arc::new(with(&pairs, extra));
        let key: Box<[u8]> = self.key.clone().into();
        match self
            .cache
            .insert(self.tenant, vec![(hash, key, labels)])
            .pop()
        {
            Some(Ok(l)) => Some((l, hash, None)),
            Some(Err(why)) => {
                self.problems.add(1, || why);
                None
            }
            None => None,
        }
    }

    /// Keeps the exemplars among `exemplars` that `pick` chooses on the point's series.
    fn exemplars(
        &mut self,
        resolved: &Option<Resolved>,
        exemplars: &[OtlpExemplar],
        pick: impl Fn(f64) -> bool,
    ) {
        let Some((labels, hash, last)) = resolved else {
            return;
        };
        for e in exemplars {
            let Some(v) = exemplar_value(e) else {
                continue;
            };
            if !pick(v) {
                continue;
            }
            let pairs = exemplar_labels(e);
            let t = (e.time_unix_nano / 1_000_000) as i64;
            if let Some(why) = crate::prom::validate::exemplar_problem(&pairs)
                .or_else(|| crate::prom::validate::outside(labels, t, &self.window))
            {
                self.problems
                    .drop_exemplar(|| format!("exemplar of {labels} left out: {why}"));
                continue;
            }
            let series = self.row_series(labels, *hash, *last);
            self.rows
                .exemplars
                .push(crate::prom::exemplar(series, &pairs, t, v));
        }
    }

    /// The row series of `labels` (added on first use).
    fn row_series(&mut self, labels: &Arc<Labels>, hash: u64, last: Option<(i64, u64)>) -> u32 {
        let rows = &mut self.rows;
        let newest = &mut self.newest;
        *self.index.entry(Arc::as_ptr(labels)).or_insert_with(|| {
            rows.series.push(labels.clone());
            newest.push((hash, last));
            (rows.series.len() - 1) as u32
        })
    }

    fn push(&mut self, resolved: Option<Resolved>, t_nano: u64, v: f64, delta: bool) {
        let Some((labels, hash, last)) = resolved else {
            return;
        };
        let t = (t_nano / 1_000_000) as i64;
        if let Some(why) = crate::prom::validate::outside(&labels, t, &self.window) {
            self.problems.add(1, || why);
            return;
        }
        let series = self.row_series(&labels, hash, last);
        let prev = self.newest[series as usize].1;
        // A delta point is checked on its time before it is added to the running total; the
        // same delta point again would count twice, so it is a duplicate.
        if delta
            && !v.is_nan()
            && let Some((lt, _)) = prev
            && t <= lt
        {
            let why = if t < lt {
                format!(
                    "out of order sample: {labels} at {t} ms is older than its newest sample at {lt} ms"
                )
            } else {
                format!(
                    "duplicate sample for timestamp: {labels} at {t} ms (a delta point sent twice)"
                )
            };
            self.problems.add(1, || why);
            return;
        }
        let v = if delta && !v.is_nan() {
            self.deltas
                .add((self.tenant.clone(), labels.clone()), v, &mut self.applied)
        } else {
            v
        };
        match crate::prom::in_order(&labels, prev, t, v) {
            Ok(true) => {
                self.rows.points.push(Point { series, t, v });
                self.newest[series as usize].1 = Some((t, v.to_bits()));
            }
            Ok(false) => {}
            Err(why) => self.problems.add(1, || why),
        }
    }
}

fn exemplar_value(e: &OtlpExemplar) -> Option<f64> {
    match e.value {
        Some(exemplar::Value::AsDouble(d)) => Some(d),
        Some(exemplar::Value::AsInt(i)) => Some(i as f64),
        None => None,
    }
}

/// An exemplar's labels: its filtered attributes, then `trace_id` and `span_id` in hex (the
/// names Prometheus's OpenTelemetry translation and Grafana's trace links use).
fn exemplar_labels(e: &OtlpExemplar) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    attr_labels(&e.filtered_attributes, &mut pairs);
    if e.trace_id.len() == 16 && e.trace_id.iter().any(|&b| b != 0) {
        pairs.push(("trace_id".into(), hex::encode(&e.trace_id)));
    }
    if e.span_id.len() == 8 && e.span_id.iter().any(|&b| b != 0) {
        pairs.push(("span_id".into(), hex::encode(&e.span_id)));
    }
    pairs
}

/// Whether `v` falls in the bucket `(lo, hi]`, where Prometheus puts a histogram's exemplar.
fn in_bucket(lo: f64, hi: f64) -> impl Fn(f64) -> bool {
    move |v| v > lo && v <= hi
}

/// A point's series: its labels, cache hash and newest acknowledged sample.
type Resolved = (Arc<Labels>, u64, Option<(i64, u64)>);

/// The bytes that stand for scope-level labels in a series key.
fn scope_key(scoped: &[(String, String)]) -> Vec<u8> {
    let mut k = Vec::new();
    for (n, v) in scoped {
        k.extend_from_slice(n.as_bytes());
        k.push(0xfd);
        k.extend_from_slice(v.as_bytes());
        k.push(0xfb);
    }
    k
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

/// What a conversion needs besides the export.
pub struct Context<'a> {
    pub tenant: &'a TenantId,
    pub deltas: &'a Deltas,
    pub cache: &'a SeriesCache,
    pub window: TimeWindow,
}

/// Converts an export; returns the rows, the points left out (with reasons) and the deltas
/// applied.
pub fn convert(
    req: ExportMetricsServiceRequest,
    cx: Context<'_>,
) -> (MetricRows, Problems, Applied, Vec<(u64, i64, u64)>) {
    let mut out = Out {
        tenant: cx.tenant,
        deltas: cx.deltas,
        cache: cx.cache,
        window: cx.window,
        applied: Applied::default(),
        index: HashMap::new(),
        newest: Vec::new(),
        rows: MetricRows::default(),
        problems: Problems::default(),
        key: Vec::new(),
    };
    let mut metadata: HashMap<String, MetricMeta> = HashMap::new();
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
            scoped.retain(|(_, v)| !v.is_empty());
            let key = scope_key(&scoped);
            for m in sm.metrics {
                newest = newest.max(convert_metric(m, &scoped, &key, &mut out, &mut metadata));
            }
        }
        if !info.is_empty() && newest > 0 {
            let mut labels = Vec::new();
            attr_labels(&info, &mut labels);
            base.retain(|(_, v)| !v.is_empty());
            labels.extend(base);
            labels.push(("__name__".into(), "target_info".into()));
            let info_key = scope_key(&labels);
            let l = out.series(&info_key, &labels, "target_info", &[], &[]);
            out.push(l, newest, 1.0, false);
            metadata.insert(
                "target_info".into(),
                MetricMeta {
                    metric: "target_info".into(),
                    kind: "gauge".into(),
                    help: "Target metadata".into(),
                    unit: String::new(),
                },
            );
        }
    }
    let mut meta: Vec<MetricMeta> = metadata.into_values().collect();
    meta.sort_by(|a, b| a.metric.cmp(&b.metric));
    out.rows.metadata = meta;
    let newest = out
        .newest
        .iter()
        .filter_map(|&(h, last)| last.map(|(t, b)| (h, t, b)))
        .collect();
    (out.rows, out.problems, out.applied, newest)
}

/// Converts one metric; returns the newest point time seen (0 if none).
fn convert_metric(
    m: Metric,
    scoped: &[(String, String)],
    scope_key: &[u8],
    out: &mut Out,
    metadata: &mut HashMap<String, MetricMeta>,
) -> u64 {
    let mut newest = 0;
    let mut meta = |family: &str, kind: &str| {
        metadata.insert(
            family.to_string(),
            MetricMeta {
                metric: family.to_string(),
                kind: kind.to_string(),
                help: m.description.clone(),
                unit: m.unit.clone(),
            },
        );
    };
    // One sample of the series named by extra labels, attributes and name (and the
    // exemplars `pick` chooses from `exemplars`, on the same series).
    macro_rules! emit {
        ($extra:expr, $attrs:expr, $name:expr, $t:expr, $v:expr, $delta:expr) => {{
            let l = out.series(scope_key, scoped, $name, $extra, $attrs);
            out.push(l, $t, $v, $delta);
        }};
        ($extra:expr, $attrs:expr, $name:expr, $t:expr, $v:expr, $delta:expr, $exemplars:expr, $pick:expr) => {{
            let l = out.series(scope_key, scoped, $name, $extra, $attrs);
            if !$exemplars.is_empty() {
                out.exemplars(&l, $exemplars, $pick);
            }
            out.push(l, $t, $v, $delta);
        }};
    }
    // The `+Inf` bucket, `_sum` and `_count` every histogram kind ends with.
    macro_rules! histogram_tail {
        ($name:expr, $attrs:expr, $t:expr, $count:expr, $sum:expr, $f:expr, $delta:expr, $exemplars:expr, $last:expr) => {{
            let (name, attrs, f) = ($name, $attrs, $f);
            let bucket = format!("{name}_bucket");
            emit!(
                &[("le", "+Inf".into())],
                attrs,
                &bucket,
                $t,
                f($count as f64),
                $delta,
                $exemplars,
                in_bucket($last, f64::INFINITY)
            );
            if let Some(sum) = $sum {
                emit!(&[], attrs, &format!("{name}_sum"), $t, f(sum), $delta);
            }
            emit!(
                &[],
                attrs,
                &format!("{name}_count"),
                $t,
                f($count as f64),
                $delta
            );
        }};
    }
    let delta_of = |t: i32| t == AggregationTemporality::Delta as i32;
    match m.data {
        Some(Data::Gauge(g)) => {
            let name = metric_name(&m.name, &m.unit, Kind::Gauge);
            meta(&name, "gauge");
            for p in g.data_points {
                let Some(v) = number(&p.value) else {
                    out.problems.add(1, || {
                        format!("gauge {:?} has a point without a value", m.name)
                    });
                    continue;
                };
                newest = newest.max(p.time_unix_nano);
                emit!(
                    &[],
                    &p.attributes,
                    &name,
                    p.time_unix_nano,
                    stale_or(p.flags, v),
                    false,
                    &p.exemplars,
                    |_| true
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
                    out.problems.add(1, || {
                        format!("sum {:?} has a point without a value", m.name)
                    });
                    continue;
                };
                newest = newest.max(p.time_unix_nano);
                let v = stale_or(p.flags, v);
                emit!(
                    &[],
                    &p.attributes,
                    &name,
                    p.time_unix_nano,
                    v,
                    delta,
                    &p.exemplars,
                    |_| true
                );
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
                    out.problems.add(1, || {
                        format!(
                            "histogram {:?} has {} bucket counts for {} bounds (must be one more)",
                            m.name,
                            p.bucket_counts.len(),
                            p.explicit_bounds.len()
                        )
                    });
                    continue;
                }
                newest = newest.max(p.time_unix_nano);
                let t = p.time_unix_nano;
                let f = |v: f64| stale_or(p.flags, v);
                let mut total = 0u64;
                let mut lo = f64::NEG_INFINITY;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    total += c;
                    let le = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    if le == f64::INFINITY {
                        continue;
                    }
                    emit!(
                        &[("le", float_label(le))],
                        &p.attributes,
                        &format!("{name}_bucket"),
                        t,
                        f(total as f64),
                        delta,
                        &p.exemplars,
                        in_bucket(lo, le)
                    );
                    lo = le;
                }
                histogram_tail!(
                    &name,
                    &p.attributes,
                    t,
                    p.count,
                    p.sum,
                    &f,
                    delta,
                    &p.exemplars,
                    lo
                );
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            let name = metric_name(&m.name, &m.unit, Kind::Other);
            meta(&name, "histogram");
            let delta = delta_of(h.aggregation_temporality);
            for p in h.data_points {
                if !(-10..=20).contains(&p.scale) {
                    out.problems.add(1, || {
                        format!(
                            "exponential histogram {:?} has scale {} (must be in [-10, 20])",
                            m.name, p.scale
                        )
                    });
                    continue;
                }
                newest = newest.max(p.time_unix_nano);
                let t = p.time_unix_nano;
                let f = |v: f64| stale_or(p.flags, v);
                let mut lo = f64::NEG_INFINITY;
                for (le, cum) in exponential_buckets(
                    p.scale,
                    p.zero_threshold,
                    p.zero_count,
                    p.negative.as_ref(),
                    p.positive.as_ref(),
                ) {
                    emit!(
                        &[("le", float_label(le))],
                        &p.attributes,
                        &format!("{name}_bucket"),
                        t,
                        f(cum as f64),
                        delta,
                        &p.exemplars,
                        in_bucket(lo, le)
                    );
                    lo = le;
                }
                histogram_tail!(
                    &name,
                    &p.attributes,
                    t,
                    p.count,
                    p.sum,
                    &f,
                    delta,
                    &p.exemplars,
                    lo
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
                    emit!(
                        &[("quantile", float_label(q.quantile))],
                        &p.attributes,
                        &name,
                        t,
                        f(q.value),
                        false
                    );
                }
                emit!(
                    &[],
                    &p.attributes,
                    &format!("{name}_sum"),
                    t,
                    f(p.sum),
                    false
                );
                emit!(
                    &[],
                    &p.attributes,
                    &format!("{name}_count"),
                    t,
                    f(p.count as f64),
                    false
                );
            }
        }
        None => {
            out.problems
                .add(1, || format!("metric {:?} has no data", m.name));
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

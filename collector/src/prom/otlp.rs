//! OTLP metrics → Prometheus series (the OpenTelemetry specification's Prometheus
//! compatibility rules), into a remote-write [`WriteRequest`](crate::prom::wire::WriteRequest)
//! so both protocols share one write-ahead-log payload and one validation:
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
//! - Exemplars go with their point's series; a histogram's to the bucket their value falls
//!   in, as Prometheus places them.
//!
//! The request is read in place ([`super::otlp_wire`]): a point's series is found in the
//! tenant's series cache by its resource, scope, name and raw attribute bytes, so a known
//! series costs a hash lookup and no allocation; only a new one has its attributes decoded,
//! named and checked. The per-metric rules are in [`super::otlp_points`].

use std::collections::HashMap;
use std::sync::Arc;

use loupe_core::TenantId;
use loupe_storage::metrics::model::Point;
use loupe_storage::metrics::{Labels, MetricMeta, MetricRows};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Exemplar as OtlpExemplar, exemplar};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::otlp::TimeWindow;
use crate::prom::cache::SeriesCache;
pub use crate::prom::deltas::{Applied, Deltas};
use crate::prom::names::label_name;
use crate::prom::otlp_points::Families;
use crate::prom::otlp_wire::{Malformed, RawAttrs, Read, each, msg};
use crate::prom::validate::Problems;

pub(crate) fn value_text(v: &AnyValue) -> String {
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
pub(crate) fn attr_labels(attrs: &[KeyValue], out: &mut Vec<(String, String)>) {
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

/// A point's series: its labels, cache hash and newest acknowledged sample.
pub(crate) type Resolved = (Arc<Labels>, u128, Option<(i64, u64)>);

/// The conversion's state: the rows so far, what was left out and why, the deltas added.
pub(crate) struct Out<'a> {
    tenant: &'a TenantId,
    deltas: &'a Deltas,
    cache: &'a SeriesCache,
    window: TimeWindow,
    minute: u32,
    /// The tenant's series (taken once per request).
    series: Arc<crate::prom::cache::TenantSeries>,
    pub(crate) applied: Applied,
    /// Row series by label pointer.
    index: HashMap<*const Labels, u32, foldhash::fast::RandomState>,
    /// Per row series: its cache hash and newest sample (acknowledged before, then this
    /// export's).
    newest: Vec<(u128, Option<(i64, u64)>)>,
    pub(crate) rows: MetricRows,
    pub(crate) problems: Problems,
    key: Vec<u8>,
}

impl Out<'_> {
    /// The labels of a point: from the series cache when this combination of scope, name,
    /// extra labels and attribute bytes was seen before, else built, checked against the
    /// limit and remembered. `Ok(None)` when the tenant's series limit refuses it.
    pub(crate) fn series(
        &mut self,
        scope_key: &[u8],
        scoped: &[(String, String)],
        name: &str,
        extra: &[(&str, &str)],
        attrs: &RawAttrs<'_>,
    ) -> Read<Option<Resolved>> {
        self.key.clear();
        self.key.push(2);
        self.key.extend_from_slice(scope_key);
        self.key.extend_from_slice(name.as_bytes());
        for (k, v) in extra {
            self.key.push(0xfe);
            self.key.extend_from_slice(k.as_bytes());
            self.key.push(0xfd);
            self.key.extend_from_slice(v.as_bytes());
        }
        self.key.push(0xfc);
        self.key.extend_from_slice(attrs.bytes());
        let hash = twox_hash::XxHash3_128::oneshot(&self.key);
        if let Some(k) = self.series.get(hash, self.minute) {
            return Ok(Some((k.labels, hash, k.last)));
        }
        let mut pairs = scoped.to_vec();
        attr_labels(&attrs.decode()?, &mut pairs);
        pairs.push(("__name__".into(), name.to_string()));
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let labels = Arc::new(Labels::new(pairs));
        let inserted = self.cache.insert(self.tenant, vec![(hash, labels)]).pop();
        Ok(match inserted {
            Some(Ok(l)) => Some((l, hash, None)),
            Some(Err(why)) => {
                self.problems.add(1, || why);
                None
            }
            None => None,
        })
    }

    /// Keeps the exemplars among `exemplars` that `pick` chooses on the point's series.
    pub(crate) fn exemplars(
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
    fn row_series(&mut self, labels: &Arc<Labels>, hash: u128, last: Option<(i64, u64)>) -> u32 {
        let rows = &mut self.rows;
        let newest = &mut self.newest;
        *self.index.entry(Arc::as_ptr(labels)).or_insert_with(|| {
            rows.series.push(labels.clone());
            newest.push((hash, last));
            (rows.series.len() - 1) as u32
        })
    }

    pub(crate) fn push(&mut self, resolved: Option<Resolved>, t_nano: u64, v: f64, delta: bool) {
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

/// What a conversion needs besides the export.
pub struct Context<'a> {
    pub tenant: &'a TenantId,
    pub deltas: &'a Deltas,
    pub cache: &'a SeriesCache,
    pub window: TimeWindow,
}

/// A converted export: the rows, the points left out (with reasons), the deltas applied and
/// each series' newest sample `(series id, time, value bits)`.
pub type Converted = (MetricRows, Problems, Applied, Vec<(u128, i64, u64)>);

/// Converts an export from its protobuf bytes. On malformed input nothing is kept: the
/// deltas added so far are taken back.
pub fn convert(body: &[u8], cx: Context<'_>) -> Read<Converted> {
    let mut out = Out {
        tenant: cx.tenant,
        deltas: cx.deltas,
        cache: cx.cache,
        window: cx.window,
        minute: cx.cache.minute(),
        series: cx.cache.tenant_or_new(cx.tenant),
        applied: Applied::default(),
        index: HashMap::default(),
        newest: Vec::new(),
        rows: MetricRows::default(),
        problems: Problems::default(),
        key: Vec::new(),
    };
    let mut families = Families::default();
    let walked = each(body, |n, w| {
        if n == 1 {
            resource_metrics(msg(w)?, &mut out, &mut families)?;
        }
        Ok(())
    });
    if let Err(e) = walked {
        cx.deltas.undo(out.applied);
        return Err(e);
    }
    let mut meta: Vec<MetricMeta> = families.metadata.into_values().collect();
    meta.sort_by(|a, b| a.metric.cmp(&b.metric));
    out.rows.metadata = meta;
    let newest = out
        .newest
        .iter()
        .filter_map(|&(h, last)| last.map(|(t, b)| (h, t, b)))
        .collect();
    Ok((out.rows, out.problems, out.applied, newest))
}

fn resource_metrics<'a>(m: &'a [u8], out: &mut Out<'_>, families: &mut Families<'a>) -> Read<()> {
    let mut resource = Resource::default();
    let mut scopes: Vec<&[u8]> = Vec::new();
    each(m, |n, w| {
        match n {
            1 => resource = Resource::decode(msg(w)?).map_err(|_| Malformed)?,
            2 => scopes.push(msg(w)?),
            _ => {}
        }
        Ok(())
    })?;
    let rattrs = resource.attributes;
    let service = attr(&rattrs, "service.name").unwrap_or_else(|| "unknown_service".into());
    let job = match attr(&rattrs, "service.namespace") {
        Some(ns) => format!("{ns}/{service}"),
        None => service,
    };
    let instance = attr(&rattrs, "service.instance.id").unwrap_or_default();
    let mut base = vec![("job".to_string(), job), ("instance".to_string(), instance)];
    let mut newest = 0u64;
    for sm in scopes {
        let mut scope = InstrumentationScope::default();
        let mut metrics: Vec<&[u8]> = Vec::new();
        each(sm, |n, w| {
            match n {
                1 => scope = InstrumentationScope::decode(msg(w)?).map_err(|_| Malformed)?,
                2 => metrics.push(msg(w)?),
                _ => {}
            }
            Ok(())
        })?;
        let mut scoped = base.clone();
        scoped.push(("otel_scope_name".into(), scope.name));
        scoped.push(("otel_scope_version".into(), scope.version));
        scoped.retain(|(_, v)| !v.is_empty());
        let key = scope_key(&scoped);
        for m in metrics {
            let m = crate::prom::otlp_wire::metric(m)?;
            newest = newest.max(crate::prom::otlp_points::convert_metric(
                &m, &scoped, &key, out, families,
            )?);
        }
    }
    let info: Vec<KeyValue> = rattrs
        .into_iter()
        .filter(|kv| {
            !matches!(
                kv.key.as_str(),
                "service.name" | "service.namespace" | "service.instance.id"
            )
        })
        .collect();
    if !info.is_empty() && newest > 0 {
        let mut labels = Vec::new();
        attr_labels(&info, &mut labels);
        base.retain(|(_, v)| !v.is_empty());
        labels.extend(base);
        labels.push(("__name__".into(), "target_info".into()));
        let info_key = scope_key(&labels);
        let l = out.series(&info_key, &labels, "target_info", &[], &RawAttrs::default())?;
        out.push(l, newest, 1.0, false);
        families.metadata.insert(
            "target_info".into(),
            MetricMeta {
                metric: "target_info".into(),
                kind: "gauge".into(),
                help: "Target metadata".into(),
                unit: String::new(),
            },
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;

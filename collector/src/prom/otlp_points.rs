//! One OTLP metric's points → Prometheus samples, by kind: gauges and sums as they are
//! (`_total` for monotonic sums), histograms and exponential histograms as cumulative
//! `_bucket{le}` series with `_sum` and `_count`, summaries as `{quantile}` series with
//! `_sum` and `_count`. Names and `le` labels are made once per metric (and again only when
//! a point's bounds differ), not once per point.

use std::collections::HashMap;
use std::sync::Arc;

use loupe_storage::metrics::MetricMeta;
use loupe_storage::metrics::model::STALE_NAN_BITS;

use crate::prom::names::{Kind, float_label, metric_name};
use crate::prom::otlp::Out;
use crate::prom::otlp_wire::{
    Data, DataKind, ExpBuckets, MetricView, PointBase, Read, exp_histogram_point, histogram_point,
    number_point, summary_point,
};

const NO_RECORDED_VALUE: u32 = 1;
const DELTA: u64 = 1;

fn stale_or(flags: u32, v: f64) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 {
        f64::from_bits(STALE_NAN_BITS)
    } else {
        v
    }
}

/// Whether `v` falls in the bucket `(lo, hi]`, where Prometheus puts a histogram's exemplar.
fn in_bucket(lo: f64, hi: f64) -> impl Fn(f64) -> bool {
    move |v| v > lo && v <= hi
}

/// The cumulative `le` buckets of an exponential histogram: negative buckets, the zero
/// bucket, positive buckets, each with its upper bound.
pub fn exponential_buckets(
    scale: i32,
    zero_threshold: f64,
    zero_count: u64,
    negative: Option<&ExpBuckets>,
    positive: Option<&ExpBuckets>,
) -> Vec<(f64, u64)> {
    let base = 2f64.powf(2f64.powi(-scale));
    let bound = |index: i64| base.powf(index as f64);
    let mut out = Vec::new();
    let mut total = 0u64;
    if let Some(n) = negative {
        // Bucket i holds [-base^(i+1), -base^i): from the most negative up.
        for (k, c) in n.counts.iter().enumerate().rev() {
            total += c;
            out.push((-bound(n.offset as i64 + k as i64), total));
        }
    }
    total += zero_count;
    out.push((zero_threshold, total));
    if let Some(p) = positive {
        for (k, c) in p.counts.iter().enumerate() {
            total += c;
            out.push((bound(p.offset as i64 + k as i64 + 1), total));
        }
    }
    out
}

/// The names one metric's series take.
pub(crate) struct Names {
    name: String,
    bucket: String,
    sum: String,
    count: String,
}

impl Names {
    fn new(name: String, parts: bool) -> Self {
        let part = |s: &str| {
            if parts {
                format!("{name}{s}")
            } else {
                String::new()
            }
        };
        Names {
            bucket: part("_bucket"),
            sum: part("_sum"),
            count: part("_count"),
            name,
        }
    }
}

type Fast = foldhash::fast::RandomState;

/// The metric families of one export: each family's names made once, its metadata kept
/// once (the first of a request wins).
#[derive(Default)]
pub(crate) struct Families<'a> {
    names: HashMap<(&'a str, &'a str, DataKind, bool), Arc<Names>, Fast>,
    pub(crate) metadata: HashMap<String, MetricMeta>,
    les: LeLabels,
}

impl<'a> Families<'a> {
    fn names(&mut self, m: &MetricView<'a>, d: &Data<'a>) -> Arc<Names> {
        let key = (m.name, m.unit, d.kind, d.monotonic);
        if let Some(n) = self.names.get(&key) {
            return n.clone();
        }
        let (prom_kind, family_type, parts) = match d.kind {
            DataKind::Gauge => (Kind::Gauge, "gauge", false),
            DataKind::Sum if d.monotonic => (Kind::Counter, "counter", false),
            DataKind::Sum => (Kind::Gauge, "gauge", false),
            DataKind::Histogram | DataKind::ExponentialHistogram => {
                (Kind::Other, "histogram", true)
            }
            DataKind::Summary => (Kind::Other, "summary", true),
        };
        let names = Arc::new(Names::new(metric_name(m.name, m.unit, prom_kind), parts));
        self.metadata
            .entry(names.name.clone())
            .or_insert_with(|| MetricMeta {
                metric: names.name.clone(),
                kind: family_type.to_string(),
                help: m.description.to_string(),
                unit: m.unit.to_string(),
            });
        self.names.insert(key, names.clone());
        names
    }
}

/// `le` label texts of the bounds last seen (points of a metric share their bounds).
#[derive(Default)]
struct LeLabels {
    bounds: Vec<u64>,
    labels: Vec<String>,
}

impl LeLabels {
    fn of(&mut self, bounds: &[u64]) -> &[String] {
        if self.bounds != bounds {
            self.bounds = bounds.to_vec();
            self.labels = bounds
                .iter()
                .map(|b| float_label(f64::from_bits(*b)))
                .collect();
        }
        &self.labels
    }
}

/// One metric's conversion: where its series are and what it has made so far.
struct Metric<'m, 'o, 's> {
    out: &'m mut Out<'o>,
    scoped: &'s [(String, String)],
    scope_key: &'s [u8],
    delta: bool,
    newest: u64,
}

impl Metric<'_, '_, '_> {
    /// One sample of the series named by `name`, `extra` labels and the point's attributes,
    /// with the exemplars `pick` chooses from the point's.
    fn emit(
        &mut self,
        p: &PointBase<'_>,
        name: &str,
        extra: &[(&str, &str)],
        v: f64,
        pick: Option<&dyn Fn(f64) -> bool>,
    ) -> Read<()> {
        let l = self
            .out
            .series(self.scope_key, self.scoped, name, extra, &p.attrs)?;
        if let Some(pick) = pick
            && !p.exemplars.is_empty()
        {
            self.out.exemplars(&l, &p.exemplars, pick);
        }
        self.out.push(l, p.time, stale_or(p.flags, v), self.delta);
        Ok(())
    }

    /// The `+Inf` bucket (with exemplars above `last`), `_sum` and `_count` every histogram
    /// kind ends with.
    fn histogram_tail(
        &mut self,
        p: &PointBase<'_>,
        names: &Names,
        count: u64,
        sum: Option<f64>,
        last: f64,
    ) -> Read<()> {
        let above = in_bucket(last, f64::INFINITY);
        self.emit(
            p,
            &names.bucket,
            &[("le", "+Inf")],
            count as f64,
            Some(&above),
        )?;
        if let Some(sum) = sum {
            self.emit(p, &names.sum, &[], sum, None)?;
        }
        self.emit(p, &names.count, &[], count as f64, None)
    }
}

/// Converts one metric; returns the newest point time seen (0 if none).
pub(crate) fn convert_metric<'a>(
    m: &MetricView<'a>,
    scoped: &[(String, String)],
    scope_key: &[u8],
    out: &mut Out<'_>,
    families: &mut Families<'a>,
) -> Read<u64> {
    let Some(d) = &m.data else {
        out.problems
            .add(1, || format!("metric {:?} has no data", m.name));
        return Ok(0);
    };
    let names = families.names(m, d);
    let kind = d.kind;
    let mut cx = Metric {
        out,
        scoped,
        scope_key,
        delta: d.temporality == DELTA
            && matches!(
                kind,
                DataKind::Sum | DataKind::Histogram | DataKind::ExponentialHistogram
            ),
        newest: 0,
    };
    match kind {
        DataKind::Gauge | DataKind::Sum => {
            let what = if kind == DataKind::Gauge {
                "gauge"
            } else {
                "sum"
            };
            d.points(|raw| {
                let p = number_point(raw)?;
                let Some(v) = p.value else {
                    cx.out.problems.add(1, || {
                        format!("{what} {:?} has a point without a value", m.name)
                    });
                    return Ok(());
                };
                cx.newest = cx.newest.max(p.base.time);
                cx.emit(&p.base, &names.name, &[], v, Some(&|_| true))
            })?;
        }
        DataKind::Histogram => {
            let (mut counts, mut bounds) = (Vec::new(), Vec::new());
            d.points(|raw| {
                let p = histogram_point(raw, &mut counts, &mut bounds)?;
                if !counts.is_empty() && counts.len() != bounds.len() + 1 {
                    cx.out.problems.add(1, || {
                        format!(
                            "histogram {:?} has {} bucket counts for {} bounds (must be one more)",
                            m.name,
                            counts.len(),
                            bounds.len()
                        )
                    });
                    return Ok(());
                }
                cx.newest = cx.newest.max(p.base.time);
                let labels = families.les.of(&bounds);
                let mut total = 0u64;
                let mut lo = f64::NEG_INFINITY;
                for (i, c) in counts.iter().enumerate() {
                    total += c;
                    let Some(&bits) = bounds.get(i) else { continue };
                    let le = f64::from_bits(bits);
                    if le == f64::INFINITY {
                        continue;
                    }
                    let pick = in_bucket(lo, le);
                    cx.emit(
                        &p.base,
                        &names.bucket,
                        &[("le", &labels[i])],
                        total as f64,
                        Some(&pick),
                    )?;
                    lo = le;
                }
                cx.histogram_tail(&p.base, &names, p.count, p.sum, lo)
            })?;
        }
        DataKind::ExponentialHistogram => {
            d.points(|raw| {
                let p = exp_histogram_point(raw)?;
                if !(-10..=20).contains(&p.scale) {
                    cx.out.problems.add(1, || {
                        format!(
                            "exponential histogram {:?} has scale {} (must be in [-10, 20])",
                            m.name, p.scale
                        )
                    });
                    return Ok(());
                }
                cx.newest = cx.newest.max(p.base.time);
                let mut lo = f64::NEG_INFINITY;
                for (le, cum) in exponential_buckets(
                    p.scale,
                    p.zero_threshold,
                    p.zero_count,
                    p.negative.as_ref(),
                    p.positive.as_ref(),
                ) {
                    let pick = in_bucket(lo, le);
                    cx.emit(
                        &p.base,
                        &names.bucket,
                        &[("le", &float_label(le))],
                        cum as f64,
                        Some(&pick),
                    )?;
                    lo = le;
                }
                cx.histogram_tail(&p.base, &names, p.count, p.sum, lo)
            })?;
        }
        DataKind::Summary => {
            d.points(|raw| {
                let p = summary_point(raw)?;
                cx.newest = cx.newest.max(p.base.time);
                for &(q, v) in &p.quantiles {
                    cx.emit(
                        &p.base,
                        &names.name,
                        &[("quantile", &float_label(q))],
                        v,
                        None,
                    )?;
                }
                cx.emit(&p.base, &names.sum, &[], p.sum, None)?;
                cx.emit(&p.base, &names.count, &[], p.count as f64, None)
            })?;
        }
    }
    Ok(cx.newest)
}

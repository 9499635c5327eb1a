//! LogQL metric queries: the samples of the one range aggregation a query holds are
//! collected in a single pass over the matching lines ([`Collect`], a storage scan
//! visitor), then every step is computed from them ([`evaluate`]).
//!
//! As in Loki: a step `t` aggregates the samples in `(t - offset - range, t - offset]`; a
//! series has no point at a step whose window is empty; the unwrapped label leaves the
//! series' labels; lines whose pipeline set `__error__` fail the query, naming the error,
//! unless a label filter drops them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use loupe_storage::logs::LogRecord;
use loupe_storage::logs::scan::Visit;

use super::ast::*;
use super::pipeline::{filters, unwrap_value};
use super::{LogqlError, Plan};

pub type LabelMap = BTreeMap<String, String>;

/// Most samples one metric query may collect.
pub const MAX_SAMPLES: usize = 5_000_000;
/// Most series one metric query may return.
pub const MAX_SERIES: usize = 10_000;
/// Most points per series (as Prometheus and Loki).
pub const MAX_POINTS: i64 = 11_000;

/// The steps of a query: `start`, `start + step`, ... up to `end` (unix ns); one step for
/// an instant query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    pub fn instant(t: i64) -> Steps {
        Steps {
            start: t,
            end: t,
            step: 1,
        }
    }

    pub fn count(&self) -> usize {
        ((self.end - self.start) / self.step.max(1) + 1).max(0) as usize
    }

    pub fn at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn check(&self) -> Result<(), LogqlError> {
        if self.end < self.start {
            return Err(LogqlError::Limit(
                "the end timestamp must not be before the start time".into(),
            ));
        }
        if (self.end - self.start) / self.step.max(1) >= MAX_POINTS {
            return Err(LogqlError::Limit(format!(
                "exceeded maximum resolution of {MAX_POINTS} points per timeseries. Try increasing the value of the step parameter"
            )));
        }
        Ok(())
    }
}

/// The one range aggregation of a metric query.
pub fn leaf(m: &Metric) -> &RangeAgg {
    match m {
        Metric::Range(r) => r,
        Metric::Vector { inner, .. } => leaf(inner),
    }
}

fn group(labels: &LabelMap, g: &Grouping) -> LabelMap {
    match g {
        Grouping::By(ls) => labels
            .iter()
            .filter(|(k, _)| ls.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Grouping::Without(ls) => labels
            .iter()
            .filter(|(k, _)| !ls.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The samples of a range aggregation, per series, in no order.
pub struct Collect {
    plan: Plan,
    agg: Arc<RangeAgg>,
    pub series: HashMap<LabelMap, Vec<(i64, f64)>>,
    pub samples: usize,
    /// The first pipeline error met, with its series.
    pub error: Option<String>,
}

impl Collect {
    pub fn new(plan: Plan, agg: Arc<RangeAgg>) -> Collect {
        Collect {
            plan,
            agg,
            series: HashMap::new(),
            samples: 0,
            error: None,
        }
    }

    /// The samples, or why the query cannot go on.
    pub fn finish(self) -> Result<HashMap<LabelMap, Vec<(i64, f64)>>, LogqlError> {
        if let Some(e) = self.error {
            return Err(LogqlError::Pipeline(e));
        }
        if self.samples > MAX_SAMPLES {
            return Err(LogqlError::Limit(format!(
                "the query reads more than {MAX_SAMPLES} lines; narrow its selector, filters or time range"
            )));
        }
        Ok(self.series)
    }
}

impl Visit for Collect {
    fn visit(&mut self, r: &LogRecord) {
        if self.samples > MAX_SAMPLES || self.error.is_some() {
            return;
        }
        let Some(mut e) = self.plan.entry(r) else {
            return;
        };
        let value = match (&self.agg.unwrap, self.agg.func) {
            (Some(u), _) => {
                let v = unwrap_value(u, &e);
                if let Err(msg) = &v
                    && e.labels.get("__error__").is_none()
                {
                    e.labels.set(
                        "__error__".into(),
                        "SampleExtractionErr".into(),
                        super::labels::Cat::Parsed,
                    );
                    e.labels.set(
                        "__error_details__".into(),
                        msg.clone(),
                        super::labels::Cat::Parsed,
                    );
                }
                if !filters(&u.filters, &mut e) {
                    return;
                }
                v.unwrap_or(f64::NAN)
            }
            (None, RangeFn::BytesOverTime | RangeFn::BytesRate) => e.line.len() as f64,
            (None, _) => 1.0,
        };
        let mut labels = e.labels.all();
        if let Some(kind) = labels.get("__error__").cloned() {
            labels.remove("__error_details__");
            self.error = Some(format!(
                "pipeline error: '{kind}' for series: '{}'. Use a label filter to intentionally skip this error (e.g | __error__!=\"{kind}\"). To skip all potential errors you can match empty errors (e.g __error__=\"\")",
                series_text(&labels)
            ));
            return;
        }
        if let Some(u) = &self.agg.unwrap {
            labels.remove(&u.label);
        }
        if let Some(g) = &self.agg.grouping {
            labels = group(&labels, g);
        }
        self.samples += 1;
        self.series
            .entry(labels)
            .or_default()
            .push((e.time_unix_nano, value));
    }

    fn merge(&mut self, other: Collect) {
        if self.error.is_none() {
            self.error = other.error;
        }
        self.samples += other.samples;
        for (k, mut v) in other.series {
            self.series.entry(k).or_default().append(&mut v);
        }
    }
}

/// `{a="x", b="y"}`
pub fn series_text(l: &LabelMap) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
    format!("{{{}}}", parts.join(", "))
}

/// A series' value at each step (`None`: no point).
type Dense = Vec<Option<f64>>;

fn over_time(f: RangeFn, param: Option<f64>, range_s: f64, vs: &[f64]) -> f64 {
    let n = vs.len() as f64;
    let mean = || vs.iter().sum::<f64>() / n;
    let var = || {
        let m = mean();
        vs.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n
    };
    match f {
        RangeFn::CountOverTime => n,
        RangeFn::Rate => n / range_s,
        RangeFn::BytesOverTime | RangeFn::SumOverTime => vs.iter().sum(),
        RangeFn::BytesRate => vs.iter().sum::<f64>() / range_s,
        RangeFn::AvgOverTime => mean(),
        RangeFn::MinOverTime => vs.iter().copied().fold(f64::INFINITY, f64::min),
        RangeFn::MaxOverTime => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        RangeFn::StdvarOverTime => var(),
        RangeFn::StddevOverTime => var().sqrt(),
        RangeFn::FirstOverTime => vs[0],
        RangeFn::LastOverTime => vs[vs.len() - 1],
        RangeFn::QuantileOverTime => quantile(param.unwrap_or(0.5), vs),
        RangeFn::AbsentOverTime => 1.0,
    }
}

/// Prometheus's quantile: linear between the closest ranks; ±Inf outside [0, 1].
pub fn quantile(q: f64, vs: &[f64]) -> f64 {
    if vs.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut s = vs.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = q * (s.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    let w = rank - lo as f64;
    s[lo] * (1.0 - w) + s[hi] * w
}

fn range_series(
    r: &RangeAgg,
    mut series: HashMap<LabelMap, Vec<(i64, f64)>>,
    steps: Steps,
) -> Vec<(LabelMap, Dense)> {
    let range_s = r.range_ns as f64 / 1e9;
    let n = steps.count();
    if r.func == RangeFn::AbsentOverTime {
        let mut present = vec![false; n];
        for samples in series.values() {
            for &(t, _) in samples {
                for (i, p) in present.iter_mut().enumerate() {
                    let end = steps.at(i) - r.offset_ns;
                    if t > end - r.range_ns && t <= end {
                        *p = true;
                    }
                }
            }
        }
        let labels: LabelMap = r
            .log
            .selector
            .iter()
            .filter(|m| m.op == MatchOp::Eq)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        let dense: Dense = present.iter().map(|p| (!p).then_some(1.0)).collect();
        return if dense.iter().any(Option::is_some) {
            vec![(labels, dense)]
        } else {
            Vec::new()
        };
    }
    let mut out = Vec::new();
    for (labels, samples) in series.iter_mut() {
        samples.sort_by_key(|&(t, _)| t);
        let mut dense: Dense = vec![None; n];
        let (mut lo, mut hi) = (0, 0);
        let mut window: Vec<f64> = Vec::new();
        for (i, d) in dense.iter_mut().enumerate() {
            let end = steps.at(i) - r.offset_ns;
            let start = end - r.range_ns;
            while hi < samples.len() && samples[hi].0 <= end {
                hi += 1;
            }
            while lo < hi && samples[lo].0 <= start {
                lo += 1;
            }
            if lo < hi {
                window.clear();
                window.extend(samples[lo..hi].iter().map(|&(_, v)| v));
                *d = Some(over_time(r.func, r.param, range_s, &window));
            }
        }
        if dense.iter().any(Option::is_some) {
            out.push((labels.clone(), dense));
        }
    }
    out
}

fn aggregate(
    op: VecOp,
    k: Option<usize>,
    g: Option<&Grouping>,
    inner: Vec<(LabelMap, Dense)>,
    n: usize,
) -> Vec<(LabelMap, Dense)> {
    let key = |l: &LabelMap| match g {
        Some(g) => group(l, g),
        None => LabelMap::new(),
    };
    if let (VecOp::Topk | VecOp::Bottomk, Some(k)) = (op, k) {
        let mut out: Vec<(LabelMap, Dense)> = inner
            .iter()
            .map(|(l, _)| (l.clone(), vec![None; n]))
            .collect();
        let mut groups: HashMap<LabelMap, Vec<usize>> = HashMap::new();
        for (i, (l, _)) in inner.iter().enumerate() {
            groups.entry(key(l)).or_default().push(i);
        }
        for step in 0..n {
            for members in groups.values() {
                let mut vals: Vec<(usize, f64)> = members
                    .iter()
                    .filter_map(|&i| inner[i].1[step].map(|v| (i, v)))
                    .collect();
                vals.sort_by(|a, b| {
                    let o = a.1.total_cmp(&b.1);
                    if op == VecOp::Topk { o.reverse() } else { o }
                });
                for &(i, v) in vals.iter().take(k) {
                    out[i].1[step] = Some(v);
                }
            }
        }
        out.retain(|(_, d)| d.iter().any(Option::is_some));
        return out;
    }
    let mut groups: BTreeMap<LabelMap, Vec<Vec<f64>>> = BTreeMap::new();
    for (l, d) in &inner {
        let g = groups.entry(key(l)).or_insert_with(|| vec![Vec::new(); n]);
        for (step, v) in d.iter().enumerate() {
            if let Some(v) = v {
                g[step].push(*v);
            }
        }
    }
    groups
        .into_iter()
        .map(|(l, per_step)| {
            let dense = per_step
                .iter()
                .map(|vs| {
                    if vs.is_empty() {
                        return None;
                    }
                    let c = vs.len() as f64;
                    let mean = vs.iter().sum::<f64>() / c;
                    let var = vs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c;
                    Some(match op {
                        VecOp::Sum => vs.iter().sum(),
                        VecOp::Avg => mean,
                        VecOp::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
                        VecOp::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        VecOp::Count => c,
                        VecOp::Stdvar => var,
                        VecOp::Stddev => var.sqrt(),
                        VecOp::Topk | VecOp::Bottomk => f64::NAN,
                    })
                })
                .collect();
            (l, dense)
        })
        .collect()
}

fn eval_dense(
    m: &Metric,
    series: HashMap<LabelMap, Vec<(i64, f64)>>,
    steps: Steps,
) -> Vec<(LabelMap, Dense)> {
    match m {
        Metric::Range(r) => range_series(r, series, steps),
        Metric::Vector {
            op,
            k,
            grouping,
            inner,
        } => {
            let inner = eval_dense(inner, series, steps);
            aggregate(*op, *k, grouping.as_ref(), inner, steps.count())
        }
    }
}

/// One series of a result: its labels and its points `(unix ns, value)`.
pub type Series = (LabelMap, Vec<(i64, f64)>);

/// The result of `m` at `steps` from the samples of its range aggregation, sorted by labels.
pub fn evaluate(
    m: &Metric,
    series: HashMap<LabelMap, Vec<(i64, f64)>>,
    steps: Steps,
) -> Result<Vec<Series>, LogqlError> {
    let dense = eval_dense(m, series, steps);
    if dense.len() > MAX_SERIES {
        return Err(LogqlError::Limit(format!(
            "the query returns more than {MAX_SERIES} series; aggregate it (sum by (...)) or narrow its selector"
        )));
    }
    let mut out: Vec<Series> = dense
        .into_iter()
        .map(|(l, d)| {
            let points = d
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (steps.at(i), v)))
                .collect();
            (l, points)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

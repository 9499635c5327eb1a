//! PromQL's functions over range vectors: `rate`, `irate`, `increase`, `delta`, `idelta`,
//! `deriv`, `predict_linear`, `resets`, `changes` and every `*_over_time`. A step's window is
//! `(end - range, end]`; windows slide with two pointers over each series, and series are
//! spread over the CPU pool (the evaluator runs on it).

use loupe_storage::metrics::Sample;
use promql_parser::parser::Call;
use rayon::prelude::*;

use crate::promql::EvalError;
use crate::promql::eval::{Evaluator, drop_name};
use crate::promql::functions::arg;
use crate::promql::value::{Matrix, Steps};

/// Each step's window of `samples` as index ranges: two pointers that only move forward
/// while the window ends grow (range queries), a binary search otherwise.
fn windows<'a>(m: &'a Matrix, samples: &'a [Sample]) -> impl Iterator<Item = (usize, usize)> + 'a {
    let sorted = m.ends.windows(2).all(|w| w[0] <= w[1]);
    let (mut lo, mut hi) = (0usize, 0usize);
    m.ends.iter().map(move |&end| {
        let start = end - m.range;
        if sorted {
            while lo < samples.len() && samples[lo].t <= start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < samples.len() && samples[hi].t <= end {
                hi += 1;
            }
            (lo, hi)
        } else {
            let lo = samples.partition_point(|x| x.t <= start);
            let hi = samples.partition_point(|x| x.t <= end).max(lo);
            (lo, hi)
        }
    })
}

/// A range function of one sample window per step, series spread over the CPU pool (the
/// evaluator runs on it).
fn over_windows(
    m: &Matrix,
    keep_name: bool,
    f: impl Fn(&[Sample], usize) -> Option<f64> + Sync,
) -> Vec<Steps> {
    m.series
        .par_iter()
        .filter_map(|s| {
            let points: Vec<Option<f64>> = windows(m, &s.samples)
                .enumerate()
                .map(|(i, (lo, hi))| {
                    let w = &s.samples[lo..hi];
                    if w.is_empty() { None } else { f(w, i) }
                })
                .collect();
            points.iter().any(Option::is_some).then(|| Steps {
                labels: if keep_name {
                    s.labels.clone()
                } else {
                    drop_name(&s.labels)
                },
                points,
            })
        })
        .collect()
}

/// Prometheus's extrapolated rate, increase and delta; `resets` adds back what counter
/// resets inside the window took away (0 for `delta`).
fn extrapolated(
    w: &[Sample],
    resets: f64,
    start: i64,
    end: i64,
    range: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.v - first.v + resets;
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (w.len() - 1) as f64;
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope (per second) and the value at `intercept_t`.
fn regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let first = w[0].v;
    if w.iter().all(|s| s.v == first) {
        return if first.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, first)
        };
    }
    let n = w.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0);
    for s in w {
        let x = (s.t - intercept_t) as f64 / 1000.0;
        sx += x;
        sy += s.v;
        sxy += x * s.v;
        sx2 += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Prometheus's quantile of values (linear between neighbours).
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn variance(w: &[Sample]) -> f64 {
    let (mut count, mut mean, mut aux) = (0.0, 0.0, 0.0);
    for s in w {
        count += 1.0;
        let delta = s.v - mean;
        mean += delta / count;
        aux += delta * (s.v - mean);
    }
    aux / count
}

fn mean(w: &[Sample]) -> f64 {
    let mut mean: f64 = 0.0;
    for (i, s) in w.iter().enumerate() {
        if mean.is_infinite() {
            if s.v.is_infinite() && (mean > 0.0) == (s.v > 0.0) {
                continue;
            }
            if !s.v.is_infinite() && !s.v.is_nan() {
                continue;
            }
        }
        mean += (s.v - mean) / (i as f64 + 1.0);
    }
    mean
}

pub fn range_function(
    ev: &Evaluator,
    c: &Call,
    times: &[i64],
) -> Result<Option<Vec<Steps>>, EvalError> {
    let name = c.func.name;
    let matrix_at = |i: usize| ev.matrix(arg(c, i)?, times);
    let out = match name {
        "rate" | "increase" | "delta" => {
            let m = matrix_at(0)?;
            let (counter, rate) = (name != "delta", name == "rate");
            let one = |s: &loupe_storage::metrics::Series| {
                // resets[k]: what the resets among samples 1..=k took away.
                let mut resets = Vec::with_capacity(s.samples.len());
                let mut acc = 0.0;
                resets.push(0.0);
                for p in s.samples.windows(2) {
                    if counter && p[1].v < p[0].v {
                        acc += p[0].v;
                    }
                    resets.push(acc);
                }
                let points: Vec<Option<f64>> = windows(&m, &s.samples)
                    .enumerate()
                    .map(|(i, (lo, hi))| {
                        if hi < lo + 2 {
                            return None;
                        }
                        let end = m.ends[i];
                        let r = resets[hi - 1] - resets[lo];
                        extrapolated(
                            &s.samples[lo..hi],
                            r,
                            end - m.range,
                            end,
                            m.range,
                            counter,
                            rate,
                        )
                    })
                    .collect();
                points.iter().any(Option::is_some).then(|| Steps {
                    labels: drop_name(&s.labels),
                    points,
                })
            };
            m.series.par_iter().filter_map(one).collect()
        }
        "irate" | "idelta" => over_windows(&matrix_at(0)?, false, |w, _| {
            let [.., prev, last] = w else { return None };
            let dt = last.t - prev.t;
            if dt == 0 {
                return None;
            }
            if name == "irate" {
                let d = if last.v < prev.v {
                    last.v
                } else {
                    last.v - prev.v
                };
                Some(d / (dt as f64 / 1000.0))
            } else {
                Some(last.v - prev.v)
            }
        }),
        "deriv" => over_windows(&matrix_at(0)?, false, |w, _| {
            (w.len() >= 2).then(|| regression(w, w[0].t).0)
        }),
        "predict_linear" => {
            let m = matrix_at(0)?;
            let d = ev.scalar(arg(c, 1)?, times)?;
            over_windows(&m, false, |w, i| {
                (w.len() >= 2).then(|| {
                    let (slope, at) = regression(w, times[i]);
                    slope * d[i] + at
                })
            })
        }
        "resets" => over_windows(&matrix_at(0)?, false, |w, _| {
            Some(w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64)
        }),
        "changes" => over_windows(&matrix_at(0)?, false, |w, _| {
            Some(
                w.windows(2)
                    .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
                    .count() as f64,
            )
        }),
        "avg_over_time" => over_windows(&matrix_at(0)?, false, |w, _| Some(mean(w))),
        "sum_over_time" => over_windows(&matrix_at(0)?, false, |w, _| {
            Some(w.iter().map(|s| s.v).sum())
        }),
        "count_over_time" => over_windows(&matrix_at(0)?, false, |w, _| Some(w.len() as f64)),
        "min_over_time" | "max_over_time" => over_windows(&matrix_at(0)?, false, |w, _| {
            let mut acc = w[0].v;
            for s in &w[1..] {
                let better = if name == "min_over_time" {
                    s.v < acc
                } else {
                    s.v > acc
                };
                if better || acc.is_nan() {
                    acc = s.v;
                }
            }
            Some(acc)
        }),
        "stddev_over_time" => over_windows(&matrix_at(0)?, false, |w, _| Some(variance(w).sqrt())),
        "stdvar_over_time" => over_windows(&matrix_at(0)?, false, |w, _| Some(variance(w))),
        "last_over_time" => over_windows(&matrix_at(0)?, true, |w, _| w.last().map(|s| s.v)),
        "present_over_time" => over_windows(&matrix_at(0)?, false, |_, _| Some(1.0)),
        "quantile_over_time" => {
            let q = ev.scalar(arg(c, 0)?, times)?;
            let m = matrix_at(1)?;
            over_windows(&m, false, |w, i| {
                let mut v: Vec<f64> = w.iter().map(|s| s.v).collect();
                Some(quantile(q[i], &mut v))
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

//! The evaluator: walks the parsed expression once, each node for every step of the query
//! (see [`crate::promql::value`]), over series fetched beforehand ([`crate::promql::fetch`]).
//! Semantics follow the current Prometheus: an instant selector takes the newest sample in
//! `(t - lookback, t]` unless it is a stale marker; a range selector the samples in
//! `(t - range, t]`; subquery steps are aligned to multiples of their step.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use loupe_storage::metrics::model::is_stale;
use loupe_storage::metrics::{Labels, METRIC_NAME, Sample, Series};
use promql_parser::parser::{Expr, VectorSelector};

use crate::promql::EvalError;
use crate::promql::fetch::{QueryTimes, at_ms, key, matchers, millis, offset_ms};
use crate::promql::value::{Matrix, Steps, Value};

/// Samples a query may hold at once (Prometheus's default `--query.max-samples`).
pub const MAX_SAMPLES: u64 = 50_000_000;

pub struct Evaluator<'a> {
    pub q: QueryTimes,
    pub data: &'a HashMap<String, Arc<Vec<Series>>>,
    pub max_samples: u64,
    loaded: Cell<u64>,
}

/// Labels without the metric name (shared when there is none to drop).
pub fn drop_name(l: &Arc<Labels>) -> Arc<Labels> {
    if l.get(METRIC_NAME).is_some() {
        Arc::new(l.without(METRIC_NAME))
    } else {
        l.clone()
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(q: QueryTimes, data: &'a HashMap<String, Arc<Vec<Series>>>) -> Self {
        Evaluator {
            q,
            data,
            max_samples: MAX_SAMPLES,
            loaded: Cell::new(0),
        }
    }

    fn charge(&self, n: u64) -> Result<(), EvalError> {
        let total = self.loaded.get() + n;
        self.loaded.set(total);
        if total > self.max_samples {
            return Err(EvalError::Execution(format!(
                "query processing would load too many samples into memory in query execution (more than {})",
                self.max_samples
            )));
        }
        Ok(())
    }

    pub fn eval(&self, e: &Expr, times: &[i64]) -> Result<Value, EvalError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; times.len()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, times),
            Expr::Unary(u) => match self.eval(&u.expr, times)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Steps {
                            labels: drop_name(&s.labels),
                            points: s.points.into_iter().map(|p| p.map(|x| -x)).collect(),
                        })
                        .collect(),
                )),
                other => Err(EvalError::BadData(format!(
                    "unary minus needs a scalar or an instant vector, got a {}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs, times)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                Ok(Value::Matrix(self.matrix(e, times)?))
            }
            Expr::Call(c) => crate::promql::functions::call(self, c, times),
            Expr::Aggregate(a) => crate::promql::aggregate::eval(self, a, times),
            Expr::Binary(b) => crate::promql::binary::eval(self, b, times),
            Expr::Extension(_) => Err(EvalError::BadData("unsupported expression".into())),
        }
    }

    /// Evaluates to an instant vector (or fails naming what it got).
    pub fn vector(&self, e: &Expr, times: &[i64]) -> Result<Vec<Steps>, EvalError> {
        match self.eval(e, times)? {
            Value::Vector(v) => Ok(v),
            other => Err(EvalError::BadData(format!(
                "expected an instant vector, got a {}",
                other.kind()
            ))),
        }
    }

    pub fn scalar(&self, e: &Expr, times: &[i64]) -> Result<Vec<f64>, EvalError> {
        match self.eval(e, times)? {
            Value::Scalar(v) => Ok(v),
            other => Err(EvalError::BadData(format!(
                "expected a scalar, got a {}",
                other.kind()
            ))),
        }
    }

    fn series_of(&self, vs: &VectorSelector) -> Result<&'a [Series], EvalError> {
        let m = matchers(vs)?;
        Ok(self.data.get(&key(&m)).map_or(&[], |v| v.as_slice()))
    }

    /// A selector's fetched series, shared.
    fn fetched(&self, vs: &VectorSelector) -> Result<Arc<Vec<Series>>, EvalError> {
        let m = matchers(vs)?;
        Ok(self.data.get(&key(&m)).cloned().unwrap_or_default())
    }

    /// The instant selection of `vs` at every step.
    pub fn instant(&self, vs: &VectorSelector, times: &[i64]) -> Result<Vec<Steps>, EvalError> {
        let out = self.select_each(vs, times, |x| x.v)?;
        self.charge(out.iter().map(|s| s.points.len() as u64).sum())?;
        Ok(out)
    }

    /// The sample times (seconds) a selector's instant value came from, per step
    /// (`timestamp`).
    pub fn instant_times(
        &self,
        vs: &VectorSelector,
        times: &[i64],
    ) -> Result<Vec<Steps>, EvalError> {
        self.select_each(vs, times, |x| x.t as f64 / 1000.0)
    }

    /// For every series and step, `f` of the newest sample in `(t - lookback, t]` unless it
    /// is a stale marker.
    fn select_each(
        &self,
        vs: &VectorSelector,
        times: &[i64],
        f: impl Fn(&Sample) -> f64,
    ) -> Result<Vec<Steps>, EvalError> {
        let at = at_ms(&vs.at, &self.q);
        let off = offset_ms(&vs.offset);
        let lookback = self.q.lookback;
        let mut out = Vec::new();
        for s in self.series_of(vs)? {
            let points: Vec<Option<f64>> = times
                .iter()
                .map(|&t| {
                    let t = at.unwrap_or(t) - off;
                    let i = s.samples.partition_point(|x| x.t <= t);
                    let x = s.samples[..i].last()?;
                    (x.t > t - lookback && !is_stale(x.v)).then(|| f(x))
                })
                .collect();
            if points.iter().any(Option::is_some) {
                out.push(Steps {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
    }

    /// A range vector: a range selector or a subquery (through parentheses).
    pub fn matrix(&self, e: &Expr, times: &[i64]) -> Result<Matrix, EvalError> {
        match e {
            Expr::Paren(p) => self.matrix(&p.expr, times),
            Expr::MatrixSelector(ms) => {
                let at = at_ms(&ms.vs.at, &self.q);
                let off = offset_ms(&ms.vs.offset);
                let range = millis(&ms.range);
                let fetched = self.fetched(&ms.vs)?;
                // Stale markers play no part in a range: series with none are used as
                // fetched (shared, not copied).
                let series = if fetched
                    .iter()
                    .any(|s| s.samples.is_empty() || s.samples.iter().any(|x| is_stale(x.v)))
                {
                    Arc::new(
                        fetched
                            .iter()
                            .map(|s| Series {
                                labels: s.labels.clone(),
                                samples: s
                                    .samples
                                    .iter()
                                    .filter(|x| !is_stale(x.v))
                                    .copied()
                                    .collect(),
                            })
                            .filter(|s| !s.samples.is_empty())
                            .collect(),
                    )
                } else {
                    fetched
                };
                self.charge(series.iter().map(|s| s.samples.len() as u64).sum())?;
                Ok(Matrix {
                    series,
                    range,
                    ends: times.iter().map(|&t| at.unwrap_or(t) - off).collect(),
                })
            }
            Expr::Subquery(sq) => {
                let at = at_ms(&sq.at, &self.q);
                let off = offset_ms(&sq.offset);
                let range = millis(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(millis)
                    .unwrap_or(self.q.default_subquery_step)
                    .max(1);
                let ends: Vec<i64> = times.iter().map(|&t| at.unwrap_or(t) - off).collect();
                let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
                    return Ok(Matrix {
                        series: Arc::new(vec![]),
                        range,
                        ends,
                    });
                };
                // The first multiple of the step at or after the earliest window's start.
                let first = (lo - range).div_euclid(step) * step;
                let first = if first < lo - range {
                    first + step
                } else {
                    first
                };
                let inner: Vec<i64> = (0..)
                    .map(|k| first + k * step)
                    .take_while(|&t| t <= hi)
                    .collect();
                if inner.len() > 11_000 * 100 {
                    return Err(EvalError::BadData(format!(
                        "subquery {sq} would evaluate {} steps; use a larger subquery step",
                        inner.len()
                    )));
                }
                let series = match self.eval(&sq.expr, &inner)? {
                    Value::Vector(v) => v
                        .into_iter()
                        .map(|s| Series {
                            labels: s.labels,
                            samples: inner
                                .iter()
                                .zip(s.points)
                                .filter_map(|(&t, p)| p.map(|v| Sample { t, v }))
                                .collect(),
                        })
                        .collect(),
                    Value::Scalar(v) => vec![Series {
                        labels: Arc::new(Labels::default()),
                        samples: inner.iter().zip(v).map(|(&t, v)| Sample { t, v }).collect(),
                    }],
                    other => {
                        return Err(EvalError::BadData(format!(
                            "subquery needs an instant vector, got a {}",
                            other.kind()
                        )));
                    }
                };
                Ok(Matrix {
                    series: Arc::new(series),
                    range,
                    ends,
                })
            }
            other => Err(EvalError::BadData(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }
}

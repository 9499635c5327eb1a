//! The metrics domain service: series selection, label browsing, metadata and PromQL
//! queries over a tenant's metric files and the collector's fresh samples. Transport-agnostic;
//! the Prometheus HTTP API (`crate::prometheus`) is one adapter over it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::Fresh;
use loupe_storage::metrics::{
    LabelMatcher, Labels, METRIC_NAME, MetricMeta, MetricReader, MetricRows, Selector, Series,
    SeriesExemplars,
};
use loupe_storage::{Signal, TenantId};
use promql_parser::parser::Expr;

use crate::promql::EvalError;
use crate::promql::eval::{Evaluator, MAX_SAMPLES};
use crate::promql::fetch::{QueryTimes, plan};
use crate::promql::value::Value;

/// Points a range query may have per series (Prometheus's limit).
pub const MAX_POINTS: i64 = 11_000;
/// Prometheus's default lookback and default subquery step.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
pub const SUBQUERY_STEP_MS: i64 = 60 * 1000;
/// Exemplars one `query_exemplars` answer may hold.
pub const MAX_EXEMPLARS: usize = 1_000_000;

/// A series of a matrix result: labels and `(ms, value)` points.
pub type PointSeries = (Arc<Labels>, Vec<(i64, f64)>);

/// A query's result, in Prometheus's result types.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Vector(Vec<(Arc<Labels>, i64, f64)>),
    Matrix(Vec<PointSeries>),
    Scalar(i64, f64),
    String(i64, String),
}

pub struct MetricService {
    catalog: Catalog,
    reader: Arc<MetricReader>,
    fresh: Arc<dyn Fresh<MetricRows>>,
    max_age: Duration,
}

pub fn parse(query: &str) -> Result<Expr, EvalError> {
    promql_parser::parser::parse(query)
        .map_err(|e| EvalError::BadData(format!("invalid parameter \"query\": {e}")))
}

impl MetricService {
    pub fn new(
        catalog: Catalog,
        reader: Arc<MetricReader>,
        fresh: Arc<dyn Fresh<MetricRows>>,
        max_age: Duration,
    ) -> Self {
        MetricService {
            catalog,
            reader,
            fresh,
            max_age,
        }
    }

    /// Series matching `matchers` with samples in `[start_ms, end_ms]`.
    pub async fn select(
        &self,
        tenant: &TenantId,
        matchers: Vec<LabelMatcher>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let sel = Selector {
            matchers,
            start_ms,
            end_ms,
        };
        Ok(self
            .reader
            .select(
                &self.catalog,
                tenant,
                self.max_age,
                self.fresh.chunks(tenant),
                &sel,
            )
            .await?)
    }

    /// The label sets of series matching any of `selectors` (every series when none).
    pub async fn series(
        &self,
        tenant: &TenantId,
        selectors: &[Vec<LabelMatcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Arc<Labels>>, EvalError> {
        let mut out: BTreeSet<Arc<Labels>> = BTreeSet::new();
        let all = [Vec::new()];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        for m in selectors {
            for s in self.select(tenant, m.clone(), start_ms, end_ms).await? {
                out.insert(s.labels);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Label names of matching series, sorted.
    pub async fn label_names(
        &self,
        tenant: &TenantId,
        selectors: &[Vec<LabelMatcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, EvalError> {
        let series = self.series(tenant, selectors, start_ms, end_ms).await?;
        let names: BTreeSet<String> = series
            .iter()
            .flat_map(|l| l.iter().map(|(k, _)| k.to_string()))
            .collect();
        Ok(names.into_iter().collect())
    }

    /// Values of one label over matching series, sorted. Metric names without selectors
    /// come from the catalog's series index and the fresh chunks (no file is read).
    pub async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        selectors: &[Vec<LabelMatcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, EvalError> {
        if name == METRIC_NAME && selectors.is_empty() {
            let state = self
                .catalog
                .snapshot(tenant, Signal::Metrics, self.max_age)
                .await
                .map_err(|e| EvalError::Query(e.into()))?;
            let (s, e) = (
                start_ms.saturating_mul(1_000_000),
                end_ms.saturating_mul(1_000_000),
            );
            let mut names: BTreeSet<String> = BTreeSet::new();
            let mut unindexed = false;
            for f in state.files().filter(|f| f.overlaps(s, e)) {
                match &f.series {
                    Some(ix) => names.extend(ix.metrics.iter().cloned()),
                    None => unindexed = true,
                }
            }
            for c in self.fresh.chunks(tenant) {
                let rows = c.rows();
                let mut inside = vec![false; rows.series.len()];
                for p in rows
                    .points
                    .iter()
                    .filter(|p| p.t >= start_ms && p.t <= end_ms)
                {
                    if let Some(b) = inside.get_mut(p.series as usize) {
                        *b = true;
                    }
                }
                for (l, _) in rows.series.iter().zip(inside).filter(|(_, b)| *b) {
                    names.insert(l.name().to_string());
                }
            }
            if !unindexed {
                return Ok(names.into_iter().collect());
            }
        }
        let series = self.series(tenant, selectors, start_ms, end_ms).await?;
        let values: BTreeSet<String> = series
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        Ok(values.into_iter().collect())
    }

    /// Metric families' type, unit and help.
    pub async fn metadata(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MetricMeta>, EvalError> {
        Ok(self
            .reader
            .metadata(
                &self.catalog,
                tenant,
                self.max_age,
                self.fresh.chunks(tenant),
                start_ms,
                end_ms,
            )
            .await?)
    }

    /// The exemplars in `[start_ms, end_ms]` of the series any selector of `query` selects
    /// (Prometheus's `query_exemplars`: offsets and ranges play no part).
    pub async fn exemplars(
        &self,
        tenant: &TenantId,
        query: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesExemplars>, EvalError> {
        let expr = parse(query)?;
        let times = QueryTimes {
            start: start_ms,
            end: end_ms,
            step: 1,
            lookback: 0,
            default_subquery_step: SUBQUERY_STEP_MS,
        };
        let selectors: Vec<Selector> = plan(&expr, &times)?
            .into_iter()
            .map(|f| Selector {
                matchers: f.matchers,
                start_ms,
                end_ms,
            })
            .collect();
        if selectors.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .reader
            .exemplars(
                &self.catalog,
                tenant,
                self.max_age,
                self.fresh.chunks(tenant),
                &selectors,
            )
            .await?;
        let n: usize = found.iter().map(|s| s.exemplars.len()).sum();
        if n > MAX_EXEMPLARS {
            return Err(EvalError::Execution(format!(
                "the query selects {n} exemplars, more than {MAX_EXEMPLARS}: narrow the selectors or the time range"
            )));
        }
        Ok(found)
    }

    /// Reads what `expr` needs, then evaluates it at `times` on the CPU pool.
    async fn run(
        &self,
        tenant: &TenantId,
        query: &str,
        q: QueryTimes,
        times: Vec<i64>,
    ) -> Result<(Value, Expr), EvalError> {
        let expr = parse(query)?;
        let fetches = plan(&expr, &q)?;
        let mut data: HashMap<String, Arc<Vec<Series>>> = HashMap::new();
        let mut loaded = 0u64;
        for f in fetches {
            let series = self.select(tenant, f.matchers, f.start, f.end).await?;
            loaded += series.iter().map(|s| s.samples.len() as u64).sum::<u64>();
            if loaded > MAX_SAMPLES {
                return Err(EvalError::Execution(format!(
                    "query processing would load too many samples into memory in query execution (more than {MAX_SAMPLES})"
                )));
            }
            data.insert(f.key, Arc::new(series));
        }
        loupe_core::cpu::run(move || {
            let ev = Evaluator::new(q, &data);
            let v = ev.eval(&expr, &times)?;
            Ok::<_, EvalError>((v, expr))
        })
        .await
        .map_err(|e| EvalError::Query(e.into()))?
    }

    /// An instant query at `t_ms`.
    pub async fn instant(
        &self,
        tenant: &TenantId,
        query: &str,
        t_ms: i64,
        lookback: i64,
    ) -> Result<QueryResult, EvalError> {
        let q = QueryTimes {
            start: t_ms,
            end: t_ms,
            step: 0,
            lookback,
            default_subquery_step: SUBQUERY_STEP_MS,
        };
        let (v, expr) = self.run(tenant, query, q, vec![t_ms]).await?;
        Ok(match v {
            Value::Scalar(s) => QueryResult::Scalar(t_ms, s[0]),
            Value::String(s) => QueryResult::String(t_ms, s),
            Value::Vector(v) => {
                let mut out: Vec<(Arc<Labels>, i64, f64)> = v
                    .into_iter()
                    .filter_map(|s| s.points[0].map(|p| (s.labels, t_ms, p)))
                    .collect();
                sort_instant(&expr, &mut out);
                QueryResult::Vector(out)
            }
            Value::Matrix(m) => {
                let mut out: Vec<PointSeries> = m
                    .series
                    .iter()
                    .map(|s| {
                        (
                            s.labels.clone(),
                            m.window(s, 0)
                                .iter()
                                .map(|x| (x.t, x.v))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .filter(|(_, p)| !p.is_empty())
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                QueryResult::Matrix(out)
            }
        })
    }

    /// A range query over `[start, end]` every `step` (milliseconds).
    pub async fn range(
        &self,
        tenant: &TenantId,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        lookback: i64,
    ) -> Result<QueryResult, EvalError> {
        if step <= 0 {
            return Err(EvalError::BadData(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(EvalError::BadData(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step >= MAX_POINTS {
            return Err(EvalError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let times: Vec<i64> = (0..)
            .map(|k| start + k * step)
            .take_while(|&t| t <= end)
            .collect();
        let q = QueryTimes {
            start,
            end,
            step,
            lookback,
            default_subquery_step: SUBQUERY_STEP_MS,
        };
        let (v, _) = self.run(tenant, query, q, times.clone()).await?;
        let mut out: Vec<PointSeries> = match v {
            Value::Scalar(s) => vec![(
                Arc::new(Labels::default()),
                times.iter().copied().zip(s).collect(),
            )],
            Value::Vector(v) => v
                .into_iter()
                .map(|s| {
                    let pts: Vec<(i64, f64)> = times
                        .iter()
                        .zip(s.points)
                        .filter_map(|(&t, p)| p.map(|p| (t, p)))
                        .collect();
                    (s.labels, pts)
                })
                .filter(|(_, p)| !p.is_empty())
                .collect(),
            other => {
                return Err(EvalError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    if matches!(other, Value::Matrix(_)) {
                        "range vector"
                    } else {
                        "string"
                    }
                )));
            }
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(QueryResult::Matrix(out))
    }
}

/// Instant vectors come sorted by labels, or by value under `sort`/`sort_desc`.
fn sort_instant(expr: &Expr, out: &mut [(Arc<Labels>, i64, f64)]) {
    let mut e = expr;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    let by_value = |a: f64, b: f64| {
        // NaN last.
        match (a.is_nan(), b.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
        }
    };
    match e {
        Expr::Call(c) if c.func.name == "sort" => out.sort_by(|a, b| by_value(a.2, b.2)),
        Expr::Call(c) if c.func.name == "sort_desc" => out.sort_by(|a, b| by_value(b.2, a.2)),
        _ => out.sort_by(|a, b| a.0.cmp(&b.0)),
    }
}

/// A service over an empty in-memory store (tests of other APIs).
#[cfg(test)]
pub fn empty_for_tests() -> Arc<MetricService> {
    let storage = loupe_storage::store::Storage::in_memory();
    Arc::new(MetricService::new(
        Catalog::new(storage.clone(), "test"),
        Arc::new(MetricReader::new(storage)),
        Arc::new(loupe_storage::fresh::NoFresh),
        Duration::ZERO,
    ))
}

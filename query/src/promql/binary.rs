//! Binary operators: arithmetic, comparisons (filtering, or 0/1 with `bool`), `atan2`, and
//! the set operators `and`, `or`, `unless`; between scalars, a vector and a scalar, or two
//! vectors with Prometheus's matching (`on`, `ignoring`, `group_left`, `group_right`),
//! checked per step as Prometheus checks it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use loupe_storage::metrics::{Labels, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::promql::EvalError;
use crate::promql::eval::{Evaluator, drop_name};
use crate::promql::value::{Steps, Value};

fn arith(op: &str, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        "^" => a.powf(b),
        "atan2" => a.atan2(b),
        _ => return None,
    })
}

fn compare(op: &str, a: f64, b: f64) -> Option<bool> {
    Some(match op {
        "==" => a == b,
        "!=" => a != b,
        ">" => a > b,
        "<" => a < b,
        ">=" => a >= b,
        "<=" => a <= b,
        _ => return None,
    })
}

/// The value and whether the element is kept.
fn elem(op: &str, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    if let Some(v) = arith(op, l, r) {
        return Ok((v, true));
    }
    if let Some(k) = compare(op, l, r) {
        return Ok((l, k));
    }
    Err(EvalError::BadData(format!(
        "operator {op:?} is not supported here"
    )))
}

/// Whether the operator drops the metric name (Prometheus's `shouldDropMetricName`: the
/// arithmetic operators, not `atan2`).
fn is_arith(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^")
}

/// Series of a result, merged by labels.
#[derive(Default)]
struct Out {
    index: HashMap<Arc<Labels>, usize>,
    series: Vec<Steps>,
}

impl Out {
    fn put(&mut self, labels: Arc<Labels>, n: usize, i: usize, v: f64) {
        let k = *self.index.entry(labels.clone()).or_insert_with(|| {
            self.series.push(Steps {
                labels,
                points: vec![None; n],
            });
            self.series.len() - 1
        });
        self.series[k].points[i] = Some(v);
    }
}

pub fn eval(ev: &Evaluator, b: &BinaryExpr, times: &[i64]) -> Result<Value, EvalError> {
    let op = b.op.to_string();
    let op = op.as_str();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let n = times.len();
    let lhs = ev.eval(&b.lhs, times)?;
    let rhs = ev.eval(&b.rhs, times)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let v = l
                .iter()
                .zip(&r)
                .map(|(&a, &c)| {
                    let (v, keep) = elem(op, a, c)?;
                    Ok(if compare(op, a, c).is_some() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    })
                })
                .collect::<Result<_, EvalError>>()?;
            Ok(Value::Scalar(v))
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Ok(Value::Vector(vector_scalar(op, v, &s, false, return_bool)?))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Ok(Value::Vector(vector_scalar(op, v, &s, true, return_bool)?))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            Ok(Value::Vector(vector_vector(op, b, l, r, n, return_bool)?))
        }
        (l, r) => Err(EvalError::BadData(format!(
            "operator {op:?} cannot combine a {} and a {}",
            l.kind(),
            r.kind()
        ))),
    }
}

fn vector_scalar(
    op: &str,
    v: Vec<Steps>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Steps>, EvalError> {
    let comparison = compare(op, 0.0, 0.0).is_some();
    let mut out = Vec::with_capacity(v.len());
    for series in v {
        let mut points = vec![None; series.points.len()];
        for (i, p) in series.points.iter().enumerate() {
            let Some(x) = *p else { continue };
            let (l, r) = if swap { (s[i], x) } else { (x, s[i]) };
            let (mut value, mut keep) = elem(op, l, r)?;
            if comparison && swap {
                value = r;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                points[i] = Some(value);
            }
        }
        if points.iter().any(Option::is_some) {
            let labels = if is_arith(op) || return_bool {
                drop_name(&series.labels)
            } else {
                series.labels
            };
            out.push(Steps { labels, points });
        }
    }
    Ok(out)
}

/// The matching signature of a series.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l.keep(&on.labels),
        Some(LabelModifier::Exclude(ign)) => l.drop_all(&ign.labels).without(METRIC_NAME),
        None => l.without(METRIC_NAME),
    }
}

fn vector_vector(
    op: &str,
    b: &BinaryExpr,
    lhs: Vec<Steps>,
    rhs: Vec<Steps>,
    n: usize,
    return_bool: bool,
) -> Result<Vec<Steps>, EvalError> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
    let card = b
        .modifier
        .as_ref()
        .map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
    let lsig: Vec<Labels> = lhs
        .iter()
        .map(|s| signature(&s.labels, &matching))
        .collect();
    let rsig: Vec<Labels> = rhs
        .iter()
        .map(|s| signature(&s.labels, &matching))
        .collect();
    let mut out = Out::default();
    if matches!(op, "and" | "or" | "unless") {
        for i in 0..n {
            let rset: HashSet<&Labels> = (0..rhs.len())
                .filter(|&k| rhs[k].points[i].is_some())
                .map(|k| &rsig[k])
                .collect();
            let mut lset: HashSet<&Labels> = HashSet::new();
            for (k, s) in lhs.iter().enumerate() {
                let Some(v) = s.points[i] else { continue };
                lset.insert(&lsig[k]);
                let keep = match op {
                    "and" => rset.contains(&lsig[k]),
                    "unless" => !rset.contains(&lsig[k]),
                    _ => true,
                };
                if keep {
                    out.put(s.labels.clone(), n, i, v);
                }
            }
            if op == "or" {
                for (k, s) in rhs.iter().enumerate() {
                    if let Some(v) = s.points[i]
                        && !lset.contains(&rsig[k])
                    {
                        out.put(s.labels.clone(), n, i, v);
                    }
                }
            }
        }
        return Ok(out.series);
    }
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    let (many, one, msig, osig) = if one_to_many {
        (&rhs, &lhs, &rsig, &lsig)
    } else {
        (&lhs, &rhs, &lsig, &rsig)
    };
    let side = if one_to_many { "left" } else { "right" };
    let drop = is_arith(op) || return_bool;
    for i in 0..n {
        let mut ones: HashMap<&Labels, usize> = HashMap::new();
        for (k, s) in one.iter().enumerate() {
            if s.points[i].is_none() {
                continue;
            }
            if ones.insert(&osig[k], k).is_some() {
                return Err(EvalError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                    osig[k]
                )));
            }
        }
        let mut matched: HashSet<&Labels> = HashSet::new();
        let mut results: HashSet<Arc<Labels>> = HashSet::new();
        for (k, s) in many.iter().enumerate() {
            let Some(mv) = s.points[i] else { continue };
            let Some(&o) = ones.get(&msig[k]) else {
                continue;
            };
            let ov = one[o].points[i].unwrap_or(f64::NAN);
            if matches!(card, VectorMatchCardinality::OneToOne) && !matched.insert(&msig[k]) {
                return Err(EvalError::Execution(format!(
                    "multiple matches for labels {}: many-to-one matching must be explicit (group_left/group_right)",
                    msig[k]
                )));
            }
            let (l, r) = if one_to_many { (ov, mv) } else { (mv, ov) };
            let (mut value, keep) = elem(op, l, r)?;
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let mut labels = (*s.labels).clone();
            if drop {
                labels.set(METRIC_NAME, "");
            }
            if matches!(card, VectorMatchCardinality::OneToOne) {
                match &matching {
                    Some(LabelModifier::Include(on)) => labels = labels.keep(&on.labels),
                    Some(LabelModifier::Exclude(ign)) => labels = labels.drop_all(&ign.labels),
                    None => {}
                }
            }
            for k in &include {
                labels.set(k, one[o].labels.get(k).unwrap_or(""));
            }
            let labels = Arc::new(labels);
            if !matches!(card, VectorMatchCardinality::OneToOne) && !results.insert(labels.clone())
            {
                return Err(EvalError::Execution(format!(
                    "multiple matches for labels {labels}: grouping labels must ensure unique matches"
                )));
            }
            out.put(labels, n, i, value);
        }
    }
    Ok(out.series)
}

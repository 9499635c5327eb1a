//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `topk`, `bottomk`, `quantile`, `count_values`) with `by`/`without`, per step.

use std::collections::HashMap;
use std::sync::Arc;

use loupe_storage::metrics::{Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::promql::EvalError;
use crate::promql::eval::Evaluator;
use crate::promql::range::quantile;
use crate::promql::value::{Steps, Value, format_float};

fn group_key(l: &Labels, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Labels::default(),
        Some(LabelModifier::Include(by)) => l.keep(&by.labels),
        Some(LabelModifier::Exclude(without)) => l.drop_all(&without.labels).without(METRIC_NAME),
    }
}

pub fn eval(ev: &Evaluator, a: &AggregateExpr, times: &[i64]) -> Result<Value, EvalError> {
    let op = a.op.to_string();
    let n = times.len();
    let input = ev.vector(&a.expr, times)?;
    // Series grouped once (labels do not change across steps).
    let mut keys: Vec<Arc<Labels>> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let members: Vec<usize> = input
        .iter()
        .map(|s| {
            let k = group_key(&s.labels, &a.modifier);
            *index.entry(k.clone()).or_insert_with(|| {
                keys.push(Arc::new(k));
                keys.len() - 1
            })
        })
        .collect();
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); keys.len()];
    for (s, g) in members.iter().enumerate() {
        groups[*g].push(s);
    }
    let param = |what: &str| -> Result<Vec<f64>, EvalError> {
        let p = a
            .param
            .as_ref()
            .ok_or_else(|| EvalError::BadData(format!("{op} needs a {what} parameter")))?;
        ev.scalar(p, times)
    };
    match op.as_str() {
        "topk" | "bottomk" => {
            let k = param("k")?;
            let mut out: Vec<Steps> = input
                .iter()
                .map(|s| Steps {
                    labels: s.labels.clone(),
                    points: vec![None; n],
                })
                .collect();
            for g in &groups {
                for (i, &kk) in k.iter().enumerate() {
                    if kk.is_nan() || kk < 1.0 {
                        continue;
                    }
                    let mut present: Vec<(usize, f64)> = g
                        .iter()
                        .filter_map(|&s| input[s].points[i].map(|v| (s, v)))
                        .collect();
                    present.sort_by(|x, y| {
                        let (a, b) = if op == "topk" { (y.1, x.1) } else { (x.1, y.1) };
                        // NaN sorts last in both directions.
                        match (a.is_nan(), b.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                    for (s, v) in present.into_iter().take(kk.min(1e9) as usize) {
                        out[s].points[i] = Some(v);
                    }
                }
            }
            out.retain(|s| s.points.iter().any(Option::is_some));
            Ok(Value::Vector(out))
        }
        "count_values" => {
            let Some(p) = &a.param else {
                return Err(EvalError::BadData("count_values needs a label name".into()));
            };
            let Value::String(label) = ev.eval(p, times)? else {
                return Err(EvalError::BadData(
                    "count_values needs a string label name".into(),
                ));
            };
            let valid = label.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(EvalError::BadData(format!("invalid label name {label:?}")));
            }
            let mut out: HashMap<Labels, Vec<Option<f64>>> = HashMap::new();
            for (gi, g) in groups.iter().enumerate() {
                for i in 0..n {
                    for &s in g {
                        if let Some(v) = input[s].points[i] {
                            let mut l = (*keys[gi]).clone();
                            l.set(&label, &format_float(v));
                            let p = out.entry(l).or_insert_with(|| vec![None; n]);
                            p[i] = Some(p[i].unwrap_or(0.0) + 1.0);
                        }
                    }
                }
            }
            Ok(Value::Vector(
                out.into_iter()
                    .map(|(l, points)| Steps {
                        labels: Arc::new(l),
                        points,
                    })
                    .collect(),
            ))
        }
        "sum" | "count" | "group" => {
            // Series by series into one accumulator per step: memory in order, nothing
            // collected (the same additions, in the same order, as `fold`).
            let mut out = Vec::with_capacity(groups.len());
            for (gi, g) in groups.iter().enumerate() {
                let mut points: Vec<Option<f64>> = vec![None; n];
                for &s in g {
                    for (acc, p) in points.iter_mut().zip(&input[s].points) {
                        let Some(v) = *p else { continue };
                        *acc = Some(match (op.as_str(), *acc) {
                            ("sum", Some(a)) => a + v,
                            ("sum", None) => v,
                            ("count", a) => a.unwrap_or(0.0) + 1.0,
                            _ => 1.0,
                        });
                    }
                }
                if points.iter().any(Option::is_some) {
                    out.push(Steps {
                        labels: keys[gi].clone(),
                        points,
                    });
                }
            }
            Ok(Value::Vector(out))
        }
        _ => {
            let q = if op == "quantile" {
                param("quantile")?
            } else {
                Vec::new()
            };
            let mut out = Vec::with_capacity(groups.len());
            let mut vals: Vec<f64> = Vec::new();
            for (gi, g) in groups.iter().enumerate() {
                let points: Vec<Option<f64>> = (0..n)
                    .map(|i| {
                        vals.clear();
                        vals.extend(g.iter().filter_map(|&s| input[s].points[i]));
                        if vals.is_empty() {
                            return Ok(None);
                        }
                        Ok(Some(fold(&op, &vals, q.get(i).copied())?))
                    })
                    .collect::<Result<_, EvalError>>()?;
                if points.iter().any(Option::is_some) {
                    out.push(Steps {
                        labels: keys[gi].clone(),
                        points,
                    });
                }
            }
            Ok(Value::Vector(out))
        }
    }
}

fn fold(op: &str, vals: &[f64], q: Option<f64>) -> Result<f64, EvalError> {
    Ok(match op {
        "sum" => vals.iter().sum(),
        "count" => vals.len() as f64,
        "group" => 1.0,
        "min" | "max" => {
            let mut acc = vals[0];
            for &v in &vals[1..] {
                let better = if op == "min" { v < acc } else { v > acc };
                if better || acc.is_nan() {
                    acc = v;
                }
            }
            acc
        }
        "avg" => {
            let mut mean: f64 = 0.0;
            for (i, &v) in vals.iter().enumerate() {
                if mean.is_infinite() {
                    if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                mean += (v - mean) / (i as f64 + 1.0);
            }
            mean
        }
        "stddev" | "stdvar" => {
            let (mut count, mut mean, mut aux) = (0.0, 0.0, 0.0);
            for &v in vals {
                count += 1.0;
                let d = v - mean;
                mean += d / count;
                aux += d * (v - mean);
            }
            let var = aux / count;
            if op == "stddev" { var.sqrt() } else { var }
        }
        "quantile" => {
            let mut v = vals.to_vec();
            quantile(q.unwrap_or(f64::NAN), &mut v)
        }
        other => {
            return Err(EvalError::BadData(format!(
                "aggregation {other:?} is not supported by this server"
            )));
        }
    })
}

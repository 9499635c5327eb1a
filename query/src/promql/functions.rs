//! PromQL functions (those over range vectors are in `range.rs`): element-wise on
//! instant vectors (math, `clamp`, `round`, dates), on labels (`label_replace`,
//! `label_join`), and the rest (`histogram_quantile`, `absent`, `time`, `vector`, `scalar`,
//! `timestamp`, `sort`). Names are dropped from results as Prometheus drops them (every
//! function but `last_over_time`, the label functions and `sort*`). A function the
//! evaluator does not know is an error naming it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use loupe_storage::metrics::{Labels, METRIC_NAME};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};

use crate::promql::EvalError;
use crate::promql::eval::{Evaluator, drop_name};
use crate::promql::value::{Steps, Value};

pub(crate) fn arg(c: &Call, i: usize) -> Result<&Expr, EvalError> {
    c.args
        .args
        .get(i)
        .map(|b| &**b)
        .ok_or_else(|| EvalError::BadData(format!("{}: missing argument {}", c.func.name, i + 1)))
}

fn string_arg(ev: &Evaluator, c: &Call, i: usize, times: &[i64]) -> Result<String, EvalError> {
    match ev.eval(arg(c, i)?, times)? {
        Value::String(s) => Ok(s),
        other => Err(EvalError::BadData(format!(
            "{}: argument {} must be a string, got a {}",
            c.func.name,
            i + 1,
            other.kind()
        ))),
    }
}

fn map_vector(v: Vec<Steps>, f: impl Fn(f64, usize) -> f64) -> Vec<Steps> {
    v.into_iter()
        .map(|s| Steps {
            labels: drop_name(&s.labels),
            points: s
                .points
                .into_iter()
                .enumerate()
                .map(|(i, p)| p.map(|x| f(x, i)))
                .collect(),
        })
        .collect()
}

fn math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

fn date(name: &str, secs: f64) -> f64 {
    let Some(t) = DateTime::from_timestamp(secs.floor() as i64, 0) else {
        return f64::NAN;
    };
    match name {
        "day_of_month" => t.day() as f64,
        "day_of_week" => t.weekday().num_days_from_sunday() as f64,
        "day_of_year" => t.ordinal() as f64,
        "days_in_month" => {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 {
                chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
            };
            next.and_then(|n| n.pred_opt())
                .map_or(f64::NAN, |d| d.day() as f64)
        }
        "hour" => t.hour() as f64,
        "minute" => t.minute() as f64,
        "month" => t.month() as f64,
        _ => t.year() as f64,
    }
}

/// Labels `absent` gives: the selector's equality matchers, a name matched twice dropped.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut out = Labels::default();
    let mut seen = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && seen.insert(m.name.clone()) {
            out.set(&m.name, &m.value);
        } else {
            out.set(&m.name, "");
        }
    }
    out
}

fn absent(present: Vec<bool>, e: &Expr) -> Vec<Steps> {
    let points: Vec<Option<f64>> = present.iter().map(|p| (!p).then_some(1.0)).collect();
    if points.iter().all(Option::is_none) {
        return Vec::new();
    }
    vec![Steps {
        labels: Arc::new(absent_labels(e)),
        points,
    }]
}

/// Fails when two series of `v` have the same labels at one step.
fn check_unique(v: &[Steps], n: usize) -> Result<(), EvalError> {
    for i in 0..n {
        let mut seen = std::collections::HashSet::new();
        for s in v.iter().filter(|s| s.points[i].is_some()) {
            if !seen.insert(&*s.labels) {
                return Err(EvalError::Execution(
                    "vector cannot contain metrics with the same labelset".into(),
                ));
            }
        }
    }
    Ok(())
}

fn anchored(re: &str, f: &str) -> Result<regex::Regex, EvalError> {
    regex::Regex::new(&format!("^(?s:{re})$"))
        .map_err(|e| EvalError::BadData(format!("invalid regular expression in {f}(): {e}")))
}

fn valid_label(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub fn call(ev: &Evaluator, c: &Call, times: &[i64]) -> Result<Value, EvalError> {
    let name = c.func.name;
    if let Some(v) = crate::promql::range::range_function(ev, c, times)? {
        return Ok(Value::Vector(v));
    }
    let n = times.len();
    let vector_at = |i: usize| ev.vector(arg(c, i)?, times);
    let scalar_at = |i: usize| ev.scalar(arg(c, i)?, times);
    let v = match name {
        "time" => {
            return Ok(Value::Scalar(
                times.iter().map(|&t| t as f64 / 1000.0).collect(),
            ));
        }
        "pi" => return Ok(Value::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => vec![Steps {
            labels: Arc::new(Labels::default()),
            points: scalar_at(0)?.into_iter().map(Some).collect(),
        }],
        "scalar" => {
            let v = vector_at(0)?;
            return Ok(Value::Scalar(
                (0..n)
                    .map(|i| {
                        let mut it = v.iter().filter_map(|s| s.points[i]);
                        match (it.next(), it.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ));
        }
        _ if math(name).is_some() => {
            let f = math(name).unwrap_or(f64::abs);
            map_vector(vector_at(0)?, |x, _| f(x))
        }
        "round" => {
            let to = if c.args.args.len() > 1 {
                scalar_at(1)?
            } else {
                vec![1.0; n]
            };
            map_vector(vector_at(0)?, |x, i| {
                let inv = 1.0 / to[i];
                (x * inv + 0.5).floor() / inv
            })
        }
        "clamp" => {
            let (lo, hi) = (scalar_at(1)?, scalar_at(2)?);
            let mut v = map_vector(vector_at(0)?, |x, i| lo[i].max(hi[i].min(x)));
            for s in &mut v {
                for (i, p) in s.points.iter_mut().enumerate() {
                    if hi[i] < lo[i] {
                        *p = None;
                    }
                }
            }
            v.retain(|s| s.points.iter().any(Option::is_some));
            v
        }
        "clamp_min" => {
            let lo = scalar_at(1)?;
            map_vector(
                vector_at(0)?,
                |x, i| if x.is_nan() { x } else { lo[i].max(x) },
            )
        }
        "clamp_max" => {
            let hi = scalar_at(1)?;
            map_vector(
                vector_at(0)?,
                |x, i| if x.is_nan() { x } else { hi[i].min(x) },
            )
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            if c.args.args.is_empty() {
                vec![Steps {
                    labels: Arc::new(Labels::default()),
                    points: times
                        .iter()
                        .map(|&t| Some(date(name, t as f64 / 1000.0)))
                        .collect(),
                }]
            } else {
                map_vector(vector_at(0)?, |x, _| date(name, x))
            }
        }
        "timestamp" => match arg(c, 0)? {
            Expr::VectorSelector(vs) => map_vector(ev.instant_times(vs, times)?, |x, _| x),
            e => map_vector(ev.vector(e, times)?, |_, i| times[i] as f64 / 1000.0),
        },
        "sort" | "sort_desc" => vector_at(0)?,
        "absent" => {
            let v = vector_at(0)?;
            let present = (0..n)
                .map(|i| v.iter().any(|s| s.points[i].is_some()))
                .collect();
            absent(present, arg(c, 0)?)
        }
        "absent_over_time" => {
            let m = ev.matrix(arg(c, 0)?, times)?;
            let present = (0..n)
                .map(|i| m.series.iter().any(|s| !m.window(s, i).is_empty()))
                .collect();
            absent(present, arg(c, 0)?)
        }
        "histogram_quantile" => histogram_quantile(&scalar_at(0)?, vector_at(1)?, n),
        "label_replace" => {
            let v = vector_at(0)?;
            let dst = string_arg(ev, c, 1, times)?;
            let repl = string_arg(ev, c, 2, times)?;
            let src = string_arg(ev, c, 3, times)?;
            let re = anchored(&string_arg(ev, c, 4, times)?, "label_replace")?;
            if !valid_label(&dst) {
                return Err(EvalError::BadData(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let out: Vec<Steps> = v
                .into_iter()
                .map(|s| {
                    let value = s.labels.get(&src).unwrap_or("");
                    let labels = match re.captures(value) {
                        Some(caps) => {
                            let mut res = String::new();
                            caps.expand(&repl, &mut res);
                            let mut l = (*s.labels).clone();
                            l.set(&dst, &res);
                            Arc::new(l)
                        }
                        None => s.labels,
                    };
                    Steps {
                        labels,
                        points: s.points,
                    }
                })
                .collect();
            check_unique(&out, n)?;
            out
        }
        "label_join" => {
            let v = vector_at(0)?;
            let dst = string_arg(ev, c, 1, times)?;
            let sep = string_arg(ev, c, 2, times)?;
            let src: Vec<String> = (3..c.args.args.len())
                .map(|i| string_arg(ev, c, i, times))
                .collect::<Result<_, _>>()?;
            if !valid_label(&dst) {
                return Err(EvalError::BadData(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let out: Vec<Steps> = v
                .into_iter()
                .map(|s| {
                    let joined: Vec<&str> =
                        src.iter().map(|k| s.labels.get(k).unwrap_or("")).collect();
                    let mut l = (*s.labels).clone();
                    l.set(&dst, &joined.join(&sep));
                    Steps {
                        labels: Arc::new(l),
                        points: s.points,
                    }
                })
                .collect();
            check_unique(&out, n)?;
            out
        }
        other => {
            return Err(EvalError::BadData(format!(
                "function {other:?} is not supported by this server"
            )));
        }
    };
    Ok(Value::Vector(v))
}

/// Prometheus's `histogram_quantile` over classic `le` buckets.
fn histogram_quantile(q: &[f64], v: Vec<Steps>, n: usize) -> Vec<Steps> {
    // Buckets grouped by their labels without `le` and the name.
    let mut groups: HashMap<Labels, Vec<(f64, &Steps)>> = HashMap::new();
    for s in &v {
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        let key = s.labels.without("le").without(METRIC_NAME);
        groups.entry(key).or_default().push((le, s));
    }
    let mut out = Vec::new();
    for (labels, mut buckets) in groups {
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let points: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let b: Vec<(f64, f64)> = buckets
                    .iter()
                    .filter_map(|(le, s)| s.points[i].map(|c| (*le, c)))
                    .collect();
                (!b.is_empty()).then(|| bucket_quantile(q[i], b))
            })
            .collect();
        if points.iter().any(Option::is_some) {
            out.push(Steps {
                labels: Arc::new(labels),
                points,
            });
        }
    }
    out
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets of one bound added together (series differing in other ways than `le`).
    b.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
    let mut max = f64::NEG_INFINITY;
    for x in &mut b {
        if x.1 > max {
            max = x.1;
        } else if x.1 < max {
            x.1 = max;
        }
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let total = b[b.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * total;
    let i = b[..b.len() - 1].partition_point(|x| x.1 < rank);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

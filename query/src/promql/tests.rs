//! Evaluator tests over in-memory series: each case's expected value is worked out by hand
//! from Prometheus's definitions (see the comments).

use std::collections::HashMap;
use std::sync::Arc;

use loupe_storage::metrics::model::STALE_NAN_BITS;
use loupe_storage::metrics::{Labels, Sample, Series, index::matches_all};

use super::EvalError;
use super::eval::Evaluator;
use super::fetch::{QueryTimes, plan};
use super::service::{LOOKBACK_MS, SUBQUERY_STEP_MS, parse};
use super::value::Value;

fn series(name: &str, labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> Series {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("__name__".into(), name.into()));
    Series {
        labels: Arc::new(Labels::new(pairs)),
        samples: samples
            .into_iter()
            .map(|(t, v)| Sample { t: t * 1000, v })
            .collect(),
    }
}

/// Samples every 15 s from 0 to 600 s.
fn every15(f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..=40).map(|k| (k * 15, f(k))).collect()
}

fn data() -> Vec<Series> {
    vec![
        // Resets at 300 s.
        series(
            "http_requests_total",
            &[("job", "api"), ("instance", "a")],
            every15(|k| {
                if k < 20 {
                    10.0 * k as f64
                } else {
                    10.0 * (k - 20) as f64
                }
            }),
        ),
        series(
            "http_requests_total",
            &[("job", "api"), ("instance", "b")],
            every15(|k| 5.0 * k as f64),
        ),
        series(
            "http_requests_total",
            &[("job", "web"), ("instance", "c")],
            every15(|k| k as f64),
        ),
        series("temp", &[("room", "x")], every15(|k| k as f64)),
        series("lat_bucket", &[("le", "0.1")], every15(|_| 10.0)),
        series("lat_bucket", &[("le", "1")], every15(|_| 30.0)),
        series("lat_bucket", &[("le", "+Inf")], every15(|_| 40.0)),
        series(
            "gone",
            &[],
            vec![(90, 1.0), (105, 2.0), (115, f64::from_bits(STALE_NAN_BITS))],
        ),
        series("old", &[], vec![(100, 7.0)]),
    ]
}

fn eval_at(query: &str, times: Vec<i64>) -> Result<Value, EvalError> {
    let all = data();
    let expr = parse(query)?;
    let q = QueryTimes {
        start: times[0],
        end: *times.last().unwrap(),
        step: 0,
        lookback: LOOKBACK_MS,
        default_subquery_step: SUBQUERY_STEP_MS,
    };
    let mut store: HashMap<String, std::sync::Arc<Vec<Series>>> = HashMap::new();
    for f in plan(&expr, &q)? {
        let got: Vec<Series> = all
            .iter()
            .filter(|s| matches_all(&f.matchers, &s.labels))
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|x| x.t >= f.start && x.t <= f.end)
                    .copied()
                    .collect(),
            })
            .collect();
        store.insert(f.key, std::sync::Arc::new(got));
    }
    Evaluator::new(q, &store).eval(&expr, &times)
}

/// The instant vector at `t` seconds as sorted `labels value` lines.
fn at(query: &str, t: i64) -> Vec<String> {
    match eval_at(query, vec![t * 1000]).unwrap_or_else(|e| panic!("{query}: {e}")) {
        Value::Vector(v) => {
            let mut out: Vec<String> = v
                .iter()
                .filter_map(|s| s.points[0].map(|p| format!("{} {}", s.labels, round(p))))
                .collect();
            out.sort();
            out
        }
        Value::Scalar(s) => vec![format!("scalar {}", round(s[0]))],
        other => panic!("{query}: unexpected {}", other.kind()),
    }
}

fn round(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[test]
fn selectors_lookback_staleness_offset_and_at() {
    assert_eq!(at("temp", 100), vec!["temp{room=\"x\"} 6"]);
    assert_eq!(at("temp offset 1m", 300), vec!["temp{room=\"x\"} 16"]);
    assert_eq!(at("temp @ 100", 600), vec!["temp{room=\"x\"} 6"]);
    assert_eq!(at("gone", 110), vec!["gone{} 2"]);
    assert!(at("gone", 120).is_empty(), "a stale marker ends the series");
    assert_eq!(at("old", 399), vec!["old{} 7"]);
    assert!(at("old", 400).is_empty(), "the lookback is left-open");
    assert_eq!(
        at("count_over_time(temp[1m])", 300),
        vec!["{room=\"x\"} 4"],
        "(240, 300] holds 4 samples"
    );
}

#[test]
fn rates_extrapolate_and_handle_resets() {
    // (240, 300]: 85, 90, 95, 100 → 15 over 45 s, extrapolated by 15 s at the start: 20 / 60.
    assert_eq!(
        at("rate(http_requests_total{instance=\"b\"}[1m])", 300),
        vec!["{instance=\"b\", job=\"api\"} 0.3333"]
    );
    // (270, 330]: 190, 0, 10, 20 → 20 after the reset, × 60/45.
    assert_eq!(
        at("increase(http_requests_total{instance=\"a\"}[1m])", 330),
        vec!["{instance=\"a\", job=\"api\"} 26.6667"]
    );
    assert_eq!(
        at("sum by (job) (rate(http_requests_total[1m]))", 300),
        vec!["{job=\"api\"} 0.7778", "{job=\"web\"} 0.0667"]
    );
    assert_eq!(
        at("irate(http_requests_total{instance=\"b\"}[1m])", 300),
        vec!["{instance=\"b\", job=\"api\"} 0.3333"]
    );
    assert_eq!(
        at("irate(http_requests_total{instance=\"a\"}[1m])", 300),
        vec!["{instance=\"a\", job=\"api\"} 0"]
    );
    assert_eq!(
        at("resets(http_requests_total{instance=\"a\"}[10m])", 600),
        vec!["{instance=\"a\", job=\"api\"} 1"]
    );
    assert_eq!(at("changes(temp[1m])", 300), vec!["{room=\"x\"} 3"]);
    assert_eq!(at("delta(temp[1m])", 300), vec!["{room=\"x\"} 4"]);
    assert_eq!(at("idelta(temp[1m])", 300), vec!["{room=\"x\"} 1"]);
    assert_eq!(at("deriv(temp[1m])", 300), vec!["{room=\"x\"} 0.0667"]);
    // Slope 1/15 per second from 20 at 300 s: 20 + 60/15.
    assert_eq!(
        at("predict_linear(temp[1m], 60)", 300),
        vec!["{room=\"x\"} 24"]
    );
}

#[test]
fn over_time_functions() {
    // (240, 300] holds 17, 18, 19, 20.
    assert_eq!(
        at("avg_over_time(temp[1m])", 300),
        vec!["{room=\"x\"} 18.5"]
    );
    assert_eq!(at("sum_over_time(temp[1m])", 300), vec!["{room=\"x\"} 74"]);
    assert_eq!(at("min_over_time(temp[1m])", 300), vec!["{room=\"x\"} 17"]);
    assert_eq!(at("max_over_time(temp[1m])", 300), vec!["{room=\"x\"} 20"]);
    assert_eq!(
        at("last_over_time(temp[1m])", 300),
        vec!["temp{room=\"x\"} 20"],
        "keeps the name"
    );
    assert_eq!(
        at("stdvar_over_time(temp[1m])", 300),
        vec!["{room=\"x\"} 1.25"]
    );
    assert_eq!(
        at("stddev_over_time(temp[1m])", 300),
        vec!["{room=\"x\"} 1.118"]
    );
    assert_eq!(
        at("quantile_over_time(0.5, temp[1m])", 300),
        vec!["{room=\"x\"} 18.5"]
    );
    assert_eq!(
        at("present_over_time(temp[1m])", 300),
        vec!["{room=\"x\"} 1"]
    );
    assert_eq!(
        at("absent_over_time(nope{a=\"b\"}[1m])", 300),
        vec!["{a=\"b\"} 1"]
    );
    assert!(at("absent_over_time(temp[1m])", 300).is_empty());
}

#[test]
fn aggregations() {
    assert_eq!(at("sum(temp)", 300), vec!["{} 20"]);
    assert_eq!(
        at("count without (instance) (http_requests_total)", 300),
        vec!["{job=\"api\"} 2", "{job=\"web\"} 1"]
    );
    // At 300 s: a = 0 (reset), b = 100, c = 20.
    assert_eq!(at("max(http_requests_total)", 300), vec!["{} 100"]);
    assert_eq!(
        at("min by (job) (http_requests_total)", 300),
        vec!["{job=\"api\"} 0", "{job=\"web\"} 20"]
    );
    assert_eq!(at("avg(http_requests_total)", 300), vec!["{} 40"]);
    assert_eq!(
        at("group by (job) (http_requests_total)", 300),
        vec!["{job=\"api\"} 1", "{job=\"web\"} 1"]
    );
    assert_eq!(at("stddev(http_requests_total)", 300), vec!["{} 43.2049"]);
    assert_eq!(at("quantile(0.5, http_requests_total)", 300), vec!["{} 20"]);
    assert_eq!(
        at("topk(1, http_requests_total)", 300),
        vec!["http_requests_total{instance=\"b\", job=\"api\"} 100"]
    );
    assert_eq!(
        at("bottomk by (job) (1, http_requests_total)", 300).len(),
        2
    );
    assert_eq!(
        at("count_values(\"v\", http_requests_total)", 300),
        vec!["{v=\"0\"} 1", "{v=\"100\"} 1", "{v=\"20\"} 1"]
    );
}

#[test]
fn binary_operators_and_matching() {
    assert_eq!(at("temp * 2", 300), vec!["{room=\"x\"} 40"]);
    assert_eq!(
        at("temp > 10", 300),
        vec!["temp{room=\"x\"} 20"],
        "a filter keeps the name"
    );
    assert_eq!(at("temp > bool 30", 300), vec!["{room=\"x\"} 0"]);
    assert_eq!(at("30 < temp", 300), Vec::<String>::new());
    assert_eq!(at("2 ^ 3 + 1", 0), vec!["scalar 9"]);
    assert_eq!(at("1 == bool 1", 0), vec!["scalar 1"]);
    assert_eq!(
        at(
            "http_requests_total / on (job) group_left sum by (job) (http_requests_total)",
            300
        ),
        vec![
            "{instance=\"a\", job=\"api\"} 0",
            "{instance=\"b\", job=\"api\"} 1",
            "{instance=\"c\", job=\"web\"} 1"
        ]
    );
    assert_eq!(
        at(
            "http_requests_total and on (instance) http_requests_total{job=\"web\"}",
            300
        ),
        vec!["http_requests_total{instance=\"c\", job=\"web\"} 20"]
    );
    assert_eq!(
        at(
            "http_requests_total unless http_requests_total{job=\"api\"}",
            300
        )
        .len(),
        1
    );
    assert_eq!(at("temp or http_requests_total{job=\"web\"}", 300).len(), 2);
    assert_eq!(at("temp - ignoring (room) vector(5)", 300), vec!["{} 15"]);
    let err = eval_at(
        "http_requests_total + on (job) http_requests_total",
        vec![300_000],
    )
    .unwrap_err();
    assert!(matches!(err, EvalError::Execution(_)), "{err}");
    assert!(
        err.to_string()
            .contains("many-to-many matching not allowed"),
        "{err}"
    );
}

#[test]
fn histograms_labels_and_misc_functions() {
    // Buckets 10 / 30 / 40: rank 20 falls in (0.1, 1] halfway.
    assert_eq!(
        at("histogram_quantile(0.5, lat_bucket)", 300),
        vec!["{} 0.55"]
    );
    assert_eq!(
        at("histogram_quantile(0.99, lat_bucket)", 300),
        vec!["{} 1"]
    );
    assert_eq!(
        at(
            "label_replace(temp, \"foo\", \"$1-y\", \"room\", \"(.*)\")",
            300
        ),
        vec!["temp{foo=\"x-y\", room=\"x\"} 20"]
    );
    assert_eq!(
        at("label_join(temp, \"foo\", \",\", \"room\", \"room\")", 300),
        vec!["temp{foo=\"x,x\", room=\"x\"} 20"]
    );
    assert_eq!(
        at("absent(nope{job=\"x\", a=~\"y\"})", 300),
        vec!["{job=\"x\"} 1"]
    );
    assert!(at("absent(temp)", 300).is_empty());
    assert_eq!(at("scalar(temp)", 300), vec!["scalar 20"]);
    assert_eq!(at("scalar(http_requests_total)", 300), vec!["scalar NaN"]);
    assert_eq!(at("vector(time())", 300), vec!["{} 300"]);
    assert_eq!(at("timestamp(temp)", 301), vec!["{room=\"x\"} 300"]);
    assert_eq!(at("clamp(temp, 0, 10)", 300), vec!["{room=\"x\"} 10"]);
    assert!(at("clamp(temp, 10, 0)", 300).is_empty());
    assert_eq!(at("clamp_min(temp, 30)", 300), vec!["{room=\"x\"} 30"]);
    assert_eq!(at("round(temp / 3, 0.5)", 300), vec!["{room=\"x\"} 6.5"]);
    assert_eq!(at("abs(-temp)", 300), vec!["{room=\"x\"} 20"]);
    assert_eq!(at("sqrt(vector(16))", 0), vec!["{} 4"]);
    // 1970-01-01 00:05 was a Thursday.
    assert_eq!(at("day_of_week()", 300), vec!["{} 4"]);
    assert_eq!(at("minute()", 300), vec!["{} 5"]);
    assert_eq!(at("days_in_month(vector(5184000))", 0), vec!["{} 31"]);
    assert_eq!(at("year(vector(1700000000))", 0), vec!["{} 2023"]);
}

#[test]
fn subqueries_and_range_steps() {
    assert_eq!(
        at(
            "max_over_time(rate(http_requests_total{instance=\"b\"}[1m])[5m:1m])",
            600
        ),
        vec!["{instance=\"b\", job=\"api\"} 0.3333"]
    );
    // Subquery steps at 240, 270, 300 (aligned to 30 s) within (210, 300].
    assert_eq!(
        at("count_over_time(temp[90s:30s])", 300),
        vec!["{room=\"x\"} 3"]
    );
    let v = eval_at("sum(temp)", vec![0, 30_000, 60_000]).unwrap();
    let Value::Vector(v) = v else { panic!() };
    assert_eq!(v[0].points, vec![Some(0.0), Some(2.0), Some(4.0)]);
}

#[test]
fn errors_name_what_is_wrong() {
    let e = eval_at("holt_winters(temp[1m], 0.5, 0.5)", vec![0]).unwrap_err();
    assert!(e.to_string().contains("holt_winters"), "{e}");
    let e = eval_at("{job=~\".*\"}", vec![0]).unwrap_err();
    assert!(
        e.to_string().contains("at least one non-empty matcher"),
        "{e}"
    );
    let e = eval_at("sum(", vec![0]).unwrap_err();
    assert!(matches!(e, EvalError::BadData(_)));
}

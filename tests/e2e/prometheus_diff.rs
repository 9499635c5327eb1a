//! PromQL proven against the real Prometheus (Debian's 2.42, installed by `tests/setup.sh`):
//! the same samples go to both — a seeded synthetic set (counters with resets, gauges with
//! gaps and a stale marker, histograms, NaN) remote-written to each, and Debian's
//! `prometheus-node-exporter` scraped by Prometheus, which remote-writes it to us — then
//! every query of the suite runs as instant queries at several times and as a range query
//! against both HTTP APIs, and the answers must hold the same series with the same values
//! (relative tolerance 1e-6, NaN equal to NaN).
//!
//! Prometheus 2.42 closes range and lookback windows on the left (`[t - range, t]`); we
//! follow the current Prometheus (`(t - range, t]`). The two differ only for a sample exactly
//! at the window's start, so every query time here is half a second away from any sample
//! time (synthetic samples sit 1–399 ms past a second; scraped ones share the scrape's
//! offset, and query times are that offset plus 500 ms).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use loupe_collector::prom::wire::{Exemplar, Label, Sample, TimeSeries, WriteRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{Server, eventually, free_addr, get_json};
use crate::metrics::remote_write;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` with its output in `log`, which a failing wait prints.
fn spawn(bin: &str, args: &[String], log: &std::path::Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (run tests/setup.sh)")),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn series(name: &str, labels: &[(&str, String)], samples: Vec<(i64, f64)>) -> TimeSeries {
    let mut l: Vec<Label> = labels
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.clone(),
        })
        .collect();
    l.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    l.sort();
    TimeSeries {
        labels: l,
        samples: samples
            .into_iter()
            .map(|(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
    }
}

/// An exemplar with a random trace and span id.
fn exemplar(rng: &mut StdRng, t: i64, v: f64) -> Exemplar {
    let hex = |rng: &mut StdRng, n: usize| {
        (0..n)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect::<String>()
    };
    Exemplar {
        labels: vec![
            Label {
                name: "span_id".into(),
                value: hex(rng, 8),
            },
            Label {
                name: "trace_id".into(),
                value: hex(rng, 16),
            },
        ],
        value: (v * 1000.0).round() / 1000.0,
        timestamp: t,
    }
}

/// 40 minutes of 15 s scrapes ending at `end` (a whole second); each series 1–399 ms past.
fn synthetic(end: i64) -> WriteRequest {
    let mut rng = StdRng::seed_from_u64(42);
    let start = end - 40 * 60_000;
    let mut out = Vec::new();
    let times = |rng: &mut StdRng| {
        let off = rng.random_range(1..400);
        (0..160)
            .map(move |k| start + k * 15_000 + off)
            .collect::<Vec<i64>>()
    };
    for job in ["api", "web", "db"] {
        for instance in ["i1:9100", "i2:9100"] {
            for code in ["200", "500"] {
                let t = times(&mut rng);
                let per: f64 = rng.random_range(1.0..30.0);
                let reset_at = if job == "web" && code == "200" {
                    80
                } else {
                    usize::MAX
                };
                let mut v = rng.random_range(0.0..1000.0);
                let samples = t
                    .iter()
                    .enumerate()
                    .map(|(k, &t)| {
                        v = if k == reset_at {
                            0.0
                        } else {
                            v + (per * rng.random_range(0.5..1.5_f64)).round()
                        };
                        (t, v)
                    })
                    .collect();
                let labels = [
                    ("job", job.to_string()),
                    ("instance", instance.to_string()),
                    ("code", code.to_string()),
                ];
                let mut counter = series("diff_requests_total", &labels, samples);
                counter.exemplars = t
                    .iter()
                    .step_by(20)
                    .map(|&t| exemplar(&mut rng, t - 37, per))
                    .collect();
                out.push(counter);
            }
            let labels = [("job", job.to_string()), ("instance", instance.to_string())];
            // A random walk with a 6-minute gap and, for one series, a stale marker.
            let t = times(&mut rng);
            let mut g: f64 = rng.random_range(10.0..30.0);
            let stale = f64::from_bits(loupe_storage::metrics::model::STALE_NAN_BITS);
            let samples = t
                .iter()
                .enumerate()
                .filter(|(k, _)| !(60..84).contains(k))
                .map(|(k, &t)| {
                    g += rng.random_range(-2.0..2.0);
                    let v = if job == "db" && instance == "i1:9100" && k == 120 {
                        stale
                    } else {
                        (g * 100.0).round() / 100.0
                    };
                    (t, v)
                })
                .collect();
            out.push(series("diff_temp", &labels, samples));
            let t = times(&mut rng);
            let r = rng.random_range(1..5) as f64;
            out.push(series(
                "diff_replicas",
                &labels,
                t.iter().map(|&t| (t, r)).collect(),
            ));
        }
        // Histogram buckets, cumulative in `le` and over time.
        let bounds = ["0.05", "0.1", "0.5", "1", "+Inf"];
        let t = times(&mut rng);
        let mut counts = [0.0f64; 5];
        let mut sum = 0.0;
        let mut bucket_samples: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 5];
        let mut bucket_exemplars: Vec<Vec<Exemplar>> = vec![Vec::new(); 5];
        let mut sums = Vec::new();
        for (k, &ts) in t.iter().enumerate() {
            let n = rng.random_range(0..20);
            for i in 0..n {
                let x: f64 = rng.random_range(0.0..1.2_f64).powi(2);
                sum += x;
                if i == 0 && k % 6 == 0 {
                    // On the bucket the observation falls in, as SDKs put them.
                    let b = bounds
                        .iter()
                        .position(|b| b.parse::<f64>().is_ok_and(|le| x <= le))
                        .unwrap_or(4);
                    let e = exemplar(&mut rng, ts - 11, x);
                    bucket_exemplars[b].push(e);
                }
                for (b, c) in counts.iter_mut().enumerate() {
                    let le: f64 = if b == 4 {
                        f64::INFINITY
                    } else {
                        bounds[b].parse().unwrap()
                    };
                    if x <= le {
                        *c += 1.0;
                    }
                }
            }
            for b in 0..5 {
                bucket_samples[b].push((ts, counts[b]));
            }
            sums.push((ts, (sum * 1000.0).round() / 1000.0));
        }
        for (b, s) in bucket_samples.into_iter().enumerate() {
            let mut bucket = series(
                "diff_latency_seconds_bucket",
                &[("job", job.to_string()), ("le", bounds[b].to_string())],
                s,
            );
            bucket.exemplars = std::mem::take(&mut bucket_exemplars[b]);
            out.push(bucket);
        }
        out.push(series(
            "diff_latency_seconds_sum",
            &[("job", job.to_string())],
            sums,
        ));
        out.push(series(
            "diff_latency_seconds_count",
            &[("job", job.to_string())],
            t.iter().zip(0..).map(|(&ts, k)| (ts, k as f64)).collect(),
        ));
        let t = times(&mut rng);
        out.push(series(
            "diff_nan",
            &[("job", job.to_string())],
            t.iter()
                .enumerate()
                .map(|(k, &ts)| (ts, if k % 7 == 3 { f64::NAN } else { k as f64 }))
                .collect(),
        ));
    }
    WriteRequest {
        timeseries: out,
        metadata: vec![],
    }
}

/// The queries over the synthetic series.
const SYNTHETIC: &[&str] = &[
    "diff_requests_total",
    "diff_requests_total{job=\"api\"}",
    "diff_requests_total{code=~\"5..\"}",
    "diff_requests_total{code!=\"200\", job=~\"api|web\"}",
    "diff_requests_total{job!~\"a.*\"}",
    "diff_requests_total offset 2m",
    "diff_temp offset -1m",
    "diff_temp @ end()",
    "diff_temp @ start()",
    "rate(diff_requests_total[1m])",
    "rate(diff_requests_total[5m])",
    "irate(diff_requests_total[1m])",
    "increase(diff_requests_total[3m])",
    "rate(diff_requests_total[5m] offset 5m)",
    "delta(diff_temp[2m])",
    "idelta(diff_temp[2m])",
    "deriv(diff_temp[5m])",
    "predict_linear(diff_temp[5m], 600)",
    "resets(diff_requests_total[20m])",
    "changes(diff_temp[10m])",
    "avg_over_time(diff_temp[3m])",
    "sum_over_time(diff_temp[3m])",
    "count_over_time(diff_temp[3m])",
    "min_over_time(diff_temp[3m])",
    "max_over_time(diff_temp[3m])",
    "stddev_over_time(diff_temp[5m])",
    "stdvar_over_time(diff_temp[5m])",
    "last_over_time(diff_temp[5m])",
    "present_over_time(diff_temp[2m])",
    "quantile_over_time(0.9, diff_temp[5m])",
    "absent_over_time(diff_nope[5m])",
    "absent_over_time(diff_temp{job=\"db\"}[1m])",
    "absent(diff_nope{job=\"x\"})",
    "absent(diff_temp)",
    "sum(rate(diff_requests_total[1m]))",
    "sum by (job) (rate(diff_requests_total[1m]))",
    "sum without (instance) (rate(diff_requests_total[1m]))",
    "avg by (job) (diff_temp)",
    "min by (job) (diff_temp)",
    "max by (job) (diff_temp)",
    "count by (job) (diff_temp)",
    "group by (job) (diff_temp)",
    "stddev by (job) (diff_temp)",
    "stdvar(diff_temp)",
    "topk(2, diff_temp)",
    "bottomk by (job) (1, diff_temp)",
    "quantile(0.5, diff_temp)",
    "quantile by (job) (0.9, diff_temp)",
    "count_values(\"replicas\", diff_replicas)",
    "histogram_quantile(0.9, rate(diff_latency_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(diff_latency_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (job, le) (rate(diff_latency_seconds_bucket[5m])))",
    "rate(diff_latency_seconds_sum[5m]) / rate(diff_latency_seconds_count[5m])",
    "diff_temp * 2",
    "diff_temp > 20",
    "diff_temp > bool 20",
    "20 < diff_temp",
    "-diff_temp",
    "diff_temp % 3",
    "diff_temp ^ 2",
    "diff_temp atan2 2",
    "diff_requests_total / on (job, instance) group_left diff_temp",
    "diff_temp * on (job, instance) group_right diff_requests_total",
    "diff_temp / ignoring (instance) group_left avg by (job) (diff_temp)",
    "sum by (job) (rate(diff_requests_total{code=\"500\"}[5m])) / sum by (job) (rate(diff_requests_total[5m]))",
    "diff_temp and diff_temp > 20",
    "diff_temp or diff_replicas",
    "diff_temp unless diff_temp{job=\"api\"}",
    "diff_temp and on (job) diff_replicas > 2",
    "abs(diff_temp - 20)",
    "ceil(diff_temp)",
    "floor(diff_temp)",
    "exp(diff_temp / 100)",
    "sqrt(diff_temp)",
    "ln(diff_temp)",
    "log2(diff_temp)",
    "log10(diff_temp)",
    "round(diff_temp, 0.5)",
    "round(diff_temp)",
    "clamp(diff_temp, 15, 25)",
    "clamp_min(diff_temp, 20)",
    "clamp_max(diff_temp, 20)",
    "sgn(diff_temp - 20)",
    "sin(diff_temp)",
    "cos(diff_temp)",
    "tan(diff_temp)",
    "deg(diff_temp)",
    "rad(diff_temp)",
    "asin(diff_temp / 100)",
    "tanh(diff_temp / 10)",
    "label_replace(diff_temp, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_join(diff_temp, \"id\", \"-\", \"job\", \"instance\")",
    "timestamp(diff_temp)",
    "time()",
    "vector(1)",
    "scalar(sum(diff_temp))",
    "diff_temp * scalar(diff_replicas{job=\"api\", instance=\"i1:9100\"})",
    "sort(diff_temp)",
    "sort_desc(diff_temp)",
    "day_of_week()",
    "hour()",
    "minute(vector(time()))",
    "day_of_month(timestamp(diff_temp))",
    "month()",
    "year()",
    "days_in_month()",
    "day_of_year()",
    "max_over_time(rate(diff_requests_total[1m])[5m:30s])",
    "avg_over_time(diff_temp[10m:1m])",
    "rate(diff_requests_total[5m:1m])",
    "diff_nan",
    "sum(diff_nan)",
    "max(diff_nan)",
    "min(diff_nan)",
    "avg_over_time(diff_nan[5m])",
    "diff_nan > 0",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "(diff_temp)",
];

/// The queries over the node exporter's series (scraped by Prometheus every second).
const NODE: &[&str] = &[
    "up",
    "rate(node_cpu_seconds_total[10s])",
    "sum by (mode) (rate(node_cpu_seconds_total[10s]))",
    "sum without (cpu) (irate(node_cpu_seconds_total[5s]))",
    "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    "node_load1",
    "deriv(node_memory_MemFree_bytes[10s])",
    "max_over_time(node_load1[10s])",
    "count by (__name__) ({__name__=~\"node_load.*\"})",
    "topk(3, rate(node_network_receive_bytes_total[10s]))",
    "increase(node_context_switches_total[10s])",
    "changes(node_time_seconds[10s])",
    "scrape_samples_scraped",
    "node_filesystem_avail_bytes / node_filesystem_size_bytes < 1",
    "avg(rate(node_cpu_seconds_total{mode!=\"idle\"}[10s]))",
];

/// A response's data as comparable series: labels → points.
fn normalize(data: &serde_json::Value) -> (String, BTreeMap<String, Vec<(f64, f64)>>) {
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let point = |p: &serde_json::Value| {
        let v: f64 = match p[1].as_str().unwrap_or("") {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap_or(f64::NAN),
        };
        (p[0].as_f64().unwrap_or(0.0), v)
    };
    let mut out = BTreeMap::new();
    match kind.as_str() {
        "scalar" => {
            out.insert("scalar".to_string(), vec![point(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().into_iter().flatten() {
                let key = serde_json::to_string(&s["metric"]).unwrap();
                let pts = match s.get("values") {
                    Some(vs) => vs.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                out.insert(key, pts);
            }
        }
    }
    (kind, out)
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-3)
}

/// Runs `path?params` on both and compares; returns a difference, if any.
async fn compare(prom: &str, loupe: &str, path: &str, params: &[(&str, String)]) -> Option<String> {
    let qs: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let (ps, pb) = get_json(&format!("{prom}/api/v1/{path}?{qs}"), None).await;
    let (ls, lb) = get_json(&format!("{loupe}/prometheus/api/v1/{path}?{qs}"), None).await;
    if ps != ls {
        return Some(format!("status {ps} vs {ls}: {pb} / {lb}"));
    }
    if ps != 200 {
        return None;
    }
    let (pk, pm) = normalize(&pb["data"]);
    let (lk, lm) = normalize(&lb["data"]);
    if pk != lk {
        return Some(format!("result type {pk} vs {lk}"));
    }
    let pkeys: Vec<&String> = pm.keys().collect();
    let lkeys: Vec<&String> = lm.keys().collect();
    if pkeys != lkeys {
        return Some(format!(
            "series differ:\n  prometheus {pkeys:?}\n  loupe      {lkeys:?}"
        ));
    }
    for (k, pp) in &pm {
        let lp = &lm[k];
        if pp.len() != lp.len() {
            return Some(format!(
                "{k}: {} points vs {}: {pp:?} / {lp:?}",
                pp.len(),
                lp.len()
            ));
        }
        for (a, b) in pp.iter().zip(lp) {
            if a.0 != b.0 || !same(a.1, b.1) {
                return Some(format!("{k}: {a:?} vs {b:?}"));
            }
        }
    }
    None
}

async fn run_suite(
    prom: &str,
    loupe: &str,
    queries: &[&str],
    times: &[i64],
    range: (i64, i64, i64),
) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut n = 0;
    for q in queries {
        for &t in times {
            n += 1;
            if let Some(d) = compare(
                prom,
                loupe,
                "query",
                &[("query", q.to_string()), ("time", secs(t))],
            )
            .await
            {
                failures.push(format!("{q} @ {}: {d}", secs(t)));
            }
        }
        n += 1;
        let params = [
            ("query", q.to_string()),
            ("start", secs(range.0)),
            ("end", secs(range.1)),
            ("step", format!("{}", range.2 / 1000)),
        ];
        if let Some(d) = compare(prom, loupe, "query_range", &params).await {
            failures.push(format!("{q} over range: {d}"));
        }
    }
    (n, failures)
}

fn secs(t: i64) -> String {
    format!("{:.3}", t as f64 / 1000.0)
}

/// Each series' exemplars as `(time, value, labels)`, sorted.
fn exemplar_sets(data: &serde_json::Value) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut out = BTreeMap::new();
    for s in data.as_array().into_iter().flatten() {
        let labels = |v: &serde_json::Value| {
            let m: BTreeMap<String, String> = serde_json::from_value(v.clone()).unwrap_or_default();
            format!("{m:?}")
        };
        let mut ex: Vec<(String, String, String)> = s["exemplars"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    format!("{:.3}", e["timestamp"].as_f64().unwrap_or(f64::NAN)),
                    e["value"].as_str().unwrap_or("").to_string(),
                    labels(&e["labels"]),
                )
            })
            .collect();
        ex.sort();
        out.insert(labels(&s["seriesLabels"]), ex);
    }
    out
}

/// The number of exemplars both answer with, or how the answers differ.
async fn compare_exemplars(
    prom: &str,
    loupe: &str,
    params: &[(&str, String)],
) -> Result<usize, String> {
    let qs: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let (ps, pb) = get_json(&format!("{prom}/api/v1/query_exemplars?{qs}"), None).await;
    let (ls, lb) = get_json(
        &format!("{loupe}/prometheus/api/v1/query_exemplars?{qs}"),
        None,
    )
    .await;
    if ps != ls {
        return Err(format!("status {ps} vs {ls}: {pb} / {lb}"));
    }
    let (p, l) = (exemplar_sets(&pb["data"]), exemplar_sets(&lb["data"]));
    if p != l {
        return Err(format!("prometheus {p:?}\n  loupe      {l:?}"));
    }
    Ok(p.values().map(Vec::len).sum())
}

/// Loupe's time of the last `up` sample once Prometheus holds 20 s of scrapes and Loupe 25 samples.
async fn node_series_arrived(prom: &str, loupe: &str) -> Option<f64> {
    let (_, p) = get_json(
        &format!("{prom}/api/v1/query?query=timestamp(up)%20-%20timestamp(up%20offset%2020s)"),
        None,
    )
    .await;
    p["data"]["result"].as_array()?.first()?;
    let (_, l) = get_json(
        &format!("{loupe}/prometheus/api/v1/query?query=count_over_time(up[1m])"),
        None,
    )
    .await;
    let n: f64 = l["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
    (n >= 25.0).then_some(())?;
    let (_, t) = get_json(
        &format!("{loupe}/prometheus/api/v1/query?query=timestamp(up)"),
        None,
    )
    .await;
    t["data"]["result"][0]["value"][1]
        .as_str()?
        .parse::<f64>()
        .ok()
}

/// What each side saw, for a wait that timed out: both answers, Prometheus's remote-write
/// counters, Loupe's ingest counters and the two processes' logs.
async fn node_diagnostics(
    prom: &str,
    loupe: &str,
    prom_log: &std::path::Path,
    node_log: &std::path::Path,
) -> String {
    let mut out = String::new();
    for (side, url) in [
        (
            "prometheus count",
            format!("{prom}/api/v1/query?query=count_over_time(up[1m])"),
        ),
        (
            "loupe count",
            format!("{loupe}/prometheus/api/v1/query?query=count_over_time(up[1m])"),
        ),
        ("prometheus up", format!("{prom}/api/v1/query?query=up")),
    ] {
        let (status, body) = get_json(&url, None).await;
        out.push_str(&format!("{side}: {status} {body}\n"));
    }
    for (side, url, prefix) in [
        (
            "prometheus",
            format!("{prom}/metrics"),
            "prometheus_remote_storage_",
        ),
        ("loupe", format!("{loupe}/metrics"), "loupe_"),
    ] {
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        out.push_str(&format!("--- {side} metrics ---\n"));
        for line in text
            .lines()
            .filter(|l| l.starts_with(prefix) && !l.contains("_bucket{"))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (name, path) in [("prometheus", prom_log), ("node exporter", node_log)] {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        out.push_str(&format!("--- {name} log (last 40 lines) ---\n"));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn promql_answers_as_prometheus_2_42_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["server"],
        &dir.path().join("loupe"),
        &[("LOUPE_FLUSH_INTERVAL", "2s")],
    );
    server.wait_ready().await;
    let loupe = format!("http://{}", server.http);
    let node_addr = free_addr();
    let node_log = dir.path().join("node-exporter.log");
    let _node = spawn(
        "/usr/bin/prometheus-node-exporter",
        &[format!("--web.listen-address={node_addr}")],
        &node_log,
    );
    let prom_addr = free_addr();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1m\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{node_addr}']\nremote_write:\n  - url: http://{}/prometheus/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n    write_relabel_configs:\n      - source_labels: [__name__]\n        regex: 'diff_.*'\n        action: drop\n",
            server.otlp_http.unwrap()
        ),
    )
    .unwrap();
    let prom_log = dir.path().join("prometheus.log");
    let _prom = spawn(
        "/usr/bin/prometheus",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address={prom_addr}"),
            "--web.enable-remote-write-receiver".into(),
            "--enable-feature=exemplar-storage".into(),
        ],
        &prom_log,
    );
    let prom = format!("http://{prom_addr}");
    // Prometheus's own answer, not another server's on a port taken meanwhile.
    eventually(30, "prometheus ready", || async {
        let r = reqwest::get(format!("{prom}/-/ready")).await.ok()?;
        let ok = r.status() == 200;
        let body = r.text().await.ok()?;
        (ok && body.contains("Prometheus")).then_some(())
    })
    .await;

    // The synthetic set, to both.
    let end = now_ms() / 1000 * 1000 - 60_000;
    let req = synthetic(end);
    for url in [
        format!("{prom}/api/v1/write"),
        server.otlp_url("/prometheus/api/v1/write"),
    ] {
        for part in req.timeseries.chunks(20) {
            let chunk = WriteRequest {
                timeseries: part.to_vec(),
                metadata: vec![],
            };
            let (status, text) = remote_write(&url, &chunk).await;
            assert!(status == 204 || status == 200, "{url}: {status} {text}");
        }
    }
    let start = end - 40 * 60_000;
    let times = [
        end - 30 * 60_000 + 500,
        end - 17 * 60_000 + 500,
        end - 3 * 60_000 + 500,
        end + 30_500,
    ];
    let (n1, mut failures) = run_suite(
        &prom,
        &loupe,
        SYNTHETIC,
        &times,
        (start + 10 * 60_000 + 500, end - 500, 30_000),
    )
    .await;

    // Exemplars: the same series and exemplars for queries' selectors.
    for (q, from, to) in [
        ("diff_requests_total", start, end),
        ("diff_requests_total{job=\"web\", code=\"500\"}", start, end),
        (
            "sum(rate(diff_requests_total{code=\"200\"}[5m])) / on() group_left sum(rate(diff_latency_seconds_count[5m]))",
            start + 5 * 60_000,
            end - 20 * 60_000,
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(diff_latency_seconds_bucket{job=~\"api|db\"}[5m])))",
            start,
            end,
        ),
        ("diff_temp", start, end),
    ] {
        let params = [
            ("query", q.to_string()),
            ("start", secs(from)),
            ("end", secs(to)),
        ];
        match compare_exemplars(&prom, &loupe, &params).await {
            Ok(n) => assert!(n > 0 || q == "diff_temp", "{q}: no exemplars compared"),
            Err(d) => failures.push(format!("exemplars of {q}: {d}")),
        }
    }

    // The node exporter's series, once Prometheus has sent us 20 s of them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    let offset = loop {
        if let Some(t) = node_series_arrived(&prom, &loupe).await {
            break t;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for the node exporter's series, scraped and remote-written\n{}",
                node_diagnostics(&prom, &loupe, &prom_log, &node_log).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let last = (offset * 1000.0).round() as i64;
    let node_times = [last - 10_500, last - 5_500, last - 2_500];
    let (n2, more) = run_suite(
        &prom,
        &loupe,
        NODE,
        &node_times,
        (last - 15_500, last - 2_500, 1_000),
    )
    .await;
    failures.extend(more);
    let total = n1 + n2;
    assert!(total >= 200, "only {total} queries");
    assert!(
        failures.is_empty(),
        "{} of {total} queries differ from Prometheus 2.42:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

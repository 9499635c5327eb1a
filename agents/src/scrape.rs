//! Prometheus scraping of static targets (`LOUPE_AGENT_SCRAPE_TARGETS`, `[job=]url,…`):
//! each target's text exposition fetched every interval and turned into one OTLP metrics
//! request through the agent's buffer, so the series reach PromQL under the names and
//! labels Prometheus itself would store:
//!
//! - a counter family's `…_total` series becomes a monotonic cumulative sum named without
//!   `_total` (the collector's OpenTelemetry → Prometheus naming adds it back), every other
//!   series (gauges, untyped, histogram and summary parts, counters without the suffix) a
//!   gauge under its exact name — PromQL treats both alike, and no name changes;
//! - `service.name` is the job and `service.instance.id` the target's `host:port`, so the
//!   series carry `job` and `instance` as scraped series do; `up` is 1 after a scrape and 0
//!   when it failed (with no other series), as Prometheus records it;
//! - the sample's own timestamp when the exposition gives one, else the scrape's start.
//!
//! The text format is read here rather than with `prometheus-parse`: that crate's regex
//! rejects metric names with `:` and label values holding `}`, and it regroups histogram
//! and summary series, where these series must pass through flat and unchanged.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
};

use crate::otlp_metrics::{kv, now_nanos};

/// A scrape target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub job: String,
    pub url: String,
    /// `host:port`, the `instance` label.
    pub instance: String,
    /// Labels added to every series (a pod's `namespace` and `pod`).
    pub labels: Vec<(String, String)>,
}

/// Parses `[job=]url,…`; a target without a job is in job `scrape`.
pub fn targets(spec: &str) -> Result<Vec<Target>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|t| {
            let (job, url) = match t.split_once('=') {
                Some((j, u)) if !j.contains('/') => (j.trim().to_string(), u.trim().to_string()),
                _ => ("scrape".to_string(), t.to_string()),
            };
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!("scrape target {t:?}: expected an http:// or https:// URL")
                })?;
            let instance = rest.split('/').next().unwrap_or_default().to_string();
            if instance.is_empty() {
                return Err(format!("scrape target {t:?}: no host"));
            }
            Ok(Target {
                job,
                url,
                instance,
                labels: Vec::new(),
            })
        })
        .collect()
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

fn value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `{a="x",b="y\"z"}` from `s` (after the `{`): the labels and the rest after `}`.
fn labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Some((out, r));
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')?
            .char_indices();
        let mut v = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => v.push('\n'),
                    other => v.push(other),
                },
                c => v.push(c),
            }
        };
        let after = &rest[eq + 1..].trim_start()[1 + end + 1..];
        out.push((name, v));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

/// The samples and each family's `# TYPE`.
pub fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    let (mut samples, mut types) = (Vec::new(), HashMap::new());
    for line in text.lines().map(str::trim) {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut f = t.split_whitespace();
            if let (Some(n), Some(k)) = (f.next(), f.next()) {
                types.insert(n.to_string(), k.to_string());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = &line[..name_end];
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(l) => match labels(l) {
                Some(x) => x,
                None => continue,
            },
            None => (Vec::new(), &line[name_end..]),
        };
        let mut f = rest.split_whitespace();
        let Some(v) = f.next().and_then(value) else {
            continue;
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value: v,
            timestamp_ms: f.next().and_then(|t| t.parse().ok()),
        });
    }
    (samples, types)
}

/// The OTLP request of one scrape (`samples` empty and `up` 0 when it failed).
pub fn request(
    t: &Target,
    samples: &[Sample],
    types: &HashMap<String, String>,
    at: u64,
    up: bool,
    start: u64,
) -> (ExportMetricsServiceRequest, usize) {
    let point = |s: &Sample, start: u64| NumberDataPoint {
        attributes: s
            .labels
            .iter()
            .chain(&t.labels)
            .map(|(k, v)| kv(k, v))
            .collect(),
        start_time_unix_nano: start,
        time_unix_nano: s
            .timestamp_ms
            .map_or(at, |ms| (ms.max(0) as u64).saturating_mul(1_000_000)),
        value: Some(number_data_point::Value::AsDouble(s.value)),
        ..Default::default()
    };
    // Series of one name together, in the order met.
    let mut order: Vec<&str> = Vec::new();
    let mut by_name: HashMap<&str, Vec<&Sample>> = HashMap::new();
    for s in samples {
        by_name
            .entry(&s.name)
            .or_insert_with(|| {
                order.push(&s.name);
                Vec::new()
            })
            .push(s);
    }
    let mut metrics = Vec::new();
    for name in order {
        let group = &by_name[name];
        let counter = name.strip_suffix("_total").filter(|base| {
            types
                .get(*base)
                .or_else(|| types.get(name))
                .is_some_and(|t| t == "counter")
        });
        metrics.push(match counter {
            Some(base) => Metric {
                name: base.into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: group.iter().map(|s| point(s, start)).collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            None => Metric {
                name: name.into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: group.iter().map(|s| point(s, 0)).collect(),
                })),
                ..Default::default()
            },
        });
    }
    let up_sample = Sample {
        name: "up".into(),
        labels: Vec::new(),
        value: if up { 1.0 } else { 0.0 },
        timestamp_ms: None,
    };
    metrics.push(Metric {
        name: "up".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point(&up_sample, 0)],
        })),
        ..Default::default()
    });
    let req = crate::otlp_metrics::request(
        vec![
            kv("service.name", &t.job),
            kv("service.instance.id", &t.instance),
        ],
        "scrape",
        metrics,
    );
    (req, samples.len() + 1)
}

/// The targets of pods annotated for scraping, in job `kubernetes-pods`.
fn pod_targets(pods: &crate::kube::PodCache) -> Vec<Target> {
    pods.scrape_targets()
        .into_iter()
        .filter_map(|(url, namespace, pod)| {
            let mut t = targets(&format!("kubernetes-pods={url}")).ok()?.pop()?;
            t.labels = vec![("namespace".into(), namespace), ("pod".into(), pod)];
            Some(t)
        })
        .collect()
}

/// Scrapes the static `targets`, and the annotated pods of `pods`, every `interval` into
/// the buffer.
pub async fn run(
    targets: Vec<Target>,
    pods: Option<std::sync::Arc<crate::kube::PodCache>>,
    buffer: std::sync::Arc<crate::buffer::Buffer>,
    interval: Duration,
) {
    let client = match reqwest::Client::builder().timeout(interval).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the scrape client");
            return;
        }
    };
    let start = now_nanos();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut all = targets.clone();
        all.extend(pods.as_deref().map(pod_targets).unwrap_or_default());
        for t in &all {
            let at = now_nanos();
            let body = match client
                .get(&t.url)
                .header("accept", "text/plain")
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.text().await.ok(),
                Ok(r) => {
                    tracing::warn!(target = %t.url, status = r.status().as_u16(), "scrape failed");
                    None
                }
                Err(e) => {
                    tracing::warn!(target = %t.url, error = %e, "scrape failed");
                    None
                }
            };
            let (samples, types) = body.as_deref().map(parse).unwrap_or_default();
            let (req, points) = request(t, &samples, &types, at, body.is_some(), start);
            crate::otlp_metrics::append(&buffer, &req, points).await;
            metrics::counter!("loupe_agent_scraped_samples_total").increment(points as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user"} 10
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",path="/a}b"} 3
http_request_duration_seconds_bucket{le="+Inf",path="/a}b"} 5
http_request_duration_seconds_sum{path="/a}b"} 1.5
http_request_duration_seconds_count{path="/a}b"} 5
# TYPE go_goroutines gauge
go_goroutines 42 1700000000123
job:requests:rate5m{msg="say \"hi\"\nnow"} NaN
"#;

    #[test]
    fn expositions_parse_flat_with_escapes_colons_and_timestamps() {
        let (s, types) = parse(TEXT);
        assert_eq!(s.len(), 8);
        assert_eq!(types["node_cpu_seconds_total"], "counter");
        assert_eq!(
            s[2].labels,
            vec![("le".into(), "0.1".into()), ("path".into(), "/a}b".into())]
        );
        assert_eq!(s[3].value, 5.0);
        assert_eq!(s[6].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(s[7].name, "job:requests:rate5m");
        assert_eq!(s[7].labels[0].1, "say \"hi\"\nnow");
        assert!(s[7].value.is_nan());
    }

    #[test]
    fn counters_become_sums_and_the_rest_gauges_under_their_names() {
        let (s, types) = parse(TEXT);
        let t = &targets("node=http://10.0.0.1:9100/metrics").unwrap()[0];
        assert_eq!(
            (t.job.as_str(), t.instance.as_str()),
            ("node", "10.0.0.1:9100")
        );
        let (req, points) = request(t, &s, &types, 5, true, 1);
        assert_eq!(points, 9);
        let m = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "node_cpu_seconds",
                "http_request_duration_seconds_bucket",
                "http_request_duration_seconds_sum",
                "http_request_duration_seconds_count",
                "go_goroutines",
                "job:requests:rate5m",
                "up"
            ]
        );
        assert!(
            matches!(m[0].data, Some(metric::Data::Sum(ref s)) if s.is_monotonic && s.data_points.len() == 2)
        );
        assert!(
            matches!(m[4].data, Some(metric::Data::Gauge(ref g)) if g.data_points[0].time_unix_nano == 1_700_000_000_123_000_000)
        );
        assert!(targets("ftp://x").is_err());
        assert_eq!(
            targets("http://a:1/m, b=http://b:2/").unwrap()[0].job,
            "scrape"
        );
    }
}

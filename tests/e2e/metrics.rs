//! Metrics end to end: Prometheus remote write and OTLP metrics into a real server, read
//! back through the Prometheus HTTP API (instant and range queries, series, labels, label
//! values, metadata), bad inputs answered as Prometheus answers them with nothing accepted
//! lost, and every acknowledged sample and exemplar queryable exactly once after a kill -9.

use loupe_collector::prom::wire::{
    Exemplar, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
};
use prost::Message;

use crate::harness::{Server, env_refs, fixed_addrs, get_json};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ts(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .into_iter()
            .map(|(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
    }
}

pub async fn remote_write(url: &str, req: &WriteRequest) -> (u16, String) {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn query(server: &Server, q: &str, t_ms: i64) -> serde_json::Value {
    let url = format!(
        "{}?query={}&time={}",
        server.url("/prometheus/api/v1/query"),
        url_escape(q),
        t_ms as f64 / 1000.0
    );
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{q}: {body}");
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The single value of an instant vector (panics on anything else).
async fn value(server: &Server, q: &str, t_ms: i64) -> f64 {
    let d = query(server, q, t_ms).await;
    let r = d["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{q}: {d}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// Ten minutes of scrapes every 15 s, ending a minute ago, 123 ms past the second.
fn scrape_times() -> Vec<i64> {
    let end = (now_ms() / 1000 - 60) * 1000 + 123;
    (0..40).map(|k| end - (39 - k) * 15_000).collect()
}

fn request(times: &[i64]) -> WriteRequest {
    let counter: Vec<(i64, f64)> = times
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            (
                t,
                if k < 20 {
                    10.0 * k as f64
                } else {
                    10.0 * (k - 20) as f64
                },
            )
        })
        .collect();
    let stale = f64::from_bits(loupe_storage::metrics::model::STALE_NAN_BITS);
    // A gauge that goes stale half way and a NaN sample.
    let gauge: Vec<(i64, f64)> = times[..20]
        .iter()
        .map(|&t| (t, 21.5))
        .chain([(times[20], stale)])
        .collect();
    let bucket = |le: &str, per: f64| {
        ts(
            &[
                ("__name__", "rw_latency_seconds_bucket"),
                ("job", "api"),
                ("le", le),
            ],
            times
                .iter()
                .enumerate()
                .map(|(k, &t)| (t, per * k as f64))
                .collect(),
        )
    };
    WriteRequest {
        timeseries: vec![
            ts(
                &[
                    ("__name__", "rw_requests_total"),
                    ("job", "api"),
                    ("instance", "a"),
                ],
                counter,
            ),
            ts(
                &[
                    ("__name__", "rw_temp_celsius"),
                    ("job", "api"),
                    ("room", "x"),
                ],
                gauge,
            ),
            ts(
                &[("__name__", "rw_nan"), ("job", "api")],
                vec![(times[39], f64::NAN)],
            ),
            bucket("0.1", 1.0),
            TimeSeries {
                // Exemplars every tenth scrape, and one whose labels are too long (left out).
                exemplars: times
                    .iter()
                    .step_by(10)
                    .enumerate()
                    .map(|(k, &t)| exemplar(&format!("{k:032x}"), t - 5, 0.5))
                    .chain([exemplar(&"f".repeat(130), times[0], 0.5)])
                    .collect(),
                ..bucket("1", 3.0)
            },
            bucket("+Inf", 4.0),
            // An entry of exemplars only, as Prometheus sends them.
            TimeSeries {
                labels: ts(
                    &[
                        ("__name__", "rw_requests_total"),
                        ("job", "api"),
                        ("instance", "a"),
                    ],
                    vec![],
                )
                .labels,
                samples: vec![],
                exemplars: vec![exemplar("abc", times[30], 1.0)],
            },
        ],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "rw_requests_total".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    }
}

fn exemplar(trace_id: &str, t: i64, v: f64) -> Exemplar {
    Exemplar {
        labels: vec![Label {
            name: "trace_id".into(),
            value: trace_id.into(),
        }],
        value: v,
        timestamp: t,
    }
}

/// `(series, trace ids)` of `query_exemplars` for `q`.
async fn exemplars(server: &Server, q: &str) -> Vec<(String, Vec<String>)> {
    let url = format!(
        "{}?query={}",
        server.url("/prometheus/api/v1/query_exemplars"),
        url_escape(q)
    );
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!("{}", s["seriesLabels"]),
                s["exemplars"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

async fn check_remote_written(server: &Server, times: &[i64]) {
    let last = times[39];
    let want: Vec<String> = (0..4).map(|k| format!("{k:032x}")).collect();
    assert_eq!(
        exemplars(server, "sum(rate(rw_latency_seconds_bucket[5m]))").await,
        vec![(
            r#"{"__name__":"rw_latency_seconds_bucket","job":"api","le":"1"}"#.to_string(),
            want
        )]
    );
    assert_eq!(
        exemplars(server, "rw_requests_total").await[0].1,
        vec!["abc".to_string()]
    );
    // Every sample once: 40 in the counter.
    assert_eq!(
        value(server, "count_over_time(rw_requests_total[15m])", last).await,
        40.0
    );
    assert_eq!(value(server, "rw_requests_total", last).await, 190.0);
    // 0..190 then 0..190: increase over the whole range, extrapolated to the window's edges
    // is at least the 380 counted.
    let inc = value(server, "increase(rw_requests_total[10m])", last).await;
    assert!((380.0..=400.0).contains(&inc), "increase {inc}");
    assert_eq!(value(server, "rw_temp_celsius", times[19]).await, 21.5);
    let gone = query(server, "rw_temp_celsius", times[25]).await;
    assert_eq!(
        gone["result"].as_array().unwrap().len(),
        0,
        "stale after the marker: {gone}"
    );
    let nan = query(server, "rw_nan", last).await;
    assert_eq!(nan["result"][0]["value"][1], "NaN");
    // Buckets grow 1 / 3 / 4 per scrape: the median is in (0.1, 1]: 0.1 + 0.9 * (2 - 1) / 2.
    let q = value(
        server,
        "histogram_quantile(0.5, rate(rw_latency_seconds_bucket[5m]))",
        last,
    )
    .await;
    assert!((q - 0.55).abs() < 1e-9, "median {q}");

    let url = format!(
        "{}?query={}&start={}&end={}&step=60",
        server.url("/prometheus/api/v1/query_range"),
        url_escape("sum by (job) (rate(rw_requests_total[2m]))"),
        times[8] as f64 / 1000.0,
        last as f64 / 1000.0
    );
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let series = &body["data"]["result"][0];
    assert_eq!(series["metric"], serde_json::json!({"job": "api"}));
    let values = series["values"].as_array().unwrap();
    assert_eq!(values.len(), 8, "{body}");
    // 10 per 15 s; a window holding the reset (190 → 0) counts that step as 0, not 10:
    // 60 over the 105 s its 8 samples span.
    for v in values {
        let r: f64 = v[1].as_str().unwrap().parse().unwrap();
        let ok = [10.0 / 15.0, 60.0 / 105.0]
            .iter()
            .any(|x| (r - x).abs() < 1e-9);
        assert!(ok, "rate {r} in {body}");
    }

    let (s, body) = get_json(
        &format!(
            "{}?match[]=rw_requests_total",
            server.url("/prometheus/api/v1/series")
        ),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        body["data"],
        serde_json::json!([{"__name__": "rw_requests_total", "instance": "a", "job": "api"}])
    );
    let (_, body) = get_json(
        &server.url("/prometheus/api/v1/label/__name__/values"),
        None,
    )
    .await;
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for n in [
        "rw_requests_total",
        "rw_temp_celsius",
        "rw_latency_seconds_bucket",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let (_, body) = get_json(
        &format!(
            "{}?match[]={{job=%22api%22}}",
            server.url("/prometheus/api/v1/labels")
        ),
        None,
    )
    .await;
    assert_eq!(
        body["data"],
        serde_json::json!(["__name__", "instance", "job", "le", "room"])
    );
    let (_, body) = get_json(&server.url("/prometheus/api/v1/metadata"), None).await;
    assert_eq!(
        body["data"]["rw_requests_total"],
        serde_json::json!([{"type": "counter", "help": "Requests served.", "unit": ""}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_write_is_queryable_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = fixed_addrs();
    let mut env = env_refs(&addrs);
    env.push(("LOUPE_FLUSH_INTERVAL", "1h"));
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let times = scrape_times();
    let url = server.otlp_url("/prometheus/api/v1/write");
    let (status, text) = remote_write(&url, &request(&times)).await;
    assert_eq!(status, 204, "{text}");
    check_remote_written(&server, &times).await;

    // Acknowledged, never flushed: a kill -9 and a restart keep every sample, once.
    server.kill9();
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    check_remote_written(&server, &times).await;
    let (s, body) = get_json(&server.url("/prometheus/api/v1/status/buildinfo"), None).await;
    assert_eq!(s, 200);
    assert!(body["data"]["version"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_prometheus_answers_and_lose_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    let url = server.otlp_url("/prometheus/api/v1/write");
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, encoding: &'static str| {
        client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let r = post(b"not snappy at all".to_vec(), "snappy").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("snappy"));
    let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    let r = post(junk, "snappy").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("WriteRequest"));
    let r = post(vec![1, 2, 3], "gzip").await.unwrap();
    assert_eq!(r.status(), 415);

    let t = now_ms() - 5_000;
    let mixed = WriteRequest {
        timeseries: vec![
            ts(&[("__name__", "good_metric"), ("job", "x")], vec![(t, 1.0)]),
            ts(&[("__name__", "bad-metric")], vec![(t, 1.0)]),
            ts(&[("__name__", "bad_label"), ("a.b", "1")], vec![(t, 1.0)]),
            ts(&[("__name__", "too_old")], vec![(1_000, 1.0)]),
        ],
        metadata: vec![],
    };
    let (status, text) = remote_write(&url, &mixed).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("3 of 4 samples were not stored"), "{text}");
    assert!(
        text.contains("invalid metric name \"bad-metric\""),
        "{text}"
    );
    assert!(text.contains("invalid label name \"a.b\""), "{text}");
    assert_eq!(
        value(&server, "good_metric", t).await,
        1.0,
        "the valid series is stored"
    );

    // PromQL errors in Prometheus's envelope.
    let (s, body) = get_json(
        &format!("{}?query=sum(", server.url("/prometheus/api/v1/query")),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    let (s, body) = get_json(
        &format!(
            "{}?query={}&time={}",
            server.url("/prometheus/api/v1/query"),
            url_escape("good_metric + on() (good_metric or vector(1))"),
            t as f64 / 1000.0
        ),
        None,
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    let (s, body) = get_json(
        &format!(
            "{}?query=up&start=0&end=100000&step=1",
            server.url("/prometheus/api/v1/query_range")
        ),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        body["error"].as_str().unwrap().contains("11,000 points"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_metrics_are_named_as_prometheus_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    let t = (now_ms() - 5_000) as u128 * 1_000_000;
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "cart"}},
            {"key": "service.namespace", "value": {"stringValue": "shop"}},
            {"key": "service.instance.id", "value": {"stringValue": "pod-1"}},
            {"key": "k8s.pod.name", "value": {"stringValue": "cart-7d9"}}
        ]},
        "scopeMetrics": [{"scope": {"name": "app"}, "metrics": [
            {"name": "orders.placed", "unit": "{order}", "sum": {
                "aggregationTemporality": 2, "isMonotonic": true,
                "dataPoints": [{"timeUnixNano": t.to_string(), "asInt": "7",
                    "attributes": [{"key": "payment.method", "value": {"stringValue": "card"}}]}]}},
            {"name": "queue.size", "unit": "1", "gauge": {
                "dataPoints": [{"timeUnixNano": t.to_string(), "asDouble": 0.25}]}}
        ]}]
    }]});
    let r = reqwest::Client::new()
        .post(server.otlp_url("/v1/metrics"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let t_ms = (t / 1_000_000) as i64;
    assert_eq!(
        value(
            &server,
            "orders_placed_total{job=\"shop/cart\", instance=\"pod-1\", payment_method=\"card\"}",
            t_ms
        )
        .await,
        7.0
    );
    assert_eq!(
        value(&server, "queue_size_ratio{otel_scope_name=\"app\"}", t_ms).await,
        0.25
    );
    assert_eq!(
        value(&server, "target_info{k8s_pod_name=\"cart-7d9\"}", t_ms).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cardinality_bomb_stops_at_the_series_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["server"],
        dir.path(),
        &[("LOUPE_MAX_SERIES_PER_TENANT", "100")],
    );
    server.wait_ready().await;
    let url = server.otlp_url("/prometheus/api/v1/write");
    let t = now_ms() - 5_000;
    let bomb = WriteRequest {
        timeseries: (0..500)
            .map(|i| {
                ts(
                    &[("__name__", "bomb"), ("user_id", &format!("u{i}"))],
                    vec![(t, 1.0)],
                )
            })
            .collect(),
        metadata: vec![],
    };
    let (status, text) = remote_write(&url, &bomb).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("400 of 500 samples were not stored"),
        "{text}"
    );
    assert!(text.contains("limit of 100 active series"), "{text}");
    assert_eq!(
        value(&server, "count(bomb)", t).await,
        100.0,
        "the series within the limit are kept"
    );
    // Known series keep flowing; new ones are still refused.
    let more = WriteRequest {
        timeseries: vec![
            ts(
                &[("__name__", "bomb"), ("user_id", "u0")],
                vec![(t + 1000, 2.0)],
            ),
            ts(
                &[("__name__", "bomb"), ("user_id", "new")],
                vec![(t + 1000, 2.0)],
            ),
        ],
        metadata: vec![],
    };
    let (status, text) = remote_write(&url, &more).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("1 of 2 samples"), "{text}");
    assert_eq!(value(&server, "bomb{user_id=\"u0\"}", t + 1000).await, 2.0);
}

//! The real OpenTelemetry Python SDK's metrics — counter, up-down counter, histogram and
//! gauge, cumulative over gRPC and delta over HTTP — read back through the Prometheus API
//! with the values the SDK recorded: totals, `sum(rate(...))`, per-service filters and
//! `histogram_quantile` over the SDK's buckets; an observation made in a span comes back as
//! an exemplar on its bucket, whose trace id finds the span's trace.

use std::process::Command;

use crate::harness::{Server, eventually, get_json, instant, python, workspace_root};

async fn one(server: &Server, q: &str) -> f64 {
    let r = instant(server, q).await;
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_metrics_read_back_through_promql() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/emit_metrics.py"))
        .args([
            "--grpc",
            &server.otlp_grpc.unwrap().to_string(),
            "--http",
            &format!("http://{}", server.otlp_http.unwrap()),
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "emit_metrics.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for job in ["checkout", "payments"] {
        let s = &sent[job];
        // Cumulative (checkout) and delta made cumulative (payments): the last value of
        // each route's counter is what the SDK counted.
        for route in ["/cart", "/pay"] {
            let q = format!("app_requests_total{{job=\"{job}\", http_route=\"{route}\"}}");
            let want = s["requests"][route].as_f64().unwrap();
            let got = eventually(10, "counter", || async {
                let r = instant(&server, &q).await;
                let v: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
                (v == want).then_some(v)
            })
            .await;
            assert_eq!(got, want, "{q}");
        }
        let total = s["total"].as_f64().unwrap();
        assert_eq!(
            one(
                &server,
                &format!("sum(app_requests_total{{job=\"{job}\"}})")
            )
            .await,
            total
        );
        // Six exports over ~3 s: the per-second rate over the last minute is the increase
        // from the first export, extrapolated within the window: positive and at most the
        // total spread over the 3 s the samples span.
        let rate = one(
            &server,
            &format!("sum(rate(app_requests_total{{job=\"{job}\"}}[1m]))"),
        )
        .await;
        assert!(
            rate > 0.0 && rate <= total / 2.0,
            "{job} rate {rate} for total {total}"
        );
        assert_eq!(
            one(&server, &format!("app_queue_depth{{job=\"{job}\"}}")).await,
            s["queue"].as_f64().unwrap()
        );
        assert_eq!(
            one(
                &server,
                &format!("app_temperature_celsius{{job=\"{job}\", instance=\"{job}-1\"}}")
            )
            .await,
            20.0
        );
        assert_eq!(
            one(
                &server,
                &format!("http_server_request_duration_milliseconds_count{{job=\"{job}\"}}")
            )
            .await,
            s["count"].as_f64().unwrap()
        );
        let median = one(
            &server,
            &format!("histogram_quantile(0.5, sum by (le) (http_server_request_duration_milliseconds_bucket{{job=\"{job}\"}}))"),
        )
        .await;
        let want = s["median"].as_f64().unwrap();
        assert!(
            (median - want).abs() < 1e-9,
            "{job} median {median}, SDK's buckets say {want}"
        );
    }
    // The observation made in a span: an exemplar on its bucket, leading to the trace.
    for job in ["checkout", "payments"] {
        let s = &sent[job];
        let q = format!("http_server_request_duration_milliseconds_bucket{{job=\"{job}\"}}");
        let url = format!(
            "{}?query={}",
            server.url("/prometheus/api/v1/query_exemplars"),
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let (status, body) = get_json(&url, None).await;
        assert_eq!(status, 200, "{body}");
        let found: Vec<(String, serde_json::Value)> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|series| {
                let le = series["seriesLabels"]["le"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                series["exemplars"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |e| (le.clone(), e))
            })
            .filter(|(_, e)| e["labels"]["trace_id"] == s["trace_id"])
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{job}: exemplar of the traced observation in {body}"
        );
        let (le, e) = &found[0];
        assert_eq!(le, "5000", "{job}: on the bucket the value falls in");
        assert_eq!(e["labels"]["span_id"], s["span_id"]);
        assert_eq!(
            e["value"].as_str().unwrap().parse::<f64>().unwrap(),
            s["traced_value"].as_f64().unwrap()
        );
        let id = s["trace_id"].as_str().unwrap();
        let (status, trace) = get_json(&server.url(&format!("/api/v1/traces/{id}")), None).await;
        assert_eq!(status, 200, "{job}: the exemplar's trace: {trace}");
        assert!(trace.to_string().contains("checkout request"), "{trace}");
    }
    // Both services, one query; the resource's other attributes on target_info.
    assert_eq!(
        instant(&server, "sum by (job) (rate(app_requests_total[1m]))")
            .await
            .len(),
        2
    );
    assert_eq!(
        one(
            &server,
            "count(target_info{deployment_environment=\"e2e\"})"
        )
        .await,
        2.0
    );
}

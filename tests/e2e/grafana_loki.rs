//! Grafana's Loki data source against a real server: the Python SDK sends its traces and
//! logs, then the requests Grafana's Explore sends are replayed with their exact parameters
//! and headers (as Grafana's backend builds them: nanosecond `start`/`end`, `step` in whole
//! milliseconds, lower-case `direction`, `X-Query-Tags`, `categorize-labels`): the data
//! source test, label and value autocomplete, the logs query, the log volume query, the
//! context of a line (before and after), query statistics, and live tail. Each answer is
//! checked the way Grafana reads it.

use serde_json::Value;

use crate::harness::{Server, eventually, get_json};
use crate::python_sdk::emit_with;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A GET as Grafana's backend sends it; the body as JSON.
async fn grafana(server: &Server, path: &str, source: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(server.url(path))
        .header("X-Query-Tags", format!("Source={source}"))
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .header("X-Grafana-Org-Id", "1")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// The lines of a streams answer, checked as Grafana's parser reads them: a string
/// nanosecond timestamp, the line, and an optional object of structured metadata and
/// parsed labels.
fn stream_lines(body: &Value) -> Vec<(i64, String, Value)> {
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["resultType"], "streams", "{body}");
    assert_eq!(
        body["data"]["encodingFlags"][0], "categorize-labels",
        "{body}"
    );
    assert!(body["data"]["stats"]["summary"].is_object(), "{body}");
    let mut out = Vec::new();
    for s in body["data"]["result"].as_array().unwrap() {
        assert!(s["stream"].is_object(), "{s}");
        for v in s["values"].as_array().unwrap() {
            let v = v.as_array().unwrap();
            assert!((2..=3).contains(&v.len()), "{v:?}");
            let t: i64 = v[0].as_str().expect("a string timestamp").parse().unwrap();
            let extra = v.get(2).cloned().unwrap_or(Value::Null);
            if !extra.is_null() {
                let keys: Vec<&String> = extra.as_object().unwrap().keys().collect();
                assert!(
                    keys.iter()
                        .all(|k| *k == "structuredMetadata" || *k == "parsed"),
                    "{extra}"
                );
            }
            out.push((t, v[1].as_str().unwrap().to_string(), extra));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn grafanas_loki_requests_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["server"],
        dir.path(),
        &[("LOUPE_FLUSH_INTERVAL", "500ms")],
    );
    server.wait_ready().await;
    let emitted = emit_with(
        "http",
        &format!("http://{}", server.otlp_http.unwrap()),
        &["--logs"],
    );
    let failed = emitted["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["error"] == true)
        .unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(15, "the lines in files", || async {
        (crate::harness::stored_rows(&server, "logs").await == 9).then_some(())
    })
    .await;
    let end = now_ns();
    let start = end - 3_600_000_000_000;
    let range = format!("start={start}&end={end}");

    // Save & test: a labels request for the last ten minutes must answer labels.
    let test = grafana(
        &server,
        &format!(
            "/loki/api/v1/labels?start={}&end={end}",
            end - 600_000_000_000
        ),
        "grafana",
    )
    .await;
    assert_eq!(test["status"], "success");
    assert!(!test["data"].as_array().unwrap().is_empty(), "{test}");

    // Autocomplete: label names, values, values under a selector, series.
    let labels = grafana(&server, &format!("/loki/api/v1/labels?{range}"), "grafana").await;
    let names: Vec<&str> = labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"service_name") && names.contains(&"k8s_namespace_name"),
        "{names:?}"
    );
    let values = grafana(
        &server,
        &format!("/loki/api/v1/label/service_name/values?{range}"),
        "grafana",
    )
    .await;
    assert_eq!(
        values["data"],
        serde_json::json!(["billing", "orders", "web"])
    );
    let values = grafana(
        &server,
        &format!(
            "/loki/api/v1/label/service_name/values?{range}&query={}",
            q(r#"{service_name=~"b.+"}"#)
        ),
        "grafana",
    )
    .await;
    assert_eq!(values["data"], serde_json::json!(["billing"]));
    let series = grafana(
        &server,
        &format!(
            "/loki/api/v1/series?match[]={}&{range}",
            q(r#"{service_name="web"}"#)
        ),
        "grafana",
    )
    .await;
    assert_eq!(series["data"][0]["service_name"], "web", "{series}");
    let stats = grafana(
        &server,
        &format!(
            "/loki/api/v1/index/stats?query={}&{range}",
            q(r#"{service_name="web"}"#)
        ),
        "grafana",
    )
    .await;
    assert_eq!(stats["entries"], 4, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0);

    // Explore's logs query: backward, 1000 lines, a step in milliseconds.
    let logs_q = r#"{service_name=~"web|orders|billing"} |= "http""#;
    let body = grafana(
        &server,
        &format!(
            "/loki/api/v1/query_range?direction=backward&end={end}&limit=1000&query={}&start={start}&step=2000ms",
            q(logs_q)
        ),
        "grafana",
    )
    .await;
    let lines = stream_lines(&body);
    assert_eq!(lines.len(), 9, "{body}");
    assert!(
        lines.windows(2).all(|w| w[0].0 >= w[1].0)
            || body["data"]["result"].as_array().unwrap().len() > 1
    );
    let declined = lines
        .iter()
        .find(|(_, l, _)| l.contains("card declined"))
        .unwrap();
    assert_eq!(
        declined.2["structuredMetadata"]["trace_id"],
        failed.as_str()
    );
    assert_eq!(declined.2["structuredMetadata"]["severity_text"], "ERROR");

    // The log volume: Grafana's query, its $__auto interval already replaced.
    let volume_q =
        format!("sum by (level, detected_level) (count_over_time({logs_q} | drop __error__[1m]))");
    let body = grafana(
        &server,
        &format!(
            "/loki/api/v1/query_range?direction=backward&end={end}&query={}&start={start}&step=60000ms",
            q(&volume_q)
        ),
        "logvolhist",
    )
    .await;
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    let mut by_level = std::collections::BTreeMap::new();
    for s in body["data"]["result"].as_array().unwrap() {
        let level = s["metric"]["detected_level"].as_str().unwrap().to_string();
        for v in s["values"].as_array().unwrap() {
            assert!(v[0].is_number() && v[1].is_string(), "{v}");
            *by_level.entry(level.clone()).or_insert(0.0) +=
                v[1].as_str().unwrap().parse::<f64>().unwrap();
        }
    }
    assert_eq!(
        by_level,
        [("error".to_string(), 1.0), ("info".to_string(), 8.0)].into(),
        "{body}"
    );

    // The context of the failed charge's line: its stream, 10 lines before (backward, ending
    // at the line) and after (forward, from the line).
    let stream = body_stream_of(&server, &range, "card declined").await;
    let selector = format!(
        "{{{}}}",
        stream
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let t = declined.0;
    let before = grafana(
        &server,
        &format!(
            "/loki/api/v1/query_range?direction=backward&end={}&limit=10&query={}&start={}&step=1000ms",
            t + 1,
            q(&selector),
            t - 7_200_000_000_000
        ),
        "grafana",
    )
    .await;
    assert!(
        stream_lines(&before).iter().any(|(lt, _, _)| *lt == t),
        "{before}"
    );
    let after = grafana(
        &server,
        &format!(
            "/loki/api/v1/query_range?direction=forward&end={}&limit=10&query={}&start={t}&step=1000ms",
            t + 7_200_000_000_000,
            q(&selector)
        ),
        "grafana",
    )
    .await;
    let after_lines = stream_lines(&after);
    assert!(after_lines.iter().all(|(lt, _, _)| *lt >= t), "{after}");

    // A query by trace id, as a derived field or the trace view's "logs for this span" sends.
    let by_trace = grafana(
        &server,
        &format!(
            "/loki/api/v1/query_range?direction=backward&end={end}&limit=1000&query={}&start={start}&step=2000ms",
            q(&format!(r#"{{service_name=~".+"}} | trace_id="{failed}""#))
        ),
        "grafana",
    )
    .await;
    assert_eq!(stream_lines(&by_trace).len(), 3, "{by_trace}");

    // Errors reach Grafana as Loki writes them: plain text with a 400.
    let resp = reqwest::get(server.url(&format!(
        "/loki/api/v1/query_range?query={}&{range}",
        q(r#"{service_name="web"} | json | status >"#)
    )))
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with("parse error at line 1, col")
    );
    let (s, _) = get_json(&server.url("/loki/api/v1/status/buildinfo"), None).await;
    assert_eq!(s, 200);
}

/// The stream labels of the line containing `text`.
async fn body_stream_of(server: &Server, range: &str, text: &str) -> Value {
    let body = grafana(
        server,
        &format!(
            "/loki/api/v1/query_range?direction=backward&limit=10&query={}&{range}",
            q(&format!(r#"{{service_name=~".+"}} |= "{text}""#))
        ),
        "grafana",
    )
    .await;
    body["data"]["result"][0]["stream"].clone()
}

//! Grafana's Tempo data source against a real server: the Python SDK sends the checkout
//! workload, then `tests/python/grafana_tempo.py` replays the data source's requests (echo,
//! trace by id in protobuf decoded with the SDK's proto classes, a TraceQL search decoded with
//! a strict schema, tag names and typed values).

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Server, eventually, get_json, python, workspace_root};
use crate::python_sdk::emit;

#[tokio::test(flavor = "multi_thread")]
async fn grafanas_tempo_requests_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    let emitted = emit("http", &format!("http://{}", server.otlp_http.unwrap()));
    let traces = emitted["traces"].as_array().unwrap();
    let failed = traces.iter().find(|t| t["error"] == true).unwrap();
    let failed_id = failed["trace_id"].as_str().unwrap();
    for t in traces {
        let id = t["trace_id"].as_str().unwrap().to_string();
        eventually(15, "trace readable", || {
            let url = server.url(&format!("/api/v1/traces/{id}"));
            async move {
                let (s, body) = get_json(&url, None).await;
                (s == 200 && body["spans"].as_array()?.len() == 6).then_some(())
            }
        })
        .await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/grafana_tempo.py"))
        .args(["--url", &server.url("/tempo"), "--trace-id", failed_id])
        .args([
            "--query",
            r#"{ resource.service.name = "billing" && status = error }"#,
        ])
        .args([
            "--start",
            &(now - 600).to_string(),
            "--end",
            &(now + 60).to_string(),
        ])
        .args([
            "--tag",
            "resource.service.name",
            "--tag",
            "span.order.items",
            "--tag",
            "status",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "grafana_tempo.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("grafana_tempo.py output");
    assert_eq!(
        got["trace"],
        json!({"spans": 6, "services": ["billing", "orders", "web"], "errors": 1})
    );
    assert_eq!(
        got["search"],
        json!([{"traceID": failed_id, "rootServiceName": "web", "matched": 1, "spans": ["POST /charge"]}])
    );
    let has = |scope: &str, tag: &str| {
        got["tags"][scope]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == tag))
    };
    assert!(has("resource", "service.name"), "{}", got["tags"]);
    assert!(has("resource", "k8s.namespace.name"), "{}", got["tags"]);
    assert!(has("span", "http.route"), "{}", got["tags"]);
    assert!(has("intrinsic", "status"), "{}", got["tags"]);
    assert_eq!(
        got["values"]["resource.service.name"],
        json!([
            ["string", "billing"],
            ["string", "orders"],
            ["string", "web"]
        ])
    );
    let items: Vec<Value> = (1..=traces.len())
        .map(|n| json!(["int", n.to_string()]))
        .collect();
    assert_eq!(got["values"]["span.order.items"], Value::Array(items));
    assert_eq!(
        got["values"]["status"],
        json!([
            ["keyword", "error"],
            ["keyword", "ok"],
            ["keyword", "unset"]
        ])
    );
    assert_eq!(got["bad_query"]["status"], 400);
    assert!(
        got["bad_query"]["body"]
            .as_str()
            .unwrap()
            .starts_with("invalid TraceQL query"),
        "{}",
        got["bad_query"]
    );
}

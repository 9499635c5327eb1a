//! The real OpenTelemetry Python SDK sends multi-service traces over gRPC and over HTTP; they
//! read back whole through the Jaeger API and the native API.

use std::process::Command;

use crate::harness::{Server, eventually, get_json, python, workspace_root};

pub fn emit(protocol: &str, endpoint: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/emit_traces.py"))
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--traces",
            "4",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "emit_traces.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("emit_traces.py output")
}

async fn check_traces(server: &Server, emitted: &serde_json::Value) {
    for t in emitted["traces"].as_array().unwrap() {
        let id = t["trace_id"].as_str().unwrap();
        let want = t["spans"].as_u64().unwrap() as usize;
        let jaeger = eventually(15, "trace in the Jaeger API", || async {
            let (status, body) =
                get_json(&server.url(&format!("/jaeger/api/traces/{id}")), None).await;
            (status == 200 && body["data"][0]["spans"].as_array()?.len() == want).then_some(body)
        })
        .await;
        let trace = &jaeger["data"][0];
        let spans = trace["spans"].as_array().unwrap();
        // Every non-root span's parent is in the trace: context crossed the services.
        let ids: Vec<&str> = spans
            .iter()
            .map(|s| s["spanID"].as_str().unwrap())
            .collect();
        let roots = spans
            .iter()
            .filter(|s| s["references"].as_array().unwrap().is_empty())
            .count();
        assert_eq!(roots, 1, "one root per trace");
        for s in spans {
            for r in s["references"].as_array().unwrap() {
                assert_eq!(r["refType"], "CHILD_OF");
                assert!(
                    ids.contains(&r["spanID"].as_str().unwrap()),
                    "parent present"
                );
            }
        }
        let mut services: Vec<&str> = trace["processes"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p["serviceName"].as_str().unwrap())
            .collect();
        services.sort();
        services.dedup();
        assert_eq!(services, ["billing", "orders", "web"]);
        let has_error_tag = spans.iter().any(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "error" && t["value"] == true)
        });
        assert_eq!(
            has_error_tag,
            t["error"].as_bool().unwrap(),
            "error spans carry error=true"
        );

        let (status, native) = get_json(&server.url(&format!("/api/v1/traces/{id}")), None).await;
        assert_eq!(status, 200);
        let nspans = native["spans"].as_array().unwrap();
        assert_eq!(nspans.len(), want);
        let charge = nspans.iter().find(|s| s["name"] == "POST /charge").unwrap();
        assert_eq!(charge["serviceName"], "billing");
        assert_eq!(charge["kind"], "server");
        if t["error"].as_bool().unwrap() {
            assert_eq!(charge["status"]["code"], "error");
            assert_eq!(charge["events"][0]["name"], "exception");
            assert_eq!(
                charge["events"][0]["attributes"]["exception.type"],
                "ValueError"
            );
        }
        let insert = nspans
            .iter()
            .find(|s| s["name"] == "INSERT orders")
            .unwrap();
        assert_eq!(insert["attributes"]["db.system"], "postgresql");
        assert_eq!(insert["resource"]["k8s.namespace.name"], "e2e");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    let grpc = emit("grpc", &format!("http://{}", server.otlp_grpc.unwrap()));
    let http = emit("http", &format!("http://{}", server.otlp_http.unwrap()));
    check_traces(&server, &grpc).await;
    check_traces(&server, &http).await;

    // Search: service + tag + status through both APIs finds the failed checkouts.
    let (status, found) = get_json(
        &server.url("/api/v1/traces?service=billing&status=error&limit=50"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["traces"].as_array().unwrap().len(), 2, "{found}");
    assert_eq!(found["traces"][0]["rootServiceName"], "web");
    assert_eq!(found["traces"][0]["spanCount"], 6);
    let (_, found) = get_json(
        &server
            .url("/jaeger/api/traces?service=web&tags=%7B%22e2e.run%22%3A%22grpc%22%7D&limit=20"),
        None,
    )
    .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 4, "{found}");
    let (_, found) = get_json(
        &server.url("/api/v1/traces?service=orders&tags=order.items%3D2&minDuration=0ms"),
        None,
    )
    .await;
    assert_eq!(
        found["traces"].as_array().unwrap().len(),
        2,
        "one per protocol run: {found}"
    );
    let (_, services) = get_json(&server.url("/jaeger/api/services"), None).await;
    assert_eq!(
        services["data"],
        serde_json::json!(["billing", "orders", "web"])
    );
    let (_, ops) = get_json(&server.url("/jaeger/api/services/orders/operations"), None).await;
    let ops: Vec<&str> = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"POST /orders") && ops.contains(&"INSERT orders"),
        "{ops:?}"
    );

    // The dependency graph: each checkout crosses web → orders → billing once.
    let deps = serde_json::json!([
        {"parent": "orders", "child": "billing", "callCount": 8},
        {"parent": "web", "child": "orders", "callCount": 8},
    ]);
    let (status, found) = get_json(&server.url("/jaeger/api/dependencies"), None).await;
    assert_eq!((status, &found["data"]), (200, &deps), "{found}");

    // After a clean stop (which flushes; SIGKILL would leave the WAL to answer) and a
    // restart, everything comes from the object store: nothing is left to replay.
    assert!(server.stop().success());
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    assert_eq!(
        crate::harness::metric(&server, "loupe_replay_records_total", "").await,
        Some(0.0),
        "nothing was replayed from the write-ahead log"
    );
    check_traces(&server, &grpc).await;
    // The same edges, now counted from the files alone (with an explicit window).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let url = format!("/jaeger/api/dependencies?endTs={now_ms}&lookback=3600000");
    let (_, found) = get_json(&server.url(&url), None).await;
    assert_eq!(found["data"], deps, "{found}");
    let (status, _) = get_json(&server.url("/jaeger/api/dependencies?lookback=-5"), None).await;
    assert_eq!(status, 400);
}

//! The real OpenTelemetry Python SDK sends multi-service traces over gRPC and over HTTP; they
//! read back whole through the Jaeger API and the native API. With its logs (records emitted
//! inside spans, and a plain line carrying a `traceparent` in its text), every line of a
//! trace is found by its trace id, by words and by fields, before and after a kill -9.

use std::process::Command;

use crate::harness::{Server, eventually, get_json, python, workspace_root};

pub fn emit(protocol: &str, endpoint: &str) -> serde_json::Value {
    emit_with(protocol, endpoint, &[])
}

/// As [`emit`], with more arguments for the script (e.g. `--logs`).
pub fn emit_with(protocol: &str, endpoint: &str, extra: &[&str]) -> serde_json::Value {
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
        .args(extra)
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

/// The lines of `query` through the native API.
async fn logs(server: &Server, query: &str) -> Vec<serde_json::Value> {
    let url = server.url(&format!(
        "/api/v1/logs?limit=1000&query={}",
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    ));
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["logs"].as_array().unwrap().clone()
}

/// A Loki `query_range` (the last hour) and its result.
async fn loki(server: &Server, query: &str, extra: &str) -> serde_json::Value {
    let url = server.url(&format!(
        "/loki/api/v1/query_range?query={}{extra}",
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    ));
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"]["result"].clone()
}

/// The lines of a Loki streams result.
fn loki_lines(result: &serde_json::Value) -> Vec<String> {
    result
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .map(|v| v[1].as_str().unwrap().to_string())
        .collect()
}

/// The SDK's lines through Grafana's Loki API: by words, trace id, a parsed field, and
/// counted by level.
async fn check_loki(server: &Server, runs: &[(&str, &serde_json::Value)]) {
    for (run, emitted) in runs {
        let found = loki(
            server,
            &format!(r#"{{service_name="web"}} |= "checkout started run={run}""#),
            "",
        )
        .await;
        assert_eq!(loki_lines(&found).len(), 4, "{run}: {found}");
        for t in emitted["traces"].as_array().unwrap() {
            let id = t["trace_id"].as_str().unwrap();
            let found = loki(
                server,
                &format!(r#"{{service_name=~"web|orders|billing"}} | trace_id="{id}""#),
                "",
            )
            .await;
            let want = if t["error"].as_bool().unwrap() { 3 } else { 2 };
            assert_eq!(loki_lines(&found).len(), want, "{run} {id}: {found}");
        }
    }
    let failed = loki(
        server,
        r#"{service_name="billing"} | json | status >= 500"#,
        "",
    )
    .await;
    let lines = loki_lines(&failed);
    assert_eq!(lines.len(), runs.len(), "{failed}");
    assert!(lines.iter().all(|l| l.contains("card declined")));
    assert_eq!(failed[0]["stream"]["status"], "502");
    let by_level = loki(
        server,
        r#"sum by (level) (count_over_time({service_name="billing"} | json [1m]))"#,
        "&step=60",
    )
    .await;
    let total: f64 = by_level[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(
        by_level[0]["metric"],
        serde_json::json!({"level": "error"}),
        "{by_level}"
    );
    assert!(total >= runs.len() as f64, "{by_level}");
    // Grafana's log volume: by the level Loki detects from the severity.
    let volume = loki(
        server,
        r#"sum by (detected_level) (count_over_time({service_name=~"web|orders|billing"} | drop __error__ [1m]))"#,
        "&step=60",
    )
    .await;
    let levels: Vec<&str> = volume
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["detected_level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, vec!["error", "info"], "{volume}");
}

async fn check_logs(server: &Server, runs: &[(&str, &serde_json::Value)]) {
    check_loki(server, runs).await;
    for (run, emitted) in runs {
        for t in emitted["traces"].as_array().unwrap() {
            let id = t["trace_id"].as_str().unwrap();
            let failed = t["error"].as_bool().unwrap();
            let lines = logs(server, &format!("trace_id:{id}")).await;
            let mut services: Vec<&str> = lines
                .iter()
                .map(|l| l["serviceName"].as_str().unwrap())
                .collect();
            services.sort();
            let want = if failed {
                vec!["billing", "orders", "web"]
            } else {
                vec!["orders", "web"]
            };
            assert_eq!(services, want, "{run} {id}: {lines:?}");
            // The plain line got its context from its text; SDK records from their span.
            let plain = lines.iter().find(|l| l["serviceName"] == "orders").unwrap();
            assert!(plain["body"].as_str().unwrap().contains("traceparent=00-"));
            assert_eq!(plain["spanId"].as_str().unwrap().len(), 16);
            let web = lines.iter().find(|l| l["serviceName"] == "web").unwrap();
            assert_eq!(web["severityText"], "INFO");
            assert_eq!(web["attributes"]["e2e.run"], *run);
        }
        let declined = logs(
            server,
            &format!("card declined run={run} service:billing severity>=error"),
        )
        .await;
        assert_eq!(declined.len(), 1, "{run}: {declined:?}");
        assert_eq!(declined[0]["severityNumber"], 17);
        assert_eq!(declined[0]["attributes"]["http.status_code"], 500);
        assert_eq!(declined[0]["resource"]["k8s.namespace.name"], "e2e");
    }
    let by_field = logs(server, "attributes.http.status_code:500").await;
    assert_eq!(by_field.len(), runs.len(), "{by_field:?}");
    let all = logs(server, "").await;
    assert_eq!(
        all.len(),
        runs.len() * (4 * 2 + 1),
        "two lines per trace, one more per failure"
    );
    let times: Vec<i64> = all
        .iter()
        .map(|l| l["timeUnixNano"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // Boolean operators, wildcards and ranges select what the same test on every line does.
    type Pick = fn(&serde_json::Value) -> bool;
    let cases: [(&str, Pick); 4] = [
        ("service:billing OR service:orders", |l| {
            l["serviceName"] != "web"
        }),
        ("-service:web (severity>=error OR NOT declined)", |l| {
            l["serviceName"] != "web"
                && (l["severityNumber"].as_i64().unwrap() >= 17
                    || !l["body"].to_string().to_lowercase().contains("declined"))
        }),
        (
            "service:bill* attributes.http.status_code:[500 TO 599]",
            |l| {
                l["serviceName"] == "billing"
                    && l["attributes"]["http.status_code"]
                        .as_i64()
                        .is_some_and(|c| (500..=599).contains(&c))
            },
        ),
        ("decl* OR traceparent", |l| {
            let b = l["body"].to_string().to_lowercase();
            b.contains("declined") || b.contains("traceparent")
        }),
    ];
    for (query, pick) in cases {
        let got = logs(server, query).await;
        let want: Vec<&serde_json::Value> = all.iter().filter(|l| pick(l)).collect();
        assert!(!want.is_empty(), "{query} selects something");
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{query}");
    }
    // Pages of 4 through the cursor give the same lines in the same order.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) =
            get_json(&server.url(&format!("/api/v1/logs?limit=4{cursor}")), None).await;
        assert_eq!(status, 200, "{body}");
        paged.extend(body["logs"].as_array().unwrap().iter().cloned());
        match body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, all, "paged through the cursor");
    // Facets count the sampled lines' values: here every line.
    let (status, f) = get_json(&server.url("/api/v1/logs/facets?field=service"), None).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["sampled"], all.len(), "{f}");
    for v in f["values"].as_array().unwrap() {
        let service = v["value"].as_str().unwrap();
        let n = all.iter().filter(|l| l["serviceName"] == service).count();
        assert_eq!(v["count"], n, "{service}: {f}");
    }
    let (status, f) = get_json(&server.url("/api/v1/logs/facets"), None).await;
    assert_eq!(status, 400, "a facet needs a field: {f}");
    // The context of a line: the lines of its service just before and after it.
    let line = &all[all.len() / 2];
    let (service, t) = (
        line["serviceName"].as_str().unwrap(),
        line["timeUnixNano"].as_str().unwrap(),
    );
    let t_of =
        |l: &serde_json::Value| -> i64 { l["timeUnixNano"].as_str().unwrap().parse().unwrap() };
    let (status, c) = get_json(
        &server.url(&format!(
            "/api/v1/logs/context?time={t}&service={service}&before=2&after=2"
        )),
        None,
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert!(c["at"].as_array().unwrap().contains(line), "{c}");
    let t: i64 = t.parse().unwrap();
    let mut of_service: Vec<&serde_json::Value> =
        all.iter().filter(|l| l["serviceName"] == service).collect();
    of_service.sort_by_key(|l| t_of(l));
    let want_before: Vec<&serde_json::Value> =
        of_service.iter().copied().filter(|l| t_of(l) < t).collect();
    let want_before = &want_before[want_before.len().saturating_sub(2)..];
    let want_after: Vec<&serde_json::Value> = of_service
        .iter()
        .copied()
        .filter(|l| t_of(l) > t)
        .take(2)
        .collect();
    let got = |side: &str| c[side].as_array().unwrap().iter().collect::<Vec<_>>();
    assert_eq!(got("before"), want_before, "{c}");
    assert_eq!(got("after"), want_after, "{c}");
    // The histogram counts what the search finds, by level.
    for query in ["", "severity>=error", "service:web"] {
        let found = logs(server, query).await;
        let url = server.url(&format!(
            "/api/v1/logs/histogram?step=1m&query={}",
            url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        ));
        let (status, h) = get_json(&url, None).await;
        assert_eq!(status, 200, "{query}: {h}");
        assert_eq!(h["total"], found.len(), "{query}: {h}");
        let errors: u64 = h["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["level"] == "error")
            .flat_map(|s| s["counts"].as_array().unwrap())
            .map(|c| c.as_u64().unwrap())
            .sum();
        let want = found
            .iter()
            .filter(|l| (17..=20).contains(&l["severityNumber"].as_i64().unwrap()))
            .count();
        assert_eq!(errors, want as u64, "{query}: {h}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_logs_join_their_traces_and_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    // A long flush interval: the first checks read the collector's fresh records.
    let env = [("LOUPE_FLUSH_INTERVAL", "1h")];
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let grpc = emit_with(
        "grpc",
        &format!("http://{}", server.otlp_grpc.unwrap()),
        &["--logs"],
    );
    let http = emit_with(
        "http",
        &format!("http://{}", server.otlp_http.unwrap()),
        &["--logs"],
    );
    let runs = [("grpc", &grpc), ("http", &http)];
    eventually(15, "every log line acknowledged", || async {
        (logs(&server, "").await.len() == 18).then_some(())
    })
    .await;
    check_logs(&server, &runs).await;

    // Killed before any flush: the WAL brings every line back, once; then from files.
    server.kill9();
    let server = Server::start(
        &["server"],
        dir.path(),
        &[("LOUPE_FLUSH_INTERVAL", "200ms")],
    );
    server.wait_ready().await;
    check_logs(&server, &runs).await;
    eventually(15, "the logs flushed to files", || async {
        (crate::harness::stored_rows(&server, "logs").await == 18).then_some(())
    })
    .await;
    check_logs(&server, &runs).await;
}

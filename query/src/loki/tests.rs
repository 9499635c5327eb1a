//! The Loki API over the thirty fixed lines of the LogQL golden tests (as fresh records):
//! response shapes, parameters and errors.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use loupe_core::TenantId;
use loupe_storage::TenantResolver;
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::{Chunk, Fresh, NoFresh};
use loupe_storage::logs::LogRecord;
use loupe_storage::store::Storage;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::logql::golden::{S, T0, lines};
use crate::state::QueryState;

struct Fixed(Vec<Arc<Chunk<Vec<LogRecord>>>>);

impl Fresh<Vec<LogRecord>> for Fixed {
    fn chunks(&self, _: &TenantId) -> Vec<Arc<Chunk<Vec<LogRecord>>>> {
        self.0.clone()
    }
}

fn app() -> axum::Router {
    let storage = Storage::in_memory();
    let catalog = Catalog::new(storage.clone(), "test");
    let traces = Arc::new(crate::service::TraceService::new(
        catalog.clone(),
        Arc::new(loupe_storage::spans::SpanReader::new(storage.clone())),
        Arc::new(NoFresh),
        Duration::ZERO,
    ));
    let logs = Arc::new(crate::logs::LogService::new(
        catalog,
        Arc::new(loupe_storage::logs::index::LogIndexReader::new(storage)),
        Arc::new(Fixed(vec![Arc::new(Chunk::new(lines(), 1))])),
        Duration::ZERO,
    ));
    crate::router(QueryState {
        traces,
        logs,
        metrics: crate::promql::service::empty_for_tests(),
        resolver: TenantResolver::default(),
    })
}

fn range() -> String {
    format!("start={}&end={}", T0, T0 + 30 * S)
}

async fn call(path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(path: &str) -> Value {
    let (status, body) = call(path, &[]).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn log_queries_answer_streams_newest_first_with_categorized_labels() {
    let path = format!(
        "/loki/api/v1/query_range?query={}&{}&limit=3",
        q(r#"{service_name="web"} | json | status >= 500"#),
        range()
    );
    let body = get(&path).await;
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["resultType"], "streams");
    let streams = body["data"]["result"].as_array().unwrap();
    let mut times: Vec<i64> = streams
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .map(|v| v[0].as_str().unwrap().parse().unwrap())
        .collect();
    times.sort();
    assert_eq!(
        times,
        vec![T0 + 9 * S, T0 + 18 * S, T0 + 27 * S],
        "the newest three"
    );
    // Every label in the stream without the flag, parsed ones included.
    assert_eq!(streams[0]["stream"]["status"], "500");
    assert_eq!(streams[0]["stream"]["service_name"], "web");

    let (status, text) = call(
        &path,
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["data"]["encodingFlags"], json!(["categorize-labels"]));
    let s = &body["data"]["result"][0];
    assert!(s["stream"].get("status").is_none(), "{s}");
    assert_eq!(s["stream"]["k8s_namespace_name"], "shop");
    let extra = &s["values"][0][2];
    assert_eq!(extra["parsed"]["status"], "500");
    assert_eq!(extra["structuredMetadata"]["host_arch"], "amd64");

    let forward = get(&format!(
        "/loki/api/v1/query_range?query={}&{}&limit=2&direction=forward",
        q(r#"{service_name="db"}"#),
        range()
    ))
    .await;
    let first = &forward["data"]["result"][0]["values"][0][0];
    let second = &forward["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .map(|v| v[0].as_str().unwrap().parse::<i64>().unwrap())
        .max();
    assert!(first.is_string());
    assert_eq!(*second, Some(T0 + 5 * S), "the oldest two: 2 s and 5 s");
}

#[tokio::test]
async fn metric_queries_answer_matrices_and_vectors() {
    let body = get(&format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}&step=10s",
        q(r#"sum by (service_name) (count_over_time({k8s_namespace_name="shop"}[10s]))"#),
        T0 + 10 * S,
        T0 + 30 * S
    ))
    .await;
    assert_eq!(body["data"]["resultType"], "matrix");
    let api = &body["data"]["result"][0];
    assert_eq!(api["metric"], json!({"service_name": "api"}));
    assert_eq!(
        api["values"],
        json!([
            [1_700_000_010, "4"],
            [1_700_000_020, "3"],
            [1_700_000_030, "3"]
        ])
    );
    // Seconds with a fraction for start and end, a float step.
    let body = get(&format!(
        "/loki/api/v1/query_range?query={}&start=1700000010.0&end=1700000030.0&step=20",
        q(r#"sum(rate({service_name="web"}[10s]))"#)
    ))
    .await;
    // Two pods' rates summed: 0.1 + 0.2, printed as Prometheus prints floats.
    let values = body["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 2);
    assert_eq!(values[1][0], 1_700_000_030);
    let v: f64 = values[1][1].as_str().unwrap().parse().unwrap();
    assert!((v - 0.3).abs() < 1e-9, "{v}");
    let body = get(&format!(
        "/loki/api/v1/query?query={}&time={}",
        q(r#"sum by (detected_level) (count_over_time({k8s_namespace_name="shop"}[30s]))"#),
        T0 + 30 * S
    ))
    .await;
    assert_eq!(body["data"]["resultType"], "vector");
    let result = body["data"]["result"].as_array().unwrap();
    let warn = result
        .iter()
        .find(|r| r["metric"]["detected_level"] == "warn")
        .unwrap();
    assert_eq!(warn["value"], json!([1_700_000_030, "10"]));
}

#[tokio::test]
async fn labels_series_and_statistics() {
    let body = get(&format!("/loki/api/v1/labels?{}", range())).await;
    assert_eq!(
        body["data"],
        json!(["k8s_namespace_name", "k8s_pod_name", "service_name"])
    );
    let body = get(&format!(
        "/loki/api/v1/label/service_name/values?{}",
        range()
    ))
    .await;
    assert_eq!(body["data"], json!(["api", "db", "web"]));
    let body = get(&format!(
        "/loki/api/v1/label/k8s_pod_name/values?{}&query={}",
        range(),
        q(r#"{service_name="web"}"#)
    ))
    .await;
    assert_eq!(body["data"], json!(["web-0", "web-1"]));
    let body = get(&format!(
        "/loki/api/v1/series?{}&match[]={}&match[]={}",
        range(),
        q(r#"{service_name="db", k8s_pod_name="db-0"}"#),
        q(r#"{k8s_pod_name="api-1"}"#)
    ))
    .await;
    assert_eq!(
        body["data"],
        json!([
            {"k8s_namespace_name": "shop", "k8s_pod_name": "api-1", "service_name": "api"},
            {"k8s_namespace_name": "shop", "k8s_pod_name": "db-0", "service_name": "db"},
        ])
    );
    let body = get(&format!(
        "/loki/api/v1/index/stats?{}&query={}",
        range(),
        q(r#"{service_name=~".+"}"#)
    ))
    .await;
    let bytes: usize = lines().iter().map(|r| r.body_text().len()).sum();
    assert_eq!(body["streams"], 6);
    assert_eq!(body["entries"], 30);
    assert_eq!(body["bytes"], bytes);
    let body = get(&format!(
        "/loki/api/v1/index/volume?{}&query={}",
        range(),
        q(r#"{service_name=~".+"}"#)
    ))
    .await;
    let result = body["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 3);
    let total: u64 = result
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total as usize, bytes);
    let body = get(&format!(
        "/loki/api/v1/index/volume_range?start={}&end={}&step=10s&query={}",
        T0,
        T0 + 29 * S,
        q(r#"{service_name="web"}"#)
    ))
    .await;
    let values = body["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 3, "{body}");
}

#[tokio::test]
async fn detected_labels_and_fields() {
    let body = get(&format!("/loki/api/v1/detected_labels?{}", range())).await;
    assert!(
        body["detectedLabels"]
            .as_array()
            .unwrap()
            .contains(&json!({"label": "k8s_pod_name", "cardinality": 6}))
    );
    let body = get(&format!(
        "/loki/api/v1/detected_fields?{}&query={}",
        range(),
        q(r#"{service_name="web"}"#)
    ))
    .await;
    let fields = body["fields"].as_array().unwrap();
    let status = fields.iter().find(|f| f["label"] == "status").unwrap();
    assert_eq!(status["type"], "int");
    assert_eq!(status["cardinality"], 2);
    assert_eq!(status["parsers"], json!(["json"]));
    let duration = fields.iter().find(|f| f["label"] == "duration").unwrap();
    assert_eq!(duration["type"], "duration");
    let body = get(&format!(
        "/loki/api/v1/detected_field/status/values?{}&query={}",
        range(),
        q(r#"{service_name="web"}"#)
    ))
    .await;
    assert_eq!(body["values"], json!(["200", "500"]));
}

#[tokio::test]
async fn errors_are_plain_text_with_loki_statuses() {
    for (path, status, want) in [
        (
            format!(
                "/loki/api/v1/query_range?query={}",
                q(r#"{service_name="web""#)
            ),
            400,
            "parse error at line 1, col",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}",
                q(r#"sum(rate({a="b"}[1m])) * 2"#)
            ),
            400,
            "unsupported LogQL: binary operations",
        ),
        (
            format!("/loki/api/v1/query?query={}", q(r#"{a="b"}"#)),
            400,
            "log queries are not supported as an instant query type",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&limit=6000",
                q(r#"{a="b"}"#)
            ),
            400,
            "max entries limit per query exceeded",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start=10&end=5",
                q(r#"{a="b"}"#)
            ),
            400,
            "end timestamp must not be before",
        ),
        (
            format!(
                "/loki/api/v1/query_range?query={}&start=0&end=100000&step=1",
                q(r#"count_over_time({a="b"}[1m])"#)
            ),
            400,
            "exceeded maximum resolution",
        ),
        ("/loki/api/v1/query_range".to_string(), 400, "missing query"),
        (
            "/loki/api/v1/labels?start=soon".to_string(),
            400,
            "invalid start",
        ),
        (
            "/loki/api/v1/nothing".to_string(),
            404,
            "no such Loki API endpoint",
        ),
    ] {
        let (s, body) = call(&path, &[]).await;
        assert_eq!(s, status, "{path}: {body}");
        assert!(body.contains(want), "{path}: {body}");
        assert!(!body.starts_with('{'), "plain text: {body}");
    }
    // A pipeline error fails a metric query, naming it.
    let (s, body) = call(
        &format!(
            "/loki/api/v1/query_range?query={}&{}&step=10s",
            q(r#"sum(count_over_time({service_name="db"} | json [10s]))"#),
            range()
        ),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("pipeline error: 'JSONParserErr'"), "{body}");
}

#[tokio::test]
async fn post_forms_are_read_like_query_strings() {
    let body = format!(
        "query={}&{}&limit=1",
        q(r#"{service_name="api"} |= "u3""#),
        range()
    );
    let resp = app()
        .oneshot(
            Request::post("/loki/api/v1/query_range")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&b).unwrap();
    let line = v["data"]["result"][0]["values"][0][1].as_str().unwrap();
    assert!(line.contains("user=u3"), "{line}");
}

//! The agent's Kubernetes API client against recorded API responses served on loopback (no
//! cluster runs here): a `PodList` of this node as the API server returns it. Lines of a
//! Deployment's pod are shipped as `service.name` = the Deployment (with its version and
//! `k8s.deployment.name`), a labelled StatefulSet pod as its label says, a pod the API does
//! not know falls back to its container's name; the pod annotated `prometheus.io/scrape` is
//! scraped in job `kubernetes-pods` with `namespace` and `pod` labels.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::RawQuery;
use axum::routing::get;

use crate::agent::{Agent, rfc3339};
use crate::harness::{Server, free_addr, get_json, workspace_root};

const CHECKOUT_UID: &str = "4b1e7c2a-8f3d-4a61-9c0e-2d5f6a7b8c91";
const DB_UID: &str = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f";

/// Serves the recorded pod list at `/api/v1/pods`; returns its address and the queries seen.
async fn fake_api(body: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/pods",
        get(move |RawQuery(q): RawQuery| {
            let (body, log) = (body.clone(), log.clone());
            async move {
                log.lock().unwrap().push(q.unwrap_or_default());
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

async fn loki(server: &Server, query: &str) -> Vec<serde_json::Value> {
    let url = format!(
        "{}?query={}&start={}&limit=1000",
        server.url("/loki/api/v1/query_range"),
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            - 3_600_000_000_000
    );
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_metadata_names_services_and_finds_scrape_targets() {
    let exporter_addr = free_addr();
    let _exporter = crate::agent_metrics::NodeExporter::start(&exporter_addr);
    let recorded =
        std::fs::read_to_string(workspace_root().join("tests/e2e/fixtures/kube/pods-node-k.json"))
            .unwrap()
            .replace(
                "__EXPORTER_PORT__",
                exporter_addr.rsplit(':').next().unwrap(),
            );
    let (api, queries) = fake_api(recorded).await;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], &dir.path().join("loupe"), &[]);
    server.wait_ready().await;
    let pods = dir.path().join("pods");
    let files = [
        format!("shop_checkout-7d9f8b6c5-x2x9q_{CHECKOUT_UID}/app/0.log"),
        format!("shop_db-0_{DB_UID}/postgres/0.log"),
        "ops_cron-1_0000-unknown/job/0.log".to_string(),
    ];
    let env = vec![
        (
            "LOUPE_AGENT_ENDPOINT",
            format!("http://{}", server.otlp_http.unwrap()),
        ),
        ("LOUPE_AGENT_PODS_DIR", pods.display().to_string()),
        (
            "LOUPE_AGENT_DATA_DIR",
            dir.path().join("agent").display().to_string(),
        ),
        ("LOUPE_AGENT_NODE_NAME", "node-k".into()),
        ("LOUPE_AGENT_KUBERNETES_API", format!("http://{api}")),
        ("LOUPE_AGENT_KUBERNETES_REFRESH", "1s".into()),
        ("LOUPE_AGENT_SCRAPE_INTERVAL", "1s".into()),
        ("LOUPE_AGENT_HOST_METRICS_INTERVAL", "0s".into()),
    ];
    let _agent = Agent::start(&env, &dir.path().join("agent.log"));

    // Lines keep coming; the ones after the first listing carry the pods' metadata.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0u64;
    loop {
        for f in &files {
            let p = pods.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap();
            writeln!(file, "{} stdout F line {n}", rfc3339(now)).unwrap();
        }
        n += 1;
        let checkout = loki(
            &server,
            r#"{service_name="checkout", k8s_deployment_name="checkout"}"#,
        )
        .await;
        let db = loki(
            &server,
            r#"{service_name="postgres", k8s_statefulset_name="db"}"#,
        )
        .await;
        let fallback = loki(&server, r#"{service_name="job", k8s_pod_name="cron-1"}"#).await;
        if !checkout.is_empty() && !db.is_empty() && !fallback.is_empty() {
            assert_eq!(
                checkout[0]["stream"]["service_version"], "1.4.2",
                "{}",
                checkout[0]["stream"]
            );
            assert_eq!(db[0]["stream"]["service_version"], "16.4");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lines under the pods' service names"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        queries
            .lock()
            .unwrap()
            .iter()
            .any(|q| q.contains("fieldSelector=spec.nodeName%3Dnode-k")),
        "this node's pods only: {:?}",
        queries.lock().unwrap()
    );

    // The annotated pod, scraped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get_json(
            &server.url("/prometheus/api/v1/query?query=up%7Bjob%3D%22kubernetes-pods%22%7D"),
            None,
        )
        .await;
        let r = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Scraped, and up (a first scrape may have come before the exporter listened).
        if let Some(s) = r.first().filter(|s| s["value"][1] == "1") {
            assert_eq!(s["metric"]["namespace"], "shop", "{s}");
            assert_eq!(s["metric"]["pod"], "db-0", "{s}");
            assert_eq!(
                s["metric"]["instance"],
                format!("127.0.0.1:{}", exporter_addr.rsplit(':').next().unwrap())
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the annotated pod was never scraped up: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

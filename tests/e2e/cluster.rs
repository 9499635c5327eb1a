//! Two collectors and a query role on one S3 bucket under load, with compaction, retention
//! and garbage collection running: no span lost or stored twice, exactly one collector does
//! lifecycle work, and queries never fail on a file that garbage collection deleted.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::{Server, env_refs, get_json, metric};
use crate::load::{Load, Outcome, verify_exactly_once, wait_for_acked_rows};
use loupe_storage::testing::Moto;

#[tokio::test(flavor = "multi_thread")]
async fn two_collectors_and_a_query_role_share_a_bucket() {
    let moto = Moto::start("cluster");
    let dir = tempfile::tempdir().unwrap();
    let mut env = moto.env();
    env.extend([
        ("LOUPE_STORAGE_URL", "s3://cluster/loupe".to_string()),
        ("LOUPE_FLUSH_INTERVAL", "200ms".to_string()),
        ("LOUPE_COMPACTION_INTERVAL", "1s".to_string()),
        ("LOUPE_GC_GRACE", "2s".to_string()),
        ("LOUPE_CATALOG_REFRESH_INTERVAL", "500ms".to_string()),
    ]);
    let env = env_refs(&env);
    let a = Server::start(&["collector"], &dir.path().join("a"), &env);
    let b = Server::start(&["collector"], &dir.path().join("b"), &env);
    let q = Server::start(&["query"], &dir.path().join("q"), &env);
    for s in [&a, &b, &q] {
        s.wait_ready().await;
    }
    let urls: Vec<String> = [&a, &b]
        .iter()
        .map(|s| format!("http://{}", s.otlp_http.unwrap()))
        .collect();
    let load = Load::start(&urls, 8, Duration::from_millis(40));

    // While the load runs: sample lease ownership, and read recent traces through the
    // query role while compaction swaps files and garbage collection deletes the old ones.
    let mut owners: Vec<(f64, f64)> = Vec::new();
    let mut seen_whole: HashMap<String, usize> = HashMap::new();
    let client = reqwest::Client::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (lease, of_default) = ("loupe_lifecycle_lease_held", "tenant=\"default\"");
        owners.push((
            metric(&a, lease, of_default).await.unwrap_or(0.0),
            metric(&b, lease, of_default).await.unwrap_or(0.0),
        ));
        let (status, body) = get_json(&q.url("/api/v1/traces?limit=20"), None).await;
        assert_eq!(status, 200, "search on the query role: {body}");
        for t in body["traces"].as_array().unwrap().iter().take(4) {
            let id = t["traceId"].as_str().unwrap().to_string();
            let resp = client
                .get(q.url(&format!("/api/v1/traces/{id}")))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(
                status, 200,
                "a trace the search found must be readable: {body}"
            );
            let n = body["spans"].as_array().unwrap().len();
            let before = seen_whole.insert(id.clone(), n).unwrap_or(0);
            assert!(
                n >= before,
                "trace {id} lost spans between reads ({before} → {n})"
            );
        }
    }
    let sent = load.stop().await;
    let acked = sent.iter().filter(|s| s.outcome == Outcome::Acked).count();
    eprintln!("cluster: {acked} acked, lease samples {owners:?}");
    assert!(acked > 200, "the load was real");
    assert!(
        owners.iter().all(|(x, y)| x + y <= 1.0),
        "never two lifecycle owners at once: {owners:?}"
    );
    assert!(
        owners.iter().rev().take(5).all(|(x, y)| x + y == 1.0),
        "one collector owns the lifecycle: {owners:?}"
    );
    let ca = metric(&a, "loupe_compactions_total", "")
        .await
        .unwrap_or(0.0);
    let cb = metric(&b, "loupe_compactions_total", "")
        .await
        .unwrap_or(0.0);
    assert!(ca + cb > 0.0, "compaction ran");
    assert!(
        ca == 0.0 || cb == 0.0,
        "only the owner compacts ({ca}, {cb})"
    );
    let gc = metric(&a, "loupe_gc_deleted_objects_total", "")
        .await
        .unwrap_or(0.0)
        + metric(&b, "loupe_gc_deleted_objects_total", "")
            .await
            .unwrap_or(0.0);
    assert!(
        gc > 0.0,
        "garbage collection deleted compacted inputs meanwhile"
    );

    // Clean stops flush everything; the query role then sees each span exactly once.
    assert!(a.stop().success());
    assert!(b.stop().success());
    // The query role reads the catalog on a timer, slower under a loaded machine.
    wait_for_acked_rows(&q, &sent).await;
    verify_exactly_once(&q, &sent).await;
}

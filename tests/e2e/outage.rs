//! An object-store outage: the S3 server (moto) is frozen for 20 s under load. Ingest keeps
//! acknowledging into the WAL until the buffer budget is used, then answers 503 with
//! `Retry-After`; once the store is back everything acknowledged is readable, also after a
//! kill -9, and nothing is stored twice.

use std::time::{Duration, Instant};

use crate::harness::{Server, env_refs, fixed_addrs, metric};
use crate::load::{Load, Outcome, tally, verify_exactly_once};
use loupe_storage::testing::Moto;

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_object_store_loses_nothing_acknowledged() {
    let moto = Moto::start("outage");
    let dir = tempfile::tempdir().unwrap();
    let mut env = moto.env();
    env.extend(fixed_addrs());
    env.extend([
        ("LOUPE_STORAGE_URL", "s3://outage/loupe".to_string()),
        ("LOUPE_FLUSH_INTERVAL", "200ms".to_string()),
        ("LOUPE_MAX_BUFFER_BYTES", "256KiB".to_string()),
    ]);
    let env = env_refs(&env);
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let otlp = format!("http://{}", server.otlp_http.unwrap());

    let before = Load::start(std::slice::from_ref(&otlp), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sent = before.stop().await;

    moto.freeze();
    let frozen_at = Instant::now();
    let during = Load::start(std::slice::from_ref(&otlp), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = during.stop().await;
    let (acked, refused, _, unknown) = tally(&during);
    eprintln!(
        "during the outage ({:?}): {acked} acked, {refused} refused, {unknown} unknown",
        frozen_at.elapsed()
    );
    assert!(acked > 0, "ingest kept acknowledging into the WAL");
    assert!(
        during
            .iter()
            .any(|s| s.outcome == Outcome::Refused(503, true)),
        "past the budget ingest answers 503 with Retry-After"
    );
    assert!(
        during
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Acked | Outcome::Refused(503, true))),
        "nothing but acks and 503s"
    );
    let (status, _) = crate::harness::get_json(&server.url("/readyz"), None).await;
    assert_eq!(status, 200, "the WAL is fine; the collector stays ready");
    sent.extend(during);
    moto.thaw();

    // The store is back: the buffers drain into it.
    crate::harness::eventually(120, "buffers drained into the object store", || async {
        (metric(&server, "loupe_buffered_bytes", "").await == Some(0.0)).then_some(())
    })
    .await;
    let after = Load::start(std::slice::from_ref(&otlp), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    sent.extend(after.stop().await);
    verify_exactly_once_after_kill(server, &dir, &env, &sent).await;
}

async fn verify_exactly_once_after_kill(
    server: Server,
    dir: &tempfile::TempDir,
    env: &[(&str, &str)],
    sent: &[crate::load::Sent],
) {
    server.kill9();
    let server = Server::start(&["server"], dir.path(), env);
    server.wait_ready().await;
    assert!(server.stop().success());
    let server = Server::start(&["server"], dir.path(), env);
    server.wait_ready().await;
    verify_exactly_once(&server, sent).await;
}

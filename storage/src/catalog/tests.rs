//! Catalog unit tests on the in-memory store; the same behaviour on the local filesystem and
//! S3 is covered by the conformance suite.

use super::*;
use crate::conformance;

#[tokio::test]
async fn catalog_behaves_on_memory() {
    conformance::catalog_suite(Storage::in_memory()).await;
}

#[tokio::test]
async fn spans_behave_on_memory() {
    conformance::spans_suite(Storage::in_memory()).await;
}

#[tokio::test]
async fn catalog_behaves_on_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&format!("file://{}", dir.path().display())).unwrap();
    conformance::catalog_suite(storage.clone()).await;
    conformance::spans_suite(storage).await;
}

#[tokio::test]
async fn checkpoints_fold_old_commits() {
    let storage = Storage::in_memory();
    let tenant = TenantId::new("cp").unwrap();
    let catalog = Catalog::new(storage.clone(), "w1");
    for i in 0..120 {
        conformance::add(
            &catalog,
            &tenant,
            vec![conformance::entry(&format!("f{i:03}"))],
        )
        .await;
    }
    // Old commits were deleted, so a fresh reader must start from a checkpoint.
    let listed: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        storage
            .store
            .list(Some(&Path::from("cp/_catalog/traces/commits"))),
    )
    .await
    .unwrap();
    assert!(
        listed.len() < 120,
        "commits were not pruned: {}",
        listed.len()
    );
    let fresh = Catalog::new(storage, "reader");
    let state = fresh.refresh(&tenant, Signal::Traces).await.unwrap();
    assert_eq!(state.version, 120);
    assert_eq!(state.files.len(), 120);
}

#[tokio::test]
async fn a_catalog_of_version_0_1_moves_to_the_traces_log() {
    use object_store::{ObjectStoreExt, PutPayload};
    let storage = Storage::in_memory();
    let tenant = TenantId::new("old").unwrap();
    // Version 0.1 wrote one log per tenant at {tenant}/_catalog/commits/.
    for v in 1..=3u64 {
        let body = serde_json::json!({
            "version": v, "writer": "old", "committed_unix_ms": 0,
            "added": [conformance::entry(&format!("f{v}"))], "removed": []
        });
        storage
            .store
            .put(
                &Path::from(format!("old/_catalog/commits/{v:020}.json")),
                PutPayload::from(serde_json::to_vec(&body).unwrap()),
            )
            .await
            .unwrap();
    }
    let catalog = Catalog::new(storage.clone(), "new");
    let state = catalog.refresh(&tenant, Signal::Traces).await.unwrap();
    assert_eq!((state.version, state.files.len()), (3, 3));
    // New commits continue the version sequence in the per-signal log.
    assert_eq!(
        conformance::add(&catalog, &tenant, vec![conformance::entry("f4")]).await,
        4
    );
    let reader = Catalog::new(storage, "reader");
    let state = reader.refresh(&tenant, Signal::Traces).await.unwrap();
    assert_eq!((state.version, state.files.len()), (4, 4));
    assert!(
        reader
            .refresh(&tenant, Signal::Logs)
            .await
            .unwrap()
            .files
            .is_empty()
    );
}

#[tokio::test]
async fn page_pruned_lookups_find_every_span() {
    use crate::spans::SpanReader;
    use std::collections::HashSet;
    let storage = Storage::in_memory();
    let tenant = TenantId::new("pages").unwrap();
    let catalog = Catalog::new(storage.clone(), "w");
    // 3000 traces of 9 spans: many pages and two row groups; traces straddle page edges.
    let mut spans = Vec::new();
    for t in 0..3000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&t.wrapping_mul(2_654_435_761).to_be_bytes());
        for s in 0..9u8 {
            let mut sp = conformance::span(
                0,
                s + 1,
                None,
                "svc",
                "op",
                1_700_000_000_000_000_000 + s as i64,
                10,
            );
            sp.trace_id = id;
            spans.push(sp);
        }
    }
    let reader = std::sync::Arc::new(SpanReader::new(storage));
    let format = std::sync::Arc::new(crate::spans::SpanFormat::new(reader.clone()));
    let entry = crate::lifecycle::write_file(
        &catalog,
        &format,
        &tenant,
        conformance::chunks(spans),
        vec![],
    )
    .await
    .unwrap();
    for t in (0..3000u32).step_by(97) {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&t.wrapping_mul(2_654_435_761).to_be_bytes());
        let got = reader
            .read_traces(&entry, &HashSet::from([id]))
            .await
            .unwrap();
        assert_eq!(got.len(), 9, "trace {t}");
        assert!(got.iter().all(|s| s.trace_id == id));
    }
}

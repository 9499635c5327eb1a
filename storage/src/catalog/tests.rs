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
        catalog
            .commit(
                &tenant,
                vec![conformance::entry(&format!("f{i:03}"))],
                vec![],
            )
            .await
            .unwrap();
    }
    // Old commits were deleted, so a fresh reader must start from a checkpoint.
    let listed: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        storage.store.list(Some(&Path::from("cp/_catalog/commits"))),
    )
    .await
    .unwrap();
    assert!(
        listed.len() < 120,
        "commits were not pruned: {}",
        listed.len()
    );
    let fresh = Catalog::new(storage, "reader");
    let state = fresh.refresh(&tenant).await.unwrap();
    assert_eq!(state.version, 120);
    assert_eq!(state.files.len(), 120);
}

#[tokio::test]
async fn page_pruned_lookups_find_every_span() {
    use crate::lifecycle::upload_spans;
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
    let entry = upload_spans(&catalog, &tenant, std::sync::Arc::new(spans), vec![])
        .await
        .unwrap();
    let reader = SpanReader::new(storage);
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

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

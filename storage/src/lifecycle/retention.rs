//! Retention and garbage collection, for every signal.
//!
//! - [`apply_retention`] removes files whose newest data is older than the retention (they
//!   become tombstones).
//! - [`collect_garbage`] deletes the objects of tombstones whose removal is older than the
//!   grace, then purges those tombstones: no listing of the tenant's objects, and the grace
//!   counts from when the last catalog stopped naming a file, not from its upload.
//! - [`sweep_orphans`] lists a signal's objects and deletes those no entry or tombstone names
//!   (an upload whose commit never happened: a crash, a failed commit) once they are older
//!   than a generous age. It runs rarely.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::lease::Held;
use crate::catalog::{Catalog, Change, now_unix_ms};
use crate::error::StorageError;
use crate::store::Signal;
use loupe_core::TenantId;

/// A removal lost to a concurrent change is recomputed this many times.
const RETENTION_ATTEMPTS: usize = 3;

/// Drops files whose data ended before `now - retention`. Returns how many were dropped.
pub async fn apply_retention(
    catalog: &Catalog,
    tenant: &TenantId,
    signal: Signal,
    retention: Duration,
    lease: &Held,
) -> Result<usize, StorageError> {
    let cutoff = now_unix_ms()
        .saturating_sub(retention.as_millis() as i64)
        .saturating_mul(1_000_000);
    let mut last = None;
    for _ in 0..RETENTION_ATTEMPTS {
        let state = catalog.refresh(tenant, signal).await?;
        let expired: Vec<String> = state
            .files()
            .filter(|f| f.max_time_unix_nano < cutoff)
            .map(|f| f.id.clone())
            .collect();
        if expired.is_empty() || !lease.is_valid() {
            return Ok(0);
        }
        let n = expired.len();
        match catalog
            .commit(tenant, signal, Change::replace(vec![], expired))
            .await
        {
            Ok(_) => return Ok(n),
            // A compaction removed one of them first: look again.
            Err(StorageError::Conflict(reason)) => last = Some(reason),
            Err(e) => return Err(e),
        }
    }
    Err(StorageError::Conflict(format!(
        "retention kept losing to concurrent changes: {}",
        last.unwrap_or_default()
    )))
}

/// Deletes objects of tombstones older than `grace` and purges them from the catalog.
/// Returns how many objects were deleted.
pub async fn collect_garbage(
    catalog: &Catalog,
    tenant: &TenantId,
    signal: Signal,
    grace: Duration,
    lease: &Held,
) -> Result<usize, StorageError> {
    let state = catalog.refresh(tenant, signal).await?;
    let cutoff = now_unix_ms().saturating_sub(grace.as_millis() as i64);
    let due: Vec<(&String, Path)> = state
        .tombstones
        .iter()
        .filter(|(_, t)| t.removed_unix_ms <= cutoff)
        .map(|(id, t)| (id, Path::from(t.path.as_str())))
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let mut purged = Vec::with_capacity(due.len());
    for (id, path) in due {
        if !lease.is_valid() {
            break;
        }
        match catalog.storage().store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => purged.push(id.clone()),
            Err(e) => {
                tracing::warn!(%tenant, %signal, path = %path, error = %e, "cannot delete a removed file; will retry");
            }
        }
    }
    let n = purged.len();
    if n > 0 {
        catalog
            .commit(
                tenant,
                signal,
                Change {
                    purged,
                    ..Default::default()
                },
            )
            .await?;
        metrics::counter!("loupe_gc_deleted_objects_total", "signal" => signal.as_str())
            .increment(n as u64);
    }
    Ok(n)
}

/// Deletes objects under `{tenant}/{signal}/` that no entry or tombstone names and that are
/// older than `min_age`. Returns how many were deleted.
pub async fn sweep_orphans(
    catalog: &Catalog,
    tenant: &TenantId,
    signal: Signal,
    min_age: Duration,
    lease: &Held,
) -> Result<usize, StorageError> {
    let state = catalog.refresh(tenant, signal).await?;
    let known: HashSet<&str> = state
        .files()
        .map(|f| f.path.as_str())
        .chain(state.tombstones.values().map(|t| t.path.as_str()))
        .collect();
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(min_age).unwrap_or_default();
    let prefix = Path::from(format!("{tenant}/{}", signal.as_str()));
    let store = &catalog.storage().store;
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| StorageError::store("list", &prefix, e))?;
    let mut deleted = 0;
    for o in objects {
        if o.last_modified < cutoff && !known.contains(o.location.as_ref()) && lease.is_valid() {
            match store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(StorageError::store("delete", &o.location, e)),
            }
        }
    }
    if deleted > 0 {
        tracing::info!(%tenant, %signal, deleted, "deleted orphaned objects");
    }
    Ok(deleted)
}

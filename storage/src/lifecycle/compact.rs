//! Compaction, for every format: small files of the same hour are merged into one larger
//! file by the format, uploaded, and swapped in by one commit (add the merged file, remove
//! the inputs). Two compactions of one file cannot both win: the second commit finds an input
//! gone and fails with a conflict, and its output is deleted at once (no catalog ever named
//! it). Only the lease holder compacts a tenant; the lease is checked before each commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::lease::Held;
use super::{Format, upload};
use crate::catalog::{Catalog, Change, FileEntry};
use crate::error::StorageError;
use loupe_core::TenantId;

const HOUR_NANOS: i64 = 3_600_000_000_000;

#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    /// Only groups of at least this many small files are merged.
    pub min_files: usize,
    /// Files with at least half this many rows are left alone; a merge produces at most this
    /// many (bounds compaction memory: the merge holds its inputs and the sorted output).
    pub max_rows: u64,
    /// The same bound in stored bytes.
    pub max_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            min_files: 4,
            max_rows: 128 * 1024,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How long after its end an hour is closed: late data has arrived, and its last small
/// files merge even when fewer than `min_files` remain (else they would stay small for good).
const CLOSED_AFTER_NANOS: i64 = 10 * 60 * 1_000_000_000;

/// Groups of files to merge: per hour, oldest first, each within the policy's bounds.
fn plan(
    files: Vec<Arc<FileEntry>>,
    policy: &CompactionPolicy,
    now_nanos: i64,
) -> Vec<Vec<Arc<FileEntry>>> {
    let mut windows: BTreeMap<i64, Vec<Arc<FileEntry>>> = BTreeMap::new();
    for f in files {
        if f.rows < policy.max_rows / 2 && f.bytes < policy.max_bytes / 2 {
            windows
                .entry(f.min_time_unix_nano.div_euclid(HOUR_NANOS))
                .or_default()
                .push(f);
        }
    }
    let mut groups = Vec::new();
    for (hour, mut files) in windows {
        let closed = (hour + 1) * HOUR_NANOS + CLOSED_AFTER_NANOS <= now_nanos;
        files.sort_by_key(|f| f.min_time_unix_nano);
        let mut group: Vec<Arc<FileEntry>> = Vec::new();
        let (mut rows, mut bytes) = (0, 0);
        // A group merges once it has `min_files`, or fewer (two at least) that together make
        // a file large enough to be left alone afterwards: else files of a third of the
        // bound could never merge (four of them exceed it, two or three are too few).
        let ready = |n: usize, rows: u64, bytes: u64| {
            n >= policy.min_files
                || (n >= 2
                    && (closed || rows >= policy.max_rows / 2 || bytes >= policy.max_bytes / 2))
        };
        for f in files {
            let over = rows + f.rows > policy.max_rows || bytes + f.bytes > policy.max_bytes;
            if over && ready(group.len(), rows, bytes) {
                groups.push(std::mem::take(&mut group));
                (rows, bytes) = (0, 0);
            } else if over {
                // Too few to merge within the bounds: start over from this file.
                group.clear();
                (rows, bytes) = (0, 0);
            }
            rows += f.rows;
            bytes += f.bytes;
            group.push(f);
        }
        if ready(group.len(), rows, bytes) {
            groups.push(group);
        }
    }
    groups
}

/// Merges small files of `format`'s signal. Returns how many merges were committed.
pub async fn compact<F: Format>(
    catalog: &Catalog,
    format: &F,
    tenant: &TenantId,
    policy: &CompactionPolicy,
    lease: &Held,
) -> Result<usize, StorageError> {
    let state = catalog.refresh(tenant, F::SIGNAL).await?;
    let candidates = state
        .files()
        .filter(|f| format.compactable(f))
        .cloned()
        .collect();
    let mut merges = 0;
    let now = crate::catalog::now_unix_ms().saturating_mul(1_000_000);
    for group in plan(candidates, policy, now) {
        if !lease.is_valid() {
            break;
        }
        merges += merge(catalog, format, tenant, group, lease).await?;
    }
    Ok(merges)
}

async fn merge<F: Format>(
    catalog: &Catalog,
    format: &F,
    tenant: &TenantId,
    files: Vec<Arc<FileEntry>>,
    lease: &Held,
) -> Result<usize, StorageError> {
    let started = std::time::Instant::now();
    let mut encoded = format.merge(&files).await?;
    encoded.min_time_unix_nano = files
        .iter()
        .map(|f| f.min_time_unix_nano)
        .min()
        .unwrap_or(0);
    encoded.max_time_unix_nano = files
        .iter()
        .map(|f| f.max_time_unix_nano)
        .max()
        .unwrap_or(0);
    let level = files.iter().map(|f| f.level).max().unwrap_or(0) + 1;
    let sources = FileEntry::merge_sources(files.iter().map(|f| &**f));
    let entry = upload::<F>(catalog, tenant, encoded, level, sources).await?;
    let path = Path::from(entry.path.as_str());
    let discard = |reason: String| async move {
        tracing::info!(%tenant, signal = %F::SIGNAL, %reason, "discarding compaction output");
        if let Err(e) = catalog.storage().store.delete(&path).await {
            tracing::warn!(error = %e, "cannot delete discarded compaction output; the orphan sweep will");
        }
    };
    if !lease.is_valid() {
        discard("the lifecycle lease expired during the merge".into()).await;
        return Ok(0);
    }
    let removed: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    match catalog
        .commit(tenant, F::SIGNAL, Change::replace(vec![entry], removed))
        .await
    {
        Ok(_) => {
            for f in &files {
                format.forget(&f.id);
            }
            metrics::counter!("loupe_compactions_total", "signal" => F::SIGNAL.as_str())
                .increment(1);
            metrics::histogram!("loupe_compaction_seconds", "signal" => F::SIGNAL.as_str())
                .record(started.elapsed().as_secs_f64());
            Ok(1)
        }
        Err(StorageError::Conflict(reason)) => {
            // Another compactor merged some of these files first; our output is garbage.
            discard(reason).await;
            Ok(0)
        }
        Err(e) => {
            discard(e.to_string()).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::entry;

    fn file(id: &str, hour: i64, rows: u64) -> Arc<FileEntry> {
        let mut e = entry(id);
        e.min_time_unix_nano = hour * HOUR_NANOS + 1;
        e.rows = rows;
        Arc::new(e)
    }

    #[test]
    fn groups_stay_within_one_hour_and_the_bounds() {
        let policy = CompactionPolicy {
            min_files: 2,
            max_rows: 100,
            max_bytes: 1 << 30,
        };
        let files = vec![
            file("a", 0, 30),
            file("b", 0, 30),
            file("c", 0, 30),
            file("d", 0, 30),
            file("e", 1, 10),
            file("big", 1, 60),
        ];
        let groups: Vec<Vec<String>> = plan(files, &policy, 0)
            .into_iter()
            .map(|g| g.iter().map(|f| f.id.clone()).collect())
            .collect();
        assert_eq!(
            groups,
            vec![vec!["a", "b", "c"]],
            "d alone, e alone, big skipped"
        );
    }

    #[test]
    fn files_of_a_third_of_the_bound_merge_in_pairs() {
        let policy = CompactionPolicy {
            min_files: 4,
            max_rows: 100,
            max_bytes: 1 << 30,
        };
        let files = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|id| file(id, 0, 40))
            .collect();
        let groups: Vec<Vec<String>> = plan(files, &policy, 0)
            .into_iter()
            .map(|g| g.iter().map(|f| f.id.clone()).collect())
            .collect();
        assert_eq!(
            groups,
            vec![vec!["a", "b"], vec!["c", "d"]],
            "e waits for a partner"
        );
    }

    #[test]
    fn the_last_small_files_of_a_closed_hour_merge() {
        let policy = CompactionPolicy {
            min_files: 4,
            max_rows: 100,
            max_bytes: 1 << 30,
        };
        let files = || {
            vec![
                file("a", 0, 10),
                file("b", 0, 10),
                file("c", 1, 10),
                file("d", 1, 10),
            ]
        };
        let ids = |g: Vec<Vec<Arc<FileEntry>>>| -> Vec<Vec<String>> {
            g.into_iter()
                .map(|g| g.iter().map(|f| f.id.clone()).collect())
                .collect()
        };
        // Hour 0 is closed 10 minutes after it ended; hour 1 is still open.
        let now = 2 * HOUR_NANOS - HOUR_NANOS / 2;
        assert_eq!(ids(plan(files(), &policy, now)), vec![vec!["a", "b"]]);
        assert!(
            plan(files(), &policy, HOUR_NANOS + 60_000_000_000).is_empty(),
            "not yet closed"
        );
    }
}

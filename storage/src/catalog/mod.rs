//! The catalog: per tenant × signal, which data files exist, and which were removed when.
//! It is a log of commit objects in the store
//! (`{tenant}/_catalog/{signal}/commits/{version:020}.json`), each adding and removing files,
//! plus periodic checkpoints (`{tenant}/_catalog/{signal}/checkpoints/{version:020}.json`)
//! holding the whole state so that loading lists few objects. Signals have separate logs, so
//! flushes and compactions of logs, metrics and traces never race for one version counter.
//!
//! Invariants:
//! - A commit is created with create-if-absent (`PutMode::Create`), so of two writers racing
//!   for version N+1 exactly one wins; the loser reloads and retries after an exponential,
//!   jittered backoff, and gives up with a conflict after [`COMMIT_ATTEMPTS`]. No database is
//!   needed for several collectors on one bucket.
//! - A data file is uploaded (and, on the local store, synced) before the commit that names
//!   it; a commit counts once its object is written (and synced): only then does a flush trim
//!   its write-ahead log.
//! - A commit that removes a file fails with a conflict if that file is already gone (two
//!   compactions of the same file cannot both win).
//! - A removed file becomes a tombstone carrying the removal's commit time. Garbage
//!   collection deletes a tombstoned object only when the removal is older than its grace,
//!   and then purges the tombstone in another commit; so an object disappears no sooner than
//!   the grace after the last catalog that named it, whenever it was uploaded.

pub mod entry;
mod log;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
pub use entry::{FileEntry, FileFormat, IndexLocation, WalSource};
use loupe_core::TenantId;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::store::{Signal, Storage};

/// A lost commit race is retried this many times (with backoff) before giving up.
pub const COMMIT_ATTEMPTS: usize = 16;

/// A file removed from the catalog whose object may still be read by queries planned with an
/// older catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub path: String,
    pub removed_unix_ms: i64,
}

/// One tenant × signal catalog at one version.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    pub version: u64,
    pub files: BTreeMap<String, Arc<FileEntry>>,
    pub tombstones: BTreeMap<String, Tombstone>,
}

impl CatalogState {
    pub fn files(&self) -> impl Iterator<Item = &Arc<FileEntry>> {
        self.files.values()
    }

    /// Highest WAL sequence of `writer` committed in this catalog.
    pub fn committed_seq(&self, writer: &str) -> Option<u64> {
        self.files
            .values()
            .flat_map(|f| &f.sources)
            .filter(|s| s.writer == writer)
            .map(|s| s.max_seq)
            .max()
    }

    /// Rows and bytes of every live file.
    pub fn totals(&self) -> (u64, u64) {
        self.files
            .values()
            .fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes))
    }

    fn apply(&mut self, commit: &log::Commit) {
        for id in &commit.removed {
            if let Some(f) = self.files.remove(id) {
                self.tombstones.insert(
                    id.clone(),
                    Tombstone {
                        path: f.path.clone(),
                        removed_unix_ms: commit.committed_unix_ms,
                    },
                );
            }
        }
        for id in &commit.purged {
            self.tombstones.remove(id);
        }
        for f in &commit.added {
            self.files.insert(f.id.clone(), Arc::new(f.clone()));
        }
        self.version = commit.version;
    }
}

/// What one commit changes.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub added: Vec<FileEntry>,
    /// Ids of live files to remove (they become tombstones).
    pub removed: Vec<String>,
    /// Ids of tombstones whose objects were deleted.
    pub purged: Vec<String>,
}

impl Change {
    pub fn add(entries: Vec<FileEntry>) -> Self {
        Change {
            added: entries,
            ..Default::default()
        }
    }

    pub fn replace(added: Vec<FileEntry>, removed: Vec<String>) -> Self {
        Change {
            added,
            removed,
            ..Default::default()
        }
    }
}

struct Cached {
    state: Arc<CatalogState>,
    refreshed: Instant,
}

type Key = (TenantId, Signal);

/// Shared handle on every tenant's catalogs; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    writer: String,
    checkpoint_every: u64,
    cache: Mutex<HashMap<Key, Cached>>,
    commit_locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl Catalog {
    /// `writer` names this process in commits (for debugging) and in WAL sources.
    pub fn new(storage: Storage, writer: impl Into<String>) -> Self {
        Catalog {
            inner: Arc::new(Inner {
                storage,
                writer: writer.into(),
                checkpoint_every: 50,
                cache: Mutex::new(HashMap::new()),
                commit_locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    pub fn writer(&self) -> &str {
        &self.inner.writer
    }

    fn cached(&self, key: &Key) -> Option<(Arc<CatalogState>, Instant)> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).map(|c| (c.state.clone(), c.refreshed))
    }

    fn store_state(&self, key: &Key, state: Arc<CatalogState>) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get_mut(key) {
            Some(c) if c.state.version > state.version => c.refreshed = Instant::now(),
            _ => {
                cache.insert(
                    key.clone(),
                    Cached {
                        state,
                        refreshed: Instant::now(),
                    },
                );
            }
        }
    }

    /// The catalog, reloaded from the store when the cached copy is older than `max_age`
    /// (commits made through this handle are visible at once). A failed reload is an error,
    /// never a silently stale answer, so staleness is bounded by `max_age`.
    pub async fn snapshot(
        &self,
        tenant: &TenantId,
        signal: Signal,
        max_age: Duration,
    ) -> Result<Arc<CatalogState>, StorageError> {
        match self.cached(&(tenant.clone(), signal)) {
            Some((state, at)) if at.elapsed() <= max_age => Ok(state),
            _ => self.refresh(tenant, signal).await,
        }
    }

    /// Reads commits newer than the cached version from the store.
    pub async fn refresh(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<Arc<CatalogState>, StorageError> {
        let key = (tenant.clone(), signal);
        let current = self.cached(&key).map(|(s, _)| s);
        let state = log::load(&self.inner.storage, tenant, signal, current).await?;
        self.store_state(&key, state.clone());
        Ok(self.cached(&key).map(|(s, _)| s).unwrap_or(state))
    }

    /// Atomically applies `change`. Retries lost races with backoff; fails with a conflict if
    /// a file to remove is no longer live, or after [`COMMIT_ATTEMPTS`] lost races.
    pub async fn commit(
        &self,
        tenant: &TenantId,
        signal: Signal,
        change: Change,
    ) -> Result<u64, StorageError> {
        let key = (tenant.clone(), signal);
        let lock = {
            let mut locks = self
                .inner
                .commit_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let started = Instant::now();
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .with_max_times(COMMIT_ATTEMPTS)
            .build();
        loop {
            let state = self.refresh(tenant, signal).await?;
            if let Some(gone) = change
                .removed
                .iter()
                .find(|id| !state.files.contains_key(*id))
            {
                return Err(StorageError::Conflict(format!(
                    "file {gone} was already removed from the {signal} catalog of tenant {tenant}"
                )));
            }
            let commit = log::Commit {
                version: state.version + 1,
                writer: self.inner.writer.clone(),
                committed_unix_ms: now_unix_ms(),
                added: change.added.clone(),
                removed: change.removed.clone(),
                // Another collector may have purged some already.
                purged: change
                    .purged
                    .iter()
                    .filter(|id| state.tombstones.contains_key(*id))
                    .cloned()
                    .collect(),
            };
            if log::try_write_commit(&self.inner.storage, tenant, signal, &commit).await? {
                let mut next = (*state).clone();
                next.apply(&commit);
                let next = Arc::new(next);
                self.store_state(&key, next.clone());
                if commit.version.is_multiple_of(self.inner.checkpoint_every) {
                    // A failed checkpoint only makes later loads list more commits.
                    if let Err(e) = log::write_checkpoint(
                        &self.inner.storage,
                        tenant,
                        signal,
                        &next,
                        self.inner.checkpoint_every,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, %tenant, %signal, "catalog checkpoint failed");
                    }
                }
                metrics::histogram!("loupe_catalog_commit_seconds", "signal" => signal.as_str())
                    .record(started.elapsed().as_secs_f64());
                return Ok(commit.version);
            }
            metrics::counter!("loupe_catalog_commit_conflicts_total", "signal" => signal.as_str())
                .increment(1);
            match backoff.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    return Err(StorageError::Conflict(format!(
                        "gave up committing to the {signal} catalog of tenant {tenant} after {COMMIT_ATTEMPTS} lost races"
                    )));
                }
            }
        }
    }

    /// Tenants that have anything in the store.
    pub async fn list_tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        let listing = self
            .inner
            .storage
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| StorageError::store("list", "/", e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|n| TenantId::new(n).ok()))
            .collect())
    }

    /// Path of a file entry in the store.
    pub fn path_of(entry: &FileEntry) -> Path {
        Path::from(entry.path.as_str())
    }
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

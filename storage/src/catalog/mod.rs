//! The catalog: per tenant, which data files exist. It is a log of commit objects in the store
//! (`{tenant}/_catalog/commits/{version:020}.json`), each adding and removing files, plus
//! periodic checkpoints (`{tenant}/_catalog/checkpoints/{version:020}.json`) holding the whole
//! state so that loading lists few objects.
//!
//! Invariants:
//! - A commit is created with create-if-absent (`PutMode::Create`), so of two writers racing
//!   for version N+1 exactly one wins; the loser reloads and retries. No database is needed for
//!   several collectors on one bucket.
//! - A data file is uploaded before the commit that names it; files no commit names are
//!   garbage and are deleted later by the lifecycle task.
//! - A commit that removes a file fails with a conflict if that file is already gone (two
//!   compactions of the same file cannot both win).

pub mod entry;
mod log;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use entry::{FileEntry, FileFormat, WalSource};
use object_store::path::Path;

use crate::error::StorageError;
use crate::store::{Signal, Storage};
use crate::tenant::TenantId;

/// One tenant's catalog at one version.
#[derive(Debug, Clone, Default)]
pub struct TenantState {
    pub version: u64,
    pub files: BTreeMap<String, Arc<FileEntry>>,
}

impl TenantState {
    pub fn files_of(&self, signal: Signal) -> impl Iterator<Item = &Arc<FileEntry>> {
        self.files.values().filter(move |f| f.signal == signal)
    }

    /// Highest WAL sequence of `writer` committed for `signal`.
    pub fn committed_seq(&self, signal: Signal, writer: &str) -> Option<u64> {
        self.files_of(signal)
            .flat_map(|f| &f.sources)
            .filter(|s| s.writer == writer)
            .map(|s| s.max_seq)
            .max()
    }

    fn apply(&mut self, commit: &log::Commit) {
        for id in &commit.removed {
            self.files.remove(id);
        }
        for f in &commit.added {
            self.files.insert(f.id.clone(), Arc::new(f.clone()));
        }
        self.version = commit.version;
    }
}

struct Cached {
    state: Arc<TenantState>,
    refreshed: Instant,
}

/// Shared handle on every tenant's catalog; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    writer: String,
    checkpoint_every: u64,
    cache: Mutex<HashMap<TenantId, Cached>>,
    commit_locks: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
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

    fn cached(&self, tenant: &TenantId) -> Option<(Arc<TenantState>, Instant)> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(tenant).map(|c| (c.state.clone(), c.refreshed))
    }

    fn store_state(&self, tenant: &TenantId, state: Arc<TenantState>) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        let keep_newer = cache
            .get(tenant)
            .is_some_and(|c| c.state.version > state.version);
        if keep_newer {
            if let Some(c) = cache.get_mut(tenant) {
                c.refreshed = Instant::now();
            }
        } else {
            cache.insert(
                tenant.clone(),
                Cached {
                    state,
                    refreshed: Instant::now(),
                },
            );
        }
    }

    /// The tenant's catalog, reloaded from the store when the cached copy is older than
    /// `max_age` (commits made through this handle are visible at once).
    pub async fn snapshot(
        &self,
        tenant: &TenantId,
        max_age: Duration,
    ) -> Result<Arc<TenantState>, StorageError> {
        match self.cached(tenant) {
            Some((state, at)) if at.elapsed() <= max_age => Ok(state),
            _ => self.refresh(tenant).await,
        }
    }

    /// Reads commits newer than the cached version from the store.
    pub async fn refresh(&self, tenant: &TenantId) -> Result<Arc<TenantState>, StorageError> {
        let current = self.cached(tenant).map(|(s, _)| s);
        let state = log::load(&self.inner.storage, tenant, current).await?;
        self.store_state(tenant, state.clone());
        Ok(self.cached(tenant).map(|(s, _)| s).unwrap_or(state))
    }

    /// Atomically adds and removes files. Retries on lost races; fails with a conflict if a
    /// file to remove is no longer in the catalog.
    pub async fn commit(
        &self,
        tenant: &TenantId,
        added: Vec<FileEntry>,
        removed: Vec<String>,
    ) -> Result<u64, StorageError> {
        let lock = {
            let mut locks = self
                .inner
                .commit_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            locks.entry(tenant.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let started = Instant::now();
        loop {
            let state = self.refresh(tenant).await?;
            if let Some(gone) = removed.iter().find(|id| !state.files.contains_key(*id)) {
                return Err(StorageError::Conflict(format!(
                    "file {gone} was already removed from the catalog of tenant {tenant}"
                )));
            }
            let commit = log::Commit {
                version: state.version + 1,
                writer: self.inner.writer.clone(),
                committed_unix_ms: now_unix_ms(),
                added: added.clone(),
                removed: removed.clone(),
            };
            if log::try_write_commit(&self.inner.storage, tenant, &commit).await? {
                let mut next = (*state).clone();
                next.apply(&commit);
                let next = Arc::new(next);
                self.store_state(tenant, next.clone());
                if commit.version.is_multiple_of(self.inner.checkpoint_every) {
                    // A failed checkpoint only makes later loads list more commits.
                    if let Err(e) = log::write_checkpoint(
                        &self.inner.storage,
                        tenant,
                        &next,
                        self.inner.checkpoint_every,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, %tenant, "catalog checkpoint failed");
                    }
                }
                metrics::histogram!("loupe_catalog_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                return Ok(commit.version);
            }
            metrics::counter!("loupe_catalog_commit_conflicts_total").increment(1);
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

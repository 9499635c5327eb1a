//! Reading and writing catalog commit and checkpoint objects.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{FileEntry, TenantState};
use crate::error::StorageError;
use crate::store::{Storage, catalog_prefix};
use crate::tenant::TenantId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Commit {
    pub version: u64,
    pub writer: String,
    pub committed_unix_ms: i64,
    #[serde(default)]
    pub added: Vec<FileEntry>,
    #[serde(default)]
    pub removed: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    version: u64,
    files: Vec<FileEntry>,
}

fn commits_dir(tenant: &TenantId) -> Path {
    Path::from(format!("{}/commits", catalog_prefix(tenant)))
}

fn checkpoints_dir(tenant: &TenantId) -> Path {
    Path::from(format!("{}/checkpoints", catalog_prefix(tenant)))
}

fn versioned(dir: &Path, version: u64) -> Path {
    Path::from(format!("{dir}/{version:020}.json"))
}

fn version_of(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    storage: &Storage,
    path: &Path,
    what: &'static str,
) -> Result<T, StorageError> {
    let bytes = storage
        .store
        .get(path)
        .await
        .map_err(|e| StorageError::store("get", path, e))?
        .bytes()
        .await
        .map_err(|e| StorageError::store("get", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
        what,
        path: path.to_string(),
        reason: e.to_string(),
    })
}

async fn list_versions(
    storage: &Storage,
    dir: &Path,
    after: Option<u64>,
) -> Result<Vec<(u64, Path)>, StorageError> {
    let stream = match after {
        Some(v) => storage
            .store
            .list_with_offset(Some(dir), &versioned(dir, v)),
        None => storage.store.list(Some(dir)),
    };
    let metas: Vec<_> = stream
        .try_collect()
        .await
        .map_err(|e| StorageError::store("list", dir, e))?;
    let mut out: Vec<(u64, Path)> = metas
        .into_iter()
        .filter_map(|m| version_of(&m.location).map(|v| (v, m.location)))
        .filter(|(v, _)| after.is_none_or(|a| *v > a))
        .collect();
    out.sort_unstable_by_key(|(v, _)| *v);
    Ok(out)
}

async fn load_checkpoint(
    storage: &Storage,
    tenant: &TenantId,
) -> Result<TenantState, StorageError> {
    let checkpoints = list_versions(storage, &checkpoints_dir(tenant), None).await?;
    let Some((_, path)) = checkpoints.last() else {
        return Ok(TenantState::default());
    };
    let cp: Checkpoint = read_json(storage, path, "catalog checkpoint").await?;
    Ok(TenantState {
        version: cp.version,
        files: cp
            .files
            .into_iter()
            .map(|f| (f.id.clone(), Arc::new(f)))
            .collect(),
    })
}

/// Brings `current` (or nothing) up to the newest committed version.
pub(super) async fn load(
    storage: &Storage,
    tenant: &TenantId,
    current: Option<Arc<TenantState>>,
) -> Result<Arc<TenantState>, StorageError> {
    let mut state = match current {
        Some(s) => (*s).clone(),
        None => load_checkpoint(storage, tenant).await?,
    };
    let mut commits = list_versions(storage, &commits_dir(tenant), Some(state.version)).await?;
    if commits
        .first()
        .is_some_and(|(v, _)| *v != state.version + 1)
    {
        // The commits we would need were folded into a checkpoint and deleted.
        state = load_checkpoint(storage, tenant).await?;
        commits = list_versions(storage, &commits_dir(tenant), Some(state.version)).await?;
    }
    for (v, path) in commits {
        if v != state.version + 1 {
            return Err(StorageError::Corrupt {
                what: "catalog",
                path: path.to_string(),
                reason: format!(
                    "expected version {} after {}",
                    state.version + 1,
                    state.version
                ),
            });
        }
        let commit: Commit = read_json(storage, &path, "catalog commit").await?;
        state.apply(&commit);
    }
    Ok(Arc::new(state))
}

/// Creates the commit object; `false` if another writer created that version first.
pub(super) async fn try_write_commit(
    storage: &Storage,
    tenant: &TenantId,
    commit: &Commit,
) -> Result<bool, StorageError> {
    let path = versioned(&commits_dir(tenant), commit.version);
    let body = serde_json::to_vec(commit).map_err(|e| StorageError::BadInput(e.to_string()))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match storage
        .store
        .put_opts(&path, PutPayload::from(body), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(StorageError::store("put", &path, e)),
    }
}

/// Writes the whole state at `state.version` and deletes commits and checkpoints that the
/// previous checkpoint already covers (kept one period so that slow readers still find them).
pub(super) async fn write_checkpoint(
    storage: &Storage,
    tenant: &TenantId,
    state: &TenantState,
    every: u64,
) -> Result<(), StorageError> {
    let dir = checkpoints_dir(tenant);
    let path = versioned(&dir, state.version);
    let cp = Checkpoint {
        version: state.version,
        files: state.files.values().map(|f| (**f).clone()).collect(),
    };
    let body = serde_json::to_vec(&cp).map_err(|e| StorageError::BadInput(e.to_string()))?;
    storage
        .store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| StorageError::store("put", &path, e))?;
    let keep_from = state.version.saturating_sub(every);
    for (v, p) in list_versions(storage, &commits_dir(tenant), None).await? {
        if v <= keep_from {
            storage
                .store
                .delete(&p)
                .await
                .map_err(|e| StorageError::store("delete", &p, e))?;
        }
    }
    for (v, p) in list_versions(storage, &dir, None).await? {
        if v < keep_from {
            storage
                .store
                .delete(&p)
                .await
                .map_err(|e| StorageError::store("delete", &p, e))?;
        }
    }
    Ok(())
}

//! Reading and writing catalog commit and checkpoint objects, and the one-time move of a
//! catalog from the layout of version 0.1 (one log per tenant, `{tenant}/_catalog/commits/`)
//! to one log per tenant × signal.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{CatalogState, FileEntry, Tombstone};
use crate::error::StorageError;
use crate::store::{Signal, Storage, catalog_prefix};
use loupe_core::TenantId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Commit {
    pub version: u64,
    pub writer: String,
    pub committed_unix_ms: i64,
    #[serde(default)]
    pub added: Vec<FileEntry>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    version: u64,
    files: Vec<FileEntry>,
    #[serde(default)]
    tombstones: std::collections::BTreeMap<String, Tombstone>,
}

fn commits_dir(tenant: &TenantId, signal: Signal) -> Path {
    Path::from(format!("{}/commits", catalog_prefix(tenant, signal)))
}

fn checkpoints_dir(tenant: &TenantId, signal: Signal) -> Path {
    Path::from(format!("{}/checkpoints", catalog_prefix(tenant, signal)))
}

/// Where version 0.1 kept the (traces-only) catalog of a tenant.
fn legacy_dirs(tenant: &TenantId) -> (Path, Path) {
    (
        Path::from(format!("{tenant}/_catalog/commits")),
        Path::from(format!("{tenant}/_catalog/checkpoints")),
    )
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

async fn load_checkpoint(storage: &Storage, dir: &Path) -> Result<CatalogState, StorageError> {
    let checkpoints = list_versions(storage, dir, None).await?;
    let Some((_, path)) = checkpoints.last() else {
        return Ok(CatalogState::default());
    };
    let cp: Checkpoint = read_json(storage, path, "catalog checkpoint").await?;
    Ok(CatalogState {
        version: cp.version,
        files: cp
            .files
            .into_iter()
            .map(|f| (f.id.clone(), Arc::new(f)))
            .collect(),
        tombstones: cp.tombstones,
    })
}

/// Brings `current` (or nothing) up to the newest committed version.
pub(super) async fn load(
    storage: &Storage,
    tenant: &TenantId,
    signal: Signal,
    current: Option<Arc<CatalogState>>,
) -> Result<Arc<CatalogState>, StorageError> {
    let (commits_dir, checkpoints_dir) =
        (commits_dir(tenant, signal), checkpoints_dir(tenant, signal));
    let fresh_load = current.is_none();
    let mut state = match current {
        Some(s) => (*s).clone(),
        None => load_checkpoint(storage, &checkpoints_dir).await?,
    };
    let mut commits = list_versions(storage, &commits_dir, Some(state.version)).await?;
    if fresh_load
        && state.version == 0
        && commits.is_empty()
        && signal == Signal::Traces
        && let Some(migrated) = migrate_legacy(storage, tenant).await?
    {
        return Ok(Arc::new(migrated));
    }
    if commits
        .first()
        .is_some_and(|(v, _)| *v != state.version + 1)
    {
        // The commits we would need were folded into a checkpoint and deleted.
        state = load_checkpoint(storage, &checkpoints_dir).await?;
        commits = list_versions(storage, &commits_dir, Some(state.version)).await?;
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

/// Moves a version-0.1 catalog (one log per tenant, traces only) to the traces log: its state
/// becomes a checkpoint there, at its version. Idempotent; the old objects stay in place.
async fn migrate_legacy(
    storage: &Storage,
    tenant: &TenantId,
) -> Result<Option<CatalogState>, StorageError> {
    let (old_commits, old_checkpoints) = legacy_dirs(tenant);
    let mut state = load_checkpoint(storage, &old_checkpoints).await?;
    for (v, path) in list_versions(storage, &old_commits, Some(state.version)).await? {
        if v != state.version + 1 {
            break;
        }
        let commit: Commit = read_json(storage, &path, "catalog commit").await?;
        state.apply(&commit);
    }
    if state.version == 0 {
        return Ok(None);
    }
    state.files.retain(|_, f| f.signal == Signal::Traces);
    tracing::info!(%tenant, version = state.version, files = state.files.len(), "moving the catalog to the per-signal layout");
    let dir = checkpoints_dir(tenant, Signal::Traces);
    let body = checkpoint_body(&state)?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let path = versioned(&dir, state.version);
    match storage
        .store
        .put_opts(&path, PutPayload::from(body), opts)
        .await
    {
        Ok(_)
        | Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {}
        Err(e) => return Err(StorageError::store("put", &path, e)),
    }
    // Whoever won the race wrote the same state; read what is there.
    Ok(Some(load_checkpoint(storage, &dir).await?))
}

fn checkpoint_body(state: &CatalogState) -> Result<Vec<u8>, StorageError> {
    let cp = Checkpoint {
        version: state.version,
        files: state.files.values().map(|f| (**f).clone()).collect(),
        tombstones: state.tombstones.clone(),
    };
    serde_json::to_vec(&cp).map_err(|e| StorageError::Internal(e.to_string()))
}

/// Creates the commit object; `false` if another writer created that version first.
pub(super) async fn try_write_commit(
    storage: &Storage,
    tenant: &TenantId,
    signal: Signal,
    commit: &Commit,
) -> Result<bool, StorageError> {
    let path = versioned(&commits_dir(tenant, signal), commit.version);
    let body = serde_json::to_vec(commit).map_err(|e| StorageError::Internal(e.to_string()))?;
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
    signal: Signal,
    state: &CatalogState,
    every: u64,
) -> Result<(), StorageError> {
    let dir = checkpoints_dir(tenant, signal);
    let path = versioned(&dir, state.version);
    let body = checkpoint_body(state)?;
    storage
        .store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| StorageError::store("put", &path, e))?;
    let keep_from = state.version.saturating_sub(every);
    for (v, p) in list_versions(storage, &commits_dir(tenant, signal), None).await? {
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

//! Opening the object store and the object layout.
//!
//! The store is chosen by URL: `file:///abs/dir` (the embedded default, under the data dir),
//! `s3://bucket/prefix` (AWS settings from the usual `AWS_*` environment variables, including
//! `AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for S3-compatible servers) or `memory://` (tests, demos).
//! Paths inside the store follow `{tenant}/{signal}/{yyyy}/{mm}/{dd}/{hh}/{ulid}.{ext}` so that
//! the Parquet files stay readable by DuckDB, Spark or Trino with a glob.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use ulid::Ulid;

use crate::error::StorageError;
use crate::synced::{FsSyncer, SyncedLocal, Syncer};
use loupe_core::TenantId;

pub use loupe_core::Signal;

/// A handle on the object store plus the URL it came from (for logs and errors).
#[derive(Clone)]
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    pub url: String,
    gets: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

impl Storage {
    /// `store`, its requests counted ([`crate::counted`]).
    pub fn new(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        let counted = crate::counted::Counted::new(store);
        let gets = counted.gets();
        Storage {
            store: Arc::new(counted),
            url: url.into(),
            gets,
        }
    }

    /// GET requests made through this handle (and its clones) so far.
    pub fn get_requests(&self) -> u64 {
        self.gets.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An empty in-memory store, for tests and throwaway demos.
    pub fn in_memory() -> Self {
        Storage::new(Arc::new(InMemory::new()), "memory://")
    }

    /// The durable local store in `dir` (created when missing); see [`crate::synced`].
    pub fn local(dir: &std::path::Path, syncer: Arc<dyn Syncer>) -> Result<Self, StorageError> {
        let bad = |reason: String| StorageError::InvalidUrl {
            url: format!("file://{}", dir.display()),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
        let store = SyncedLocal::new(dir, syncer).map_err(|e| bad(e.to_string()))?;
        Ok(Storage::new(
            Arc::new(store),
            format!("file://{}", dir.display()),
        ))
    }

    /// Opens the store named by `url`. Local directories are created when missing.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let bad = |reason: &str| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "memory" => Ok(Storage::in_memory()),
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|_| bad("expected an absolute path such as file:///var/lib/loupe"))?;
                Storage::local(&dir, Arc::new(FsSyncer)).map_err(|e| bad(&e.to_string()))
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("expected s3://bucket[/prefix]"))?;
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_conditional_put(S3ConditionalPut::ETagMatch)
                    .build()
                    .map_err(|e| bad(&e.to_string()))?;
                let prefix = parsed.path().trim_matches('/');
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    let prefix = Path::parse(prefix).map_err(|e| bad(&e.to_string()))?;
                    Arc::new(PrefixStore::new(s3, prefix))
                };
                Ok(Storage::new(store, url))
            }
            other => Err(bad(&format!(
                "unsupported scheme {other:?}: expected file://, s3:// or memory://"
            ))),
        }
    }
}

/// `{tenant}/{signal}/{yyyy}/{mm}/{dd}/{hh}/{id}.{ext}` for data starting at `time_unix_nano`.
pub fn data_file_path(
    tenant: &TenantId,
    signal: Signal,
    time_unix_nano: i64,
    id: Ulid,
    ext: &str,
) -> Path {
    let t = DateTime::from_timestamp_nanos(time_unix_nano);
    Path::from(format!(
        "{tenant}/{}/{:04}/{:02}/{:02}/{:02}/{id}.{ext}",
        signal.as_str(),
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    ))
}

/// The prefix under which the catalog of a tenant × signal lives.
pub fn catalog_prefix(tenant: &TenantId, signal: Signal) -> Path {
    Path::from(format!("{tenant}/_catalog/{}", signal.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_are_partitioned_by_hour() {
        let tenant = TenantId::new("acme").unwrap();
        let id = Ulid::from_parts(0, 1);
        // 2024-03-05T07:08:09Z
        let p = data_file_path(
            &tenant,
            Signal::Traces,
            1_709_622_489_000_000_000,
            id,
            "parquet",
        );
        assert_eq!(
            p.as_ref(),
            format!("acme/traces/2024/03/05/07/{id}.parquet")
        );
    }

    #[test]
    fn rejects_unknown_schemes_and_relative_files() {
        let e = Storage::open("ftp://x").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
        assert!(Storage::open("not a url").is_err());
        assert!(Storage::open("s3://").is_err());
    }

    #[test]
    fn opens_local_directories() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        Storage::open(&url).unwrap();
        assert!(dir.path().join("objects").is_dir());
    }
}

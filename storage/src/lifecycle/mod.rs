//! The data-file lifecycle, the same for every signal and format: a [`Format`] says how rows
//! become a file and how files merge; everything else here is generic.
//!
//! - [`write_file`] / [`upload`]: encode (on a blocking thread) and upload a new file under a
//!   unique name; the caller commits its entry. On the local store the object is synced (file
//!   and directories) before `upload` returns.
//! - [`compact`]: merges small files of one hour into one larger file and commits the swap.
//! - [`retention`]: drops files whose data is older than the retention; garbage collection
//!   deletes objects of tombstones older than the grace, without listing, and an occasional
//!   sweep deletes orphans (uploaded, never committed) by age.
//! - [`lease`]: with several collectors on one bucket, exactly one does lifecycle work per
//!   tenant at a time.
//! - [`runner`]: the loop that does all of it, per tenant, under the lease.
//!
//! Removal is two-step: a commit drops the entry (queries stop opening the file) and leaves a
//! tombstone with the removal time; the object is deleted once the removal is older than the
//! grace, so queries that planned with an older catalog (whose staleness is bounded below the
//! grace) can still finish.

pub mod compact;
pub mod lease;
pub mod retention;
pub mod runner;

use std::future::Future;
use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload};
use ulid::Ulid;

pub use compact::{CompactionPolicy, compact};
pub use retention::{apply_retention, collect_garbage, sweep_orphans};

use crate::catalog::{Catalog, FileEntry, FileFormat, IndexLocation, WalSource, now_unix_ms};
use crate::error::StorageError;
use crate::fresh::{Chunk, Rows};
use crate::metrics::SeriesIndex;
use crate::spans::TraceIdFilter;
use crate::store::{Signal, data_file_path};
use loupe_core::TenantId;

/// An encoded data file and what its catalog entry needs.
pub struct EncodedFile {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub min_time_unix_nano: i64,
    pub max_time_unix_nano: i64,
    pub services: Vec<String>,
    /// For formats whose rows carry trace ids (spans, logs): which traces the file holds.
    pub trace_filter: Option<TraceIdFilter>,
    /// Where an index follows the Parquet part (log files).
    pub index: Option<IndexLocation>,
    /// The metric names and label pairs of a metric file.
    pub series: Option<SeriesIndex>,
}

/// A signal's data files: how a batch of rows becomes a file and how files merge.
pub trait Format: Send + Sync + 'static {
    type Rows: Rows;
    const SIGNAL: Signal;
    const FILE_FORMAT: FileFormat;
    const EXTENSION: &'static str;
    const SCHEMA_VERSION: u32;

    /// Encodes the rows of `chunks` (in write-ahead-log order) into one file. CPU-heavy: runs
    /// on a blocking thread.
    fn encode(&self, chunks: &[Arc<Chunk<Self::Rows>>]) -> Result<EncodedFile, StorageError>;

    /// Reads `files` (one compaction group) and merges them into one file.
    fn merge(
        &self,
        files: &[Arc<FileEntry>],
    ) -> impl Future<Output = Result<EncodedFile, StorageError>> + Send;

    /// How many of this format's rows weigh about as much as one span row: the row bounds
    /// of batches (the collector's lanes) and of compaction are given in span rows and
    /// scaled by it.
    const ROW_SCALE: u64 = 1;

    /// The compaction policy for this format's files, from the configured one: its row
    /// bound scaled by [`Format::ROW_SCALE`].
    fn policy(&self, base: &CompactionPolicy) -> CompactionPolicy {
        CompactionPolicy {
            max_rows: base.max_rows.saturating_mul(Self::ROW_SCALE),
            ..base.clone()
        }
    }

    /// Whether compaction may merge this file.
    fn compactable(&self, f: &FileEntry) -> bool {
        f.schema_version == Self::SCHEMA_VERSION
    }

    /// Drops per-file caches of a file that left the catalog.
    fn forget(&self, _id: &str) {}
}

/// Encodes `chunks` off the async runtime and uploads them as a new, not yet committed file.
pub async fn write_file<F: Format>(
    catalog: &Catalog,
    format: &Arc<F>,
    tenant: &TenantId,
    chunks: Vec<Arc<Chunk<F::Rows>>>,
    sources: Vec<WalSource>,
) -> Result<FileEntry, StorageError> {
    let f = format.clone();
    let encoded = tokio::task::spawn_blocking(move || f.encode(&chunks))
        .await
        .map_err(|e| StorageError::Internal(format!("encoding task failed: {e}")))??;
    upload::<F>(catalog, tenant, encoded, 0, sources).await
}

/// Uploads an encoded file under a new unique name and returns its catalog entry.
pub async fn upload<F: Format>(
    catalog: &Catalog,
    tenant: &TenantId,
    file: EncodedFile,
    level: u32,
    sources: Vec<WalSource>,
) -> Result<FileEntry, StorageError> {
    let id = Ulid::new();
    let path = data_file_path(tenant, F::SIGNAL, file.min_time_unix_nano, id, F::EXTENSION);
    let bytes = file.bytes.len() as u64;
    catalog
        .storage()
        .store
        .put(&path, PutPayload::from(file.bytes))
        .await
        .map_err(|e| StorageError::store("put", &path, e))?;
    metrics::counter!("loupe_storage_bytes_written_total", "signal" => F::SIGNAL.as_str())
        .increment(bytes);
    Ok(FileEntry {
        id: id.to_string(),
        signal: F::SIGNAL,
        format: F::FILE_FORMAT,
        path: path.to_string(),
        schema_version: F::SCHEMA_VERSION,
        min_time_unix_nano: file.min_time_unix_nano,
        max_time_unix_nano: file.max_time_unix_nano,
        rows: file.rows,
        bytes,
        services: file.services,
        level,
        created_unix_ms: now_unix_ms(),
        sources,
        trace_filter: file.trace_filter,
        index: file.index,
        series: file.series,
    })
}

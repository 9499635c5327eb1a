//! The data-file lifecycle, the same for every signal and format: upload + commit of new
//! files, compaction of small span files of one hour into one larger file, retention by age,
//! and garbage collection of objects no catalog entry names.
//!
//! Removal is two-step: a commit drops the entry (queries stop opening the file), and the
//! object is deleted by [`collect_garbage`] once it has been unreferenced for a grace period,
//! so queries that planned with the old catalog can still finish.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{FixedSizeBinaryArray, RecordBatch};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use ulid::Ulid;

use crate::catalog::{Catalog, FileEntry, FileFormat, WalSource, now_unix_ms};
use crate::error::StorageError;
use crate::model::SpanRecord;
use crate::spans::decode::Columns;
use crate::spans::schema::{SCHEMA_VERSION, SERVICE_NAME, START, TRACE_ID};
use crate::spans::{EncodedFile, SpanReader, TraceIdFilter, encode_spans};
use crate::store::{Signal, data_file_path};
use crate::tenant::TenantId;

const HOUR_NANOS: i64 = 3_600_000_000_000;

/// Encodes `spans` (off the async runtime) and uploads them as a new, not yet committed file.
pub async fn upload_spans(
    catalog: &Catalog,
    tenant: &TenantId,
    spans: Arc<Vec<SpanRecord>>,
    sources: Vec<WalSource>,
) -> Result<FileEntry, StorageError> {
    let encoded = tokio::task::spawn_blocking(move || encode_spans(&spans))
        .await
        .map_err(|e| StorageError::parquet("<new file>", e))??;
    upload(catalog, tenant, encoded, 0, sources).await
}

async fn upload(
    catalog: &Catalog,
    tenant: &TenantId,
    file: EncodedFile,
    level: u32,
    sources: Vec<WalSource>,
) -> Result<FileEntry, StorageError> {
    let id = Ulid::new();
    let path = data_file_path(
        tenant,
        Signal::Traces,
        file.min_time_unix_nano,
        id,
        "parquet",
    );
    let bytes = file.bytes.len() as u64;
    catalog
        .storage()
        .store
        .put(&path, PutPayload::from(file.bytes))
        .await
        .map_err(|e| StorageError::store("put", &path, e))?;
    metrics::counter!("loupe_storage_bytes_written_total", "signal" => "traces").increment(bytes);
    Ok(FileEntry {
        id: id.to_string(),
        signal: Signal::Traces,
        format: FileFormat::Parquet,
        path: path.to_string(),
        schema_version: SCHEMA_VERSION,
        min_time_unix_nano: file.min_time_unix_nano,
        max_time_unix_nano: file.max_time_unix_nano,
        rows: file.rows,
        bytes,
        services: file.services,
        level,
        created_unix_ms: now_unix_ms(),
        sources,
        trace_filter: Some(file.trace_filter),
    })
}

#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    /// Only windows with at least this many small files are compacted.
    pub min_files: usize,
    /// Files with at least this many rows are left alone; a merge produces at most this many.
    pub max_rows: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            min_files: 4,
            // Bounds compaction memory: the merge holds its inputs and the sorted output.
            max_rows: 128 * 1024,
        }
    }
}

/// Merges small span files of the same hour. Returns how many merges were committed.
pub async fn compact_spans(
    catalog: &Catalog,
    reader: &SpanReader,
    tenant: &TenantId,
    policy: &CompactionPolicy,
) -> Result<usize, StorageError> {
    let state = catalog.refresh(tenant).await?;
    let mut windows: BTreeMap<i64, Vec<Arc<FileEntry>>> = BTreeMap::new();
    for f in state.files_of(Signal::Traces) {
        if f.rows < policy.max_rows / 2 && f.schema_version == SCHEMA_VERSION {
            windows
                .entry(f.min_time_unix_nano.div_euclid(HOUR_NANOS))
                .or_default()
                .push(f.clone());
        }
    }
    let mut merges = 0;
    for (_, mut files) in windows {
        files.sort_by_key(|f| f.min_time_unix_nano);
        let mut group = Vec::new();
        let mut rows = 0;
        for f in files {
            if rows + f.rows > policy.max_rows && group.len() >= policy.min_files {
                merges += merge(catalog, reader, tenant, std::mem::take(&mut group)).await?;
                rows = 0;
            }
            rows += f.rows;
            group.push(f);
        }
        if group.len() >= policy.min_files {
            merges += merge(catalog, reader, tenant, group).await?;
        }
    }
    Ok(merges)
}

async fn merge(
    catalog: &Catalog,
    reader: &SpanReader,
    tenant: &TenantId,
    files: Vec<Arc<FileEntry>>,
) -> Result<usize, StorageError> {
    let started = std::time::Instant::now();
    let mut batches = Vec::new();
    let mut json_keys = BTreeSet::new();
    for f in &files {
        batches.extend(reader.read_all(f).await?);
        json_keys.extend(reader.json_keys(f).await?.unwrap_or_default());
    }
    let encoded = tokio::task::spawn_blocking(move || merge_sorted(batches, json_keys))
        .await
        .map_err(|e| StorageError::parquet("<compaction>", e))??;
    let level = files.iter().map(|f| f.level).max().unwrap_or(0) + 1;
    let mut entry = upload(
        catalog,
        tenant,
        encoded,
        level,
        FileEntry::merge_sources(files.iter().map(|f| &**f)),
    )
    .await?;
    entry.min_time_unix_nano = files
        .iter()
        .map(|f| f.min_time_unix_nano)
        .min()
        .unwrap_or(entry.min_time_unix_nano);
    entry.max_time_unix_nano = files
        .iter()
        .map(|f| f.max_time_unix_nano)
        .max()
        .unwrap_or(entry.max_time_unix_nano);
    let removed: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    let path = Path::from(entry.path.as_str());
    match catalog.commit(tenant, vec![entry], removed).await {
        Ok(_) => {
            metrics::counter!("loupe_compactions_total").increment(1);
            metrics::histogram!("loupe_compaction_seconds").record(started.elapsed().as_secs_f64());
            Ok(1)
        }
        Err(StorageError::Conflict(reason)) => {
            // Another compactor merged some of these files first; our output is garbage.
            tracing::info!(%tenant, %reason, "compaction lost a race, discarding its output");
            let _ = catalog.storage().store.delete(&path).await;
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// Merges batches (each file already sorted) into one file sorted by (trace id, start).
/// Sorts (batch, row) positions rather than concatenating, and writes the output a row group
/// at a time, so memory stays near the size of the inputs.
fn merge_sorted(
    batches: Vec<RecordBatch>,
    json_keys: BTreeSet<String>,
) -> Result<EncodedFile, StorageError> {
    let err = |e: arrow_schema::ArrowError| StorageError::parquet("<compaction>", e);
    let mut ids: Vec<&FixedSizeBinaryArray> = Vec::new();
    let mut starts = Vec::new();
    for b in &batches {
        let c = Columns::new(b);
        ids.push(
            c.fixed(TRACE_ID)
                .ok_or_else(|| StorageError::parquet("<compaction>", "no trace_id"))?,
        );
        starts.push(
            c.timestamp(START)
                .ok_or_else(|| StorageError::parquet("<compaction>", "no start_time"))?,
        );
    }
    let mut order: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    order.sort_unstable_by(|&(ab, ar), &(bb, br)| {
        ids[ab]
            .value(ar)
            .cmp(ids[bb].value(br))
            .then(starts[ab].value(ar).cmp(&starts[bb].value(br)))
    });
    let mut filter = TraceIdFilter::with_capacity(order.len() / 8 + 1);
    let mut last: Option<&[u8]> = None;
    for &(b, r) in &order {
        let id = ids[b].value(r);
        if last != Some(id) {
            if let Ok(id) = id.try_into() {
                filter.insert(&id);
            }
            last = Some(id);
        }
    }
    let mut services = BTreeSet::new();
    for b in &batches {
        if let Some(col) = Columns::new(b).string(SERVICE_NAME) {
            for r in 0..b.num_rows() {
                if let Some(s) = col.get(r)
                    && !services.contains(s)
                {
                    services.insert(s.to_string());
                }
            }
        }
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let chunks = order
        .chunks(crate::spans::encode::ROW_GROUP_ROWS)
        .map(|chunk| arrow_select::interleave::interleave_record_batch(&refs, chunk).map_err(err));
    let bytes = crate::spans::encode::write_parquet_batches(
        chunks,
        crate::spans::encode::COMPACTION_ZSTD_LEVEL,
        &json_keys,
    )?;
    Ok(EncodedFile {
        bytes,
        rows: order.len() as u64,
        min_time_unix_nano: 0,
        max_time_unix_nano: 0,
        services: services.into_iter().collect(),
        trace_filter: filter,
    })
}

/// Drops files whose data ended before `now - retention`. Returns how many were dropped.
pub async fn apply_retention(
    catalog: &Catalog,
    tenant: &TenantId,
    retention: Duration,
) -> Result<usize, StorageError> {
    let cutoff = now_unix_ms()
        .saturating_sub(retention.as_millis() as i64)
        .saturating_mul(1_000_000);
    let state = catalog.refresh(tenant).await?;
    let expired: Vec<String> = state
        .files
        .values()
        .filter(|f| f.max_time_unix_nano < cutoff)
        .map(|f| f.id.clone())
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    let n = expired.len();
    match catalog.commit(tenant, Vec::new(), expired).await {
        Ok(_) | Err(StorageError::Conflict(_)) => Ok(n),
        Err(e) => Err(e),
    }
}

/// Deletes data objects of `tenant` that no catalog entry names and that are older than
/// `grace`. Returns how many objects were deleted.
pub async fn collect_garbage(
    catalog: &Catalog,
    tenant: &TenantId,
    grace: Duration,
) -> Result<usize, StorageError> {
    let state = catalog.refresh(tenant).await?;
    let live: HashSet<&str> = state.files.values().map(|f| f.path.as_str()).collect();
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
    let mut deleted = 0;
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        let prefix = Path::from(format!("{tenant}/{}", signal.as_str()));
        let objects: Vec<_> = catalog
            .storage()
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| StorageError::store("list", &prefix, e))?;
        for o in objects {
            if o.last_modified < cutoff && !live.contains(o.location.as_ref()) {
                match catalog.storage().store.delete(&o.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(e) => return Err(StorageError::store("delete", &o.location, e)),
                }
            }
        }
    }
    Ok(deleted)
}

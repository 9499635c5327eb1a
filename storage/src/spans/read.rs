//! Reading span files from the object store, pruned: the catalog's trace-id filter picks the
//! files, row-group statistics pick the row groups, the page index picks the pages, and a
//! projection picks the columns. File footers are cached (files are immutable), so a warm
//! lookup costs one ranged read per row group it needs.
//!
//! I/O and CPU are apart: Parquet's push decoder says which byte ranges it needs, they are
//! fetched here on the async runtime, and every decoding step (pages, row filters, and the
//! conversion of rows into spans with their JSON attributes) runs on the CPU pool.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow_array::BooleanArray;
use arrow_array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, RowFilter, RowSelection,
};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use crate::catalog::FileEntry;
use crate::error::StorageError;
use crate::model::{SpanKind, SpanRecord, TraceId};
use crate::parquet_files::ParquetFiles;
use crate::spans::decode::{Columns, decode_rows};
use crate::spans::encode::JSON_KEYS_METADATA;
use crate::spans::filter::SpanFilter;
use crate::spans::schema;
use crate::store::Storage;

const FOOTER_CACHE_ENTRIES: usize = 8192;

/// The columns a read needs: `columns`, plus the JSON attribute columns in files whose JSON
/// keys (unknown: all) include one of `json_keys` (a promoted key whose value had another type
/// is there too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    pub columns: Vec<&'static str>,
    pub json_keys: Vec<String>,
}

impl Projection {
    /// What a trace summary (root, duration, per-service counts) needs.
    pub fn summary() -> Self {
        Projection {
            columns: schema::SUMMARY_COLUMNS.to_vec(),
            json_keys: Vec::new(),
        }
    }

    fn columns_for(&self, file_keys: Option<&HashSet<String>>) -> Vec<&'static str> {
        let mut cols = self.columns.clone();
        let json = self
            .json_keys
            .iter()
            .any(|k| file_keys.is_none_or(|keys| keys.contains(k)));
        if json {
            cols.extend([schema::ATTRIBUTES, schema::RESOURCE_ATTRIBUTES]);
        }
        cols
    }
}

/// An operation: (service, span name, kind).
pub type Operation = (String, String, SpanKind);

/// The distinct (service, span name, kind) of span batches (files' and fresh rows' alike).
pub fn operations_in<'a>(batches: impl Iterator<Item = &'a RecordBatch>) -> Vec<Operation> {
    let mut set: HashSet<(&str, &str, i8)> = HashSet::new();
    for b in batches {
        let c = Columns::new(b);
        if let (Some(s), Some(n), Some(k)) = (
            c.string(schema::SERVICE_NAME),
            c.string(schema::NAME),
            c.i8(schema::KIND),
        ) {
            for i in 0..b.num_rows() {
                set.insert((
                    s.get(i).unwrap_or_default(),
                    n.get(i).unwrap_or_default(),
                    k.value(i),
                ));
            }
        }
    }
    set.into_iter()
        .map(|(s, n, k)| (s.to_string(), n.to_string(), SpanKind::from_i32(k as i32)))
        .collect()
}

pub struct SpanReader {
    pub(super) files: ParquetFiles,
    operations: Mutex<HashMap<String, Arc<Vec<Operation>>>>,
}

pub(super) use crate::parquet_files::column_index;

fn fixed_range(rg: &RowGroupMetaData, col: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    match rg.column(col).statistics()? {
        Statistics::FixedLenByteArray(s) => {
            Some((s.min_bytes_opt()?.to_vec(), s.max_bytes_opt()?.to_vec()))
        }
        _ => None,
    }
}

/// The row groups whose span starts may fall in `[start, end]` (by their statistics; all when
/// a file has none).
pub(super) fn row_groups_starting_in(
    meta: &ArrowReaderMetadata,
    start: i64,
    end: i64,
) -> Vec<usize> {
    let col = column_index(meta, schema::START);
    meta.metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| {
            col.and_then(|c| i64_range(rg, c))
                .is_none_or(|(min, max)| max >= start && min <= end)
        })
        .map(|(i, _)| i)
        .collect()
}

fn i64_range(rg: &RowGroupMetaData, col: usize) -> Option<(i64, i64)> {
    match rg.column(col).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

impl SpanReader {
    pub fn new(storage: Storage) -> Self {
        SpanReader {
            files: ParquetFiles::new(storage),
            operations: Mutex::new(HashMap::new()),
        }
    }

    /// Every span of `ids` that `entry` holds. Row groups are pruned by their `trace_id`
    /// statistics and, within them, pages by the column index, so a lookup decodes only the
    /// pages (of every column) whose id range covers a wanted trace.
    pub async fn read_traces(
        &self,
        entry: &FileEntry,
        ids: &HashSet<TraceId>,
    ) -> Result<Vec<SpanRecord>, StorageError> {
        self.read_traces_projected(entry, ids, None).await
    }

    /// [`SpanReader::read_traces`] reading only what `projection` names (`None`: all); spans
    /// come back with what those columns hold.
    pub async fn read_traces_projected(
        &self,
        entry: &FileEntry,
        ids: &HashSet<TraceId>,
        projection: Option<&Projection>,
    ) -> Result<Vec<SpanRecord>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let (row_groups, selection) = match column_index(&meta, schema::TRACE_ID) {
            Some(col) => plan_lookup(&meta, col, ids),
            None => ((0..meta.metadata().num_row_groups()).collect(), None),
        };
        let columns = projection.map(|p| p.columns_for(json_keys_of(&meta).as_ref()));
        let batches = self
            .files
            .read(entry, meta, row_groups, selection, columns.as_deref(), None)
            .await?;
        let ids = ids.clone();
        let path = entry.path.clone();
        loupe_core::cpu::run(move || {
            let mut out = Vec::new();
            for batch in &batches {
                let Some(trace) = Columns::new(batch).fixed(schema::TRACE_ID) else {
                    continue;
                };
                let rows = decode_rows(batch, |i| {
                    trace
                        .value(i)
                        .try_into()
                        .is_ok_and(|id: TraceId| ids.contains(&id))
                })
                .map_err(|e| with_path(e, &path))?;
                out.extend(rows);
            }
            Ok(out)
        })
        .await?
    }

    /// (trace id, span start) of the spans in `entry` that match `filter`.
    pub async fn scan(
        &self,
        entry: &FileEntry,
        filter: &SpanFilter,
    ) -> Result<Vec<(TraceId, i64)>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let row_groups =
            row_groups_starting_in(&meta, filter.start_unix_nano, filter.end_unix_nano);
        let json_keys = json_keys_of(&meta);
        let Some(cols) = filter.columns(json_keys.as_ref()) else {
            // A wanted attribute key that this file does not have at all.
            return Ok(Vec::new());
        };
        // Decode the other columns only for rows whose cheapest condition holds: the service,
        // else a string tag whose key lives only in its promoted column in this file, else
        // the span name. (A key also in the JSON columns can match there too, so it cannot
        // filter rows on its column alone.)
        let only_promoted = |k: &str| json_keys.as_ref().is_some_and(|keys| !keys.contains(k));
        let first_cut: Option<(&'static str, String)> = filter
            .service
            .clone()
            .map(|v| (schema::SERVICE_NAME, v))
            .or_else(|| {
                filter
                    .tags
                    .iter()
                    .find_map(|(k, v)| match schema::column_for_key(k) {
                        Some(schema::AttrColumn::Promoted {
                            column,
                            is_int: false,
                            ..
                        }) if only_promoted(k) => Some((column, v.clone())),
                        _ => None,
                    })
            })
            .or_else(|| filter.name.clone().map(|v| (schema::NAME, v)));
        let row_filter = first_cut.and_then(|(column, want)| {
            let idx = column_index(&meta, column)?;
            let mask =
                ProjectionMask::leaves(meta.metadata().file_metadata().schema_descr(), [idx]);
            let pred = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
                let col = Columns::new(&batch).string(column);
                Ok(BooleanArray::from_iter((0..batch.num_rows()).map(|i| {
                    Some(col.and_then(|c| c.get(i)) == Some(want.as_str()))
                })))
            });
            Some(RowFilter::new(vec![Box::new(pred)]))
        });
        let batches = self
            .files
            .read(entry, meta, row_groups, None, Some(&cols), row_filter)
            .await?;
        let filter = filter.clone();
        Ok(loupe_core::cpu::run(move || {
            batches
                .iter()
                .flat_map(|b| filter.matching_rows(b))
                .collect()
        })
        .await?)
    }

    /// The attribute keys `entry` stores in its JSON columns (`None`: unknown, older file).
    pub async fn json_keys(
        &self,
        entry: &FileEntry,
    ) -> Result<Option<HashSet<String>>, StorageError> {
        Ok(json_keys_of(&self.files.metadata(entry).await?))
    }

    /// The whole file, in full schema (for compaction).
    pub async fn read_all(&self, entry: &FileEntry) -> Result<Vec<RecordBatch>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let all = (0..meta.metadata().num_row_groups()).collect();
        self.files.read(entry, meta, all, None, None, None).await
    }

    /// Distinct (service, name, kind) in `entry`; cached per file.
    pub async fn operations(&self, entry: &FileEntry) -> Result<Arc<Vec<Operation>>, StorageError> {
        if let Some(ops) = self
            .operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&entry.id)
        {
            return Ok(ops.clone());
        }
        let meta = self.files.metadata(entry).await?;
        let all = (0..meta.metadata().num_row_groups()).collect();
        let cols = [schema::SERVICE_NAME, schema::NAME, schema::KIND];
        let batches = self
            .files
            .read(entry, meta, all, None, Some(&cols), None)
            .await?;
        let ops: Arc<Vec<Operation>> =
            Arc::new(loupe_core::cpu::run(move || operations_in(batches.iter())).await?);
        let mut cache = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= FOOTER_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(entry.id.clone(), ops.clone());
        Ok(ops)
    }

    /// Drops cached state of files that no longer exist.
    pub fn forget(&self, id: &str) {
        self.files.forget(id);
        self.operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

fn json_keys_of(meta: &ArrowReaderMetadata) -> Option<HashSet<String>> {
    let kv = meta.metadata().file_metadata().key_value_metadata()?;
    let value = kv
        .iter()
        .find(|k| k.key == JSON_KEYS_METADATA)?
        .value
        .as_ref()?;
    serde_json::from_str(value).ok()
}

fn covers(min: &[u8], max: &[u8], ids: &HashSet<TraceId>) -> bool {
    ids.iter()
        .any(|id| id.as_slice() >= min && id.as_slice() <= max)
}

/// The row groups and the rows within them (whole pages) that may hold one of `ids`.
fn plan_lookup(
    meta: &ArrowReaderMetadata,
    col: usize,
    ids: &HashSet<TraceId>,
) -> (Vec<usize>, Option<RowSelection>) {
    let md = meta.metadata();
    let (column_index, offset_index) = (md.column_index(), md.offset_index());
    let mut row_groups = Vec::new();
    let mut ranges = Vec::new();
    let mut offset = 0usize;
    for (rg_idx, rg) in md.row_groups().iter().enumerate() {
        if fixed_range(rg, col).is_some_and(|(min, max)| !covers(&min, &max, ids)) {
            continue;
        }
        row_groups.push(rg_idx);
        let rows = rg.num_rows() as usize;
        let pages = column_index
            .and_then(|ci| ci.get(rg_idx)?.get(col))
            .zip(offset_index.and_then(|oi| oi.get(rg_idx)?.get(col)));
        match pages {
            Some((ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(index), offsets)) => {
                let locations = offsets.page_locations();
                for (p, loc) in locations.iter().enumerate() {
                    let hit = match (index.min_value(p), index.max_value(p)) {
                        (Some(min), Some(max)) => covers(min, max, ids),
                        _ => true,
                    };
                    if hit {
                        let start = loc.first_row_index as usize;
                        let end = locations
                            .get(p + 1)
                            .map_or(rows, |l| l.first_row_index as usize);
                        ranges.push(offset + start..offset + end);
                    }
                }
            }
            _ => ranges.push(offset..offset + rows),
        }
        offset += rows;
    }
    (
        row_groups,
        Some(RowSelection::from_consecutive_ranges(
            ranges.into_iter(),
            offset,
        )),
    )
}

fn with_path(e: StorageError, path: &str) -> StorageError {
    match e {
        StorageError::Corrupt { what, reason, .. } => StorageError::Corrupt {
            what,
            path: path.to_string(),
            reason,
        },
        other => other,
    }
}

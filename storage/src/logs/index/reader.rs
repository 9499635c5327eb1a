//! Searching stored log files through their indexes, by range reads.
//!
//! Opening a file's index costs one ranged read: its footer (file table and hot cache), at
//! the offsets its catalog entry gives; footers are cached by weight. Term dictionary blocks
//! and posting lists are then read by range as tantivy asks for them, through a cache of the
//! ranges read (files are immutable, so nothing is ever stale). tantivy reads synchronously:
//! a search runs on a blocking thread, where a read that misses the caches waits for the
//! object store (`Handle::block_on`). A file's id filter is read whole when its index is
//! opened, and kept with it. The hits' rows are then read from the Parquet part,
//! only the pages that hold them.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use tantivy::Searcher;
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::{Directory, OwnedBytes};
use tantivy::query::Query;

use crate::catalog::{Catalog, FileEntry};
use crate::error::StorageError;
use crate::logs::decode::decode_batch;
use crate::logs::filter::Order;
use crate::logs::index::build::{GRANULE_ROWS, TIME_MAX, TIME_MIN, open};
use crate::logs::index::ids::{self, IdFilter};
use crate::logs::index::split::{Footer, Ranges, SplitDirectory};
use crate::logs::model::LogRecord;
use crate::parquet_files::ParquetFiles;
use crate::store::Storage;

/// Bytes of footers and of ranges kept in memory.
const FOOTER_CACHE_BYTES: u64 = 64 * 1024 * 1024;
const RANGE_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// Opened indexes kept (each holds its footer).
const SEARCHERS: usize = 256;

fn index_err(path: &str) -> impl Fn(tantivy::TantivyError) -> StorageError + '_ {
    move |e| StorageError::Internal(format!("log index of {path}: {e}"))
}

#[derive(Clone)]
struct ByLen;

impl Weighter<String, Arc<Footer>> for ByLen {
    fn weight(&self, _k: &String, v: &Arc<Footer>) -> u64 {
        v.len as u64 + 64
    }
}

impl Weighter<(String, u64, u64), OwnedBytes> for ByLen {
    fn weight(&self, _k: &(String, u64, u64), v: &OwnedBytes) -> u64 {
        v.len() as u64 + 64
    }
}

type RangeCache = Cache<(String, u64, u64), OwnedBytes, ByLen>;

/// One object's bytes from the store, through the range cache.
struct StoreRanges {
    store: Arc<dyn ObjectStore>,
    path: Path,
    id: String,
    cache: Arc<RangeCache>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for StoreRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)
    }
}

impl Ranges for StoreRanges {
    fn read(&self, range: Range<u64>) -> io::Result<OwnedBytes> {
        let key = (self.id.clone(), range.start, range.end);
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&self.path, range))
            .map_err(io::Error::other)?;
        let bytes = OwnedBytes::new(bytes.to_vec());
        self.cache.insert(key, bytes.clone());
        Ok(bytes)
    }
}

/// A file's index, open: its searcher and its id filter (none in files written before).
#[derive(Clone)]
struct Opened {
    searcher: Searcher,
    ids: Option<Arc<IdFilter>>,
}

pub struct LogIndexReader {
    files: ParquetFiles,
    footers: Cache<String, Arc<Footer>, ByLen>,
    ranges: Arc<RangeCache>,
    searchers: Cache<String, Opened>,
}

impl LogIndexReader {
    pub fn new(storage: Storage) -> Self {
        LogIndexReader {
            files: ParquetFiles::new(storage),
            footers: Cache::with_weighter(1024, FOOTER_CACHE_BYTES, ByLen),
            ranges: Arc::new(Cache::with_weighter(16 * 1024, RANGE_CACHE_BYTES, ByLen)),
            searchers: Cache::new(SEARCHERS),
        }
    }

    pub fn storage(&self) -> &Storage {
        self.files.storage()
    }

    async fn searcher(&self, entry: &FileEntry) -> Result<Opened, StorageError> {
        if let Some(s) = self.searchers.get(&entry.id) {
            return Ok(s);
        }
        let loc = entry
            .index
            .ok_or_else(|| StorageError::Internal(format!("{} has no log index", entry.path)))?;
        let path = Catalog::path_of(entry);
        let store = self.storage().store.clone();
        let footer = match self.footers.get(&entry.id) {
            Some(f) => f,
            None => {
                let range = loc.footer_offset..loc.footer_offset + loc.footer_len;
                let bytes = store
                    .get_range(&path, range)
                    .await
                    .map_err(|e| StorageError::store("get", &path, e))?;
                let footer = Arc::new(Footer::parse(OwnedBytes::new(bytes.to_vec()))?);
                self.footers.insert(entry.id.clone(), footer.clone());
                footer
            }
        };
        let source = Arc::new(StoreRanges {
            store,
            path,
            id: entry.id.clone(),
            cache: self.ranges.clone(),
            runtime: tokio::runtime::Handle::current(),
        });
        let dir = SplitDirectory::new(footer, source);
        let opened = tokio::task::spawn_blocking(move || {
            let searcher = open(&dir)?;
            let file = std::path::Path::new(ids::FILE);
            let ids = match dir.exists(file) {
                Ok(true) => {
                    let bytes = dir.atomic_read(file).map_err(|e| {
                        StorageError::Internal(format!("log index {}: {e}", ids::FILE))
                    })?;
                    Some(Arc::new(IdFilter::parse(&bytes)?))
                }
                _ => None,
            };
            Ok::<_, StorageError>(Opened { searcher, ids })
        })
        .await
        .map_err(|e| StorageError::Internal(format!("log index task failed: {e}")))??;
        self.searchers.insert(entry.id.clone(), opened.clone());
        Ok(opened)
    }

    /// The granules of `entry` that `query` selects, at most `limit`, the first in `order`:
    /// by latest time, newest first, or by earliest time, oldest first; each with that time.
    /// `query` is made with the file's id filter.
    pub async fn candidates(
        &self,
        entry: &FileEntry,
        query: impl FnOnce(Option<&IdFilter>) -> Box<dyn Query>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(u32, i64)>, StorageError> {
        let Opened { searcher, ids } = self.searcher(entry).await?;
        let query = query(ids.as_deref());
        let path = entry.path.clone();
        tokio::task::spawn_blocking(move || {
            let (field, order) = match order {
                Order::NewestFirst => (TIME_MAX, tantivy::Order::Desc),
                Order::OldestFirst => (TIME_MIN, tantivy::Order::Asc),
            };
            let top = TopDocs::with_limit(limit.max(1)).order_by_fast_field::<i64>(field, order);
            let hits = searcher.search(&query, &top).map_err(index_err(&path))?;
            Ok(hits
                .into_iter()
                .map(|(t, d)| (d.doc_id, t.unwrap_or(0)))
                .collect())
        })
        .await
        .map_err(|e| StorageError::Internal(format!("log index task failed: {e}")))?
    }

    /// Every granule of `entry` that `query` (made with the file's id filter) selects, in
    /// document order.
    pub async fn all_candidates(
        &self,
        entry: &FileEntry,
        query: impl FnOnce(Option<&IdFilter>) -> Box<dyn Query>,
    ) -> Result<Vec<u32>, StorageError> {
        let Opened { searcher, ids } = self.searcher(entry).await?;
        let query = query(ids.as_deref());
        let path = entry.path.clone();
        tokio::task::spawn_blocking(move || {
            let docs = searcher
                .search(&query, &DocSetCollector)
                .map_err(index_err(&path))?;
            let mut granules: Vec<u32> = docs.into_iter().map(|d| d.doc_id).collect();
            granules.sort_unstable();
            Ok(granules)
        })
        .await
        .map_err(|e| StorageError::Internal(format!("log index task failed: {e}")))?
    }

    /// The named columns of every row of `entry`'s Parquet part.
    pub async fn read_columns(
        &self,
        entry: &FileEntry,
        columns: &[&str],
    ) -> Result<Vec<arrow_array::RecordBatch>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let all = (0..meta.metadata().num_row_groups()).collect();
        self.files
            .read(entry, meta, all, None, Some(columns), None)
            .await
    }

    /// The records of `granules` (any order) of `entry`, in row order.
    pub async fn read_granules(
        &self,
        entry: &FileEntry,
        granules: &[u32],
    ) -> Result<Vec<LogRecord>, StorageError> {
        let g = GRANULE_ROWS as u32;
        let rows = granules
            .iter()
            .flat_map(|&n| n * g..(n + 1) * g)
            .filter(|&r| u64::from(r) < entry.rows)
            .collect();
        self.read_rows(entry, rows).await
    }

    /// The records at `rows` (any order) of `entry`'s Parquet part, in row order.
    pub async fn read_rows(
        &self,
        entry: &FileEntry,
        mut rows: Vec<u32>,
    ) -> Result<Vec<LogRecord>, StorageError> {
        rows.sort_unstable();
        rows.dedup();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let meta = self.files.metadata(entry).await?;
        let mut row_groups = Vec::new();
        let mut selectors = Vec::new();
        let (mut first, mut next) = (0u64, 0usize);
        for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
            let end = first + rg.num_rows() as u64;
            let mut at = first;
            let mut picked = false;
            while next < rows.len() && u64::from(rows[next]) < end {
                let r = u64::from(rows[next]);
                if r > at {
                    selectors.push(RowSelector::skip((r - at) as usize));
                }
                selectors.push(RowSelector::select(1));
                at = r + 1;
                next += 1;
                picked = true;
            }
            if picked {
                if end > at {
                    selectors.push(RowSelector::skip((end - at) as usize));
                }
                row_groups.push(i);
            }
            first = end;
        }
        let batches = self
            .files
            .read(
                entry,
                meta,
                row_groups,
                Some(RowSelection::from(selectors)),
                None,
                None,
            )
            .await?;
        loupe_core::cpu::run(move || {
            let mut out = Vec::new();
            for b in &batches {
                out.extend(decode_batch(b)?);
            }
            Ok::<_, StorageError>(out)
        })
        .await?
    }

    /// Drops what is cached of a file that left the catalog.
    pub fn forget(&self, id: &str) {
        self.files.forget(id);
        self.footers.remove(id);
        self.searchers.remove(id);
    }
}

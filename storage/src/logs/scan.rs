//! Every record a [`LogFilter`] matches, fresh and stored, each seen once, handed to a
//! [`Visit`]or that folds them (a histogram, the samples of a LogQL metric query). Nothing
//! is sorted and no more than one file's matches are held at once.
//!
//! Fresh records are visited first. A file is read through its index (the rows of the
//! granules it offers, checked with the filter as a search does) or whole when it has none.
//! A visitor that can fold a file from a few columns when the filter asks nothing beyond
//! time, service and severity says so ([`Visit::columns`]). A file committed shortly before
//! the fresh records were taken may also hold some of them: such files are read row by row
//! and a record that is also fresh is skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType};
use arrow_array::{Array, DictionaryArray, PrimitiveArray, RecordBatch};
use futures::{StreamExt, TryStreamExt};
use loupe_core::TenantId;

use crate::catalog::{Catalog, FileEntry, now_unix_ms};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::logs::filter::LogFilter;
use crate::logs::format::read_records;
use crate::logs::index::LogIndexReader;
use crate::logs::index::query::candidates_query;
use crate::logs::model::LogRecord;
use crate::logs::schema;
use crate::logs::search::{Identity, identity};
use crate::store::Signal;

/// A file written this long before the fresh records were taken may still hold some.
const RECENT_MS: i64 = 60_000;
const FILES_AT_ONCE: usize = 4;

/// Folds matching records. One visitor per file, merged at the end.
pub trait Visit: Send + Sized + 'static {
    fn visit(&mut self, r: &LogRecord);
    fn merge(&mut self, other: Self);
    /// The columns from which [`Visit::visit_columns`] folds a whole file, when the filter
    /// is plain (`None`: always visit records).
    fn columns(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Folds a batch of [`Visit::columns`], applying the filter's time, service and
    /// severity itself.
    fn visit_columns(&mut self, _batch: &RecordBatch, _filter: &LogFilter) {}
}

/// Where a scan reads.
pub struct ScanSource<'a> {
    pub catalog: &'a Catalog,
    pub reader: &'a LogIndexReader,
    pub tenant: &'a TenantId,
    pub max_age: Duration,
    pub fresh: Vec<Arc<Chunk<Vec<LogRecord>>>>,
}

/// Visits every match of `filter`; `empty` makes a visitor with nothing folded yet.
pub async fn scan<V: Visit>(
    src: ScanSource<'_>,
    filter: &LogFilter,
    empty: impl Fn() -> V + Sync,
) -> Result<V, StorageError> {
    let taken_ms = now_unix_ms();
    let (f, fresh_chunks) = (filter.clone(), src.fresh);
    let mut total = empty();
    let (total_v, fresh_ids) = loupe_core::cpu::run(move || {
        let terms = f.prepared_terms();
        let mut ids = HashSet::new();
        for r in fresh_chunks
            .iter()
            .flat_map(|c| c.rows().iter())
            .filter(|r| f.matches(r, &terms))
        {
            total.visit(r);
            ids.insert(identity(r));
        }
        (total, ids)
    })
    .await?;
    total = total_v;
    let fresh_ids = Arc::new(fresh_ids);
    let state = src
        .catalog
        .snapshot(src.tenant, Signal::Logs, src.max_age)
        .await?;
    let files: Vec<Arc<FileEntry>> = state
        .files()
        .filter(|f| filter.may_hold(f))
        .cloned()
        .collect();
    let (reader, fresh_ids, empty) = (src.reader, &fresh_ids, &empty);
    let parts: Vec<V> = futures::stream::iter(files)
        .map(move |f| async move {
            let recent = f.created_unix_ms >= taken_ms - RECENT_MS && !fresh_ids.is_empty();
            scan_file(reader, &f, filter, empty(), recent.then_some(fresh_ids)).await
        })
        .buffer_unordered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    for p in parts {
        total.merge(p);
    }
    Ok(total)
}

async fn scan_file<V: Visit>(
    reader: &LogIndexReader,
    f: &FileEntry,
    filter: &LogFilter,
    mut v: V,
    fresh: Option<&Arc<HashSet<Identity>>>,
) -> Result<V, StorageError> {
    if let Some(columns) = v.columns()
        && filter.is_plain()
        && fresh.is_none()
    {
        let batches = reader.read_columns(f, columns).await?;
        let filter = filter.clone();
        return Ok(loupe_core::cpu::run(move || {
            for b in &batches {
                v.visit_columns(b, &filter);
            }
            v
        })
        .await?);
    }
    let terms = filter.prepared_terms();
    let records = if f.index.is_some() {
        let query = |ids: Option<&_>| candidates_query(filter, &terms, f, ids);
        let granules = reader.all_candidates(f, query).await?;
        reader.read_granules(f, &granules).await?
    } else {
        read_records(reader.storage(), f).await?
    };
    let (filter, fresh) = (filter.clone(), fresh.cloned());
    Ok(loupe_core::cpu::run(move || {
        for r in records.iter().filter(|r| filter.matches(r, &terms)) {
            if fresh.as_ref().is_some_and(|ids| ids.contains(&identity(r))) {
                continue;
            }
            v.visit(r);
        }
        v
    })
    .await?)
}

/// The rows of a batch (with at least the time, severity and service columns) that a plain
/// filter keeps: in its time range, of its service, within its severities.
pub struct PlainRows<'a> {
    pub time: &'a PrimitiveArray<TimestampNanosecondType>,
    pub severity: &'a PrimitiveArray<Int32Type>,
    pub service: &'a DictionaryArray<Int32Type>,
    wanted: Option<Vec<bool>>,
    filter: &'a LogFilter,
}

impl<'a> PlainRows<'a> {
    /// `None` when the batch lacks one of the columns.
    pub fn new(b: &'a RecordBatch, filter: &'a LogFilter) -> Option<Self> {
        let time = b
            .column_by_name(schema::TIME)?
            .as_primitive_opt::<TimestampNanosecondType>()?;
        let severity = b
            .column_by_name(schema::SEVERITY_NUMBER)?
            .as_primitive_opt::<Int32Type>()?;
        let service = b
            .column_by_name(schema::SERVICE_NAME)?
            .as_dictionary_opt::<Int32Type>()?;
        let names = service.values().as_string_opt::<i32>();
        let wanted = match (&filter.service, names) {
            (Some(s), Some(names)) => Some((0..names.len()).map(|i| names.value(i) == s).collect()),
            _ => None,
        };
        Some(PlainRows {
            time,
            severity,
            service,
            wanted,
            filter,
        })
    }

    /// The indexes of the rows kept.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let f = self.filter;
        (0..self.time.len()).filter(move |&i| {
            let t = self.time.value(i);
            let n = self.severity.value(i);
            if t < f.start_unix_nano
                || t > f.end_unix_nano
                || f.min_severity.is_some_and(|m| n < m)
                || f.max_severity.is_some_and(|m| n > m)
            {
                return false;
            }
            match &self.wanted {
                Some(w) => !self.service.is_null(i) && w[self.service.keys().value(i) as usize],
                None => true,
            }
        })
    }
}

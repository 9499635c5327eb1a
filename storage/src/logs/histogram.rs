//! How many lines match a filter, per time bucket and severity level: the histogram a log
//! explorer draws above its results.
//!
//! Fresh records are counted first. A file is counted from its `time`, `severity_number` and
//! `service_name` columns alone when the filter asks nothing else (no terms, attributes or
//! trace); otherwise from the rows of the granules its index offers, checked with the
//! [`LogFilter`] as a search does. A file committed shortly before the fresh records were
//! taken may also hold some of them: such files are read row by row and a record that is
//! also fresh is counted once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType};
use futures::{StreamExt, TryStreamExt};
use loupe_core::TenantId;

use crate::catalog::{Catalog, FileEntry, now_unix_ms};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::logs::filter::LogFilter;
use crate::logs::format::read_records;
use crate::logs::index::LogIndexReader;
use crate::logs::index::query::candidates_query;
use crate::logs::index::tokens::Term;
use crate::logs::model::LogRecord;
use crate::logs::schema;
use crate::store::Signal;

/// Severity levels, by index: unspecified (0), then OpenTelemetry's ranges of four.
pub const LEVELS: [&str; 7] = [
    "unknown", "trace", "debug", "info", "warn", "error", "fatal",
];

/// The level index of an OTLP severity number.
pub fn level_of(severity_number: i32) -> usize {
    match severity_number {
        1..=24 => ((severity_number - 1) / 4 + 1) as usize,
        _ => 0,
    }
}

/// Counts per bucket `[start + i * step, start + (i + 1) * step)` and level.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub start_unix_nano: i64,
    pub step_nanos: i64,
    pub counts: Vec<[u64; LEVELS.len()]>,
}

impl Histogram {
    fn new(filter: &LogFilter, step_nanos: i64) -> Self {
        let span = filter
            .end_unix_nano
            .saturating_sub(filter.start_unix_nano)
            .max(0) as u128
            + 1;
        let n = span.div_ceil(step_nanos.max(1) as u128) as usize;
        Histogram {
            start_unix_nano: filter.start_unix_nano,
            step_nanos: step_nanos.max(1),
            counts: vec![[0; LEVELS.len()]; n],
        }
    }

    fn add(&mut self, time_unix_nano: i64, severity_number: i32) {
        let i = (time_unix_nano.saturating_sub(self.start_unix_nano) / self.step_nanos) as usize;
        if let Some(bucket) = self.counts.get_mut(i) {
            bucket[level_of(severity_number)] += 1;
        }
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// A file written this long before the fresh records were taken may still hold some.
const RECENT_MS: i64 = 60_000;
const FILES_AT_ONCE: usize = 4;

/// The histogram of `filter` in buckets of `step_nanos` (at least 1).
pub async fn histogram(
    catalog: &Catalog,
    reader: &LogIndexReader,
    tenant: &TenantId,
    max_age: Duration,
    fresh: Vec<Arc<Chunk<Vec<LogRecord>>>>,
    filter: &LogFilter,
    step_nanos: i64,
) -> Result<Histogram, StorageError> {
    let taken_ms = now_unix_ms();
    let terms = filter.prepared_terms();
    let (f, t) = (filter.clone(), terms.clone());
    let fresh: Vec<LogRecord> = loupe_core::cpu::run(move || {
        fresh
            .iter()
            .flat_map(|c| c.rows().iter())
            .filter(|r| f.matches(r, &t))
            .cloned()
            .collect()
    })
    .await?;
    let mut total = Histogram::new(filter, step_nanos);
    for r in &fresh {
        total.add(r.time_unix_nano, r.severity_number);
    }
    let fresh_ids: Arc<HashSet<_>> = Arc::new(fresh.iter().map(super::search::identity).collect());
    let state = catalog.snapshot(tenant, Signal::Logs, max_age).await?;
    let files: Vec<Arc<FileEntry>> = state
        .files()
        .filter(|f| filter.may_hold(f))
        .cloned()
        .collect();
    let (terms, fresh_ids) = (&terms, &fresh_ids);
    let parts: Vec<Histogram> = futures::stream::iter(files)
        .map(move |f| async move {
            let recent = f.created_unix_ms >= taken_ms - RECENT_MS && !fresh_ids.is_empty();
            count_file(
                reader,
                &f,
                filter,
                terms,
                step_nanos,
                recent.then_some(fresh_ids),
            )
            .await
        })
        .buffer_unordered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    for p in &parts {
        total.merge(p);
    }
    Ok(total)
}

type Identities = Arc<HashSet<super::search::Identity>>;

async fn count_file(
    reader: &LogIndexReader,
    f: &FileEntry,
    filter: &LogFilter,
    terms: &[Term],
    step_nanos: i64,
    fresh: Option<&Identities>,
) -> Result<Histogram, StorageError> {
    let mut h = Histogram::new(filter, step_nanos);
    let columns_suffice = filter.is_plain();
    if columns_suffice && fresh.is_none() {
        let batches = reader
            .read_columns(
                f,
                &[schema::TIME, schema::SEVERITY_NUMBER, schema::SERVICE_NAME],
            )
            .await?;
        let filter = filter.clone();
        return Ok(loupe_core::cpu::run(move || {
            for b in &batches {
                count_columns(b, &filter, &mut h);
            }
            h
        })
        .await?);
    }
    let records = if f.index.is_some() {
        let query = candidates_query(filter, terms, f);
        let granules = reader.all_candidates(f, query).await?;
        reader.read_granules(f, &granules).await?
    } else {
        read_records(reader.storage(), f).await?
    };
    let (filter, terms, fresh) = (filter.clone(), terms.to_vec(), fresh.cloned());
    Ok(loupe_core::cpu::run(move || {
        for r in records.iter().filter(|r| filter.matches(r, &terms)) {
            if fresh
                .as_ref()
                .is_some_and(|ids| ids.contains(&super::search::identity(r)))
            {
                continue;
            }
            h.add(r.time_unix_nano, r.severity_number);
        }
        h
    })
    .await?)
}

fn count_columns(b: &arrow_array::RecordBatch, filter: &LogFilter, h: &mut Histogram) {
    let (Some(time), Some(sev), Some(service)) = (
        b.column_by_name(schema::TIME)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>()),
        b.column_by_name(schema::SEVERITY_NUMBER)
            .and_then(|c| c.as_primitive_opt::<Int32Type>()),
        b.column_by_name(schema::SERVICE_NAME)
            .and_then(|c| c.as_dictionary_opt::<Int32Type>()),
    ) else {
        return;
    };
    let names = service.values().as_string_opt::<i32>();
    let wanted: Option<Vec<bool>> = match (&filter.service, names) {
        (Some(s), Some(names)) => Some((0..names.len()).map(|i| names.value(i) == s).collect()),
        _ => None,
    };
    for i in 0..b.num_rows() {
        let t = time.value(i);
        let n = sev.value(i);
        if t < filter.start_unix_nano
            || t > filter.end_unix_nano
            || filter.min_severity.is_some_and(|m| n < m)
            || filter.max_severity.is_some_and(|m| n > m)
        {
            continue;
        }
        if let Some(w) = &wanted
            && (service.is_null(i) || !w[service.keys().value(i) as usize])
        {
            continue;
        }
        h.add(t, n);
    }
}

//! Log search over the catalog's files and the collector's fresh chunks: every record the
//! [`LogFilter`] matches, newest (or oldest) first, at most `limit`.
//!
//! Fresh chunks are taken before the catalog is read, so a batch committed in between is
//! seen twice rather than not at all; identical records are kept once. Files are read
//! newest first (oldest first when asked) and the scan stops once `limit` records are
//! found and no unread file can hold an earlier (later) one. The first file is searched
//! alone (it often holds the whole answer), the rest a few at a time.
//!
//! A file is searched through its index ([`crate::logs::index`]): the index gives candidate
//! rows in time order, only those rows are read, and the same [`LogFilter`] that fresh
//! records go through decides. Files are searched a few at a time, in order. A file without
//! an index, or whose candidates keep failing the check, is read whole.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use loupe_core::TenantId;

use futures::StreamExt;

use crate::catalog::{Catalog, FileEntry};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::logs::filter::LogFilter;
pub use crate::logs::filter::Order;
use crate::logs::format::read_records;
use crate::logs::index::LogIndexReader;
use crate::logs::index::query::candidates_query;
use crate::logs::index::tokens::Term;
use crate::logs::model::LogRecord;
use crate::store::Signal;

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub filter: LogFilter,
    pub limit: usize,
    pub order: Order,
}

/// Granules (of 64 rows) a file's index may offer before the file is read whole instead.
const MAX_GRANULES: usize = 1024;
/// Files searched at once.
const FILES_AT_ONCE: usize = 4;

/// The records of `q`, in its order (ties by service, then body).
pub async fn search(
    catalog: &Catalog,
    reader: &LogIndexReader,
    tenant: &TenantId,
    max_age: Duration,
    fresh: Vec<Arc<Chunk<Vec<LogRecord>>>>,
    q: &LogQuery,
) -> Result<Vec<LogRecord>, StorageError> {
    let terms = q.filter.prepared_terms();
    let filter = q.filter.clone();
    let t = terms.clone();
    let mut hits: Vec<LogRecord> = loupe_core::cpu::run(move || {
        fresh
            .iter()
            .flat_map(|c| c.rows().iter())
            .filter(|r| filter.matches(r, &t))
            .cloned()
            .collect::<Vec<_>>()
    })
    .await?;
    let state = catalog.snapshot(tenant, Signal::Logs, max_age).await?;
    let mut files: Vec<_> = state
        .files()
        .filter(|f| q.filter.may_hold(f))
        .cloned()
        .collect();
    match q.order {
        Order::NewestFirst => files.sort_by_key(|f| std::cmp::Reverse(f.max_time_unix_nano)),
        Order::OldestFirst => files.sort_by_key(|f| f.min_time_unix_nano),
    }
    let terms = &terms;
    // The first file alone: for a common word it often holds the whole answer, and the
    // next files then need no reading at all. The rest a few at a time, in order, while
    // they can still hold a line earlier (oldest first: later) than the `limit`-th found.
    let mut rest = files.split_off(files.len().min(1));
    if let Some(first) = files.first() {
        hits.extend(search_file(reader, first, q, terms).await?);
    }
    if hits.len() >= q.limit {
        sort(&mut hits, q.order);
        hits.truncate(q.limit);
        if let Some(t) = hits.last().map(|r| r.time_unix_nano) {
            rest.retain(|f| match q.order {
                Order::NewestFirst => f.max_time_unix_nano >= t,
                Order::OldestFirst => f.min_time_unix_nano <= t,
            });
        }
    }
    let mut found = futures::stream::iter(rest)
        .map(move |f: Arc<FileEntry>| async move {
            let records = search_file(reader, &f, q, terms).await;
            (f, records)
        })
        .buffered(FILES_AT_ONCE);
    while let Some((f, records)) = found.next().await {
        if hits.len() >= q.limit {
            sort(&mut hits, q.order);
            hits.truncate(q.limit);
            let bound = hits.last().map(|r| r.time_unix_nano);
            let done = match (q.order, bound) {
                (Order::NewestFirst, Some(t)) => f.max_time_unix_nano < t,
                (Order::OldestFirst, Some(t)) => f.min_time_unix_nano > t,
                _ => false,
            };
            if done {
                break;
            }
        }
        hits.extend(records?);
    }
    let mut seen = HashSet::new();
    hits.retain(|r| seen.insert(identity(r)));
    sort(&mut hits, q.order);
    hits.truncate(q.limit);
    Ok(hits)
}

/// The first `q.limit` matches of one file: through its index when it has one, else by
/// reading it whole. The index gives candidate granules in order (newest first: by their
/// latest time); they are read and checked a batch at a time, until `q.limit` matches are
/// in hand and the next granule cannot hold an earlier one (for oldest first: a later one),
/// or none is left.
async fn search_file(
    reader: &LogIndexReader,
    f: &FileEntry,
    q: &LogQuery,
    terms: &[Term],
) -> Result<Vec<LogRecord>, StorageError> {
    let check = |records: Vec<LogRecord>| {
        let (filter, t) = (q.filter.clone(), terms.to_vec());
        loupe_core::cpu::run(move || {
            records
                .into_iter()
                .filter(|r| filter.matches(r, &t))
                .collect::<Vec<_>>()
        })
    };
    if f.index.is_some() {
        let mut fetched: HashSet<u32> = HashSet::new();
        let mut out = Vec::new();
        let mut want = 8;
        while want <= MAX_GRANULES {
            let query = |ids: Option<&_>| candidates_query(&q.filter, terms, f, ids);
            let top = reader.candidates(f, query, q.order, want + 1).await?;
            let next = top.get(want).map(|&(_, t)| t);
            let new: Vec<u32> = top
                .iter()
                .take(want)
                .map(|&(g, _)| g)
                .filter(|g| fetched.insert(*g))
                .collect();
            out.extend(check(reader.read_granules(f, &new).await?).await?);
            let Some(next) = next else {
                return Ok(out);
            };
            if q.limit > 0 && out.len() >= q.limit {
                sort(&mut out, q.order);
                let kth = out[q.limit - 1].time_unix_nano;
                let done = match q.order {
                    Order::NewestFirst => kth >= next,
                    Order::OldestFirst => kth <= next,
                };
                if done {
                    out.truncate(q.limit);
                    return Ok(out);
                }
            }
            want *= 4;
        }
    }
    Ok(check(read_records(reader.storage(), f).await?).await?)
}

/// What makes two stored records the same record.
pub type Identity = (i64, i64, String, String, Option<[u8; 16]>, String);

/// What makes two stored records the same record (a fresh copy and its flushed one).
pub fn identity(r: &LogRecord) -> Identity {
    (
        r.time_unix_nano,
        r.observed_unix_nano,
        r.service_name().to_string(),
        r.body_text().into_owned(),
        r.trace_id,
        r.attributes.to_json(),
    )
}

fn sort(hits: &mut [LogRecord], order: Order) {
    hits.sort_by(|a, b| {
        let by_time = a.time_unix_nano.cmp(&b.time_unix_nano);
        let by_time = match order {
            Order::NewestFirst => by_time.reverse(),
            Order::OldestFirst => by_time,
        };
        by_time
            .then_with(|| a.service_name().cmp(b.service_name()))
            .then_with(|| a.body_text().cmp(&b.body_text()))
    });
}

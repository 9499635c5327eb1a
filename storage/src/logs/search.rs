//! Log search over the catalog's files and the collector's fresh chunks: every record the
//! [`LogFilter`] matches, newest (or oldest) first, at most `limit`.
//!
//! Fresh chunks are taken before the catalog is read, so a batch committed in between is
//! seen twice rather than not at all; identical records are kept once. Files are read
//! newest first (oldest first when asked) and the scan stops once `limit` records are
//! found and no unread file can hold an earlier (later) one.
//!
//! This scan reads and filters whole files; the inverted index (tantivy) replaces it for
//! stored data, with the same [`LogFilter`] on fresh records.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use loupe_core::TenantId;

use crate::catalog::Catalog;
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::logs::filter::LogFilter;
use crate::logs::format::read_records;
use crate::logs::model::LogRecord;
use crate::store::Signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub filter: LogFilter,
    pub limit: usize,
    pub order: Order,
}

/// The records of `q`, in its order (ties by service, then body).
pub async fn search(
    catalog: &Catalog,
    tenant: &TenantId,
    max_age: Duration,
    fresh: Vec<Arc<Chunk<Vec<LogRecord>>>>,
    q: &LogQuery,
) -> Result<Vec<LogRecord>, StorageError> {
    let terms = q.filter.lowered_terms();
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
    let storage = catalog.storage().clone();
    for f in files {
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
        let records = read_records(&storage, &f).await?;
        let (filter, t) = (q.filter.clone(), terms.clone());
        let found = loupe_core::cpu::run(move || {
            records
                .into_iter()
                .filter(|r| filter.matches(r, &t))
                .collect::<Vec<_>>()
        })
        .await?;
        hits.extend(found);
    }
    let mut seen = HashSet::new();
    hits.retain(|r| seen.insert(identity(r)));
    sort(&mut hits, q.order);
    hits.truncate(q.limit);
    Ok(hits)
}

/// What makes two stored records the same record (a fresh copy and its flushed one).
fn identity(r: &LogRecord) -> (i64, i64, String, String, Option<[u8; 16]>, String) {
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

//! The service dependency graph (Jaeger's `/api/dependencies`, and the service map to come):
//! how many spans of service B have a parent span of service A, for A ≠ B.
//!
//! Edges are aggregated per hour of child start time. A whole hour's edges are cached with
//! the ids of the files they came from; files are immutable, so while that set is unchanged
//! the cached edges are the answer, and a flush or a compaction that changes it makes the hour
//! be counted once more. The partial hours at the ends of a range and the spans still in the
//! collector's fresh buffer are counted per call (they are small). A parent is found when it
//! starts at most [`PARENT_LOOKBACK`] before its child's hour in a file that overlaps that hour,
//! or in the fresh buffer; a span whose parent is elsewhere is not counted.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use loupe_storage::TenantId;
use loupe_storage::catalog::FileEntry;
use loupe_storage::model::{SpanId, TraceId};
use loupe_storage::spans::SpanLink;

use crate::error::QueryError;
pub use crate::service::EdgeCounts;
use crate::service::TraceService;

const HOUR: i64 = 3_600_000_000_000;
/// How long before its child's hour a parent may start and still be found.
pub const PARENT_LOOKBACK: i64 = HOUR;
/// The longest range one request aggregates (30 days).
pub const MAX_RANGE: i64 = 30 * 24 * HOUR;
const READ_CONCURRENCY: usize = 8;

impl TraceService {
    /// Cross-service parent → child span counts for children starting in `[start, end]`.
    pub async fn dependencies(
        &self,
        tenant: &TenantId,
        start: i64,
        end: i64,
    ) -> Result<EdgeCounts, QueryError> {
        if end < start {
            return Err(QueryError::BadRequest(
                "the range ends before it starts".into(),
            ));
        }
        let start = start.max(end.saturating_sub(MAX_RANGE));
        let chunks = self.fresh.chunks(tenant);
        let from = start.saturating_sub(PARENT_LOOKBACK);
        let fresh: Vec<SpanLink> = loupe_core::cpu::run(move || {
            loupe_storage::spans::links::links_in(
                chunks.iter().map(|c| c.rows().batch()),
                (from, end),
            )
        })
        .await?;
        let mut total = EdgeCounts::new();
        let mut hour = start.div_euclid(HOUR) * HOUR;
        while hour <= end {
            let (lo, hi) = (start.max(hour), end.min(hour + HOUR - 1));
            let near: Vec<SpanLink> = fresh
                .iter()
                .filter(|l| l.start_unix_nano >= lo - PARENT_LOOKBACK && l.start_unix_nano <= hi)
                .cloned()
                .collect();
            let whole = lo == hour && hi == hour + HOUR - 1;
            for (edge, n) in self.hour_edges(tenant, (lo, hi), whole, near).await?.iter() {
                *total.entry(edge.clone()).or_default() += n;
            }
            hour += HOUR;
        }
        Ok(total)
    }

    async fn hour_edges(
        &self,
        tenant: &TenantId,
        (lo, hi): (i64, i64),
        whole: bool,
        fresh: Vec<SpanLink>,
    ) -> Result<Arc<EdgeCounts>, QueryError> {
        let reader = &self.reader;
        let cache = &self.edges;
        self.with_files(tenant, |files| {
            let fresh = fresh.clone();
            async move {
                let files: Vec<Arc<FileEntry>> =
                    files.into_iter().filter(|f| f.overlaps(lo, hi)).collect();
                let mut ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
                ids.sort_unstable();
                let cacheable = whole && fresh.is_empty();
                if cacheable && let Some(edges) = cache.get(tenant, lo, &ids) {
                    return Ok(edges);
                }
                let mut links = fresh;
                let mut reads = futures::stream::iter(files)
                    .map(|f| async move { reader.span_links(&f, (lo - PARENT_LOOKBACK, hi)).await })
                    .buffer_unordered(READ_CONCURRENCY);
                while let Some(read) = reads.next().await {
                    links.extend(read?);
                }
                let edges = Arc::new(loupe_core::cpu::run(move || count(&links, lo, hi)).await?);
                if cacheable {
                    cache.put(tenant, lo, ids, edges.clone());
                }
                Ok(edges)
            }
        })
        .await
    }
}

/// Counts each distinct child span starting in `[lo, hi]` whose parent is in `links` and ran
/// in another service.
pub fn count(links: &[SpanLink], lo: i64, hi: i64) -> EdgeCounts {
    let mut by_id: HashMap<(TraceId, SpanId), &SpanLink> = HashMap::with_capacity(links.len());
    for l in links {
        by_id.insert((l.trace_id, l.span_id), l);
    }
    let mut edges: HashMap<(&str, &str), u64> = HashMap::new();
    for l in by_id.values() {
        if l.start_unix_nano < lo || l.start_unix_nano > hi {
            continue;
        }
        let Some(parent) = l.parent_span_id.and_then(|p| by_id.get(&(l.trace_id, p))) else {
            continue;
        };
        if parent.service != l.service {
            *edges.entry((&parent.service, &l.service)).or_default() += 1;
        }
    }
    edges
        .into_iter()
        .map(|((p, c), n)| ((p.to_string(), c.to_string()), n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_storage::catalog::{Catalog, WalSource};
    use loupe_storage::conformance::{add, chunks, span};
    use loupe_storage::fresh::NoFresh;
    use loupe_storage::lifecycle::write_file;
    use loupe_storage::spans::{SpanFormat, SpanReader};
    use loupe_storage::store::Storage;
    use std::time::Duration;

    fn edges(list: &[(&str, &str, u64)]) -> EdgeCounts {
        list.iter()
            .map(|(p, c, n)| ((p.to_string(), c.to_string()), *n))
            .collect()
    }

    #[tokio::test]
    async fn edges_join_parents_across_files_and_hours_are_cached_by_their_files() {
        let storage = Storage::in_memory();
        let catalog = Catalog::new(storage.clone(), "w");
        let reader = Arc::new(SpanReader::new(storage.clone()));
        let format = Arc::new(SpanFormat::new(reader.clone()));
        let tenant = TenantId::new("t").unwrap();
        let t0 = 10 * HOUR;
        // Trace 1: web → api → db, the children flushed in a later file than their parent.
        // Trace 2: web → api twice, and api → api (same service, not an edge).
        let files = vec![
            vec![span(1, 1, None, "web", "GET /", t0 + 10, 100)],
            vec![
                span(1, 2, Some(1), "api", "handle", t0 + 20, 50),
                span(1, 3, Some(2), "db", "query", t0 + 30, 5),
            ],
            vec![
                span(2, 1, None, "web", "GET /", t0 + HOUR + 10, 100),
                span(2, 2, Some(1), "api", "a", t0 + HOUR + 20, 10),
                span(2, 3, Some(1), "api", "b", t0 + HOUR + 40, 10),
                span(2, 4, Some(3), "api", "inner", t0 + HOUR + 45, 1),
            ],
        ];
        for (i, spans) in files.into_iter().enumerate() {
            let source = vec![WalSource {
                writer: "w".into(),
                max_seq: i as u64 + 1,
            }];
            let e = write_file(&catalog, &format, &tenant, chunks(spans), source)
                .await
                .unwrap();
            add(&catalog, &tenant, vec![e]).await;
        }
        let svc = TraceService::new(catalog, reader, Arc::new(NoFresh), Duration::ZERO);
        let all = (t0, t0 + 2 * HOUR - 1);
        let want = edges(&[("api", "db", 1), ("web", "api", 3)]);
        assert_eq!(svc.dependencies(&tenant, all.0, all.1).await.unwrap(), want);
        assert_eq!(svc.edges.len(), 2, "two whole hours cached");
        // Served from the cache the second time, with the same answer.
        assert_eq!(svc.dependencies(&tenant, all.0, all.1).await.unwrap(), want);
        // A range that ends inside the second hour counts only children in it.
        let part = svc.dependencies(&tenant, t0, t0 + HOUR + 30).await.unwrap();
        assert_eq!(part, edges(&[("api", "db", 1), ("web", "api", 2)]));
        assert!(svc.dependencies(&tenant, 10, 5).await.is_err());
    }

    #[test]
    fn duplicates_count_once() {
        let s = |t, id, parent, svc| SpanLink::of(&span(t, id, parent, svc, "x", 100, 1));
        let links = vec![
            s(1, 1, None, "a"),
            s(1, 2, Some(1), "b"),
            s(1, 2, Some(1), "b"),
        ];
        assert_eq!(count(&links, 0, 1000), edges(&[("a", "b", 1)]));
        assert_eq!(
            count(&links, 0, 10),
            EdgeCounts::new(),
            "children outside the range"
        );
    }
}

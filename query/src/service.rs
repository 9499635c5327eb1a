//! The trace query domain service, transport-agnostic: trace by id, search, services and
//! operations. Reads the catalog (pruning by tenant, time, service and the per-file trace-id
//! filter), the span files it selects, and the collector's fresh data when in the same process.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use loupe_storage::TenantId;
use loupe_storage::catalog::{Catalog, FileEntry};
use loupe_storage::fresh::FreshSpans;
use loupe_storage::model::{SpanKind, SpanRecord, TraceId};
use loupe_storage::spans::{SpanFilter, SpanReader};
use loupe_storage::store::Signal;

use crate::error::QueryError;

/// Files read at once per query.
const READ_CONCURRENCY: usize = 8;

pub struct TraceService {
    catalog: Catalog,
    reader: SpanReader,
    fresh: Arc<dyn FreshSpans>,
    /// How stale the cached catalog may be (commits by this process are seen at once).
    catalog_max_age: Duration,
}

/// A whole trace, spans ordered by start time.
pub type Trace = Vec<SpanRecord>;

impl TraceService {
    pub fn new(catalog: Catalog, fresh: Arc<dyn FreshSpans>, catalog_max_age: Duration) -> Self {
        let reader = SpanReader::new(catalog.storage().clone());
        TraceService {
            catalog,
            reader,
            fresh,
            catalog_max_age,
        }
    }

    async fn files(&self, tenant: &TenantId) -> Result<Vec<Arc<FileEntry>>, QueryError> {
        let state = self.catalog.snapshot(tenant, self.catalog_max_age).await?;
        Ok(state.files_of(Signal::Traces).cloned().collect())
    }

    /// Every span of each trace in `ids` (absent traces are absent from the map).
    pub async fn traces(
        &self,
        tenant: &TenantId,
        ids: &[TraceId],
    ) -> Result<HashMap<TraceId, Trace>, QueryError> {
        let started = Instant::now();
        let idset: HashSet<TraceId> = ids.iter().copied().collect();
        let files: Vec<Arc<FileEntry>> = self
            .files(tenant)
            .await?
            .into_iter()
            .filter(|f| {
                ids.iter()
                    .any(|id| f.trace_filter.as_ref().is_none_or(|tf| tf.may_contain(id)))
            })
            .collect();
        let mut out: HashMap<TraceId, Trace> = HashMap::new();
        let (idset, reader) = (&idset, &self.reader);
        let mut reads = futures::stream::iter(files)
            .map(|f: Arc<FileEntry>| async move { reader.read_traces(&f, idset).await })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some(spans) = reads.next().await {
            for s in spans? {
                out.entry(s.trace_id).or_default().push(s);
            }
        }
        self.fresh.trace_spans(tenant, ids, &mut |s| {
            out.entry(s.trace_id).or_default().push(s.clone());
        });
        for spans in out.values_mut() {
            spans.sort_by(|a, b| {
                (a.start_unix_nano, a.span_id).cmp(&(b.start_unix_nano, b.span_id))
            });
            // A span can be both fresh and flushed for a moment: keep one copy.
            let mut seen = HashSet::new();
            spans.retain(|s| seen.insert(s.span_id));
        }
        metrics::histogram!("loupe_query_seconds", "op" => "trace_by_id")
            .record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    pub async fn trace(&self, tenant: &TenantId, id: TraceId) -> Result<Option<Trace>, QueryError> {
        Ok(self.traces(tenant, &[id]).await?.remove(&id))
    }

    /// The `limit` most recent traces with a span matching `filter`, newest first.
    pub async fn search(
        &self,
        tenant: &TenantId,
        filter: &SpanFilter,
        limit: usize,
    ) -> Result<Vec<(TraceId, Trace)>, QueryError> {
        let started = Instant::now();
        let mut files: Vec<Arc<FileEntry>> = self
            .files(tenant)
            .await?
            .into_iter()
            .filter(|f| f.overlaps(filter.start_unix_nano, filter.end_unix_nano))
            .filter(|f| {
                filter
                    .service
                    .as_ref()
                    .is_none_or(|s| f.services.iter().any(|x| x == s))
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.max_time_unix_nano));

        let mut hits: HashMap<TraceId, i64> = HashMap::new();
        let add = |hits: &mut HashMap<TraceId, i64>, id: TraceId, t: i64| {
            let e = hits.entry(id).or_insert(t);
            *e = (*e).max(t);
        };
        self.fresh.for_each_span(tenant, &mut |s| {
            if filter.matches(s) {
                add(&mut hits, s.trace_id, s.start_unix_nano);
            }
        });
        for chunk in files.chunks(READ_CONCURRENCY) {
            if hits.len() >= limit {
                // Stop once no remaining file can hold a newer match than the limit-th hit.
                let mut starts: Vec<i64> = hits.values().copied().collect();
                starts.sort_unstable_by(|a, b| b.cmp(a));
                if chunk[0].max_time_unix_nano < starts[limit - 1] {
                    break;
                }
            }
            let results =
                futures::future::join_all(chunk.iter().map(|f| self.reader.scan(f, filter))).await;
            for r in results {
                for (id, t) in r? {
                    add(&mut hits, id, t);
                }
            }
        }
        let mut ranked: Vec<(TraceId, i64)> = hits.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        let ids: Vec<TraceId> = ranked.iter().map(|(id, _)| *id).collect();
        let mut traces = self.traces(tenant, &ids).await?;
        let out = ids
            .into_iter()
            .filter_map(|id| traces.remove(&id).map(|t| (id, t)))
            .collect();
        metrics::histogram!("loupe_query_seconds", "op" => "search")
            .record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Services with spans in the time range.
    pub async fn services(
        &self,
        tenant: &TenantId,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<String>, QueryError> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for f in self.files(tenant).await? {
            if range.is_none_or(|(s, e)| f.overlaps(s, e)) {
                out.extend(f.services.iter().cloned());
            }
        }
        self.fresh.for_each_span(tenant, &mut |s| {
            if !out.contains(s.service_name()) {
                out.insert(s.service_name().to_string());
            }
        });
        Ok(out.into_iter().collect())
    }

    /// Distinct (span name, kind) of a service.
    pub async fn operations(
        &self,
        tenant: &TenantId,
        service: &str,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<(String, SpanKind)>, QueryError> {
        let files: Vec<_> = self
            .files(tenant)
            .await?
            .into_iter()
            .filter(|f| {
                range.is_none_or(|(s, e)| f.overlaps(s, e))
                    && f.services.iter().any(|s| s == service)
            })
            .collect();
        let mut out: BTreeSet<(String, u8)> = BTreeSet::new();
        let reader = &self.reader;
        let mut reads = futures::stream::iter(files)
            .map(|f: Arc<FileEntry>| async move { reader.operations(&f).await })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some(ops) = reads.next().await {
            for (svc, name, kind) in ops?.iter() {
                if svc == service {
                    out.insert((name.clone(), *kind as u8));
                }
            }
        }
        self.fresh.for_each_span(tenant, &mut |s| {
            if s.service_name() == service {
                out.insert((s.name.clone(), s.kind as u8));
            }
        });
        Ok(out
            .into_iter()
            .map(|(n, k)| (n, SpanKind::from_i32(k as i32)))
            .collect())
    }
}

//! The trace query domain service, transport-agnostic: trace by id, search, services and
//! operations. Reads the catalog (pruning by tenant, time, service and the per-file trace-id
//! filter), the span files it selects, and the collector's fresh data when in the same process.
//!
//! - Fresh data is a snapshot of chunks taken under the collector's lock and scanned on the
//!   CPU pool; a lookup by id skips chunks that do not mention the id. The snapshot is taken
//!   before the catalog is read: a batch leaves the fresh data only after its commit is in
//!   the (shared) catalog, so every span is in one of the two.
//! - The catalog may be up to `catalog_max_age` stale (the config keeps that below the
//!   garbage-collection grace). A file that vanished anyway (collected after a newer catalog
//!   removed it) makes the query reload the catalog and run once more, so it answers from the
//!   files that replaced it instead of failing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use loupe_storage::catalog::{Catalog, FileEntry};
use loupe_storage::fresh::Fresh;
use loupe_storage::model::{SpanKind, SpanRecord, TraceId};
use loupe_storage::spans::decode::services_in;
use loupe_storage::spans::read::operations_in;
use loupe_storage::spans::{Projection, SpanFilter, SpanReader, SpanRows};
use loupe_storage::store::Signal;
use loupe_storage::{StorageError, TenantId};

use crate::error::QueryError;

/// Files read at once per query.
const READ_CONCURRENCY: usize = 8;

pub struct TraceService {
    catalog: Catalog,
    pub(crate) reader: Arc<SpanReader>,
    pub(crate) fresh: Arc<dyn Fresh<SpanRows>>,
    /// How stale the cached catalog may be (commits by this process are seen at once).
    catalog_max_age: Duration,
    /// Service-graph edges per hour (see [`crate::dependencies`]).
    pub(crate) edges: EdgeCache,
}

/// A whole trace, spans ordered by start time.
pub type Trace = Vec<SpanRecord>;

impl TraceService {
    /// `reader` may be shared with the collector's compaction (one footer cache).
    pub fn new(
        catalog: Catalog,
        reader: Arc<SpanReader>,
        fresh: Arc<dyn Fresh<SpanRows>>,
        catalog_max_age: Duration,
    ) -> Self {
        TraceService {
            catalog,
            reader,
            fresh,
            catalog_max_age,
            edges: Default::default(),
        }
    }

    async fn files(&self, tenant: &TenantId) -> Result<Vec<Arc<FileEntry>>, QueryError> {
        let state = self
            .catalog
            .snapshot(tenant, Signal::Traces, self.catalog_max_age)
            .await?;
        Ok(state.files().cloned().collect())
    }

    /// The tenant's catalog of `signal`, at most `catalog_max_age` old.
    pub async fn catalog_state(
        &self,
        tenant: &TenantId,
        signal: Signal,
    ) -> Result<Arc<loupe_storage::catalog::CatalogState>, QueryError> {
        Ok(self
            .catalog
            .snapshot(tenant, signal, self.catalog_max_age)
            .await?)
    }

    /// Runs `op` over the catalog's files; if a file it reads has vanished, reloads the
    /// catalog and runs it once more.
    pub(crate) async fn with_files<'a, T, F, Fut>(
        &'a self,
        tenant: &TenantId,
        op: F,
    ) -> Result<T, QueryError>
    where
        F: Fn(Vec<Arc<FileEntry>>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>> + 'a,
    {
        match op(self.files(tenant).await?).await {
            Err(e) if e.is_missing() => {
                metrics::counter!("loupe_query_catalog_reloads_total").increment(1);
                tracing::info!(%tenant, error = %e, "a data file vanished during a query; reloading the catalog");
                let state = self.catalog.refresh(tenant, Signal::Traces).await?;
                Ok(op(state.files().cloned().collect()).await?)
            }
            other => Ok(other?),
        }
    }

    /// Every span of each trace in `ids` (absent traces are absent from the map).
    pub async fn traces(
        &self,
        tenant: &TenantId,
        ids: &[TraceId],
    ) -> Result<HashMap<TraceId, Trace>, QueryError> {
        self.traces_projected(tenant, ids, None).await
    }

    /// [`TraceService::traces`] reading only what `projection` names of the files (`None`:
    /// all); fresh spans come whole.
    pub async fn traces_projected(
        &self,
        tenant: &TenantId,
        ids: &[TraceId],
        projection: Option<&Projection>,
    ) -> Result<HashMap<TraceId, Trace>, QueryError> {
        let started = Instant::now();
        let idset: HashSet<TraceId> = ids.iter().copied().collect();
        let mut out: HashMap<TraceId, Trace> = HashMap::new();
        // Fresh data first: a batch committed after this snapshot is in the catalog read next.
        let chunks = self.fresh.chunks(tenant);
        for s in self.stored_spans(tenant, &idset, projection).await? {
            out.entry(s.trace_id).or_default().push(s);
        }
        let wanted: Vec<TraceId> = ids.to_vec();
        let fresh = loupe_core::cpu::run(move || {
            let mut spans = Vec::new();
            for c in chunks.iter().filter(|c| c.mentions_any(&wanted)) {
                let ids: Vec<TraceId> = c.rows().trace_id_column().collect();
                spans.extend(c.rows().decode(|i| wanted.contains(&ids[i]))?);
            }
            Ok::<_, StorageError>(spans)
        })
        .await??;
        for s in fresh {
            out.entry(s.trace_id).or_default().push(s);
        }
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

    /// Spans of `ids` in the committed files.
    async fn stored_spans(
        &self,
        tenant: &TenantId,
        ids: &HashSet<TraceId>,
        projection: Option<&Projection>,
    ) -> Result<Vec<SpanRecord>, QueryError> {
        let reader = &self.reader;
        self.with_files(tenant, |files| async move {
            let files = files.into_iter().filter(|f| {
                ids.iter()
                    .any(|id| f.trace_filter.as_ref().is_none_or(|tf| tf.may_contain(id)))
            });
            let mut reads = futures::stream::iter(files)
                .map(|f: Arc<FileEntry>| async move {
                    reader.read_traces_projected(&f, ids, projection).await
                })
                .buffer_unordered(READ_CONCURRENCY);
            let mut out = Vec::new();
            while let Some(spans) = reads.next().await {
                out.extend(spans?);
            }
            Ok(out)
        })
        .await
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
        self.search_projected(tenant, filter, limit, None).await
    }

    /// [`TraceService::search`], reading only what `projection` names of the traces.
    pub async fn search_projected(
        &self,
        tenant: &TenantId,
        filter: &SpanFilter,
        limit: usize,
        projection: Option<&Projection>,
    ) -> Result<Vec<(TraceId, Trace)>, QueryError> {
        let started = Instant::now();
        let ids: Vec<TraceId> = self
            .ranked_hits(tenant, filter, limit)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        metrics::histogram!("loupe_query_seconds", "op" => "search_scan")
            .record(started.elapsed().as_secs_f64());
        let mut traces = self.traces_projected(tenant, &ids, projection).await?;
        let out = ids
            .into_iter()
            .filter_map(|id| traces.remove(&id).map(|t| (id, t)))
            .collect();
        metrics::histogram!("loupe_query_seconds", "op" => "search")
            .record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// The `limit` traces with the most recent span matching `filter`: (id, that span's
    /// start), newest first, ties by id.
    pub async fn ranked_hits(
        &self,
        tenant: &TenantId,
        filter: &SpanFilter,
        limit: usize,
    ) -> Result<Vec<(TraceId, i64)>, QueryError> {
        let (hits, _) = self.counted_hits(tenant, filter, limit).await?;
        Ok(hits.into_iter().map(|h| (h.id, h.latest)).collect())
    }

    /// [`TraceService::ranked_hits`] with how many spans of each trace matched. The counts are
    /// exact (for spans in the range) when the scan read every file of the range, which the
    /// second value says; when it stopped early, older files were not counted.
    pub async fn counted_hits(
        &self,
        tenant: &TenantId,
        filter: &SpanFilter,
        limit: usize,
    ) -> Result<(Vec<Hit>, bool), QueryError> {
        let chunks = self.fresh.chunks(tenant);
        let f = filter.clone();
        let fresh_hits = loupe_core::cpu::run(move || {
            let mut hits: HashMap<TraceId, Hit> = HashMap::new();
            // The file predicate on the fresh rows: one code path for both.
            for c in &chunks {
                for (trace_id, start) in f.matching_rows(c.rows().batch()) {
                    add_hit(&mut hits, trace_id, start);
                }
            }
            hits
        })
        .await?;
        let reader = &self.reader;
        let (hits, complete) = self
            .with_files(tenant, |files| {
                let mut hits = fresh_hits.clone();
                async move {
                    let mut complete = true;
                    let mut files: Vec<Arc<FileEntry>> = files
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
                    for chunk in files.chunks(READ_CONCURRENCY) {
                        if hits.len() >= limit {
                            // Stop once no remaining file can hold a newer match than the
                            // limit-th hit.
                            let mut starts: Vec<i64> = hits.values().map(|h| h.latest).collect();
                            starts.sort_unstable_by(|a, b| b.cmp(a));
                            if chunk[0].max_time_unix_nano < starts[limit - 1] {
                                complete = false;
                                break;
                            }
                        }
                        let results =
                            futures::future::join_all(chunk.iter().map(|f| reader.scan(f, filter)))
                                .await;
                        for r in results {
                            for (id, t) in r? {
                                add_hit(&mut hits, id, t);
                            }
                        }
                    }
                    Ok((hits, complete))
                }
            })
            .await?;
        let mut ranked: Vec<Hit> = hits.into_values().collect();
        ranked.sort_unstable_by(|a, b| b.latest.cmp(&a.latest).then(a.id.cmp(&b.id)));
        ranked.truncate(limit);
        Ok((ranked, complete))
    }

    /// Services with spans in the time range.
    pub async fn services(
        &self,
        tenant: &TenantId,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<String>, QueryError> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        let chunks = self.fresh.chunks(tenant);
        for f in self.files(tenant).await? {
            if range.is_none_or(|(s, e)| f.overlaps(s, e)) {
                out.extend(f.services.iter().cloned());
            }
        }
        let fresh =
            loupe_core::cpu::run(move || services_in(chunks.iter().map(|c| c.rows().batch())))
                .await?;
        out.extend(fresh);
        Ok(out.into_iter().collect())
    }

    /// Distinct (span name, kind) of a service.
    pub async fn operations(
        &self,
        tenant: &TenantId,
        service: &str,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<(String, SpanKind)>, QueryError> {
        let reader = &self.reader;
        let chunks = self.fresh.chunks(tenant);
        let mut out: BTreeSet<(String, u8)> = self
            .with_files(tenant, |files| async move {
                let files = files.into_iter().filter(|f| {
                    range.is_none_or(|(s, e)| f.overlaps(s, e))
                        && f.services.iter().any(|s| s == service)
                });
                let mut out: BTreeSet<(String, u8)> = BTreeSet::new();
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
                Ok(out)
            })
            .await?;
        let svc = service.to_string();
        let fresh = loupe_core::cpu::run(move || {
            operations_in(chunks.iter().map(|c| c.rows().batch()))
                .into_iter()
                .filter(|(s, ..)| *s == svc)
                .map(|(_, name, kind)| (name, kind as u8))
                .collect::<BTreeSet<(String, u8)>>()
        })
        .await?;
        out.extend(fresh);
        Ok(out
            .into_iter()
            .map(|(n, k)| (n, SpanKind::from_i32(k as i32)))
            .collect())
    }
}

/// A trace that a search's span predicate matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: TraceId,
    /// Start of its newest matching span.
    pub latest: i64,
    /// Its matching spans (a span both fresh and flushed may count twice).
    pub spans: u32,
}

fn add_hit(hits: &mut HashMap<TraceId, Hit>, id: TraceId, t: i64) {
    let e = hits.entry(id).or_insert(Hit {
        id,
        latest: t,
        spans: 0,
    });
    e.latest = e.latest.max(t);
    e.spans += 1;
}

/// Service-graph edges: (parent service, child service) → calls (see [`crate::dependencies`]).
pub type EdgeCounts = BTreeMap<(String, String), u64>;

/// Whole hours of edges kept at most (per process).
const EDGE_CACHE_ENTRIES: usize = 8192;

/// A whole hour's edges and the ids of the files they were counted from.
type CountedHour = (Vec<String>, Arc<EdgeCounts>);

/// Whole hours already counted, per tenant and hour start.
#[derive(Default)]
pub struct EdgeCache {
    hours: Mutex<HashMap<(TenantId, i64), CountedHour>>,
}

impl EdgeCache {
    /// Whole hours cached.
    pub fn len(&self) -> usize {
        self.hours.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EdgeCache {
    pub(crate) fn get(
        &self,
        tenant: &TenantId,
        hour: i64,
        files: &[String],
    ) -> Option<Arc<EdgeCounts>> {
        let hours = self.hours.lock().unwrap_or_else(|e| e.into_inner());
        hours
            .get(&(tenant.clone(), hour))
            .filter(|(ids, _)| ids == files)
            .map(|(_, e)| e.clone())
    }

    pub(crate) fn put(
        &self,
        tenant: &TenantId,
        hour: i64,
        files: Vec<String>,
        edges: Arc<EdgeCounts>,
    ) {
        let mut hours = self.hours.lock().unwrap_or_else(|e| e.into_inner());
        if hours.len() >= EDGE_CACHE_ENTRIES {
            hours.clear();
        }
        hours.insert((tenant.clone(), hour), (files, edges));
    }
}

#[cfg(test)]
mod tests {
    use loupe_storage::catalog::WalSource;
    use loupe_storage::conformance::{add, chunks, compact_spans, span};
    use loupe_storage::fresh::NoFresh;
    use loupe_storage::lifecycle::lease::Held;
    use loupe_storage::lifecycle::{collect_garbage, write_file};
    use loupe_storage::spans::SpanFormat;
    use loupe_storage::store::Storage;

    use super::*;

    #[tokio::test]
    async fn a_query_whose_files_vanished_reloads_the_catalog_and_answers() {
        let storage = Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let writer = Catalog::new(storage.clone(), "w");
        let reader = Arc::new(SpanReader::new(storage.clone()));
        let format = Arc::new(SpanFormat::new(reader.clone()));
        let t0 = 1_700_000_000_000_000_000;
        for f in 0..4u8 {
            let spans = vec![span(7, f + 1, None, "svc", "op", t0 + f as i64, 10)];
            let source = vec![WalSource {
                writer: "w".into(),
                max_seq: f as u64 + 1,
            }];
            let e = write_file(&writer, &format, &tenant, chunks(spans), source)
                .await
                .unwrap();
            add(&writer, &tenant, vec![e]).await;
        }
        // A query role whose cached catalog may be an hour old.
        let service = TraceService::new(
            Catalog::new(storage.clone(), "q"),
            Arc::new(SpanReader::new(storage.clone())),
            Arc::new(NoFresh),
            Duration::from_secs(3600),
        );
        let id = [7u8; 16];
        assert_eq!(service.trace(&tenant, id).await.unwrap().unwrap().len(), 4);
        // Compaction replaces the four files and garbage collection deletes them at once.
        assert_eq!(compact_spans(&writer, &format, &tenant).await, 1);
        let lease = Held::exclusive(&tenant);
        let gone = collect_garbage(&writer, &tenant, Signal::Traces, Duration::ZERO, &lease)
            .await
            .unwrap();
        assert_eq!(gone, 4);
        // The stale catalog names deleted files: the query reloads and answers in full.
        assert_eq!(service.trace(&tenant, id).await.unwrap().unwrap().len(), 4);
        let filter = SpanFilter {
            start_unix_nano: t0 - 1,
            end_unix_nano: t0 + 1_000_000,
            ..Default::default()
        };
        let found = service.search(&tenant, &filter, 10).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.len(), 4);
        assert_eq!(
            service
                .operations(&tenant, "svc", None)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

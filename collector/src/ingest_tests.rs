//! Ingester tests: the order of hand-over and commit under interleavings, the trim bound,
//! replay (skip, exactly once, bounded memory, a failing tenant isolated and retried),
//! hold-back after a failed flush, and the order of syncs before the WAL is trimmed.

use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::task::Context;

use loupe_storage::fresh::Fresh;
use loupe_storage::spans::SpanReader;
use loupe_storage::store::Storage;
use loupe_storage::synced::{FsSyncer, Syncer};
use loupe_storage::testing::FaultStore;
use loupe_wal::{Recovery, WalConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;
use crate::otlp::Encoding;
use crate::traces;

const WRITER: &str = "collector-test";

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// An export of `n` spans of trace `id`.
fn request(id: u8, n: u8) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 60_000_000_000;
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![id; 16],
            span_id: vec![i + 1; 8],
            name: format!("op-{i}"),
            start_time_unix_nano: now + i as u64,
            end_time_unix_nano: now + 1000,
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(req.encode_to_vec())
}

struct Node {
    ingester: Arc<Ingester>,
    recovery: Arc<Recovery>,
}

fn open_with(wal_dir: &Path, storage: &Storage, limits: IngestLimits, segment: u64) -> Node {
    let mut cfg = WalConfig::new(wal_dir);
    cfg.segment_bytes = segment;
    let (wal, recovery) = Wal::open(cfg).unwrap();
    let catalog = Catalog::new(storage.clone(), WRITER);
    let spans = Arc::new(SpanFormat::new(Arc::new(SpanReader::new(storage.clone()))));
    Node {
        ingester: Arc::new(Ingester::new(
            wal,
            catalog,
            spans,
            Arc::new(loupe_storage::logs::LogFormat::new(Arc::new(
                loupe_storage::logs::index::LogIndexReader::new(storage.clone()),
            ))),
            metric_format(storage),
            limits,
        )),
        recovery: Arc::new(recovery),
    }
}

fn open(wal_dir: &Path, storage: &Storage) -> Node {
    open_with(wal_dir, storage, IngestLimits::default(), 64 << 20)
}

async fn export(ing: &Ingester, t: &TenantId, body: Bytes) -> Result<u64, IngestError> {
    let d = traces::decode_request(body, Encoding::Protobuf, ing.time_window())?;
    Ok(traces::export(ing, t, d, "test").await?.accepted)
}

/// Rows of `t` in committed files.
async fn committed_rows(storage: &Storage, t: &TenantId) -> u64 {
    let c = Catalog::new(storage.clone(), "reader");
    c.refresh(t, Signal::Traces).await.unwrap().totals().0
}

/// Trace ids (first byte) in the fresh batches of `t`.
fn fresh_traces(ing: &Ingester, t: &TenantId) -> Vec<u8> {
    let mut ids: Vec<u8> = ing
        .traces()
        .batcher()
        .chunks(t)
        .iter()
        .flat_map(|c| c.rows().trace_id_column().map(|t| t[0]).collect::<Vec<_>>())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_whose_handler_never_resumes_is_still_committed_in_wal_order() {
    // The interleaving that lost data: export A gets seq 1, B gets seq 2; A's handler is
    // descheduled right after its append is acknowledged; B completes and a flush commits
    // max_seq 2; then the process dies. A must be in that file (or replayed), never skipped.
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::in_memory();
    let t = tenant("t");
    let node = open(dir.path(), &storage);
    let ing = node.ingester.clone();
    ing.replay(node.recovery.clone()).await;

    let d = traces::decode_request(request(0xA, 3), Encoding::Protobuf, ing.time_window()).unwrap();
    let mut a = Box::pin(traces::export(&ing, &t, d, "test"));
    let waker = futures::task::noop_waker();
    // Usually pending (waiting for its WAL ack). On a fast disk the ack can already be there
    // and A completes in this one poll; what follows must hold either way, so only the
    // interleaving is not guaranteed, never the outcome.
    let _ = a.as_mut().poll(&mut Context::from_waker(&waker));
    // A is durable (and acknowledged by the WAL), but its handler is never polled again.
    while ing.wal().durable_below() <= 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(export(&ing, &t, request(0xB, 2)).await.unwrap(), 2);
    assert_eq!(ing.flush().await, 1);
    drop(a);
    let rows = committed_rows(&storage, &t).await;
    assert_eq!(
        rows, 5,
        "A was handed over before B, so B's commit holds it too"
    );

    // Crash and restart: nothing is replayed twice, nothing is missing.
    drop((ing, node));
    let node = open(dir.path(), &storage);
    let report = node.ingester.replay(node.recovery.clone()).await;
    assert_eq!(report.replayed, 0, "{report:?}");
    assert_eq!(committed_rows(&storage, &t).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trim_bound_never_passes_a_record_only_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, storage) = FaultStore::in_memory();
    let t = tenant("t");
    // Segments of one group each, so trims have closed segments to delete.
    let node = open_with(dir.path(), &storage, IngestLimits::default(), 1);
    let ing = node.ingester.clone();
    assert_eq!(ing.trim_bound(), 0, "nothing is trimmed before replay");
    assert!(matches!(
        ing.check_capacity(&t, Signal::Traces),
        Err(IngestError::Overloaded(_))
    ));
    ing.replay(node.recovery.clone()).await;
    assert!(ing.check_capacity(&t, Signal::Traces).is_ok());
    let s1 = ing.wal().durable_below();
    export(&ing, &t, request(1, 1)).await.unwrap();
    assert_eq!(
        ing.trim_bound(),
        s1,
        "buffered: the bound stays at its record"
    );
    // The store is down: the flush fails, the batch is held back, the bound stays.
    faults.fail("");
    assert_eq!(ing.flush().await, 0);
    export(&ing, &t, request(2, 1)).await.unwrap();
    assert_eq!(ing.flush().await, 0);
    assert_eq!(ing.trim_bound(), s1);
    assert_eq!(fresh_traces(&ing, &t), vec![1, 2]);
    // Back up: both commit, in order, and the bound moves past them.
    faults.heal();
    assert_eq!(ing.flush().await, 2);
    assert_eq!(ing.trim_bound(), ing.wal().durable_below());
    assert!(ing.trim_bound() > s1 + 1);
    let state = ing.catalog().refresh(&t, Signal::Traces).await.unwrap();
    let mut seqs: Vec<u64> = state
        .files()
        .flat_map(|f| f.sources.iter().map(|s| s.max_seq))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![s1, s1 + 1], "one file per batch, in WAL order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_skips_what_is_committed_and_rebuffers_the_rest_once() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::in_memory();
    let t = tenant("t");
    {
        let node = open(dir.path(), &storage);
        node.ingester.replay(node.recovery.clone()).await;
        for id in 1..=3 {
            export(&node.ingester, &t, request(id, 2)).await.unwrap();
        }
        node.ingester.flush().await;
        for id in 4..=5 {
            export(&node.ingester, &t, request(id, 2)).await.unwrap();
        }
    }
    // Replay twice (a restart during replay): the second run must not duplicate.
    for _ in 0..2 {
        let node = open(dir.path(), &storage);
        let report = node.ingester.replay(node.recovery.clone()).await;
        assert_eq!((report.replayed, report.skipped), (2, 3), "{report:?}");
        assert_eq!(fresh_traces(&node.ingester, &t), vec![4, 5]);
    }
    let node = open(dir.path(), &storage);
    node.ingester.replay(node.recovery.clone()).await;
    node.ingester.flush().await;
    assert_eq!(
        committed_rows(&storage, &t).await,
        10,
        "every span exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_streams_within_the_buffer_budget_and_flushes_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::in_memory();
    let t = tenant("t");
    let one = request(0, 20).len() as u64;
    {
        let node = open_with(dir.path(), &storage, IngestLimits::default(), 4096);
        node.ingester.replay(node.recovery.clone()).await;
        for id in 1..=60 {
            export(&node.ingester, &t, request(id, 20)).await.unwrap();
        }
    }
    let limits = IngestLimits {
        max_buffer_bytes: 5 * one,
        ..Default::default()
    };
    let node = open_with(dir.path(), &storage, limits, 4096);
    let ing = node.ingester.clone();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(ing.clone().run_flusher(Duration::from_secs(3600), rx));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (ing, peak) = (ing.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(ing.buffered_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let report = ing.replay(node.recovery.clone()).await;
    sampler.abort();
    assert_eq!(report.replayed, 60);
    assert!(
        peak.load(Ordering::Relaxed) <= 6 * one,
        "buffered {} bytes, budget {}",
        peak.load(Ordering::Relaxed),
        5 * one
    );
    let _ = stop.send(true);
    flusher.await.unwrap();
    assert_eq!(committed_rows(&storage, &t).await, 60 * 20);
    // What was committed during replay was trimmed only up to what replay had re-buffered:
    // a second restart finds nothing to replay and nothing missing.
    drop((ing, node));
    let node = open(dir.path(), &storage);
    let report = node.ingester.replay(node.recovery.clone()).await;
    assert_eq!(report.replayed, 0);
    assert_eq!(committed_rows(&storage, &t).await, 60 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_catalog_fails_is_isolated_and_replayed_later() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, storage) = FaultStore::in_memory();
    let (good, bad) = (tenant("good"), tenant("bad"));
    {
        let node = open_with(dir.path(), &storage, IngestLimits::default(), 1);
        node.ingester.replay(node.recovery.clone()).await;
        for id in 1..=4 {
            export(&node.ingester, &bad, request(id, 1)).await.unwrap();
            export(&node.ingester, &good, request(id, 1)).await.unwrap();
        }
    }
    faults.fail("bad/");
    let node = open_with(dir.path(), &storage, IngestLimits::default(), 1);
    let ing = node.ingester.clone();
    let bad_first = node.recovery.first_seq().unwrap();
    let report = ing.replay(node.recovery.clone()).await;
    assert_eq!((report.replayed, report.pending), (4, 1), "{report:?}");
    assert!(ing.is_ready(), "the other tenants do not wait");
    let notes = ing.readiness().unwrap();
    assert!(notes[0].contains("tenant bad"), "{notes:?}");
    assert!(matches!(
        ing.check_capacity(&bad, Signal::Traces),
        Err(IngestError::Unavailable(_))
    ));
    assert!(ing.check_capacity(&good, Signal::Traces).is_ok());
    assert_eq!(fresh_traces(&ing, &bad), Vec::<u8>::new());
    // Flushing good's data trims nothing the bad tenant still needs.
    ing.flush().await;
    assert_eq!(committed_rows(&storage, &good).await, 4);
    assert!(ing.trim_bound() <= bad_first);
    // The store heals; the retry replays the bad tenant's records, once.
    faults.heal();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ing.check_capacity(&bad, Signal::Traces).is_err() {
        assert!(std::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fresh_traces(&ing, &bad), vec![1, 2, 3, 4]);
    ing.flush().await;
    assert_eq!(committed_rows(&storage, &bad).await, 4);
    assert_eq!(committed_rows(&storage, &good).await, 4);
    drop((ing, node));
    let node = open(dir.path(), &storage);
    assert_eq!(
        node.ingester.replay(node.recovery.clone()).await.replayed,
        0
    );
}

/// Records syncs with whether a WAL segment existed at that moment.
#[derive(Debug)]
struct SyncLog {
    wal_dir: std::path::PathBuf,
    events: Mutex<Vec<(String, usize)>>,
}

impl SyncLog {
    fn segments(&self) -> usize {
        std::fs::read_dir(&self.wal_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Syncer for SyncLog {
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        FsSyncer.sync_file(path)?;
        let name = path.to_string_lossy().to_string();
        self.events.lock().unwrap().push((name, self.segments()));
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        FsSyncer.sync_dir(path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_commit_are_synced_before_the_wal_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let log = Arc::new(SyncLog {
        wal_dir: wal_dir.clone(),
        events: Mutex::new(Vec::new()),
    });
    let storage = Storage::local(&dir.path().join("objects"), log.clone()).unwrap();
    let t = tenant("t");
    let node = open_with(&wal_dir, &storage, IngestLimits::default(), 1);
    let ing = node.ingester.clone();
    ing.replay(node.recovery.clone()).await;
    export(&ing, &t, request(1, 2)).await.unwrap();
    // The writer rotates right after answering: wait for the record's segment to close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while log.segments() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the segment never rotated"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = log.segments();
    ing.flush().await;
    let events = log.events.lock().unwrap().clone();
    let data = events
        .iter()
        .position(|(p, _)| p.ends_with(".parquet"))
        .expect("data file synced");
    let commit = events
        .iter()
        .position(|(p, _)| p.contains("/_catalog/traces/commits/"))
        .expect("commit synced");
    assert!(
        data < commit,
        "the data file is durable before its commit: {events:?}"
    );
    assert_eq!(
        events[commit].1, before,
        "the WAL still held the record when its commit became durable"
    );
    assert!(log.segments() < before, "and was trimmed after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_not_committed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, storage) = FaultStore::in_memory();
    let t = tenant("t");
    let node = open(dir.path(), &storage);
    let ing = node.ingester.clone();
    ing.replay(node.recovery.clone()).await;
    export(&ing, &t, request(1, 3)).await.unwrap();
    // Land the batch's commit "behind the flusher's back", as if its answer was lost: the
    // first flush attempt fails after the commit, the second must notice.
    faults.fail("t/traces/");
    assert_eq!(ing.flush().await, 0);
    faults.heal();
    let batch = ing.traces().batcher().take_all().remove(0);
    let entry = loupe_storage::lifecycle::write_file(
        ing.catalog(),
        &Arc::new(SpanFormat::new(Arc::new(SpanReader::new(storage.clone())))),
        &t,
        batch.chunks.clone(),
        vec![loupe_storage::catalog::WalSource {
            writer: WRITER.into(),
            max_seq: batch.max_seq,
        }],
    )
    .await
    .unwrap();
    ing.catalog()
        .commit(
            &t,
            Signal::Traces,
            loupe_storage::catalog::Change::add(vec![entry]),
        )
        .await
        .unwrap();
    assert_eq!(ing.flush().await, 1);
    assert_eq!(committed_rows(&storage, &t).await, 3, "no second file");
}

/// A ready node whose buffer budget is one export of 20 spans, holding two (traces 1, 2):
/// over its budget.
async fn over_budget_node(dir: &Path, storage: &Storage, t: &TenantId) -> Arc<Ingester> {
    let one = request(0, 20).len() as u64;
    let limits = IngestLimits {
        max_buffer_bytes: one,
        ..Default::default()
    };
    let node = open_with(dir, storage, limits, 4096);
    let ing = node.ingester.clone();
    ing.replay(node.recovery.clone()).await;
    export(&ing, t, request(1, 20)).await.unwrap();
    export(&ing, t, request(2, 20)).await.unwrap();
    assert!(ing.buffered_bytes() > one, "the buffer is over its budget");
    ing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_decoded_into_a_full_buffer_waits_for_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, storage) = FaultStore::in_memory();
    let t = tenant("t");
    let ing = over_budget_node(dir.path(), &storage, &t).await;
    // Admitted and decoded: it waits for room instead of being thrown away.
    let waiting = tokio::spawn({
        let (ing, t) = (ing.clone(), t.clone());
        async move { export(&ing, &t, request(3, 20)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits while the buffer is full");
    assert_eq!(ing.flush().await, 1);
    assert_eq!(waiting.await.unwrap().unwrap(), 20);
    assert_eq!(fresh_traces(&ing, &t), vec![3]);

    // No flush can make room (the store is down): refused after the wait, nothing lost.
    faults.fail("");
    export(&ing, &t, request(4, 20)).await.unwrap();
    let started = std::time::Instant::now();
    let refused = export(&ing, &t, request(5, 20)).await;
    assert!(
        matches!(refused, Err(IngestError::Overloaded(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() >= ROOM_WAIT);
    assert_eq!(fresh_traces(&ing, &t), vec![3, 4]);
    faults.heal();
    ing.flush().await;
    assert_eq!(committed_rows(&storage, &t).await, 4 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_flushes_an_export_that_was_waiting_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::in_memory();
    let t = tenant("t");
    let ing = over_budget_node(dir.path(), &storage, &t).await;
    // Admitted as an edge admits it (holding in-flight bytes until it is handed over).
    let permit = ing.inflight.try_acquire(1024).unwrap();
    let waiting = tokio::spawn({
        let (ing, t) = (ing.clone(), t.clone());
        async move {
            let accepted = export(&ing, &t, request(3, 20)).await;
            drop(permit);
            accepted
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    ing.drain(Duration::from_secs(10)).await;
    assert_eq!(waiting.await.unwrap().unwrap(), 20);
    assert_eq!(
        committed_rows(&storage, &t).await,
        3 * 20,
        "nothing acked is left behind"
    );
}

pub(crate) fn metric_format(storage: &Storage) -> Arc<loupe_storage::metrics::MetricFormat> {
    Arc::new(loupe_storage::metrics::MetricFormat::new(Arc::new(
        loupe_storage::metrics::MetricReader::new(storage.clone()),
    )))
}

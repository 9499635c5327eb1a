//! The ingest core shared by every edge and signal: admission (readiness, memory, a tenant
//! whose replay is pending), the durable append with its in-order hand-over to a lane, the
//! flush loop, and the WAL trim bound.
//!
//! What is durable when (see also `loupe_wal` and `loupe_storage::catalog`):
//! 1. An export is answered only after its WAL record is fsynced; its rows were handed to the
//!    lane's batches (in WAL order, on the WAL writer) before that answer.
//! 2. A flush uploads a file (synced, on the local store), then commits its catalog entry
//!    (synced) naming the batch's highest WAL sequence; only then does the WAL trim.
//! 3. The trim bound is `min(wal.durable_below, replay floor, lowest unflushed sequence of
//!    every lane)`, with `durable_below` read first: no record below it exists only in the
//!    log, so trimming below it loses nothing (the proof is in `loupe_wal`'s docs).
//! 4. Replay skips records at or below the highest sequence the catalog holds for this
//!    collector, per tenant × signal; because records reach the batches in sequence order
//!    and batches of one tenant × signal commit in order, everything at or below that number
//!    is in committed files.
//! 5. Waiting for room in a full buffer (`append`, at most 2 s) happens before the WAL
//!    append: nothing of a waiting export is written or answered yet, so a crash while it
//!    waits owes its client nothing (it sees no answer and sends again). A clean stop drains
//!    until no admitted export is still arriving, so what it answered is in committed files.
//! 6. State a signal keeps beside its lane follows the export's fate, never ahead of it: the
//!    metrics series cache records a series' newest sample only after the export is durable
//!    (so a retried export is not taken for a duplicate), and delta totals added while
//!    decoding are taken back when the append fails (`crate::prom::export`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use loupe_core::{Signal, TenantId};
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::Chunk;
use loupe_storage::lifecycle::Format;
use loupe_storage::logs::LogFormat;
use loupe_storage::metrics::MetricFormat;
use loupe_storage::spans::SpanFormat;
use loupe_wal::{OnDurable, Wal};

use crate::batcher::BatchLimits;
use crate::error::IngestError;
use crate::inflight::InFlight;
use crate::lane::{Lane, SignalLane};
use crate::otlp::Validated;
use crate::replay::ReplayState;

#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Buffered (not yet flushed) bytes above which exports are refused with 503.
    pub max_buffer_bytes: u64,
    /// Request bytes in flight (bodies, decompressed and decoded) above which requests are
    /// refused with 503.
    pub max_inflight_bytes: u64,
    pub batch: BatchLimits,
    /// Data older than this is refused (it would expire at once).
    pub retention: Duration,
    /// Data further in the future than this is refused.
    pub max_future_skew: Duration,
    /// A log record whose body is larger than this is refused (through partial success).
    pub max_log_line_bytes: usize,
    /// Active metric series per tenant; samples of new series past it are refused.
    pub max_series_per_tenant: usize,
}

/// The metrics lane's batch bounds. A sample is a few dozen payload bytes where a span is
/// hundreds: with the row bound scaled by the format (32×), metrics batches seal by bytes,
/// at half the buffer budget, so the next batch fills while one is flushed (at the span
/// bounds a file was made every 64k samples, each paying per-series work for ten samples a
/// series). Sealing decides file sizes only: an export is acknowledged once its WAL record
/// is synced, whenever its batch seals.
pub fn metric_batch_limits(limits: &IngestLimits) -> BatchLimits {
    BatchLimits {
        max_bytes: limits.batch.max_bytes.min(limits.max_buffer_bytes / 2),
        ..limits.batch
    }
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_buffer_bytes: 32 << 20,
            max_inflight_bytes: 128 << 20,
            batch: BatchLimits::default(),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_future_skew: Duration::from_secs(3600),
            max_log_line_bytes: 256 << 10,
            max_series_per_tenant: 1_000_000,
        }
    }
}

/// One decoded export of a signal: the validation outcome, what goes to the WAL (the
/// request as received when nothing had to change, else the valid part re-encoded), and the
/// rows for the signal's lane (`None` when nothing was valid).
pub struct Decoded<R> {
    pub validated: Validated,
    pub(crate) payload: Bytes,
    pub(crate) chunk: Option<Chunk<R>>,
}

/// The names of a signal's export counters: items accepted, items refused as invalid.
pub struct ExportCounters {
    pub accepted: &'static str,
    pub rejected: &'static str,
}

pub struct Ingester {
    pub(crate) wal: Wal,
    pub(crate) catalog: Catalog,
    traces: Arc<SignalLane<SpanFormat>>,
    logs: Arc<SignalLane<LogFormat>>,
    metrics: Arc<SignalLane<MetricFormat>>,
    deltas: Arc<crate::prom::otlp::Deltas>,
    series: Arc<crate::prom::cache::SeriesCache>,
    pub(crate) lanes: Vec<Arc<dyn Lane>>,
    pub(crate) limits: IngestLimits,
    inflight: Arc<InFlight>,
    pub(crate) replay: ReplayState,
    pub(crate) ready: AtomicBool,
    /// Woken after each flush: appends waiting for room in the buffer look again.
    room: tokio::sync::Notify,
}

/// How long an admitted export, already decoded, waits for a flush to make room in a full
/// buffer before it is refused as overloaded. Refusing at once would throw its decoding away
/// and make its client send it all again; new exports are still refused up front
/// (`check_capacity`), and waiting ones stay counted in the in-flight budget.
const ROOM_WAIT: Duration = Duration::from_secs(2);

impl Ingester {
    pub fn new(
        wal: Wal,
        catalog: Catalog,
        spans: Arc<SpanFormat>,
        logs: Arc<LogFormat>,
        metrics: Arc<MetricFormat>,
        limits: IngestLimits,
    ) -> Self {
        let traces = Arc::new(SignalLane::new(
            spans,
            limits.batch,
            crate::otlp::decode_trace_payload,
        ));
        let logs = Arc::new(SignalLane::new(
            logs,
            limits.batch,
            crate::otlp::logs::decode_log_payload,
        ));
        let metrics = Arc::new(SignalLane::new(
            metrics,
            metric_batch_limits(&limits),
            crate::prom::decode_metric_payload,
        ));
        Ingester {
            wal,
            catalog,
            lanes: vec![
                traces.clone() as Arc<dyn Lane>,
                logs.clone() as Arc<dyn Lane>,
                metrics.clone() as Arc<dyn Lane>,
            ],
            traces,
            logs,
            metrics,
            deltas: Arc::default(),
            series: Arc::new(crate::prom::cache::SeriesCache::new(
                limits.max_series_per_tenant,
            )),
            inflight: InFlight::new(limits.max_inflight_bytes),
            limits,
            replay: ReplayState::default(),
            ready: AtomicBool::new(false),
            room: tokio::sync::Notify::new(),
        }
    }

    /// The traces lane (its batcher is the fresh-span hook of queries).
    pub fn traces(&self) -> &Arc<SignalLane<SpanFormat>> {
        &self.traces
    }

    /// The logs lane (its batcher is the fresh-log hook of queries).
    pub fn logs(&self) -> &Arc<SignalLane<LogFormat>> {
        &self.logs
    }

    /// The metrics lane (its batcher is the fresh-sample hook of queries).
    pub fn metrics(&self) -> &Arc<SignalLane<MetricFormat>> {
        &self.metrics
    }

    /// Each tenant's active metric series.
    pub fn series_cache(&self) -> &Arc<crate::prom::cache::SeriesCache> {
        &self.series
    }

    /// Running totals of OTLP delta series.
    pub fn deltas(&self) -> &Arc<crate::prom::otlp::Deltas> {
        &self.deltas
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn inflight(&self) -> &Arc<InFlight> {
        &self.inflight
    }

    /// The times an accepted record may carry, now.
    pub fn time_window(&self) -> crate::otlp::TimeWindow {
        crate::otlp::TimeWindow::around_now(self.limits.retention, self.limits.max_future_skew)
    }

    pub(crate) fn lane(&self, signal: Signal) -> Option<&Arc<dyn Lane>> {
        self.lanes.iter().find(|l| l.signal() == signal)
    }

    /// True once the WAL has been replayed (tenants whose catalog could not be read are
    /// replayed later, without holding the others back).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// `Err(why)` while this collector cannot accept data: replay running, or the WAL's disk
    /// failing. `Ok(notes)` lists what is degraded but not blocking.
    pub fn readiness(&self) -> Result<Vec<String>, String> {
        if !self.is_ready() {
            return Err("replaying the write-ahead log".into());
        }
        if let Err(reason) = self.wal.health() {
            return Err(format!("write-ahead log failing: {reason}"));
        }
        Ok(self
            .replay
            .pending()
            .into_iter()
            .map(|(tenant, signal, error)| {
                format!("{signal} of tenant {tenant} wait for replay: {error}")
            })
            .collect())
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.lanes.iter().map(|l| l.buffered_bytes()).sum()
    }

    pub fn buffered_rows(&self) -> usize {
        self.lanes.iter().map(|l| l.buffered_rows()).sum()
    }

    /// Refuses work up front, before the body is read, when it could not be accepted anyway.
    pub fn check_capacity(&self, tenant: &TenantId, signal: Signal) -> Result<(), IngestError> {
        if !self.is_ready() {
            return Err(IngestError::Overloaded(
                "collector is replaying its write-ahead log".into(),
            ));
        }
        if let Some(error) = self.replay.pending_error(tenant, signal) {
            return Err(IngestError::Unavailable(format!(
                "the {signal} catalog of tenant {tenant} cannot be read ({error}); its earlier data waits in the write-ahead log"
            )));
        }
        if self.buffered_bytes() > self.limits.max_buffer_bytes {
            return Err(IngestError::Overloaded(
                "ingest buffer is full, waiting for flushes to object storage".into(),
            ));
        }
        Ok(())
    }

    /// Makes an export durable; `staged` hands its rows to their lane once it is. The buffer
    /// budget is checked again here: requests admitted together must not all land in a
    /// buffer that filled while they were decoded; they wait for a flush (at most
    /// [`ROOM_WAIT`]).
    pub async fn append(
        &self,
        tenant: &TenantId,
        signal: Signal,
        payload: Bytes,
        staged: OnDurable,
    ) -> Result<u64, IngestError> {
        self.wait_for_buffer_room().await?;
        let bytes = payload.len() as u64;
        let seq = self
            .wal
            .append(tenant, signal, payload, Some(staged))
            .await?;
        metrics::counter!("loupe_ingest_bytes_total", "signal" => signal.as_str()).increment(bytes);
        Ok(seq)
    }

    /// Makes the valid rows of `decoded` durable and hands them to `lane` (one function for
    /// every signal; `counters` names its metrics). Nothing is written when nothing was valid.
    pub async fn export<F: Format>(
        &self,
        lane: &SignalLane<F>,
        tenant: &TenantId,
        decoded: Decoded<F::Rows>,
        protocol: &'static str,
        counters: ExportCounters,
    ) -> Result<Validated, IngestError> {
        let Decoded {
            validated,
            payload,
            chunk,
        } = decoded;
        let signal = F::SIGNAL.as_str();
        metrics::counter!(counters.rejected, "signal" => signal, "reason" => "invalid")
            .increment(validated.rejected);
        if let Some(chunk) = chunk {
            let staged = lane.stage(tenant, chunk);
            self.append(tenant, F::SIGNAL, payload, staged).await?;
            metrics::counter!(counters.accepted, "signal" => signal, "protocol" => protocol)
                .increment(validated.accepted);
        }
        Ok(validated)
    }

    /// The WAL may be trimmed below this (see the module docs).
    pub fn trim_bound(&self) -> u64 {
        // Order matters: `durable_below` first, then the replay floor, then the lanes.
        let handed = self.wal.durable_below();
        let replay = self.replay.floor();
        let lanes = self
            .lanes
            .iter()
            .filter_map(|l| l.lowest_unflushed_seq())
            .min()
            .unwrap_or(u64::MAX);
        handed.min(replay).min(lanes)
    }

    /// Waits until a flush brings the buffer within its budget; `Overloaded` when
    /// [`ROOM_WAIT`] passes first.
    async fn wait_for_buffer_room(&self) -> Result<(), IngestError> {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        loop {
            let freed = self.room.notified();
            tokio::pin!(freed);
            // Registered before the check, so a flush between the two is not missed.
            freed.as_mut().enable();
            if self.buffered_bytes() <= self.limits.max_buffer_bytes {
                return Ok(());
            }
            metrics::counter!("loupe_ingest_buffer_waits_total").increment(1);
            // No flush is asked for here: one is under way or due (a full batch seals and
            // wakes the flusher); asking from every waiter makes a storm of tiny files.
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(IngestError::Overloaded(
                    "ingest buffer is full, waiting for flushes to object storage".into(),
                ));
            }
        }
    }

    /// Flushes every lane, then trims the WAL. Returns files committed.
    pub async fn flush(&self) -> usize {
        let mut files = 0;
        for lane in &self.lanes {
            files += lane.flush(&self.catalog).await;
        }
        self.room.notify_waiters();
        let bound = self.trim_bound();
        let wal = self.wal.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || wal.trim_below(bound)).await {
            tracing::warn!(error = %e, "write-ahead log trim task failed");
        }
        metrics::gauge!("loupe_wal_bytes").set(self.wal.bytes() as f64);
        metrics::gauge!("loupe_buffered_bytes").set(self.buffered_bytes() as f64);
        files
    }

    /// Flushes until nothing is buffered and no admitted export is still on its way in (one
    /// may be waiting for room, or decoding), or `deadline` passes (a clean stop). What is
    /// left is durable in the WAL and replayed at the next start.
    pub async fn drain(&self, deadline: Duration) {
        let until = std::time::Instant::now() + deadline;
        loop {
            self.flush().await;
            let left = self.buffered_rows();
            let arriving = self.inflight.used_bytes();
            if left == 0 && arriving == 0 {
                return;
            }
            if std::time::Instant::now() >= until {
                tracing::warn!(
                    rows = left,
                    in_flight_bytes = arriving,
                    "stopping with unflushed rows; they stay in the write-ahead log and are replayed at the next start"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Flushes every `interval`, or sooner when a batch fills up, until `shutdown` fires;
    /// then drains (flushes until nothing is buffered, for up to 20 s).
    pub async fn run_flusher(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let wanted = futures::future::select_all(
            self.lanes
                .iter()
                .map(|l| Box::pin(l.flush_wanted().notified())),
        );
        tokio::pin!(wanted);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = &mut wanted => {
                    wanted.set(futures::future::select_all(
                        self.lanes.iter().map(|l| Box::pin(l.flush_wanted().notified())),
                    ));
                }
                _ = shutdown.changed() => {
                    self.drain(Duration::from_secs(20)).await;
                    return;
                }
            }
            self.flush().await;
        }
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
pub(crate) mod tests;

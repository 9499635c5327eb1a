//! Write-ahead-log replay at start: every record not yet in a committed file goes back into
//! its lane's batches, exactly once, with bounded memory, and one tenant's broken catalog does
//! not hold back the others.
//!
//! - Records stream from the log one at a time (a reader thread feeds a small channel);
//!   before each is re-buffered, replay waits while the batches are over the buffer budget
//!   (the flusher runs meanwhile and commits them). So memory is bounded by the budget, not
//!   by the log's size.
//! - The replay floor (the sequence number of the next record not yet handed over) holds the
//!   WAL trim below every record replay has not re-buffered, even while flushes run.
//! - The first record of a tenant × signal loads that catalog to learn the highest sequence
//!   number this collector committed there; records at or below it are skipped. If the
//!   catalog cannot be read, that tenant × signal becomes *pending*: its records are skipped
//!   (none of them was re-buffered, so none is pushed twice later), its lowest sequence
//!   number holds the trim, its new exports are refused with 503, and it is retried with
//!   backoff (a log line and `loupe_replay_pending` tell). The others turn ready at once.
//! - A retried replay of a pending tenant × signal reads the log again and re-buffers only
//!   that key's records.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loupe_core::{Signal, TenantId};
use loupe_wal::{Record, Recovery};

use crate::ingest::Ingester;

type Key = (TenantId, Signal);

#[derive(Debug, Clone)]
struct Pending {
    min_seq: u64,
    error: String,
}

/// Replay's part of the trim bound and the tenants still waiting.
#[derive(Debug)]
pub(crate) struct ReplayState {
    /// Every record below this was handed over (or skipped); `u64::MAX` once replay is done.
    floor: AtomicU64,
    pending: Mutex<BTreeMap<Key, Pending>>,
}

impl Default for ReplayState {
    fn default() -> Self {
        // Nothing may be trimmed before replay has begun.
        ReplayState {
            floor: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ReplayState {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lowest sequence number replay still owes.
    pub(crate) fn floor(&self) -> u64 {
        let floor = self.floor.load(Ordering::Acquire);
        let pending = self.lock().values().map(|p| p.min_seq).min();
        pending.map_or(floor, |p| p.min(floor))
    }

    pub(crate) fn pending(&self) -> Vec<(TenantId, Signal, String)> {
        self.lock()
            .iter()
            .map(|((t, s), p)| (t.clone(), *s, p.error.clone()))
            .collect()
    }

    pub(crate) fn pending_error(&self, tenant: &TenantId, signal: Signal) -> Option<String> {
        let pending = self.lock();
        if pending.is_empty() {
            return None;
        }
        pending
            .get(&(tenant.clone(), signal))
            .map(|p| p.error.clone())
    }
}

/// What a replay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: u64,
    pub skipped: u64,
    pub undecodable: u64,
    /// Tenant × signals whose catalog could not be read in this pass.
    pub pending: usize,
}

impl Ingester {
    /// Replays `recovery`, turns ready, and keeps retrying pending tenants in the background.
    pub async fn replay(self: &Arc<Self>, recovery: Arc<Recovery>) -> ReplayReport {
        let started = Instant::now();
        let report = self.replay_pass(&recovery, None).await;
        self.replay.floor.store(u64::MAX, Ordering::Release);
        self.ready.store(true, Ordering::Release);
        tracing::info!(
            records = recovery.len(),
            replayed = report.replayed,
            skipped = report.skipped,
            undecodable = report.undecodable,
            pending = report.pending,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "write-ahead log replayed; ready"
        );
        if report.pending > 0 {
            tokio::spawn(self.clone().retry_pending(recovery));
        }
        report
    }

    /// One pass over the log; with `only`, just that tenant × signal.
    async fn replay_pass(&self, recovery: &Recovery, only: Option<&Key>) -> ReplayReport {
        let mut report = ReplayReport::default();
        let mut done: HashMap<Key, Option<u64>> = HashMap::new();
        let mut failed = 0;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Record, String>>(16);
        let mut records = recovery.records();
        tokio::task::spawn_blocking(move || {
            for r in records.by_ref() {
                if tx.blocking_send(r.map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        });
        while let Some(next) = rx.recv().await {
            let r = match next {
                Ok(r) => r,
                Err(e) => {
                    // The rest of that segment is unreadable now; what was read is kept.
                    tracing::error!(error = %e, "cannot read the write-ahead log during replay");
                    continue;
                }
            };
            let key = (r.tenant.clone(), r.signal);
            if only.is_some_and(|k| *k != key) {
                continue;
            }
            if only.is_none() {
                self.replay.floor.store(r.seq, Ordering::Release);
            }
            let Some(lane) = self.lane(r.signal).cloned() else {
                tracing::warn!(seq = r.seq, signal = %r.signal, "no pipeline for this signal; record skipped");
                report.skipped += 1;
                continue;
            };
            let committed = match done.get(&key) {
                Some(c) => *c,
                None => {
                    let c = match self.catalog.refresh(&r.tenant, r.signal).await {
                        Ok(state) => Some(state.committed_seq(self.catalog.writer()).unwrap_or(0)),
                        Err(e) => {
                            self.set_pending(&key, r.seq, e.to_string());
                            failed += 1;
                            None
                        }
                    };
                    done.insert(key.clone(), c);
                    c
                }
            };
            let Some(committed) = committed else {
                continue;
            };
            if r.seq <= committed {
                report.skipped += 1;
                continue;
            }
            self.wait_for_room().await;
            let (tenant, payload, seq) = (r.tenant, r.payload, r.seq);
            let staged = loupe_core::cpu::run(move || lane.decode_wal(&tenant, payload)).await;
            match staged {
                Ok(Ok(push)) => {
                    push(seq);
                    report.replayed += 1;
                }
                Ok(Err(e)) | Err(loupe_core::cpu::Panicked(e)) => {
                    report.undecodable += 1;
                    metrics::counter!("loupe_replay_undecodable_records_total").increment(1);
                    tracing::error!(seq, error = %e, "undecodable write-ahead log record skipped");
                }
            }
        }
        report.pending = failed;
        metrics::gauge!("loupe_replay_pending").set(self.replay.lock().len() as f64);
        metrics::counter!("loupe_replay_records_total").increment(report.replayed);
        report
    }

    fn set_pending(&self, key: &Key, seq: u64, error: String) {
        tracing::error!(tenant = %key.0, signal = %key.1, %error, "cannot read the catalog for replay; this tenant's records stay in the write-ahead log and are retried");
        let mut pending = self.replay.lock();
        let p = pending.entry(key.clone()).or_insert(Pending {
            min_seq: seq,
            error: error.clone(),
        });
        p.min_seq = p.min_seq.min(seq);
        p.error = error;
        metrics::gauge!("loupe_replay_pending").set(pending.len() as f64);
    }

    /// Waits while the batches are over the buffer budget, asking the flusher to flush.
    async fn wait_for_room(&self) {
        while self.buffered_bytes() > self.limits.max_buffer_bytes {
            for l in &self.lanes {
                l.flush_wanted().notify_one();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Retries pending tenant × signals with exponential backoff until none is left.
    async fn retry_pending(self: Arc<Self>, recovery: Arc<Recovery>) {
        let mut delay = Duration::from_millis(500);
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
            let keys: Vec<Key> = self.replay.lock().keys().cloned().collect();
            if keys.is_empty() {
                return;
            }
            for key in keys {
                match self.catalog.refresh(&key.0, key.1).await {
                    Ok(_) => {
                        // Still pending (its floor holds the trim) until the pass is done.
                        let report = self.replay_pass_for(&recovery, &key).await;
                        tracing::info!(tenant = %key.0, signal = %key.1, replayed = report.replayed, skipped = report.skipped, "pending write-ahead log records replayed");
                    }
                    Err(e) => {
                        let min = self.replay.lock().get(&key).map(|p| p.min_seq);
                        if let Some(min) = min {
                            self.set_pending(&key, min, e.to_string());
                        }
                    }
                }
            }
        }
    }

    /// Replays one pending key; it stays pending (holding the trim) until the pass is done.
    async fn replay_pass_for(&self, recovery: &Recovery, key: &Key) -> ReplayReport {
        let report = self.replay_pass(recovery, Some(key)).await;
        if report.pending == 0 {
            self.replay.lock().remove(key);
        }
        let left = self.replay.lock().len();
        metrics::gauge!("loupe_replay_pending").set(left as f64);
        report
    }
}

//! Loupe's write-ahead log: one log for every signal and tenant, used by the collector (and,
//! with the same rigour, by the node agent's disk buffer).
//!
//! Design:
//! - The log is a directory of segment files `{first_seq:020}.wal`, each a sequence of framed,
//!   checksummed records (see [`frame`]). Every record carries a sequence number, its tenant
//!   and its signal; the payload is opaque here (OTLP protobuf for the collector's signals).
//! - One writer thread owns the active segment. Appends queue on a bounded channel; the thread
//!   takes everything queued, writes it in one `write`, calls `fdatasync`, and only then
//!   answers (group commit). What is synced when:
//!   - a record is durable once the `fdatasync` after its write returned;
//!   - a new segment's directory entry is durable once the directory `fsync` after its
//!     creation returned, which happens before the first record is written to it;
//!   - an append is answered only after both, so an acknowledged export survives `kill -9`
//!     and power loss.
//! - **Order of hand-over.** Each append may carry an [`OnDurable`] callback. After a group's
//!   sync, the writer runs the callbacks in sequence order, then publishes
//!   [`Wal::durable_below`], then answers the appends. So whatever consumes the records (the
//!   collector's batches) receives them in exactly the log's order, before anyone is told they
//!   are durable; and every sequence number below `durable_below` has been handed over.
//!   A trim bound computed as `min(durable_below, lowest sequence not yet committed by the
//!   consumer)` (reading `durable_below` first) can therefore never pass a record that exists
//!   only in the log.
//! - **Write failures heal.** A failed write or sync (a full disk, an I/O error) fails that
//!   group's appends (the edge answers 503), truncates the segment back to its last good
//!   length, and marks the log unhealthy ([`Wal::health`], which readiness reports). The next
//!   append tries again; while no appends arrive, the writer probes the disk every
//!   [`PROBE_INTERVAL`] so health turns good again once space returns: the probe asks the
//!   filesystem (`statvfs`) for room for the group that failed, then writes and syncs 64 KiB,
//!   so a nearly full disk that takes a small write but not the one that failed stays
//!   unhealthy instead of flapping. If the truncation itself fails, the segment is closed
//!   and the next write opens a new one; recovery cuts the partial record off at its
//!   checksum.
//! - **Recovery** ([`Wal::open`]) reads every segment once, frame by frame, truncates torn
//!   tails (only an unacknowledged tail can be torn), and returns a [`Recovery`] whose
//!   [`Recovery::records`] streams the records again, one at a time, for the consumer to
//!   re-buffer: memory stays bounded whatever the log's size. Records with a valid checksum
//!   but an unknown signal code are skipped and counted, never treated as torn.
//! - **Trim**: [`Wal::trim_below`] deletes closed segments whose records are all below a
//!   sequence number (the consumer's committed bound). Sequence numbers are never reused: a
//!   segment's name is its first sequence number and the newest segment always survives.
//! - **Back-pressure**: when the channel is full or the log holds more than `max_bytes`,
//!   [`Wal::append`] fails with [`WalError::Full`] and the edge answers 503 / UNAVAILABLE.

pub mod frame;
mod recovery;
mod writer;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use loupe_core::{Classify, ErrorCode, Signal, TenantId};

pub use frame::Record;
pub use recovery::{RecoveredRecords, Recovery};

/// How often an unhealthy log probes its disk while no appends arrive.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log is full ({0}); retry later")]
    Full(&'static str),
    #[error("write-ahead log i/o error: {0}")]
    Io(String),
    #[error("write-ahead log writer stopped")]
    Stopped,
    #[error("record of {0} bytes is larger than the write-ahead log's frame limit")]
    TooLarge(usize),
}

impl Classify for WalError {
    fn code(&self) -> ErrorCode {
        match self {
            WalError::Full(_) => ErrorCode::Overloaded,
            WalError::Io(_) | WalError::Stopped => ErrorCode::Unavailable,
            WalError::TooLarge(_) => ErrorCode::TooLarge,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub queue_len: usize,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            max_bytes: 2 * 1024 * 1024 * 1024,
            queue_len: 4096,
        }
    }
}

/// Runs on the writer thread, in sequence order, once the record is synced and before its
/// append is answered; receives the record's sequence number.
pub type OnDurable = Box<dyn FnOnce(u64) + Send>;

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    last_seq: Option<u64>,
    bytes: u64,
    active: bool,
}

/// The log's state shared by the handles and the writer thread.
struct Shared {
    segments: Mutex<Vec<Segment>>,
    total_bytes: AtomicU64,
    max_bytes: u64,
    /// Every sequence number below this was handed over (or failed); see the module docs.
    durable_below: AtomicU64,
    /// `Some(reason)` while writes fail.
    failing: Mutex<Option<String>>,
    /// Tests: the next this-many group writes fail halfway.
    #[cfg(test)]
    faults: std::sync::atomic::AtomicU32,
    /// Tests: a write (a group or a probe) of more bytes than this fails as on a full disk.
    #[cfg(test)]
    free_bytes: AtomicU64,
}

impl Shared {
    fn segments(&self) -> std::sync::MutexGuard<'_, Vec<Segment>> {
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn take_fault(&self) -> bool {
        self.faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn set_failing(&self, reason: Option<String>) {
        let mut f = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_some() != reason.is_some() {
            match &reason {
                Some(r) => tracing::error!(reason = %r, "write-ahead log is failing"),
                None => tracing::info!("write-ahead log writes succeed again"),
            }
            metrics::gauge!("loupe_wal_healthy").set(if reason.is_some() { 0.0 } else { 1.0 });
        }
        *f = reason;
    }
}

struct Append {
    signal: Signal,
    tenant: TenantId,
    payload: Bytes,
    on_durable: Option<OnDurable>,
    done: tokio::sync::oneshot::Sender<Result<u64, WalError>>,
}

/// Handle on the log; cheap to clone. The writer thread stops when every handle is dropped.
#[derive(Clone)]
pub struct Wal {
    tx: SyncSender<Append>,
    shared: Arc<Shared>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn io(e: std::io::Error) -> WalError {
    WalError::Io(e.to_string())
}

impl Wal {
    /// Recovers the log in `cfg.dir` (truncating torn tails) and starts the writer. The
    /// [`Recovery`] streams the records found, in sequence order.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Recovery), WalError> {
        fs::create_dir_all(&cfg.dir).map_err(io)?;
        let scan = recovery::scan(&cfg.dir)?;
        let total = scan.segments.iter().map(|s| s.bytes).sum();
        let next_seq = scan.next_seq;
        let recovery = Recovery::new(&scan);
        let shared = Arc::new(Shared {
            segments: Mutex::new(scan.segments),
            total_bytes: AtomicU64::new(total),
            max_bytes: cfg.max_bytes,
            durable_below: AtomicU64::new(next_seq),
            failing: Mutex::new(None),
            #[cfg(test)]
            faults: std::sync::atomic::AtomicU32::new(0),
            #[cfg(test)]
            free_bytes: AtomicU64::new(u64::MAX),
        });
        metrics::gauge!("loupe_wal_healthy").set(1.0);
        let (tx, rx) = sync_channel(cfg.queue_len);
        let writer = writer::Writer::start(&cfg, shared.clone(), next_seq)?;
        std::thread::Builder::new()
            .name("loupe-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok((Wal { tx, shared }, recovery))
    }

    /// Appends a record and waits until it is durable (and `on_durable` has run). Returns its
    /// sequence number.
    pub async fn append(
        &self,
        tenant: &TenantId,
        signal: Signal,
        payload: Bytes,
        on_durable: Option<OnDurable>,
    ) -> Result<u64, WalError> {
        if payload.len() > frame::max_payload(tenant.as_str().len()) {
            return Err(WalError::TooLarge(payload.len()));
        }
        if self.shared.total_bytes.load(Ordering::Relaxed) > self.shared.max_bytes {
            return Err(WalError::Full("size limit reached, waiting for flushes"));
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        let append = Append {
            signal,
            tenant: tenant.clone(),
            payload,
            on_durable,
            done,
        };
        match self.tx.try_send(append) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WalError::Full("append queue is full")),
            Err(TrySendError::Disconnected(_)) => return Err(WalError::Stopped),
        }
        rx.await.map_err(|_| WalError::Stopped)?
    }

    /// Every sequence number below this has been synced and handed to its [`OnDurable`]
    /// callback (or its write failed and it was never acknowledged).
    pub fn durable_below(&self) -> u64 {
        self.shared.durable_below.load(Ordering::Acquire)
    }

    /// `Err(reason)` while writes fail (a full disk, an I/O error); readiness reports it.
    pub fn health(&self) -> Result<(), String> {
        match &*self
            .shared
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    /// Deletes closed segments whose records all have sequence numbers below `seq`. Blocking
    /// (unlinks): call from a blocking thread. Returns how many segments were deleted.
    pub fn trim_below(&self, seq: u64) -> usize {
        // Pick under the lock, unlink outside it: the writer takes this lock after each sync.
        let doomed: Vec<Segment> = {
            let mut segments = self.shared.segments();
            let (doomed, keep) = std::mem::take(&mut *segments)
                .into_iter()
                .partition(|s| !s.active && s.last_seq.is_none_or(|l| l < seq));
            *segments = keep;
            doomed
        };
        let mut deleted = 0;
        for s in doomed {
            self.shared
                .total_bytes
                .fetch_sub(s.bytes, Ordering::Relaxed);
            match fs::remove_file(&s.path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => deleted += 1,
                // Left on disk: the next start finds it and skips its committed records.
                Err(e) => {
                    tracing::warn!(segment = %s.path.display(), first_seq = s.first_seq, error = %e, "cannot delete write-ahead log segment")
                }
            }
        }
        if deleted > 0 {
            metrics::counter!("loupe_wal_segments_trimmed_total").increment(deleted as u64);
        }
        deleted
    }

    /// Bytes currently held by the log on disk.
    pub fn bytes(&self) -> u64 {
        self.shared.total_bytes.load(Ordering::Relaxed)
    }

    /// Number of segment files.
    pub fn segments(&self) -> usize {
        self.shared.segments().len()
    }
}

#[cfg(test)]
mod tests;

//! The collector's write-ahead log: one log for every signal and tenant.
//!
//! Design:
//! - The log is a directory of segment files `{first_seq:020}.wal`, each a sequence of framed,
//!   checksummed records (see [`frame`]). Every record carries a sequence number, its tenant
//!   and its signal; the payload is opaque here (OTLP protobuf for the signals so far).
//! - One writer thread owns the active segment. Appends queue on a bounded channel; the thread
//!   takes everything queued, writes it in one `write`, calls `fdatasync`, and only then
//!   answers each append (group commit). An export is acknowledged after its append answered,
//!   so an acknowledged export survives `kill -9` and power loss.
//! - A segment is closed at `segment_bytes`, or after a write error (a failed write may have
//!   left a partial record, and nothing may follow one). The directory is fsynced when a
//!   segment is created.
//! - Recovery ([`Wal::open`]) reads every segment in order, stops a segment at its first torn
//!   record and truncates it there (only the unacknowledged tail of a crash can be torn), and
//!   returns the records for the caller to re-buffer. New records go to a new segment.
//! - Trim: once the records below a sequence number are committed to the catalog,
//!   [`Wal::trim_below`] deletes closed segments that hold only such records.
//! - Back-pressure: when the channel is full or the log holds more than `max_bytes`,
//!   [`Wal::append`] fails with [`WalError::Full`] and the edge answers 503 / UNAVAILABLE.

pub mod frame;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use loupe_storage::TenantId;
use loupe_storage::store::Signal;

pub use frame::Record;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log is full ({0}); retry later")]
    Full(&'static str),
    #[error("write-ahead log i/o error: {0}")]
    Io(String),
    #[error("write-ahead log writer stopped")]
    Stopped,
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

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    last_seq: Option<u64>,
    bytes: u64,
    active: bool,
}

struct Shared {
    segments: Mutex<Vec<Segment>>,
    total_bytes: AtomicU64,
    max_bytes: u64,
}

struct Append {
    signal: Signal,
    tenant: TenantId,
    payload: Bytes,
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
    /// Recovers the log in `cfg.dir` and starts the writer. Returns the records found, in
    /// sequence order.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Vec<Record>), WalError> {
        fs::create_dir_all(&cfg.dir).map_err(io)?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&cfg.dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let seq = name.strip_suffix(".wal")?.parse().ok()?;
                Some((seq, e.path()))
            })
            .collect();
        names.sort();
        let mut records = Vec::new();
        let mut segments = Vec::new();
        // Sequence numbers are never reused: a segment's name is its first sequence number,
        // and the newest segment (possibly empty) always survives trimming.
        let name_floor = names.last().map_or(1, |(seq, _)| *seq);
        for (_, path) in names {
            let data = Bytes::from(fs::read(&path).map_err(io)?);
            let (recs, stop) = frame::decode_all(&data);
            let mut bytes = data.len() as u64;
            if let frame::Stop::Torn { offset, reason } = stop {
                tracing::warn!(segment = %path.display(), offset, %reason, "truncating torn write-ahead log tail");
                let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
                f.set_len(offset as u64).map_err(io)?;
                f.sync_all().map_err(io)?;
                bytes = offset as u64;
            }
            segments.push(Segment {
                path,
                last_seq: recs.last().map(|r| r.seq),
                bytes,
                active: false,
            });
            records.extend(recs);
        }
        records.sort_by_key(|r| r.seq);
        let next_seq = records.last().map_or(1, |r| r.seq + 1).max(name_floor);
        let total = segments.iter().map(|s| s.bytes).sum();
        let shared = Arc::new(Shared {
            segments: Mutex::new(segments),
            total_bytes: AtomicU64::new(total),
            max_bytes: cfg.max_bytes,
        });
        let (tx, rx) = sync_channel(cfg.queue_len);
        let writer = Writer::start(&cfg, shared.clone(), next_seq)?;
        std::thread::Builder::new()
            .name("loupe-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok((Wal { tx, shared }, records))
    }

    /// Appends a record and waits until it is durable. Returns its sequence number.
    pub async fn append(
        &self,
        tenant: &TenantId,
        signal: Signal,
        payload: Bytes,
    ) -> Result<u64, WalError> {
        if self.shared.total_bytes.load(Ordering::Relaxed) > self.shared.max_bytes {
            return Err(WalError::Full("size limit reached, waiting for flushes"));
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        let append = Append {
            signal,
            tenant: tenant.clone(),
            payload,
            done,
        };
        match self.tx.try_send(append) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WalError::Full("append queue is full")),
            Err(TrySendError::Disconnected(_)) => return Err(WalError::Stopped),
        }
        rx.await.map_err(|_| WalError::Stopped)?
    }

    /// Deletes closed segments whose records all have sequence numbers below `seq`.
    pub fn trim_below(&self, seq: u64) {
        let mut segments = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        segments.retain(|s| {
            let done = !s.active && s.last_seq.is_none_or(|l| l < seq);
            if done {
                match fs::remove_file(&s.path) {
                    Ok(()) => {
                        self.shared.total_bytes.fetch_sub(s.bytes, Ordering::Relaxed);
                        return false;
                    }
                    Err(e) => tracing::warn!(segment = %s.path.display(), error = %e, "cannot delete write-ahead log segment"),
                }
            }
            true
        });
    }

    /// Bytes currently held by the log on disk.
    pub fn bytes(&self) -> u64 {
        self.shared.total_bytes.load(Ordering::Relaxed)
    }

    /// Number of segment files.
    pub fn segments(&self) -> usize {
        self.shared.segments.lock().map(|s| s.len()).unwrap_or(0)
    }
}

struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    shared: Arc<Shared>,
    file: Option<File>,
    written: u64,
    next_seq: u64,
}

impl Writer {
    fn start(cfg: &WalConfig, shared: Arc<Shared>, next_seq: u64) -> Result<Self, WalError> {
        let mut w = Writer {
            dir: cfg.dir.clone(),
            segment_bytes: cfg.segment_bytes,
            shared,
            file: None,
            written: 0,
            next_seq,
        };
        w.rotate()?;
        Ok(w)
    }

    /// Closes the active segment (if any) and opens a new one starting at `next_seq`.
    fn rotate(&mut self) -> Result<(), WalError> {
        let mut segments = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        segments.iter_mut().for_each(|s| s.active = false);
        let path = segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        let existing = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Reopening an empty segment of a previous run under the same name.
        segments.retain(|s| s.path != path);
        segments.push(Segment {
            path,
            last_seq: None,
            bytes: existing,
            active: true,
        });
        self.file = Some(file);
        self.written = existing;
        Ok(())
    }

    fn run(mut self, rx: Receiver<Append>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            buf.clear();
            let first_seq = self.next_seq;
            for a in &batch {
                frame::encode(&mut buf, self.next_seq, a.signal, &a.tenant, &a.payload);
                self.next_seq += 1;
            }
            let result = match self.file.as_mut() {
                Some(f) => f.write_all(&buf).and_then(|_| f.sync_data()).map_err(io),
                None => Err(WalError::Io("no open segment".into())),
            };
            metrics::counter!("loupe_wal_appends_total").increment(batch.len() as u64);
            metrics::counter!("loupe_wal_syncs_total").increment(1);
            match result {
                Ok(()) => {
                    self.written += buf.len() as u64;
                    self.shared
                        .total_bytes
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    {
                        let mut segments = self
                            .shared
                            .segments
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if let Some(s) = segments.iter_mut().find(|s| s.active) {
                            s.last_seq = Some(self.next_seq - 1);
                            s.bytes = self.written;
                        }
                    }
                    for (i, a) in batch.into_iter().enumerate() {
                        let _ = a.done.send(Ok(first_seq + i as u64));
                    }
                    if self.written >= self.segment_bytes
                        && let Err(e) = self.rotate()
                    {
                        tracing::error!(error = %e, "cannot open a new write-ahead log segment");
                        self.file = None;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log write failed");
                    for a in batch {
                        let _ = a.done.send(Err(WalError::Io(e.to_string())));
                    }
                    // Nothing may follow a possibly partial record: start a new segment.
                    if let Err(e) = self.rotate() {
                        tracing::error!(error = %e, "cannot open a new write-ahead log segment");
                        self.file = None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

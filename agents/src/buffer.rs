//! The agent's on-disk buffer: the foundation's write-ahead log (`loupe-wal`), with a reader
//! that ships from it in order and a shipped bound that survives restarts.
//!
//! What is durable when:
//! - [`Buffer::append`] returns after the record's bytes and (for a new segment) the
//!   directory entry are synced: CRC-framed, group-committed, torn tails cut at recovery.
//!   Only then does the reading loop (`collect.rs`) advance a file's checkpoint, so a line is always in the
//!   buffer, or still in its file before the checkpoint (at-least-once).
//! - The reader hands over only records below [`loupe_wal::Wal::durable_below`]: a record
//!   that is written but not yet synced could still be taken back by a failed write.
//! - [`Buffer::shipped`] is called after the collector acknowledged records below a
//!   sequence number; the bound is saved durably ([`crate::durable`]) before segments
//!   wholly below it are deleted. A crash before the save ships those records again (the
//!   duplicates of at-least-once, at most one request's worth). On a full disk segments
//!   are deleted even when the bound or the checkpoints could not be saved: only
//!   duplicates depend on those, never the loss of a line.
//!
//! Bounded: the log refuses appends while it holds more than `max_bytes` (so the bound is
//! `max_bytes` plus one batch), and then the reading loop stops reading its files
//! (back-pressure); nothing is dropped. A full or failing disk refuses appends the same way
//! until writes succeed again. Memory stays bounded too: the reader streams records from the
//! segment files (the page cache holds what was just written), never the whole backlog.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use loupe_core::{Signal, TenantId};
use loupe_wal::frame::{FrameReader, Next};
use loupe_wal::{Record, Wal, WalConfig, WalError};

const SHIPPED: &str = "shipped";

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("buffer {path}: shipped bound is not a number: {text:?}")]
    Corrupt { path: PathBuf, text: String },
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// The buffer's size settings.
#[derive(Debug, Clone, Copy)]
pub struct BufferLimits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

impl BufferLimits {
    /// Segments of a 64th of the bound, at most 4 MiB: shipped segments are deleted whole,
    /// and only once closed, so small segments free space soon — also when the disk fills
    /// before the bound does (a segment larger than the free disk would never close).
    pub fn new(max_bytes: u64) -> Self {
        BufferLimits {
            max_bytes,
            segment_bytes: (max_bytes / 64).clamp(64 * 1024, 4 * 1024 * 1024),
        }
    }
}

pub struct Buffer {
    wal: Wal,
    dir: PathBuf,
    tenant: TenantId,
    shipped: AtomicU64,
    /// Records below this have had their checkpoints saved to the checkpoint store too;
    /// trimming never passes it (see [`crate::record`]).
    checkpointed: AtomicU64,
    appended: tokio::sync::Notify,
}

impl Buffer {
    /// Opens (recovering) the buffer in `dir`.
    pub fn open(dir: &Path, limits: BufferLimits) -> Result<Arc<Buffer>, BufferError> {
        let io = |source| BufferError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let shipped = match crate::durable::read(dir, SHIPPED).map_err(io)? {
            None => 0,
            Some(b) => {
                let text = String::from_utf8_lossy(&b).trim().to_string();
                text.parse().map_err(|_| BufferError::Corrupt {
                    path: dir.join(SHIPPED),
                    text,
                })?
            }
        };
        let mut cfg = WalConfig::new(dir.join("log"));
        cfg.max_bytes = limits.max_bytes;
        cfg.segment_bytes = limits.segment_bytes;
        cfg.queue_len = 64;
        // The records are read from the segment files by `Reader`; recovery's stream is not
        // needed (it only truncated torn tails).
        let (wal, _recovery) = Wal::open(cfg)?;
        Ok(Arc::new(Buffer {
            wal,
            dir: dir.to_path_buf(),
            tenant: TenantId::default_tenant(),
            shipped: AtomicU64::new(shipped),
            checkpointed: AtomicU64::new(0),
            appended: tokio::sync::Notify::new(),
        }))
    }

    /// Appends a record (an OTLP request of `signal`) and returns once it is durable.
    pub async fn append(&self, signal: Signal, payload: Bytes) -> Result<u64, WalError> {
        let seq = self.wal.append(&self.tenant, signal, payload, None).await?;
        self.appended.notify_one();
        Ok(seq)
    }

    /// Waits until a record is appended (or `timeout` passes).
    pub async fn wait_appended(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.appended.notified()).await;
    }

    /// A reader starting at the shipped bound.
    pub fn reader(&self) -> Reader {
        Reader::at(self.wal_dir(), self.shipped.load(Ordering::Acquire))
    }

    fn wal_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Every sequence number below this is durable (and may be read).
    pub fn durable_below(&self) -> u64 {
        self.wal.durable_below()
    }

    /// Records below `below` reached the collector: saves the bound durably, then deletes
    /// the segments wholly below it. Blocking.
    ///
    /// On a full disk (the bound cannot be saved, or the log cannot be written) segments
    /// are deleted up to `below` all the same: a shipped record only ever avoids
    /// duplicates, never a loss — deleting it early costs, after a crash, lines read or
    /// sent again — and waiting for space that only this deletion can free would never end.
    pub fn shipped(&self, below: u64) -> Result<(), BufferError> {
        if below <= self.shipped.load(Ordering::Acquire) {
            return Ok(());
        }
        let saved = crate::durable::replace(&self.dir, SHIPPED, below.to_string().as_bytes());
        self.shipped.store(below, Ordering::Release);
        self.trim(saved.is_err() || self.wal.health().is_err());
        saved.map_err(|source| BufferError::Io {
            path: self.dir.join(SHIPPED),
            source,
        })
    }

    /// The checkpoints of records below `below` are saved in the checkpoint store: their
    /// segments are deleted now if already shipped (or later, once shipped). Blocking.
    pub fn checkpointed(&self, below: u64) {
        let before = self.checkpointed.fetch_max(below, Ordering::AcqRel);
        if below > before {
            self.trim(false);
        }
    }

    /// Deletes the segments wholly below the shipped bound and, unless the disk is full
    /// (see [`Buffer::shipped`]), below the checkpoints saved.
    fn trim(&self, disk_full: bool) {
        let shipped = self.shipped.load(Ordering::Acquire);
        let bound = if disk_full {
            shipped
        } else {
            shipped.min(self.checkpointed.load(Ordering::Acquire))
        };
        self.wal.trim_below(bound);
    }

    /// The checkpoints carried by every record still in the buffer, oldest first: applied
    /// over the checkpoint store's at start. Blocking (reads the whole log).
    pub fn checkpoints(&self) -> Result<Vec<crate::checkpoint::Checkpoint>, BufferError> {
        let mut reader = Reader::at(self.wal_dir(), 0);
        let durable = self.durable_below();
        let mut out = Vec::new();
        loop {
            let got = reader
                .next(durable, 16 << 20)
                .map_err(|source| BufferError::Io {
                    path: self.wal_dir(),
                    source,
                })?;
            if got.is_empty() {
                return Ok(out);
            }
            for r in got {
                match crate::record::checkpoints(&r.payload) {
                    Ok(c) => out.extend(c),
                    Err(e) => {
                        tracing::warn!(seq = r.seq, error = %e, "buffer record without readable checkpoints")
                    }
                }
            }
        }
    }

    /// Records durable but not yet shipped.
    pub fn pending_records(&self) -> u64 {
        self.durable_below()
            .saturating_sub(self.shipped.load(Ordering::Acquire))
    }

    /// Bytes on disk (shipped segments not yet deleted included).
    pub fn bytes(&self) -> u64 {
        self.wal.bytes()
    }

    /// `Err(reason)` while writes to the buffer fail (a full disk).
    pub fn health(&self) -> Result<(), String> {
        self.wal.health()
    }
}

struct OpenSegment {
    first_seq: u64,
    file: BufReader<File>,
    /// Offset of the next frame not yet handed over.
    pos: u64,
}

/// Reads durable records in sequence order from the segment files.
pub struct Reader {
    dir: PathBuf,
    cursor: u64,
    segment: Option<OpenSegment>,
}

/// Segment files' first sequence numbers, ascending.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(first) = name.strip_suffix(".wal").and_then(|s| s.parse().ok()) {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn open_segment(dir: &Path, first_seq: u64) -> std::io::Result<OpenSegment> {
    let file = File::open(dir.join(format!("{first_seq:020}.wal")))?;
    Ok(OpenSegment {
        first_seq,
        file: BufReader::with_capacity(64 * 1024, file),
        pos: 0,
    })
}

impl Reader {
    fn at(dir: PathBuf, cursor: u64) -> Reader {
        Reader {
            dir,
            cursor,
            segment: None,
        }
    }

    /// The next record to hand over.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Opens the segment that holds the cursor, skipping over trimmed ones.
    fn locate(&mut self) -> std::io::Result<bool> {
        let all = segments(&self.dir)?;
        let Some(&first) = all.first() else {
            return Ok(false);
        };
        // Below the oldest segment: those records were shipped and trimmed.
        self.cursor = self.cursor.max(first);
        let at = all.iter().rev().find(|&&s| s <= self.cursor).copied();
        match at {
            Some(s) => {
                self.segment = Some(open_segment(&self.dir, s)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Moves to the segment after the current one if it exists and starts at or before the
    /// cursor. `false`: the current one is still being written.
    fn advance(&mut self) -> std::io::Result<bool> {
        let current = self.segment.as_ref().map_or(0, |s| s.first_seq);
        let next = segments(&self.dir)?
            .into_iter()
            .find(|&s| s > current && s <= self.cursor);
        match next {
            Some(s) => {
                self.segment = Some(open_segment(&self.dir, s)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Up to about `max_bytes` of records with sequence numbers in `[cursor, durable_below)`,
    /// in order. Blocking (reads files).
    pub fn next(&mut self, durable_below: u64, max_bytes: usize) -> std::io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        'segments: while self.cursor < durable_below && bytes < max_bytes {
            if self.segment.is_none() && !self.locate()? {
                break;
            }
            let Some(seg) = self.segment.as_mut() else {
                break;
            };
            let len = seg.file.get_ref().metadata()?.len();
            let mut at_end = seg.pos >= len;
            if !at_end {
                seg.file.seek(SeekFrom::Start(seg.pos))?;
                let base = seg.pos;
                let mut frames = FrameReader::new(&mut seg.file, len - base);
                loop {
                    match frames.next_frame()? {
                        Next::Record(r) => {
                            if r.seq >= durable_below {
                                break 'segments;
                            }
                            seg.pos = base + frames.offset();
                            if r.seq >= self.cursor {
                                self.cursor = r.seq + 1;
                                bytes += r.payload.len();
                                out.push(r);
                                if bytes >= max_bytes {
                                    break 'segments;
                                }
                            }
                        }
                        Next::Skipped { seq, .. } => {
                            if seq >= durable_below {
                                break 'segments;
                            }
                            seg.pos = base + frames.offset();
                            self.cursor = self.cursor.max(seq + 1);
                        }
                        // A torn frame is a write in progress (or one that failed and will
                        // be cut off): the segment has nothing more for now.
                        Next::End | Next::Torn { .. } => {
                            at_end = true;
                            break;
                        }
                    }
                }
            }
            if at_end && !self.advance()? {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BufferLimits {
        BufferLimits {
            max_bytes: 1 << 20,
            segment_bytes: 4096,
        }
    }

    /// A buffer that fills after a few records of 500 bytes.
    fn small(dir: &Path) -> Arc<Buffer> {
        let limits = BufferLimits {
            max_bytes: 8192,
            segment_bytes: 2048,
        };
        Buffer::open(dir, limits).unwrap()
    }

    #[tokio::test]
    async fn records_are_read_in_order_across_segments_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(dir.path(), limits()).unwrap();
        let mut seqs = Vec::new();
        for i in 0..40u32 {
            let payload = Bytes::from(vec![i as u8; 300]);
            seqs.push(b.append(Signal::Logs, payload).await.unwrap());
        }
        let mut r = b.reader();
        let got = r.next(b.durable_below(), 3000).unwrap();
        assert!(got.len() >= 10 && got.len() < 40, "bounded by bytes");
        let first_half: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(first_half, seqs[..got.len()]);
        b.checkpointed(u64::MAX);
        b.shipped(r.cursor()).unwrap();
        let rest = r.next(b.durable_below(), 1 << 20).unwrap();
        assert_eq!(rest.len() + got.len(), 40);
        assert_eq!(rest[0].payload[0] as usize, got.len());
        drop(b);
        // Restart: reading resumes at the shipped bound.
        let b = Buffer::open(dir.path(), limits()).unwrap();
        b.checkpointed(u64::MAX);
        let mut r = b.reader();
        let again = r.next(b.durable_below(), 1 << 20).unwrap();
        assert_eq!(again.len(), rest.len());
        assert_eq!(again[0].seq, rest[0].seq);
        b.shipped(r.cursor()).unwrap();
        assert!(b.wal.segments() <= 2, "shipped segments deleted");
        assert_eq!(b.pending_records(), 0);
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_appends_until_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let b = small(dir.path());
        let mut n = 0;
        let full = loop {
            match b.append(Signal::Logs, Bytes::from(vec![7u8; 500])).await {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 100, "never full");
        };
        assert!(matches!(full, WalError::Full(_)), "{full}");
        let mut r = b.reader();
        let all = r.next(b.durable_below(), 1 << 20).unwrap();
        assert_eq!(all.len(), n);
        b.checkpointed(u64::MAX);
        b.shipped(r.cursor()).unwrap();
        b.append(Signal::Metrics, Bytes::from_static(b"m"))
            .await
            .unwrap();
        let next = r.next(b.durable_below(), 1 << 20).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].signal, Signal::Metrics);
    }

    #[tokio::test]
    async fn records_shipped_before_their_checkpoints_were_saved_are_deleted_once_saved() {
        let dir = tempfile::tempdir().unwrap();
        let b = small(dir.path());
        while b
            .append(Signal::Logs, Bytes::from(vec![1u8; 500]))
            .await
            .is_ok()
        {}
        let mut r = b.reader();
        r.next(b.durable_below(), 1 << 20).unwrap();
        b.shipped(r.cursor()).unwrap();
        assert!(
            b.append(Signal::Logs, Bytes::from_static(b"x"))
                .await
                .is_err(),
            "shipped, but their checkpoints only in the records: kept"
        );
        // The store saved (the reader's rounds go on): the shipped segments go, room again.
        b.checkpointed(b.durable_below());
        b.append(Signal::Logs, Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
}

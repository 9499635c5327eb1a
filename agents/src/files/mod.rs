//! The set of pod log files the agent reads, through rotations, truncations, deletions and
//! its own restarts, and their checkpoints.
//!
//! - **Identity.** A file is known by device and inode while the agent holds it open (an
//!   open file's inode cannot be reused), and across restarts by device, inode and a
//!   fingerprint of its first bytes ([`FileId`]): a reused inode with other content is a
//!   new file, read from the start.
//! - **Rename rotation** (the kubelet renames `0.log` to `0.log.<timestamp>` and the
//!   runtime reopens `0.log`): the open file is read on under its new name, and finished
//!   once it is no longer the live `<n>.log`, read to its end and idle for `rotate_wait`.
//!   Then records still waiting for parts are handed on and the file is closed; its
//!   checkpoint stays while the file exists, so a restart does not read it again.
//! - **Copytruncate** (a tool copies the file, then truncates it): a new file in the same
//!   directory whose first bytes are those of a known file (or of what a known file held
//!   before it was truncated) is that file's copy, and is read from that file's checkpoint.
//!   A copy found before its file is truncated waits (the file is read on meanwhile), so
//!   the lines written between the copy and the truncation are not read twice; lines of
//!   the old content read in the round that found the truncation move the copy's start
//!   past them once that round is committed. A truncated
//!   file (shorter than what was read, or other first bytes) is read again from the start.
//! - **Deleted files** are held open and read to their end; released after `rotate_wait`
//!   without growth. Their disk space is held meanwhile (also while the buffer is full:
//!   nothing is dropped).
//! - **Down while rotated.** At start, a checkpoint whose file is found under another
//!   name (same device, inode and first bytes) resumes there. One whose file is gone is
//!   looked for among the `.gz` files of its container (the kubelet compresses rotated
//!   files): one that decompresses to the same first bytes is unpacked into the agent's
//!   data directory and finished from the checkpoint. One whose file was truncated while
//!   the agent was down is looked for among the other files of its directory: the one that
//!   starts as it did (copytruncate's copy) is read from the checkpoint. Compressed files
//!   the agent never knew are not read (history from before the agent, like Fluent Bit
//!   and Vector).
//! - **Checkpoints** advance only through [`Files::committed`], which the caller calls once
//!   the records read are durable in the buffer; the store is then saved durably. A copy
//!   starts at a durable offset only: its file's checkpoint, or the end of the old
//!   content's records of a round already committed — never at lines merely read (a scan
//!   also runs while the buffer refuses a round's append, and the store is saved then). The
//!   crash points of a round that finds a truncation are tested one by one
//!   (`crash_tests.rs`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::LineError;
use crate::checkpoint::{Checkpoint, Checkpoints, FINGERPRINT_BYTES, FileId, Store};
use crate::partial::Record;
use crate::pod_path::PodFile;
use crate::tail::Tail;

/// How the files are read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pods_dir: PathBuf,
    /// Where compressed files are unpacked to be finished.
    pub unpack_dir: PathBuf,
    pub rotate_wait: Duration,
    pub max_record_bytes: usize,
    /// Stack traces joined ([`crate::multiline`]), a held one waiting this long for more
    /// lines; `None`: lines are not joined.
    pub multiline_wait: Option<Duration>,
    /// Shortest time between two saves of the checkpoint store. The buffer's records carry
    /// every round's checkpoints, so saving less often loses nothing; it only keeps the
    /// records (and their segments) until the next save.
    pub checkpoint_interval: Duration,
}

impl Settings {
    /// A reader of `file` (at `path`) from `offset` with these settings.
    fn tail(&self, path: &Path, file: std::fs::File, offset: u64) -> Tail {
        let t = Tail::from_file(path, file, offset, self.max_record_bytes);
        match self.multiline_wait {
            Some(w) => t.with_multiline(w, self.max_record_bytes),
            None => t,
        }
    }
}

/// Builds the encoded OTLP resource of a pod log file.
pub type ResourceFn = dyn Fn(&PodFile) -> Arc<[u8]> + Send + Sync;

type Key = (u64, u64);

struct Open {
    tail: Tail,
    live: bool,
    last_growth: Instant,
    /// The identity the file had before it was truncated, with its checkpoint then: its
    /// copy starts there.
    before_truncation: Option<(FileId, u64)>,
    /// Where the records handed out since the last commit end (of the content they were
    /// read from).
    handed: Option<u64>,
    /// At a truncation: where the old content's records handed out in the same round end.
    /// Once they are committed, the copy starts there instead (it would repeat them).
    handed_before_truncation: Option<u64>,
    /// A file unpacked from a `.gz`, deleted once finished.
    unpacked: Option<PathBuf>,
}

struct Entry {
    path: PathBuf,
    id: FileId,
    pod: PodFile,
    resource: Arc<[u8]>,
    /// Durable: the lines before it are in the buffer.
    checkpoint: u64,
    open: Option<Box<Open>>,
    /// Length and modification time when the file was closed: a file found later with
    /// this inode but other metadata is checked by its first bytes (the inode of a closed,
    /// deleted file may have been reused).
    closed: Option<Snapshot>,
    seen: bool,
}

type Snapshot = (u64, i64, i64);

fn snapshot(m: &std::fs::Metadata) -> Snapshot {
    (m.len(), m.mtime(), m.mtime_nsec())
}

/// What one file gave in a round.
pub struct FileRecords {
    pub key: (u64, u64),
    pub resource: Arc<[u8]>,
    /// Records with the offset to resume from once each is buffered.
    pub records: Vec<(Record, u64)>,
    pub unparsed: Vec<(Vec<u8>, LineError, u64)>,
    pub bytes: u64,
    /// The file was truncated before these records were read: offsets of its earlier
    /// records (of this round) no longer apply to it.
    pub truncated: bool,
}

/// A file's reading lag, for `/metrics`.
pub struct Lag {
    pub path: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
}

pub struct Files {
    settings: Settings,
    resource: Box<ResourceFn>,
    store: Store,
    files: HashMap<Key, Entry>,
    /// Checkpoints loaded at start and not yet matched to a file.
    unmatched: Vec<Checkpoint>,
    first_scan: bool,
    /// Something the store holds changed since the last save.
    dirty: bool,
    last_save: Instant,
    /// The read buffer all files share.
    scratch: Vec<u8>,
}

fn dev_ino(m: &std::fs::Metadata) -> Key {
    (m.dev(), m.ino())
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::tail::head_of(&std::fs::File::open(path)?, FINGERPRINT_BYTES)
}

impl Files {
    /// Loads the store; `from_buffer` are the checkpoints carried by the buffer's records
    /// ([`crate::buffer::Buffer::checkpoints`]), which may be ahead of the store's.
    pub fn new(
        settings: Settings,
        store: Store,
        resource: Box<ResourceFn>,
        from_buffer: Vec<Checkpoint>,
    ) -> anyhow::Result<Files> {
        let mut loaded = store.load()?;
        loaded.files.extend(from_buffer);
        // Each file once, at its furthest offset (the buffer holds one checkpoint of a busy
        // file per round), highest offsets first.
        loaded.files.sort_by_key(|c| std::cmp::Reverse(c.offset));
        let mut seen = std::collections::HashSet::new();
        loaded.files.retain(|c| seen.insert(c.id));
        Ok(Files {
            settings,
            resource,
            store,
            files: HashMap::new(),
            unmatched: loaded.files,
            first_scan: true,
            dirty: false,
            last_save: Instant::now(),
            scratch: Vec::new(),
        })
    }

    /// Reads up to `budget` bytes from each open file; finishes rotated and deleted files
    /// that were read to their end and stayed idle.
    pub fn read(&mut self, budget: usize) -> Vec<FileRecords> {
        let mut out = Vec::new();
        let now = Instant::now();
        for (key, e) in self.files.iter_mut() {
            let Some(o) = e.open.as_mut() else { continue };
            match read_one(
                e.id,
                o,
                e.checkpoint,
                budget,
                now,
                self.settings.rotate_wait,
                &mut self.scratch,
            ) {
                Ok((records, unparsed, bytes, new_id)) => {
                    let end = records.iter().map(|r| r.1);
                    if let Some(end) = end.chain(unparsed.iter().map(|u| u.2)).max() {
                        o.handed = Some(o.handed.map_or(end, |h| h.max(end)));
                    }
                    if let Some(id) = new_id {
                        e.id = id;
                        e.checkpoint = 0;
                        self.dirty = true;
                    }
                    let truncated = new_id.is_some();
                    if !records.is_empty() || !unparsed.is_empty() || truncated {
                        out.push(FileRecords {
                            key: *key,
                            resource: e.resource.clone(),
                            records,
                            unparsed,
                            bytes,
                            truncated,
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(path = %e.path.display(), error = %err, "cannot read log file; retrying")
                }
            }
        }
        out
    }

    /// Open files that are done (read to the end, no longer live, idle): closes them.
    /// Their remaining records were handed on by [`Files::read`].
    fn close_finished(&mut self) {
        for e in self.files.values_mut() {
            let done = e.open.as_ref().is_some_and(|o| o.tail.finished());
            if done {
                self.dirty = true;
                // An unpacked file stands for its .gz: the .gz is what later scans see.
                let meta = match e.open.as_ref() {
                    Some(o) if o.unpacked.is_some() => std::fs::metadata(&e.path).ok(),
                    Some(o) => o.tail.metadata().ok(),
                    None => None,
                };
                e.closed = meta.as_ref().map(snapshot);
                if let Some(o) = e.open.take()
                    && let Some(p) = &o.unpacked
                {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }

    /// The records read were buffered: advances checkpoints to `offsets` and, at most once
    /// per `checkpoint_interval`, saves the store durably. `Ok(true)`: saved (everything
    /// committed so far is in the store).
    pub fn committed(&mut self, offsets: &HashMap<Key, u64>) -> anyhow::Result<bool> {
        for (key, at) in offsets {
            if let Some(e) = self.files.get_mut(key)
                && *at > e.checkpoint
            {
                e.checkpoint = *at;
                self.dirty = true;
            }
        }
        // Every record handed out since the last commit is in the buffer now.
        for o in self.files.values_mut().filter_map(|e| e.open.as_mut()) {
            o.handed = None;
            if let Some(at) = o.handed_before_truncation.take()
                && let Some((_, before)) = o.before_truncation.as_mut()
            {
                *before = (*before).max(at);
            }
        }
        self.close_finished();
        self.refresh_fingerprints();
        if !self.dirty {
            return Ok(true);
        }
        if self.last_save.elapsed() < self.settings.checkpoint_interval {
            return Ok(false);
        }
        self.save_now()?;
        Ok(true)
    }

    /// A fingerprint taken while a file was short is extended once it has grown (the
    /// start of an append-only file does not change).
    fn refresh_fingerprints(&mut self) {
        for e in self.files.values_mut() {
            let Some(o) = e.open.as_ref() else { continue };
            if (e.id.fingerprint_len as usize) < FINGERPRINT_BYTES
                && o.unpacked.is_none()
                && let Ok(head) = o.tail.head(FINGERPRINT_BYTES)
                && head.len() > e.id.fingerprint_len as usize
                && e.id.same_start(&head)
            {
                e.id = FileId::from_head(e.id.dev, e.id.ino, &head);
                self.dirty = true;
            }
        }
    }

    /// The checkpoints `offsets` advance to, as a round's buffer record carries them.
    pub fn checkpoints_at(&self, offsets: &HashMap<Key, u64>) -> Vec<Checkpoint> {
        offsets
            .iter()
            .filter_map(|(key, at)| {
                let e = self.files.get(key)?;
                Some(Checkpoint {
                    path: e.path.clone(),
                    id: e.id,
                    offset: e.checkpoint.max(*at),
                })
            })
            .collect()
    }

    /// Saves the store now (at start, after the buffer's checkpoints were applied).
    pub fn save_now(&mut self) -> anyhow::Result<()> {
        self.save()?;
        self.dirty = false;
        self.last_save = Instant::now();
        Ok(())
    }

    fn save(&self) -> anyhow::Result<()> {
        let files = self
            .files
            .values()
            .map(|e| Checkpoint {
                path: e.path.clone(),
                id: e.id,
                offset: e.checkpoint,
            })
            .collect();
        Ok(self.store.save(&Checkpoints { files })?)
    }

    /// Builds every file's resource again (the pods' metadata changed).
    pub fn refresh_resources(&mut self) {
        for e in self.files.values_mut() {
            e.resource = (self.resource)(&e.pod);
        }
    }

    /// Open files.
    pub fn open_files(&self) -> usize {
        self.files.values().filter(|e| e.open.is_some()).count()
    }

    /// Each open file's lag: bytes not yet read, and for how long there were some.
    pub fn lag(&self) -> Vec<Lag> {
        let now = Instant::now();
        self.files
            .values()
            .filter_map(|e| {
                let o = e.open.as_ref()?;
                let len = o.tail.file_len().ok()?;
                let bytes = len.saturating_sub(o.tail.offset());
                let seconds = if bytes > 0 {
                    now.duration_since(o.tail.caught_up_at()).as_secs_f64()
                } else {
                    0.0
                };
                Some(Lag {
                    path: e.path.clone(),
                    bytes,
                    seconds,
                })
            })
            .collect()
    }
}

type Read = (
    Vec<(Record, u64)>,
    Vec<(Vec<u8>, LineError, u64)>,
    u64,
    Option<FileId>,
);

/// One file's round: truncation check, read, and the finish of a file that is done.
fn read_one(
    id: FileId,
    o: &mut Open,
    checkpoint: u64,
    budget: usize,
    now: Instant,
    rotate_wait: Duration,
    scratch: &mut Vec<u8>,
) -> std::io::Result<Read> {
    let len = o.tail.file_len()?;
    let mut new_id = None;
    if o.unpacked.is_none() && len > 0 {
        let truncated = len < o.tail.offset()
            || (len != o.tail.offset()
                && !id.same_start(&o.tail.head(id.fingerprint_len as usize)?));
        if truncated {
            tracing::info!(path = %o.tail.path().display(), "log file truncated (copytruncate): reading it again from the start");
            o.before_truncation = Some((id, checkpoint));
            o.handed_before_truncation = o.handed.take();
            o.tail.restart();
            let head = o.tail.head(FINGERPRINT_BYTES)?;
            new_id = Some(FileId::from_head(id.dev, id.ino, &head));
        }
    }
    let b = o.tail.read_with(budget, scratch)?;
    let (mut records, unparsed, bytes) = (b.records, b.unparsed, b.bytes);
    if bytes > 0 {
        o.last_growth = now;
    }
    if !o.live
        && o.tail.offset() >= o.tail.file_len()?
        && now.duration_since(o.last_growth) >= rotate_wait
    {
        records.extend(o.tail.finish());
        o.tail.mark_finished();
        tracing::debug!(path = %o.tail.path().display(), "rotated or deleted file read to its end: released");
    }
    Ok((records, unparsed, bytes, new_id))
}

mod scan;
#[cfg(test)]
pub(crate) mod tests;

//! The writer thread: group commit, in-order hand-over, failure recovery and the disk probe.
//! See the crate docs for what is synced when.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use crate::{
    Append, PROBE_INTERVAL, Segment, Shared, WalConfig, WalError, frame, io, segment_path,
};

/// Written, synced and deleted to test the disk while the log is unhealthy.
pub(crate) const PROBE_FILE: &str = ".probe";
/// What a probe writes and syncs.
const PROBE_BYTES: usize = 64 * 1024;
/// A group commit takes at most this many appends or bytes.
const GROUP_APPENDS: usize = 4096;
const GROUP_BYTES: usize = 64 * 1024 * 1024;

pub(crate) struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    shared: Arc<Shared>,
    file: Option<File>,
    written: u64,
    next_seq: u64,
    buf: Vec<u8>,
    /// Room the next probe asks the filesystem for: the size of the last failed group.
    probe_bytes: usize,
}

impl Writer {
    pub(crate) fn start(
        cfg: &WalConfig,
        shared: Arc<Shared>,
        next_seq: u64,
    ) -> Result<Self, WalError> {
        let mut w = Writer {
            dir: cfg.dir.clone(),
            segment_bytes: cfg.segment_bytes,
            shared,
            file: None,
            written: 0,
            next_seq,
            buf: Vec::with_capacity(1 << 20),
            probe_bytes: PROBE_BYTES,
        };
        w.rotate()?;
        Ok(w)
    }

    /// Closes the active segment (if any) and opens a new one named `next_seq`; its
    /// directory entry is synced before anything is written to it.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.close_active();
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
        let mut segments = self.shared.segments();
        // Reopening an empty segment of a previous run under the same name.
        segments.retain(|s| s.path != path);
        segments.push(Segment {
            path,
            first_seq: self.next_seq,
            last_seq: None,
            bytes: existing,
            active: true,
        });
        self.file = Some(file);
        self.written = existing;
        Ok(())
    }

    fn close_active(&mut self) {
        self.file = None;
        self.shared
            .segments()
            .iter_mut()
            .for_each(|s| s.active = false);
    }

    pub(crate) fn run(mut self, rx: Receiver<Append>) {
        loop {
            let failing = self
                .shared
                .failing
                .lock()
                .map(|f| f.is_some())
                .unwrap_or(true);
            let first = if failing {
                match rx.recv_timeout(PROBE_INTERVAL) {
                    Ok(a) => a,
                    Err(RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(a) => a,
                    Err(_) => return,
                }
            };
            let mut bytes = first.payload.len();
            let mut group = vec![first];
            while group.len() < GROUP_APPENDS && bytes < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(a) => {
                        bytes += a.payload.len();
                        group.push(a);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Append>) {
        if self.file.is_none()
            && let Err(e) = self.rotate()
        {
            self.fail(group, e);
            return;
        }
        self.buf.clear();
        let first_seq = self.next_seq;
        for a in &group {
            frame::encode(
                &mut self.buf,
                self.next_seq,
                a.signal.code(),
                &a.tenant,
                &a.payload,
            );
            self.next_seq += 1;
        }
        let before = self.written;
        let result = match self.file.as_mut() {
            Some(f) => write_group(f, &self.buf, &self.shared).map_err(io),
            None => Err(WalError::Io("no open segment".into())),
        };
        metrics::counter!("loupe_wal_appends_total").increment(group.len() as u64);
        metrics::counter!("loupe_wal_syncs_total").increment(1);
        if let Err(e) = result {
            self.truncate_to(before);
            self.fail(group, e);
            return;
        }
        let len = self.buf.len() as u64;
        self.written += len;
        self.shared.total_bytes.fetch_add(len, Ordering::Relaxed);
        if let Some(s) = self.shared.segments().iter_mut().find(|s| s.active) {
            s.last_seq = Some(self.next_seq - 1);
            s.bytes = self.written;
        }
        // Hand-over in sequence order, then publish the bound, then answer.
        let mut answers = Vec::with_capacity(group.len());
        for (i, a) in group.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            if let Some(cb) = a.on_durable {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(seq)));
                if run.is_err() {
                    // The record is durable but its consumer did not take it: continuing
                    // could trim it unflushed. Crash, so that replay hands it over again.
                    tracing::error!(seq, "write-ahead log hand-over panicked; aborting");
                    std::process::abort();
                }
            }
            answers.push((a.done, seq));
        }
        self.shared
            .durable_below
            .store(self.next_seq, Ordering::Release);
        self.shared.set_failing(None);
        self.probe_bytes = PROBE_BYTES;
        for (done, seq) in answers {
            let _ = done.send(Ok(seq));
        }
        if self.written >= self.segment_bytes
            && let Err(e) = self.rotate()
        {
            self.shared
                .set_failing(Some(format!("cannot open a new segment: {e}")));
        }
    }

    /// Answers a failed group. Its sequence numbers are burned (never acknowledged, never
    /// reused), so the hand-over bound moves past them.
    fn fail(&mut self, group: Vec<Append>, e: WalError) {
        metrics::counter!("loupe_wal_write_failures_total").increment(1);
        let group_bytes: usize = group
            .iter()
            .map(|a| frame::encoded_len(&a.tenant, &a.payload))
            .sum();
        self.probe_bytes = group_bytes.clamp(PROBE_BYTES, GROUP_BYTES);
        self.shared
            .durable_below
            .store(self.next_seq, Ordering::Release);
        self.shared.set_failing(Some(e.to_string()));
        for a in group {
            let _ = a.done.send(Err(e.clone()));
        }
    }

    /// Cuts a failed write off the active segment; if that fails too, closes the segment
    /// (recovery will cut the partial record at its checksum) and the next write opens one.
    fn truncate_to(&mut self, len: u64) {
        let Some(f) = self.file.as_ref() else { return };
        match f.set_len(len).and_then(|_| f.sync_all()) {
            Ok(()) => self.written = len,
            Err(e) => {
                tracing::warn!(error = %e, "cannot truncate a failed write; closing the segment");
                let written = f.metadata().map(|m| m.len()).unwrap_or(len);
                let grown = written.saturating_sub(len);
                self.shared.total_bytes.fetch_add(grown, Ordering::Relaxed);
                if let Some(s) = self.shared.segments().iter_mut().find(|s| s.active) {
                    s.bytes = written;
                }
                self.close_active();
            }
        }
    }

    /// While unhealthy and idle: does the filesystem have room for the group that failed
    /// (a probe that passed with less would pass on a nearly full disk that still refuses
    /// the real write, and health would flap), and can we open a segment and write and
    /// sync a small file?
    fn probe(&mut self) {
        let result = (|| -> Result<(), WalError> {
            if let Some(free) = self.available()
                && free < self.probe_bytes as u64
            {
                return Err(WalError::Io(format!(
                    "{free} bytes free, the failed write needs {}",
                    self.probe_bytes
                )));
            }
            if self.file.is_none() {
                self.rotate()?;
            }
            let path = self.dir.join(PROBE_FILE);
            let attempt = (|| {
                let mut f = File::create(&path)?;
                f.write_all(&[0u8; PROBE_BYTES])?;
                f.sync_data()
            })();
            let _ = std::fs::remove_file(&path);
            attempt.map_err(io)
        })();
        if result.is_ok() {
            self.shared.set_failing(None);
        }
    }

    /// Bytes still free on the log's filesystem (tests: the simulated free space).
    fn available(&self) -> Option<u64> {
        #[cfg(test)]
        {
            let free = self.shared.free_bytes.load(Ordering::SeqCst);
            if free != u64::MAX {
                return Some(free);
            }
        }
        loupe_core::fs::available_bytes(&self.dir)
    }
}

#[cfg(test)]
fn full_disk() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        "no space left on device (injected)",
    )
}

/// One write and one `fdatasync` for the whole group.
fn write_group(f: &mut File, buf: &[u8], shared: &Shared) -> std::io::Result<()> {
    #[cfg(test)]
    {
        let free = shared.free_bytes.load(Ordering::SeqCst);
        if shared.take_fault() || buf.len() as u64 > free {
            // As a full disk does: part of the group reaches the file, then the write fails.
            let part = (buf.len() / 2).min(free as usize);
            f.write_all(&buf[..part])?;
            return Err(full_disk());
        }
    }
    #[cfg(not(test))]
    let _ = shared;
    f.write_all(buf)?;
    f.sync_data()
}

//! Reading one log file from an offset into records: whole lines only (a line the runtime is
//! still writing, with no newline yet, is left for the next read), each parsed in the file's
//! format and joined with its partial parts ([`crate::partial`]).
//!
//! Every record comes with the offset a reader may resume from once it (and every record
//! before it) is in the buffer: the end of its last line, or, while another stream still has
//! a record waiting for parts, where that record began — resuming there reads those parts
//! again rather than losing them. A line the format does not describe is not dropped: it is
//! handed on raw, with the reason. A line longer than a read is read on, up to the record
//! limit and room for its header; one longer still is handed on raw in pieces of that size
//! (never waited for forever).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use crate::multiline::Joiner;
use crate::partial::{Reassembler, Record};
use crate::{LineError, LogFormat};

/// Room for a line's header (CRI's time, stream and tag; Docker's JSON around the text)
/// beyond the record's own limit, so a line of a record at the limit is read whole.
const LINE_HEADER_ROOM: usize = 4096;

/// The first `n` bytes of `file` (fewer if it is shorter; at most a fingerprint's), read
/// without moving its cursor.
pub fn head_of(file: &File, n: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let n = n.min(crate::checkpoint::FINGERPRINT_BYTES);
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let r = file.read_at(&mut out[got..], got as u64)?;
        if r == 0 {
            break;
        }
        got += r;
    }
    out.truncate(got);
    Ok(out)
}

/// What one read of a file gave.
#[derive(Debug, Default)]
pub struct Batch {
    /// Records with the offset to resume from once they are buffered.
    pub records: Vec<(Record, u64)>,
    /// Lines the format does not describe: their bytes, why, and the resume offset.
    pub unparsed: Vec<(Vec<u8>, LineError, u64)>,
    /// Bytes of whole lines consumed.
    pub bytes: u64,
}

/// A file being read. It is held open: after the kubelet renames it away on rotation, or
/// deletes it, the reader still reads the same file to its end.
pub struct Tail {
    path: PathBuf,
    file: File,
    /// Where the next read starts (after the last whole line consumed).
    offset: u64,
    format: Option<LogFormat>,
    parts: Reassembler,
    /// For each stream's waiting record, the offset of its first line.
    pending_starts: [Option<u64>; 2],
    finished: bool,
    /// The longest physical line read whole: a record's limit and room for its header.
    max_line: usize,
    caught_up_at: std::time::Instant,
    /// Stack-trace joining per stream, and how long a held trace waits for more lines.
    multiline: Option<([Joiner; 2], Duration)>,
}

impl Tail {
    /// Opens `path` to read from `offset` (a checkpoint's, or 0); records longer than
    /// `max_record_bytes` are handed on in pieces.
    pub fn open(
        path: impl Into<PathBuf>,
        offset: u64,
        max_record_bytes: usize,
    ) -> std::io::Result<Self> {
        let path = path.into();
        let file = File::open(&path)?;
        Ok(Tail::from_file(path, file, offset, max_record_bytes))
    }

    /// [`Tail::open`] of a file already open (the one whose identity was checked).
    pub fn from_file(
        path: impl Into<PathBuf>,
        file: File,
        offset: u64,
        max_record_bytes: usize,
    ) -> Self {
        Tail {
            file,
            path: path.into(),
            offset,
            format: None,
            parts: Reassembler::new(max_record_bytes),
            pending_starts: [None, None],
            finished: false,
            max_line: max_record_bytes + LINE_HEADER_ROOM,
            caught_up_at: std::time::Instant::now(),
            multiline: None,
        }
    }

    /// Joins stack traces ([`crate::multiline`]), holding one at most `wait` for more lines.
    pub fn with_multiline(mut self, wait: Duration, max_record_bytes: usize) -> Self {
        let j = || Joiner::new(max_record_bytes);
        self.multiline = Some(([j(), j()], wait));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// When a read last reached the end of the file.
    pub fn caught_up_at(&self) -> std::time::Instant {
        self.caught_up_at
    }

    /// The file is done: [`Tail::finish`] was called and nothing more will be read.
    pub fn mark_finished(&mut self) {
        self.finished = true;
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The open file's metadata.
    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// The file's current length.
    pub fn file_len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The file's first `n` bytes (fewer if it is shorter; at most a fingerprint's: `n` may
    /// come from a checkpoint read back from disk).
    pub fn head(&self, n: usize) -> std::io::Result<Vec<u8>> {
        head_of(&self.file, n)
    }

    /// The file was truncated (copytruncate): read it again from the start. Parts still
    /// waiting are dropped here: they are in the copy, which is read from this file's last
    /// checkpoint.
    pub fn restart(&mut self) {
        self.offset = 0;
        self.format = None;
        self.pending_starts = [None, None];
        self.parts.finish();
        if let Some((j, _)) = self.multiline.as_mut() {
            for j in j.iter_mut() {
                j.flush(Instant::now(), None);
            }
        }
    }

    /// Where a reader may resume without losing a waiting part.
    fn resume_at(&self, end: u64) -> u64 {
        let held = self
            .multiline
            .iter()
            .flat_map(|(j, _)| j.iter().filter_map(Joiner::held_start));
        self.pending_starts
            .iter()
            .flatten()
            .copied()
            .chain(held)
            .min()
            .unwrap_or(end)
    }

    /// Passes records done by the reassembler through the stack-trace joiner.
    fn joined(&mut self, slot: usize, done: Vec<Record>, start: u64, now: Instant) -> Vec<Record> {
        match self.multiline.as_mut() {
            None => done,
            Some((j, _)) => done
                .into_iter()
                .flat_map(|r| j[slot].push(r, start, now))
                .collect(),
        }
    }

    /// Traces held longer than the wait, handed on.
    fn flush_quiet(&mut self, now: Instant, out: &mut Batch) {
        let Some((j, wait)) = self.multiline.as_mut() else {
            return;
        };
        let wait = *wait;
        let quiet: Vec<Record> = j
            .iter_mut()
            .filter_map(|j| j.flush(now, Some(wait)))
            .collect();
        for r in quiet {
            let resume = self.resume_at(self.offset);
            out.records.push((r, resume));
        }
    }

    /// Reads up to `max_bytes` of whole lines after the offset.
    pub fn read(&mut self, max_bytes: usize) -> std::io::Result<Batch> {
        self.read_with(max_bytes, &mut Vec::new())
    }

    /// [`Tail::read`] into `buf`, a scratch buffer the caller keeps between reads (one for
    /// all files: memory stays one read's worth).
    pub fn read_with(&mut self, max_bytes: usize, buf: &mut Vec<u8>) -> std::io::Result<Batch> {
        let now = Instant::now();
        buf.clear();
        self.file.seek(SeekFrom::Start(self.offset))?;
        (&mut self.file).take(max_bytes as u64).read_to_end(buf)?;
        let mut out = Batch::default();
        let mut pos = 0usize;
        if buf.len() == max_bytes && memchr::memchr(b'\n', buf).is_none() {
            // A line longer than a read (runtimes split theirs far below, other writers may
            // not): read on, up to a whole record and its header.
            let limit = self.max_line.max(max_bytes);
            (&mut self.file)
                .take((limit - max_bytes) as u64)
                .read_to_end(buf)?;
            if memchr::memchr(b'\n', &buf[max_bytes..]).is_none() {
                if buf.len() < limit {
                    return Ok(out); // the rest of the line is not written yet
                }
                // Longer than a record may be: handed on raw in pieces rather than waited
                // for forever.
                let end = self.offset + buf.len() as u64;
                let reason = LineError::TooLong(limit);
                out.unparsed
                    .push((buf.clone(), reason, self.resume_at(end)));
                self.offset = end;
                out.bytes = limit as u64;
                return Ok(out);
            }
        }
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            let line = &buf[pos..pos + nl];
            let start = self.offset + pos as u64;
            let end = start + nl as u64 + 1;
            pos += nl + 1;
            let format = *self.format.get_or_insert_with(|| LogFormat::detect(line));
            match format.parse(line) {
                Ok(l) => {
                    let slot = match l.stream {
                        crate::Stream::Stdout => 0,
                        crate::Stream::Stderr => 1,
                    };
                    let record_start = *self.pending_starts[slot].get_or_insert(start);
                    let partial = l.partial;
                    let done = self.parts.push(l);
                    if !partial {
                        self.pending_starts[slot] = None;
                    }
                    let done = self.joined(slot, done, record_start, now);
                    let resume = self.resume_at(end);
                    out.records.extend(done.into_iter().map(|r| (r, resume)));
                }
                Err(e) => {
                    let resume = self.resume_at(end);
                    out.unparsed.push((line.to_vec(), e, resume));
                }
            }
        }
        self.offset += pos as u64;
        out.bytes = pos as u64;
        self.flush_quiet(now, &mut out);
        if buf.len() < max_bytes && pos == buf.len() {
            self.caught_up_at = std::time::Instant::now();
        }
        Ok(out)
    }

    /// The file will not grow (rotated away and read to its end, or deleted): records still
    /// waiting for parts are handed on incomplete.
    pub fn finish(&mut self) -> Vec<(Record, u64)> {
        self.pending_starts = [None, None];
        let end = self.offset;
        let held = self
            .multiline
            .iter_mut()
            .flat_map(|(j, _)| j.iter_mut().filter_map(|j| j.flush(Instant::now(), None)))
            .collect::<Vec<_>>();
        held.into_iter()
            .chain(self.parts.finish())
            .map(|r| (r, end))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    #[test]
    fn whole_lines_only_and_a_resume_point_before_waiting_parts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let l1 = "2024-05-01T10:00:00Z stdout P first \n";
        let l2 = "2024-05-01T10:00:01Z stderr F oops\n";
        let l3 = "2024-05-01T10:00:02Z stdout F second\n";
        append(&p, l1);
        append(&p, l2);
        append(&p, "2024-05-01T10:00:02Z stdout F sec");
        let mut t = Tail::open(&p, 0, 1 << 20).unwrap();
        let b = t.read(1 << 20).unwrap();
        assert_eq!(b.records.len(), 1);
        let (r, resume) = &b.records[0];
        assert_eq!(r.message, b"oops");
        assert_eq!(
            *resume, 0,
            "stdout's record began at 0 and waits for its last part"
        );
        assert_eq!(
            t.offset(),
            (l1.len() + l2.len()) as u64,
            "the unfinished line is left"
        );
        // Renamed away (rotation) before the rest arrives: the open file is read on.
        let rotated = dir.path().join("0.log.20240501-100000");
        std::fs::rename(&p, &rotated).unwrap();
        append(&rotated, "ond\n");
        let b = t.read(1 << 20).unwrap();
        assert_eq!(b.records[0].0.message, b"first second");
        assert_eq!(b.records[0].1, (l1.len() + l2.len() + l3.len()) as u64);
        // Resuming at a record's resume point reads it again whole.
        let mut again = Tail::open(&rotated, 0, 1 << 20).unwrap();
        let all = again.read(1 << 20).unwrap();
        assert_eq!(all.records.len(), 2);
    }

    #[test]
    fn unparsed_lines_are_handed_on_raw_and_reads_respect_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        append(
            &p,
            "2024-05-01T10:00:00Z stdout F a\nnot a cri line\n2024-05-01T10:00:01Z stdout F b\n",
        );
        let mut t = Tail::open(&p, 0, 1 << 20).unwrap();
        // 40 bytes: the first line (32) whole, the second cut: only the first is consumed.
        let b = t.read(40).unwrap();
        assert_eq!((b.records.len(), b.bytes), (1, 32));
        let b = t.read(1 << 20).unwrap();
        assert_eq!(b.unparsed.len(), 1);
        assert_eq!(b.unparsed[0].0, b"not a cri line");
        assert!(b.unparsed[0].1.to_string().contains("not a CRI log line"));
        assert_eq!(b.records[0].0.message, b"b");
        // A file that stops with a record waiting: finished incomplete.
        append(&p, "2024-05-01T10:00:02Z stdout P tail\n");
        assert!(t.read(1 << 20).unwrap().records.is_empty());
        let left = t.finish();
        assert_eq!(left.len(), 1);
        assert!(!left[0].0.complete);
        assert_eq!(left[0].0.message, b"tail");
    }

    #[test]
    fn a_line_longer_than_a_read_is_read_whole_up_to_a_records_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let long = "x".repeat(100_000);
        append(&p, &format!("2024-05-01T10:00:00Z stdout F {long}\n"));
        let mut t = Tail::open(&p, 0, 1 << 20).unwrap();
        let b = t.read(64 * 1024).unwrap();
        assert!(
            b.unparsed.is_empty(),
            "{:?}",
            b.unparsed.first().map(|u| &u.1)
        );
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.records[0].0.message, long.as_bytes());
        // Half of a long line written: it waits for the rest.
        let half = format!("2024-05-01T10:00:01Z stdout F {}", "y".repeat(70_000));
        append(&p, &half);
        assert!(t.read(64 * 1024).unwrap().records.is_empty());
        append(&p, "\n");
        assert_eq!(t.read(64 * 1024).unwrap().records.len(), 1);
        // Beyond a record's limit and its header's room: handed on raw, in pieces.
        let mut small = Tail::open(&p, 0, 10_000).unwrap();
        let b = small.read(4096).unwrap();
        assert_eq!(b.unparsed.len(), 1);
        assert_eq!(b.unparsed[0].0.len(), 10_000 + LINE_HEADER_ROOM);
        assert!(matches!(b.unparsed[0].1, LineError::TooLong(_)));
    }
}

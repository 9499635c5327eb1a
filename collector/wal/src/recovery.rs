//! Recovery: the scan at open (torn tails truncated, the next sequence number found) and the
//! streaming read of the recovered records for replay, one record in memory at a time.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::frame::{FrameReader, Next, Record};
use crate::{Segment, WalError, io};

/// What the scan at open found.
pub(crate) struct Scan {
    pub segments: Vec<Segment>,
    pub next_seq: u64,
    pub records: u64,
    pub first_seq: Option<u64>,
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq = name.strip_suffix(".wal")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    names.sort();
    Ok(names)
}

fn reader(path: &Path) -> std::io::Result<FrameReader<BufReader<File>>> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    Ok(FrameReader::new(BufReader::with_capacity(1 << 20, f), len))
}

/// Reads every segment frame by frame, truncates torn tails, and finds where to continue.
pub(crate) fn scan(dir: &Path) -> Result<Scan, WalError> {
    let _ = fs::remove_file(dir.join(crate::writer::PROBE_FILE));
    let names = list_segments(dir)?;
    // Sequence numbers are never reused: a segment's name is its first sequence number, and
    // the newest segment (possibly empty) always survives trimming.
    let mut next_seq = names.last().map_or(1, |(seq, _)| *seq);
    let (mut records, mut first_seq) = (0, None);
    let mut segments = Vec::with_capacity(names.len());
    for (first, path) in names {
        let mut r = reader(&path).map_err(io)?;
        let mut last_seq = None;
        let bytes = loop {
            match r.next_frame().map_err(io)? {
                Next::Record(rec) => {
                    last_seq = Some(rec.seq);
                    first_seq.get_or_insert(rec.seq);
                    records += 1;
                }
                Next::Skipped { seq, reason } => {
                    last_seq = Some(seq);
                    metrics::counter!("loupe_wal_records_skipped_total").increment(1);
                    tracing::warn!(segment = %path.display(), seq, %reason, "write-ahead log record skipped");
                }
                Next::End => break r.offset(),
                Next::Torn { offset, reason } => {
                    tracing::warn!(segment = %path.display(), offset, %reason, "truncating torn write-ahead log tail");
                    let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
                    f.set_len(offset).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    break offset;
                }
            }
        };
        if let Some(l) = last_seq {
            next_seq = next_seq.max(l + 1);
        }
        segments.push(Segment {
            path,
            first_seq: first,
            last_seq,
            bytes,
            active: false,
        });
    }
    Ok(Scan {
        segments,
        next_seq,
        records,
        first_seq,
    })
}

/// The records a log held when it was opened.
pub struct Recovery {
    paths: Vec<PathBuf>,
    records: u64,
    first_seq: Option<u64>,
    end_seq: u64,
}

impl Recovery {
    pub(crate) fn new(scan: &Scan) -> Self {
        Recovery {
            paths: scan.segments.iter().map(|s| s.path.clone()).collect(),
            records: scan.records,
            first_seq: scan.first_seq,
            end_seq: scan.next_seq,
        }
    }

    /// Number of usable records found.
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The lowest recovered sequence number.
    pub fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }

    /// Every recovered record is below this; every new append is at or above it.
    pub fn end_seq(&self) -> u64 {
        self.end_seq
    }

    /// Streams the recovered records in sequence order. Blocking reads: iterate on a blocking
    /// thread. Can be called again (a retried replay of one tenant); segments trimmed since
    /// are passed over.
    pub fn records(&self) -> RecoveredRecords {
        RecoveredRecords {
            paths: self.paths.iter().cloned().collect(),
            current: None,
        }
    }
}

/// Iterator over recovered records; see [`Recovery::records`].
pub struct RecoveredRecords {
    paths: VecDeque<PathBuf>,
    current: Option<FrameReader<BufReader<File>>>,
}

impl Iterator for RecoveredRecords {
    type Item = Result<Record, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let r = match &mut self.current {
                Some(r) => r,
                None => {
                    let path = self.paths.pop_front()?;
                    match reader(&path) {
                        Ok(r) => self.current.insert(r),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Some(Err(io(e))),
                    }
                }
            };
            match r.next_frame() {
                Ok(Next::Record(rec)) => return Some(Ok(rec)),
                Ok(Next::Skipped { .. }) => continue,
                Ok(Next::End | Next::Torn { .. }) => self.current = None,
                Err(e) => {
                    self.current = None;
                    return Some(Err(io(e)));
                }
            }
        }
    }
}

//! What the catalog knows about one data file, whatever its signal or format.

use serde::{Deserialize, Serialize};

use crate::metrics::SeriesIndex;
use crate::spans::TraceIdFilter;
use crate::store::Signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Parquet,
    TantivySplit,
}

/// The highest write-ahead-log sequence number of one collector that a file contains. On
/// replay a collector skips records it already committed, so a crash between the catalog
/// commit and the WAL trim does not duplicate data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalSource {
    pub writer: String,
    pub max_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// ULID; also the file name.
    pub id: String,
    pub signal: Signal,
    pub format: FileFormat,
    /// Object path relative to the store root.
    pub path: String,
    pub schema_version: u32,
    pub min_time_unix_nano: i64,
    pub max_time_unix_nano: i64,
    pub rows: u64,
    pub bytes: u64,
    pub services: Vec<String>,
    /// 0 for flushed files, +1 for each compaction that produced it.
    pub level: u32,
    pub created_unix_ms: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<WalSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_filter: Option<TraceIdFilter>,
    /// Where the file's search index sits behind its Parquet part (log files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexLocation>,
    /// The metric names and label pairs of a metric file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesIndex>,
}

/// A data object that is a Parquet file followed by an index: the Parquet part is
/// `[0, parquet_len)`; the index's footer (its file table and hot cache) is
/// `[footer_offset, footer_offset + footer_len)`, so one ranged read opens the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexLocation {
    pub parquet_len: u64,
    pub footer_offset: u64,
    pub footer_len: u64,
}

impl FileEntry {
    /// The size of the Parquet part of the object.
    pub fn parquet_len(&self) -> u64 {
        self.index.map_or(self.bytes, |i| i.parquet_len)
    }

    pub fn overlaps(&self, start_unix_nano: i64, end_unix_nano: i64) -> bool {
        self.max_time_unix_nano >= start_unix_nano && self.min_time_unix_nano <= end_unix_nano
    }

    /// Merges WAL sources, keeping the highest sequence number per writer.
    pub fn merge_sources<'a>(entries: impl IntoIterator<Item = &'a FileEntry>) -> Vec<WalSource> {
        let mut out: Vec<WalSource> = Vec::new();
        for s in entries.into_iter().flat_map(|e| &e.sources) {
            match out.iter_mut().find(|o| o.writer == s.writer) {
                Some(o) => o.max_seq = o.max_seq.max(s.max_seq),
                None => out.push(s.clone()),
            }
        }
        out
    }
}

//! The span format as a [`Format`]: a flush encodes the chunks' spans into one sorted
//! Parquet file; compaction reads files whole and merges them, keeping the sort by
//! (trace id, start), into one file at the compaction zstd level.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{FixedSizeBinaryArray, RecordBatch};

use crate::catalog::{FileEntry, FileFormat};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::lifecycle::{EncodedFile, Format};
use crate::model::SpanRecord;
use crate::spans::decode::Columns;
use crate::spans::schema::{SCHEMA_VERSION, SERVICE_NAME, START, TRACE_ID};
use crate::spans::{SpanReader, TraceIdFilter, encode_spans};
use crate::store::Signal;

impl crate::fresh::Row for SpanRecord {
    fn trace_id(&self) -> Option<crate::model::TraceId> {
        Some(self.trace_id)
    }
}

/// Spans as Parquet files; shares the query side's reader (and its footer cache).
pub struct SpanFormat {
    reader: Arc<SpanReader>,
}

impl SpanFormat {
    pub fn new(reader: Arc<SpanReader>) -> Self {
        SpanFormat { reader }
    }
}

impl Format for SpanFormat {
    type Row = SpanRecord;
    const SIGNAL: Signal = Signal::Traces;
    const FILE_FORMAT: FileFormat = FileFormat::Parquet;
    const EXTENSION: &'static str = "parquet";
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;

    fn encode(&self, chunks: &[Arc<Chunk<SpanRecord>>]) -> Result<EncodedFile, StorageError> {
        let spans: Vec<&SpanRecord> = chunks.iter().flat_map(|c| c.rows()).collect();
        encode_spans(spans)
    }

    async fn merge(&self, files: &[Arc<FileEntry>]) -> Result<EncodedFile, StorageError> {
        let mut batches = Vec::new();
        let mut json_keys = BTreeSet::new();
        for f in files {
            batches.extend(self.reader.read_all(f).await?);
            json_keys.extend(self.reader.json_keys(f).await?.unwrap_or_default());
        }
        tokio::task::spawn_blocking(move || merge_sorted(batches, json_keys))
            .await
            .map_err(|e| StorageError::Internal(format!("compaction task failed: {e}")))?
    }

    fn forget(&self, id: &str) {
        self.reader.forget(id);
    }
}

/// Merges batches (each file already sorted) into one file sorted by (trace id, start).
/// Sorts (batch, row) positions rather than concatenating, and writes the output a row group
/// at a time, so memory stays near the size of the inputs.
fn merge_sorted(
    batches: Vec<RecordBatch>,
    json_keys: BTreeSet<String>,
) -> Result<EncodedFile, StorageError> {
    let err = |e: arrow_schema::ArrowError| StorageError::parquet("<compaction>", e);
    let mut ids: Vec<&FixedSizeBinaryArray> = Vec::new();
    let mut starts = Vec::new();
    for b in &batches {
        let c = Columns::new(b);
        ids.push(
            c.fixed(TRACE_ID)
                .ok_or_else(|| StorageError::parquet("<compaction>", "no trace_id"))?,
        );
        starts.push(
            c.timestamp(START)
                .ok_or_else(|| StorageError::parquet("<compaction>", "no start_time"))?,
        );
    }
    let mut order: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    order.sort_unstable_by(|&(ab, ar), &(bb, br)| {
        ids[ab]
            .value(ar)
            .cmp(ids[bb].value(br))
            .then(starts[ab].value(ar).cmp(&starts[bb].value(br)))
    });
    let mut filter = TraceIdFilter::with_capacity(order.len() / 8 + 1);
    let mut last: Option<&[u8]> = None;
    for &(b, r) in &order {
        let id = ids[b].value(r);
        if last != Some(id) {
            if let Ok(id) = id.try_into() {
                filter.insert(&id);
            }
            last = Some(id);
        }
    }
    let mut services = BTreeSet::new();
    for b in &batches {
        if let Some(col) = Columns::new(b).string(SERVICE_NAME) {
            for r in 0..b.num_rows() {
                if let Some(s) = col.get(r)
                    && !services.contains(s)
                {
                    services.insert(s.to_string());
                }
            }
        }
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let chunks = order
        .chunks(crate::spans::encode::ROW_GROUP_ROWS)
        .map(|chunk| arrow_select::interleave::interleave_record_batch(&refs, chunk).map_err(err));
    let bytes = crate::spans::encode::write_parquet_batches(
        chunks,
        crate::spans::encode::COMPACTION_ZSTD_LEVEL,
        &json_keys,
    )?;
    Ok(EncodedFile {
        bytes,
        rows: order.len() as u64,
        min_time_unix_nano: 0,
        max_time_unix_nano: 0,
        services: services.into_iter().collect(),
        trace_filter: Some(filter),
    })
}

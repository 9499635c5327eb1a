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
use crate::spans::decode::Columns;
use crate::spans::rows::SpanRows;
use crate::spans::schema::{SCHEMA_VERSION, START, TRACE_ID};
use crate::spans::{SpanReader, TraceIdFilter, encode_rows};
use crate::store::Signal;

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
    type Rows = SpanRows;
    const SIGNAL: Signal = Signal::Traces;
    const FILE_FORMAT: FileFormat = FileFormat::Parquet;
    const EXTENSION: &'static str = "parquet";
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;

    fn encode(&self, chunks: &[Arc<Chunk<SpanRows>>]) -> Result<EncodedFile, StorageError> {
        let rows: Vec<&SpanRows> = chunks.iter().map(|c| c.rows()).collect();
        encode_rows(&rows)
    }

    async fn merge(&self, files: &[Arc<FileEntry>]) -> Result<EncodedFile, StorageError> {
        let mut batches = Vec::new();
        // The merged file knows its keys only if every input did.
        let mut json_keys = Some(BTreeSet::new());
        for f in files {
            batches.extend(self.reader.read_all(f).await?);
            match (self.reader.json_keys(f).await?, json_keys.as_mut()) {
                (Some(keys), Some(all)) => all.extend(keys),
                _ => json_keys = None,
            }
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
    json_keys: Option<BTreeSet<String>>,
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
    // Sized by the distinct traces (sorted: count the id changes), not by rows: short traces
    // would otherwise overfill it.
    let distinct = order
        .windows(2)
        .filter(|w| ids[w[0].0].value(w[0].1) != ids[w[1].0].value(w[1].1))
        .count()
        + 1;
    let mut filter = TraceIdFilter::with_capacity(distinct);
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
    let services = crate::spans::decode::services_in(batches.iter());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let chunks = order
        .chunks(crate::spans::encode::ROW_GROUP_ROWS)
        .map(|chunk| arrow_select::interleave::interleave_record_batch(&refs, chunk).map_err(err));
    let bytes = crate::spans::encode::write_parquet_batches(
        chunks,
        crate::spans::encode::COMPACTION_ZSTD_LEVEL,
        json_keys.as_ref(),
    )?;
    Ok(EncodedFile {
        bytes,
        rows: order.len() as u64,
        min_time_unix_nano: 0,
        max_time_unix_nano: 0,
        services: services.into_iter().collect(),
        trace_filter: Some(filter),
        index: None,
        series: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::conformance::{add, chunks, compact_spans, span};
    use crate::lifecycle::{EncodedFile, upload, write_file};
    use crate::model::SpanRecord;
    use crate::model::{AttrValue, TraceId};
    use crate::spans::SpanFilter;
    use crate::store::Storage;
    use loupe_core::TenantId;

    const T0: i64 = 1_700_000_000_000_000_000;

    fn one_span_traces(file: u32, n: u32) -> Vec<SpanRecord> {
        (0..n)
            .map(|i| {
                let mut s = span(0, 1, None, "svc", "op", T0 + i as i64, 10);
                s.trace_id[..4].copy_from_slice(&file.to_be_bytes());
                s.trace_id[4..8].copy_from_slice(&i.to_be_bytes());
                s
            })
            .collect()
    }

    #[tokio::test]
    async fn compaction_sizes_the_trace_filter_by_distinct_traces() {
        let storage = Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let format = Arc::new(SpanFormat::new(Arc::new(SpanReader::new(storage))));
        for f in 0..4 {
            let e = write_file(
                &catalog,
                &format,
                &tenant,
                chunks(one_span_traces(f, 2000)),
                vec![],
            )
            .await
            .unwrap();
            add(&catalog, &tenant, vec![e]).await;
        }
        compact_spans(&catalog, &format, &tenant).await;
        let state = catalog.refresh(&tenant, Signal::Traces).await.unwrap();
        let merged = state.files().next().unwrap();
        let filter = merged.trace_filter.as_ref().unwrap();
        let strangers = (0..10_000u32)
            .filter(|i| {
                let mut id: TraceId = [0xee; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                filter.may_contain(&id)
            })
            .count();
        assert!(strangers < 300, "{strangers} of 10000 false positives");
    }

    #[tokio::test]
    async fn a_file_without_key_metadata_keeps_its_matches_after_compaction() {
        let storage = Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let reader = Arc::new(SpanReader::new(storage.clone()));
        let format = Arc::new(SpanFormat::new(reader.clone()));
        // An older file: no key list in its footer, and a key only it has.
        let mut old = span(9, 1, None, "svc", "op", T0, 10);
        old.attributes
            .0
            .push(("legacy.key".into(), AttrValue::Str("v".into())));
        let rows = SpanRows::from_records(&[old]).unwrap();
        let encoded = crate::spans::encode_rows(&[&rows]).unwrap();
        let batch = {
            let file = bytes::Bytes::from(encoded.bytes);
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap();
            builder.build().unwrap().next().unwrap().unwrap()
        };
        let bare = crate::spans::encode::write_parquet_batches(
            std::iter::once(Ok(batch)),
            crate::spans::encode::FLUSH_ZSTD_LEVEL,
            None,
        )
        .unwrap();
        let entry = upload::<SpanFormat>(
            &catalog,
            &tenant,
            EncodedFile {
                bytes: bare,
                rows: 1,
                min_time_unix_nano: T0,
                max_time_unix_nano: T0 + 10,
                services: vec!["svc".into()],
                trace_filter: None,
                index: None,
                series: None,
            },
            0,
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(reader.json_keys(&entry).await.unwrap(), None);
        let mut entries = vec![entry];
        for f in 0..3 {
            entries.push(
                write_file(
                    &catalog,
                    &format,
                    &tenant,
                    chunks(one_span_traces(f, 10)),
                    vec![],
                )
                .await
                .unwrap(),
            );
        }
        add(&catalog, &tenant, entries).await;
        assert_eq!(compact_spans(&catalog, &format, &tenant).await, 1);
        let state = catalog.refresh(&tenant, Signal::Traces).await.unwrap();
        let file = state.files().next().unwrap().clone();
        assert_eq!(
            reader.json_keys(&file).await.unwrap(),
            None,
            "keys unknown, not none"
        );
        let filter = SpanFilter {
            start_unix_nano: T0 - 1,
            end_unix_nano: T0 + 1_000_000,
            tags: vec![("legacy.key".into(), "v".into())],
            ..Default::default()
        };
        let hits = reader.scan(&file, &filter).await.unwrap();
        assert_eq!(hits.len(), 1, "the older file's span is still found");
    }

    #[tokio::test]
    async fn fresh_spans_and_file_rows_answer_every_filter_alike() {
        use crate::model::{SpanKind, StatusCode};
        let storage = Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let reader = Arc::new(SpanReader::new(storage));
        let format = Arc::new(SpanFormat::new(reader.clone()));
        // The same key on the span and on its resource, with different values.
        let mut s = span(3, 1, None, "svc", "op", T0, 10);
        s.attributes
            .0
            .push(("dup.key".into(), AttrValue::Str("span".into())));
        let mut res = (*s.resource).clone();
        res.attributes
            .0
            .push(("dup.key".into(), AttrValue::Str("resource".into())));
        s.resource = Arc::new(res);
        s.status_message = "card declined".into();
        let entry = write_file(&catalog, &format, &tenant, chunks(vec![s.clone()]), vec![])
            .await
            .unwrap();
        let base = SpanFilter {
            start_unix_nano: T0 - 1,
            end_unix_nano: T0 + 1,
            ..Default::default()
        };
        let tag = |k: &str, v: &str| SpanFilter {
            tags: vec![(k.into(), v.into())],
            ..base.clone()
        };
        let cases = vec![
            tag("dup.key", "span"),
            tag("dup.key", "resource"),
            tag("dup.key", "other"),
            tag("service.name", "svc"),
            tag("custom.res", "7"),
            SpanFilter {
                kind: Some(SpanKind::Server),
                ..base.clone()
            },
            SpanFilter {
                kind: Some(SpanKind::Client),
                ..base.clone()
            },
            SpanFilter {
                status_not: Some(StatusCode::Error),
                ..base.clone()
            },
            SpanFilter {
                status_not: Some(s.status_code),
                ..base.clone()
            },
            SpanFilter {
                status_message: Some("card declined".into()),
                ..base.clone()
            },
            SpanFilter {
                status_message: Some("ok".into()),
                ..base.clone()
            },
        ];
        // Fresh rows as the collector buffers them, matched by the file predicate.
        let rows = SpanRows::from_records(std::slice::from_ref(&s)).unwrap();
        for f in cases {
            let record = f.matches(&s);
            let fresh = !f.matching_rows(rows.batch()).is_empty();
            let stored = !reader.scan(&entry, &f).await.unwrap().is_empty();
            assert_eq!(record, stored, "{f:?}");
            assert_eq!(fresh, stored, "{f:?}");
        }
        assert!(
            tag("dup.key", "resource").matches(&s),
            "span OR resource attribute"
        );
    }
}

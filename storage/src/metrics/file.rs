//! The metric Parquet format (schema version 1): one row per sample, sorted by (metric,
//! labels, time), so a series is a run of rows and a metric a range of row groups.
//!
//! | column | type | encoding |
//! | --- | --- | --- |
//! | `metric` | dictionary string | dictionary + RLE: a run per metric |
//! | `labels` | dictionary string (the labels but the name, as a JSON object with sorted keys) | dictionary + RLE: a run per series |
//! | `time` | timestamp (ms, UTC) | `DELTA_BINARY_PACKED`: regular scrapes are near-constant deltas |
//! | `value` | float64 (stale markers bit for bit) | `BYTE_STREAM_SPLIT`, then zstd |
//!
//! The footer's key-value metadata `loupe.metadata` holds the metric families' type, unit and
//! help (JSON). Duplicate samples of a series (same timestamp) are kept once: the first
//! written wins, as Prometheus keeps the first.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, DictionaryArray, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::StorageError;
use crate::lifecycle::EncodedFile;
use crate::metrics::index::SeriesIndex;
use crate::metrics::model::{Labels, MetricMeta, Sample, Series};

pub const SCHEMA_VERSION: u32 = 1;
pub const METRIC: &str = "metric";
pub const LABELS: &str = "labels";
pub const TIME: &str = "time";
pub const VALUE: &str = "value";
/// Footer key of the metric families' metadata.
pub const METADATA_KEY: &str = "loupe.metadata";

const ROW_GROUP_ROWS: usize = 128 * 1024;
const PAGE_ROWS: usize = 8 * 1024;

pub static METRIC_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let dict = |name: &str| {
        Field::new(
            name,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        dict(METRIC),
        dict(LABELS),
        Field::new(
            TIME,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(VALUE, DataType::Float64, false),
    ]))
});

/// Series merged by labels, samples sorted by time, one sample per timestamp (the first
/// given wins).
pub fn merge_series(parts: impl IntoIterator<Item = Series>) -> Vec<Series> {
    let mut by: BTreeMap<Arc<Labels>, Vec<Sample>> = BTreeMap::new();
    for s in parts {
        by.entry(s.labels).or_default().extend(s.samples);
    }
    by.into_iter()
        .map(|(labels, mut samples)| {
            // Stable: of equal timestamps the earliest given stays first.
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
            Series { labels, samples }
        })
        .collect()
}

fn writer_properties(zstd_level: i32, metadata: &[MetricMeta]) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_column_dictionary_enabled(ColumnPath::from(TIME), false)
        .set_column_encoding(ColumnPath::from(TIME), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(VALUE), false)
        .set_column_encoding(ColumnPath::from(VALUE), Encoding::BYTE_STREAM_SPLIT);
    if !metadata.is_empty() {
        b = b.set_key_value_metadata(Some(vec![KeyValue::new(
            METADATA_KEY.to_string(),
            serde_json::to_string(metadata).unwrap_or_default(),
        )]));
    }
    b.build()
}

/// Metadata of each family once (the last given wins), sorted by metric.
pub fn merge_metadata(parts: impl IntoIterator<Item = MetricMeta>) -> Vec<MetricMeta> {
    let mut by: BTreeMap<String, MetricMeta> = BTreeMap::new();
    for m in parts {
        by.insert(m.metric.clone(), m);
    }
    by.into_values().collect()
}

/// Encodes merged series (see [`merge_series`]) into one file.
pub fn encode_series(
    series: &[Series],
    metadata: &[MetricMeta],
    zstd_level: i32,
) -> Result<EncodedFile, StorageError> {
    let err = |e: parquet::errors::ParquetError| StorageError::parquet("<new metric file>", e);
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        METRIC_SCHEMA.clone(),
        Some(writer_properties(zstd_level, metadata)),
    )
    .map_err(err)?;
    let mut rows = 0u64;
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut jobs: Vec<String> = Vec::new();
    // Batches of whole series up to about a row group each.
    let mut start = 0;
    while start < series.len() {
        let mut end = start;
        let mut n = 0;
        while end < series.len() && (n == 0 || n + series[end].samples.len() <= ROW_GROUP_ROWS) {
            n += series[end].samples.len();
            end += 1;
        }
        let part = &series[start..end];
        writer.write(&to_batch(part)?).map_err(err)?;
        for s in part {
            rows += s.samples.len() as u64;
            if let (Some(a), Some(b)) = (s.samples.first(), s.samples.last()) {
                min_t = min_t.min(a.t);
                max_t = max_t.max(b.t);
            }
            if let Some(job) = s.labels.get("job") {
                jobs.push(job.to_string());
            }
        }
        start = end;
    }
    let bytes = writer.into_inner().map_err(err)?;
    jobs.sort_unstable();
    jobs.dedup();
    if rows == 0 {
        (min_t, max_t) = (0, 0);
    }
    Ok(EncodedFile {
        bytes,
        rows,
        min_time_unix_nano: min_t.saturating_mul(1_000_000),
        max_time_unix_nano: max_t.saturating_mul(1_000_000),
        services: jobs,
        trace_filter: None,
        index: None,
        series: Some(SeriesIndex::build(series.iter().map(|s| &*s.labels))),
    })
}

fn to_batch(series: &[Series]) -> Result<RecordBatch, StorageError> {
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    let mut metric_values: Vec<&str> = Vec::new();
    let mut metric_keys = Vec::with_capacity(n);
    let mut label_values: Vec<String> = Vec::with_capacity(series.len());
    let mut label_keys = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    for s in series {
        let name = s.labels.name();
        if metric_values.last() != Some(&name) {
            metric_values.push(name);
        }
        let m = (metric_values.len() - 1) as i32;
        label_values.push(s.labels.key_without_name());
        let l = (label_values.len() - 1) as i32;
        for x in &s.samples {
            metric_keys.push(m);
            label_keys.push(l);
            times.push(x.t);
            values.push(x.v);
        }
    }
    let dict = |keys: Vec<i32>, values: StringArray| {
        DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), Arc::new(values))
            .map_err(|e| StorageError::Internal(format!("metric batch: {e}")))
    };
    RecordBatch::try_new(
        METRIC_SCHEMA.clone(),
        vec![
            Arc::new(dict(metric_keys, StringArray::from(metric_values))?),
            Arc::new(dict(label_keys, StringArray::from(label_values))?),
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .map_err(|e| StorageError::Internal(format!("metric batch: {e}")))
}

/// The rows of one decoded batch as series runs, calling `keep` once per distinct series
/// to decide whether its samples (within `[start_ms, end_ms]`) are wanted.
pub fn batch_series(
    path: &str,
    batch: &RecordBatch,
    start_ms: i64,
    end_ms: i64,
    keep: &mut dyn FnMut(&Labels) -> bool,
    out: &mut Vec<Series>,
) -> Result<(), StorageError> {
    let bad = |what: &str| StorageError::parquet(path, format!("metric file: bad {what} column"));
    let dict = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<DictionaryArray<Int32Type>>())
            .and_then(|d| {
                let v = d.values().as_any().downcast_ref::<StringArray>()?;
                Some((d.keys(), v))
            })
    };
    let (mk, mv) = dict(METRIC).ok_or_else(|| bad(METRIC))?;
    let (lk, lv) = dict(LABELS).ok_or_else(|| bad(LABELS))?;
    let times = batch
        .column_by_name(TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| bad(TIME))?;
    let values = batch
        .column_by_name(VALUE)
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        .ok_or_else(|| bad(VALUE))?;
    let mut current: Option<(i32, i32, bool)> = None;
    for i in 0..batch.num_rows() {
        let (m, l) = (mk.value(i), lk.value(i));
        let wanted = match current {
            Some((cm, cl, w)) if cm == m && cl == l => w,
            _ => {
                let labels = Labels::from_key(mv.value(m as usize), lv.value(l as usize))
                    .map_err(|e| StorageError::parquet(path, e))?;
                let w = keep(&labels);
                if w {
                    out.push(Series {
                        labels: Arc::new(labels),
                        samples: Vec::new(),
                    });
                }
                current = Some((m, l, w));
                w
            }
        };
        let t = times.value(i);
        if wanted
            && t >= start_ms
            && t <= end_ms
            && let Some(s) = out.last_mut()
        {
            s.samples.push(Sample {
                t,
                v: values.value(i),
            });
        }
    }
    Ok(())
}

/// Every series of a whole file (compaction).
pub fn read_all(path: &str, bytes: Bytes) -> Result<(Vec<Series>, Vec<MetricMeta>), StorageError> {
    let err = |e: parquet::errors::ParquetError| StorageError::parquet(path, e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(err)?;
    let metadata = file_metadata(
        path,
        builder.metadata().file_metadata().key_value_metadata(),
    )?;
    let reader = builder.with_batch_size(64 * 1024).build().map_err(err)?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| StorageError::parquet(path, e))?;
        batch_series(path, &b, i64::MIN, i64::MAX, &mut |_| true, &mut out)?;
    }
    Ok((out, metadata))
}

/// The metric families' metadata in a file's footer.
pub fn file_metadata(
    path: &str,
    kv: Option<&Vec<KeyValue>>,
) -> Result<Vec<MetricMeta>, StorageError> {
    let Some(json) = kv
        .into_iter()
        .flatten()
        .find(|k| k.key == METADATA_KEY)
        .and_then(|k| k.value.as_deref())
    else {
        return Ok(Vec::new());
    };
    serde_json::from_str(json).map_err(|e| StorageError::Corrupt {
        what: "metric metadata",
        path: path.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, job: &str, samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Arc::new(Labels::new(vec![
                ("__name__".into(), name.into()),
                ("job".into(), job.into()),
            ])),
            samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        }
    }

    #[test]
    fn series_round_trip_sorted_and_deduplicated() {
        let stale = f64::from_bits(crate::metrics::model::STALE_NAN_BITS);
        let merged = merge_series(vec![
            series("up", "b", &[(3, 1.0), (1, 1.0)]),
            series("up", "a", &[(1, 0.0)]),
            series("http_requests_total", "a", &[(2, 5.0), (4, stale)]),
            series("up", "b", &[(3, 9.0), (2, f64::NAN)]),
        ]);
        let meta = vec![MetricMeta {
            metric: "up".into(),
            kind: "gauge".into(),
            unit: String::new(),
            help: "Is it up".into(),
        }];
        let f = encode_series(&merged, &meta, 3).unwrap();
        assert_eq!(f.rows, 6);
        assert_eq!(f.min_time_unix_nano, 1_000_000);
        assert_eq!(f.max_time_unix_nano, 4_000_000);
        assert_eq!(f.services, vec!["a", "b"]);
        let (back, m) = read_all("t", Bytes::from(f.bytes)).unwrap();
        assert_eq!(m, meta);
        let names: Vec<String> = back.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            names,
            vec![
                "http_requests_total{job=\"a\"}",
                "up{job=\"a\"}",
                "up{job=\"b\"}"
            ]
        );
        let b = &back[2].samples;
        assert_eq!(b.iter().map(|s| s.t).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(b[1].v.is_nan());
        assert_eq!(b[2].v, 1.0, "the first sample of a timestamp wins");
        assert_eq!(back[0].samples[1].v.to_bits(), stale.to_bits());
    }
}

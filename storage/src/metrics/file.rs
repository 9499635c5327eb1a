//! The metric Parquet format (schema version 1): one row per sample, sorted by (metric,
//! labels, time), so a series is a run of rows and a metric a range of row groups.
//!
//! | column | type | encoding |
//! | --- | --- | --- |
//! | `metric` | dictionary string, on a series' first row (null on the rest) | dictionary + RLE |
//! | `labels` | dictionary string (the labels but the name, as a JSON object with sorted keys), on a series' first row | dictionary + RLE |
//! | `time` | timestamp (ms, UTC) | `DELTA_BINARY_PACKED`: regular scrapes are near-constant deltas |
//! | `base` | int64: a run's first mantissa, null elsewhere | `DELTA_BINARY_PACKED` |
//! | `mantissa` | int64: the difference from the previous mantissa of the run (0 at its start) over the series' `step`, zigzag-coded; null where `value` holds the sample | `BYTE_STREAM_SPLIT`, then zstd |
//! | `step` | int64: the greatest common divisor of the series' differences, on its first row | dictionary + RLE |
//! | `exponent` | int8: the sample is `mantissa / 10^exponent`, on the series' first row | dictionary + RLE |
//! | `value` | float64, null where `mantissa` holds the sample | `BYTE_STREAM_SPLIT`, then zstd |
//! | `exemplar` | string, null in sample rows (see [`crate::metrics::exemplars`]) | zstd |
//!
//! A series' name, labels, step and exponent are written once, on its first row: the rest
//! of its rows carry them forward (cheaper to write than the same dictionary entry per
//! sample, the same size stored). Version 1 files repeat them on every row and have no
//! `exemplar` column; both are read.
//!
//! Most samples are decimals of a few digits (counters, bytes, two-decimal seconds), whose
//! float bits look random to a compressor; as integers at the series' common decimal
//! exponent, consecutive samples differ by small amounts that delta packing stores in a few
//! bits. A sample is a mantissa only when dividing it back gives the very same float bits;
//! NaN, infinities, stale markers, -0.0 and floats with more digits stay in `value`. A run
//! is a series' consecutive mantissa samples; its first mantissa sits in `base` and the
//! rest as differences, so the jump from one series' values to the next costs nothing.
//! Differences are divided by the series' common step (byte counters move in pages) and
//! zigzag-coded, then their bytes split into streams for zstd: small differences leave the
//! high streams all zero and zstd's entropy coder prices the low ones near their entropy
//! (measured on the benchmark's series: 7.2 bits per sample, where delta bit packing took
//! 8.8, because it pays for the widest value of every 32). Every row group starts a series,
//! so a run never crosses one.
//!
//! Schema version 2 adds exemplar row groups after the samples
//! ([`crate::metrics::exemplars`]).
//!
//! The footer's key-value metadata `loupe.metadata` holds the metric families' type, unit and
//! help (JSON). Duplicate samples of a series (same timestamp) are kept once: the first
//! written wins, as Prometheus keeps the first.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, DictionaryArray, Float64Array, Int8Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::StorageError;
use crate::lifecycle::EncodedFile;
use crate::metrics::decimal::{MAX_DIGITS, POW10, common_step, decimal, digits, unzigzag, zigzag};
use crate::metrics::exemplars::{self, EXEMPLAR_GROUPS_KEY, first_exemplar_group};
use crate::metrics::index::SeriesIndex;
use crate::metrics::model::{Labels, MetricMeta, Sample, Series, SeriesExemplars};

pub const SCHEMA_VERSION: u32 = 2;
pub const METRIC: &str = "metric";
pub const LABELS: &str = "labels";
pub const TIME: &str = "time";
pub const VALUE: &str = "value";
pub const MANTISSA: &str = "mantissa";
pub const BASE: &str = "base";
pub const STEP: &str = "step";
pub const EXPONENT: &str = "exponent";
pub const EXEMPLAR: &str = "exemplar";
/// The columns sample rows use (not `exemplar`).
pub const SAMPLE_COLUMNS: [&str; 8] = [METRIC, LABELS, TIME, BASE, MANTISSA, EXPONENT, STEP, VALUE];
/// Footer key of the metric families' metadata.
pub const METADATA_KEY: &str = "loupe.metadata";

const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Pages as large as a row group: a query reads whole row groups, and zstd gains from the
/// longer streams.
const PAGE_ROWS: usize = ROW_GROUP_ROWS;

pub static METRIC_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let dict = |name: &str| {
        Field::new(
            name,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
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
        Field::new(BASE, DataType::Int64, true),
        Field::new(MANTISSA, DataType::Int64, true),
        Field::new(EXPONENT, DataType::Int8, true),
        Field::new(STEP, DataType::Int64, true),
        Field::new(VALUE, DataType::Float64, true),
        Field::new(EXEMPLAR, DataType::Utf8, true),
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

/// zstd level of the differences and run bases at compaction: their byte streams are mostly
/// zeros, so level 19 costs little (≈0.3 µs per sample) and saves 6% of the differences over
/// level 9. Times and label sets stay at the file's level: at 19 their compression took a
/// third of the server's CPU in a benchmark run for 0.006 bytes per sample. Flushed files
/// are short-lived (compaction rewrites them) and keep the flush level: at 15 each flush
/// re-compressed its whole label dictionary and ingest lost a third of its speed.
fn sample_level(zstd_level: i32) -> i32 {
    if zstd_level >= 9 { 19 } else { zstd_level }
}

fn writer_properties(zstd_level: i32, metadata: &[MetricMeta]) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let dense = Compression::ZSTD(ZstdLevel::try_new(sample_level(zstd_level)).unwrap_or_default());
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_column_compression(ColumnPath::from(MANTISSA), dense)
        .set_column_compression(ColumnPath::from(BASE), dense)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_column_dictionary_enabled(ColumnPath::from(TIME), false)
        .set_column_encoding(ColumnPath::from(TIME), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(BASE), false)
        .set_column_encoding(ColumnPath::from(BASE), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(MANTISSA), false)
        .set_column_encoding(ColumnPath::from(MANTISSA), Encoding::BYTE_STREAM_SPLIT)
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

/// Series merged by labels in no particular order (queries), samples sorted by time, one
/// per timestamp (the first given wins). Each part comes with its labels' fingerprint
/// ([`Labels::fingerprint`], kept with decoded row groups), so a merge hashes nothing; equal
/// fingerprints are checked label by label.
pub fn merge_unordered(parts: Vec<(u64, Series)>) -> Vec<Series> {
    type Fast = foldhash::fast::RandomState;
    let mut index: std::collections::HashMap<u64, usize, Fast> =
        std::collections::HashMap::default();
    // Series whose fingerprint another series already has (practically never).
    let mut collided: std::collections::HashMap<Arc<Labels>, usize, Fast> =
        std::collections::HashMap::default();
    let mut out: Vec<Series> = Vec::with_capacity(parts.len());
    let mut repeated = false;
    for (f, s) in parts {
        let found = match index.get(&f) {
            Some(&i) if Arc::ptr_eq(&out[i].labels, &s.labels) || out[i].labels == s.labels => {
                Some(i)
            }
            Some(_) => collided.get(&s.labels).copied(),
            None => None,
        };
        match found {
            Some(i) => {
                out[i].samples.extend(s.samples);
                repeated = true;
            }
            None => {
                match index.entry(f) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        collided.insert(s.labels.clone(), out.len());
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(out.len());
                    }
                }
                out.push(s);
            }
        }
    }
    if repeated {
        for s in &mut out {
            if !s.samples.is_sorted_by_key(|x| x.t) {
                s.samples.sort_by_key(|x| x.t);
            }
            s.samples.dedup_by_key(|x| x.t);
        }
    }
    out
}

/// Metadata of each family once (the last given wins), sorted by metric.
pub fn merge_metadata(parts: impl IntoIterator<Item = MetricMeta>) -> Vec<MetricMeta> {
    let mut by: BTreeMap<String, MetricMeta> = BTreeMap::new();
    for m in parts {
        by.insert(m.metric.clone(), m);
    }
    by.into_values().collect()
}

/// Encodes merged series (see [`merge_series`]) and exemplars (see
/// [`merge_exemplars`](crate::metrics::exemplars::merge_exemplars)) into one file.
pub fn encode_series(
    series: &[Series],
    exemplars: &[SeriesExemplars],
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
    let mut groups = 0usize;
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
        // A row group per batch: runs (and series) never cross one.
        writer.flush().map_err(err)?;
        groups += 1;
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
    if exemplars.iter().any(|s| !s.exemplars.is_empty()) {
        writer.append_key_value_metadata(KeyValue::new(
            EXEMPLAR_GROUPS_KEY.to_string(),
            groups.to_string(),
        ));
        let mut start = 0;
        while start < exemplars.len() {
            let mut end = start;
            let mut n = 0;
            while end < exemplars.len()
                && (n == 0 || n + exemplars[end].exemplars.len() <= ROW_GROUP_ROWS)
            {
                n += exemplars[end].exemplars.len();
                end += 1;
            }
            writer
                .write(&exemplars::to_batch(&exemplars[start..end])?)
                .map_err(err)?;
            writer.flush().map_err(err)?;
            for e in exemplars[start..end].iter().flat_map(|s| &s.exemplars) {
                min_t = min_t.min(e.t);
                max_t = max_t.max(e.t);
            }
            start = end;
        }
    }
    let bytes = writer.into_inner().map_err(err)?;
    jobs.sort_unstable();
    jobs.dedup();
    if min_t > max_t {
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
        series: Some(SeriesIndex::build(
            series
                .iter()
                .map(|s| &*s.labels)
                .chain(exemplars.iter().map(|s| &*s.labels)),
        )),
    })
}

fn to_batch(series: &[Series]) -> Result<RecordBatch, StorageError> {
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    let mut metric_values: Vec<&str> = Vec::new();
    let mut metric_keys = Vec::with_capacity(n);
    let mut label_values: Vec<String> = Vec::with_capacity(series.len());
    let mut label_keys = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut mantissas: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut bases: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut exponents: Vec<Option<i8>> = Vec::with_capacity(n);
    let mut steps: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut values: Vec<Option<f64>> = Vec::with_capacity(n);
    for s in series {
        // The series' exponent: the most digits any of its decimal samples needs.
        let d = s
            .samples
            .iter()
            .filter_map(|x| digits(x.v))
            .max()
            .unwrap_or(0);
        let step = common_step(s.samples.iter().map(|x| decimal(x.v, d)));
        let name = s.labels.name();
        if metric_values.last() != Some(&name) {
            metric_values.push(name);
        }
        let m = (metric_values.len() - 1) as i32;
        label_values.push(s.labels.key_without_name());
        let l = (label_values.len() - 1) as i32;
        let mut prev: Option<i64> = None;
        for (k, x) in s.samples.iter().enumerate() {
            // Named on its first row only: the writer need not look up the same label
            // text in its dictionary for every sample.
            let first = k == 0;
            metric_keys.push(first.then_some(m));
            label_keys.push(first.then_some(l));
            times.push(x.t);
            exponents.push(first.then_some(d as i8));
            steps.push(first.then_some(step));
            match decimal(x.v, d) {
                Some(mant) => {
                    match prev {
                        Some(p) => {
                            bases.push(None);
                            mantissas.push(Some(zigzag(mant.wrapping_sub(p) / step)));
                        }
                        None => {
                            bases.push(Some(mant));
                            mantissas.push(Some(0));
                        }
                    }
                    values.push(None);
                    prev = Some(mant);
                }
                None => {
                    bases.push(None);
                    mantissas.push(None);
                    values.push(Some(x.v));
                    prev = None;
                }
            }
        }
    }
    RecordBatch::try_new(
        METRIC_SCHEMA.clone(),
        vec![
            Arc::new(dict_array(metric_keys, StringArray::from(metric_values))?),
            Arc::new(dict_array(label_keys, StringArray::from(label_values))?),
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(Int64Array::from(bases)),
            Arc::new(Int64Array::from(mantissas)),
            Arc::new(Int8Array::from(exponents)),
            Arc::new(Int64Array::from(steps)),
            Arc::new(Float64Array::from(values)),
            Arc::new(StringArray::new_null(n)),
        ],
    )
    .map_err(|e| StorageError::Internal(format!("metric batch: {e}")))
}

/// A column of a metric batch as its array type.
pub(crate) fn column<'b, A: 'static>(
    path: &str,
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b A, StorageError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| StorageError::parquet(path, format!("metric file: bad {name} column")))
}

/// A dictionary string column of a metric batch: its keys and values.
pub(crate) fn dict_column<'b>(
    path: &str,
    batch: &'b RecordBatch,
    name: &str,
) -> Result<(&'b Int32Array, &'b StringArray), StorageError> {
    let d = column::<DictionaryArray<Int32Type>>(path, batch, name)?;
    let v = d
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| StorageError::parquet(path, format!("metric file: bad {name} column")))?;
    Ok((d.keys(), v))
}

/// A dictionary string column for a batch being written.
pub(crate) fn dict_array(
    keys: Vec<Option<i32>>,
    values: StringArray,
) -> Result<DictionaryArray<Int32Type>, StorageError> {
    DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), Arc::new(values))
        .map_err(|e| StorageError::Internal(format!("metric batch: {e}")))
}

/// What decoding carries from one batch to the next of a file: the last mantissa, and the
/// series under way (a series' later rows have no labels, step or exponent): whether it is
/// wanted, its step and exponent.
#[derive(Debug, Default)]
pub struct Run {
    mantissa: i64,
    wanted: Option<bool>,
    step: i64,
    exponent: i8,
}

/// The rows of one decoded batch as series runs, calling `keep` once per distinct series
/// to decide whether its samples (within `[start_ms, end_ms]`) are wanted.
pub fn batch_series(
    path: &str,
    run: &mut Run,
    batch: &RecordBatch,
    start_ms: i64,
    end_ms: i64,
    keep: &mut dyn FnMut(&Labels) -> bool,
    out: &mut Vec<Series>,
) -> Result<(), StorageError> {
    let (mk, mv) = dict_column(path, batch, METRIC)?;
    let (lk, lv) = dict_column(path, batch, LABELS)?;
    let times = column::<TimestampMillisecondArray>(path, batch, TIME)?;
    let values = column::<Float64Array>(path, batch, VALUE)?;
    let mantissas = column::<Int64Array>(path, batch, MANTISSA)?;
    let exponents = column::<Int8Array>(path, batch, EXPONENT)?;
    let bases = column::<Int64Array>(path, batch, BASE)?;
    let steps = column::<Int64Array>(path, batch, STEP)?;
    // The running mantissa (a run may continue from the previous batch of the row group);
    // step and exponent are the series' (version 1 repeats them on every row).
    let mut value = |i: usize| {
        if steps.is_valid(i) {
            run.step = steps.value(i);
        }
        if exponents.is_valid(i) {
            run.exponent = exponents.value(i);
        }
        if mantissas.is_valid(i) {
            let m = if bases.is_valid(i) {
                bases.value(i)
            } else {
                run.mantissa
                    .wrapping_add(unzigzag(mantissas.value(i)).wrapping_mul(run.step))
            };
            run.mantissa = m;
            let e = run.exponent.clamp(0, MAX_DIGITS as i8) as usize;
            m as f64 / POW10[e]
        } else {
            values.value(i)
        }
    };
    let mut current: Option<(i32, i32, bool)> = None;
    let mut series_wanted = run.wanted;
    for i in 0..batch.num_rows() {
        // Version 2 names a series on its first row only; version 1 on every row.
        let wanted = if lk.is_null(i) {
            series_wanted.ok_or_else(|| {
                StorageError::parquet(path, "metric file: a row group starts without labels")
            })?
        } else {
            let (m, l) = (mk.value(i), lk.value(i));
            if mk.is_null(i) {
                return Err(StorageError::parquet(
                    path,
                    "metric file: a series has labels but no metric",
                ));
            }
            match current {
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
            }
        };
        series_wanted = Some(wanted);
        let t = times.value(i);
        // Decoded for every row: the next row's difference builds on it.
        let v = value(i);
        if wanted
            && t >= start_ms
            && t <= end_ms
            && let Some(s) = out.last_mut()
        {
            s.samples.push(Sample { t, v });
        }
    }
    run.wanted = series_wanted;
    Ok(())
}

/// A whole file (compaction).
pub struct FileContents {
    pub series: Vec<Series>,
    pub exemplars: Vec<SeriesExemplars>,
    pub metadata: Vec<MetricMeta>,
}

/// Every series, exemplar and metadata entry of a whole file.
pub fn read_all(path: &str, bytes: Bytes) -> Result<FileContents, StorageError> {
    let err = |e: parquet::errors::ParquetError| StorageError::parquet(path, e);
    let meta = ArrowReaderMetadata::load(&bytes, Default::default()).map_err(err)?;
    let kv = meta.metadata().file_metadata().key_value_metadata();
    let metadata = file_metadata(path, kv)?;
    let groups = meta.metadata().num_row_groups();
    let first_exemplars = first_exemplar_group(kv).unwrap_or(groups).min(groups);
    let reader = |range: std::ops::Range<usize>| {
        ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
            .with_row_groups(range.collect())
            .with_batch_size(64 * 1024)
            .build()
            .map_err(err)
    };
    let mut exemplars = Vec::new();
    for b in reader(first_exemplars..groups)? {
        let b = b.map_err(|e| StorageError::parquet(path, e))?;
        exemplars::batch_exemplars(path, &b, i64::MIN, i64::MAX, &mut |_| true, &mut exemplars)?;
    }
    let mut out = Vec::new();
    let mut run = Run::default();
    for b in reader(0..first_exemplars)? {
        let b = b.map_err(|e| StorageError::parquet(path, e))?;
        batch_series(
            path,
            &mut run,
            &b,
            i64::MIN,
            i64::MAX,
            &mut |_| true,
            &mut out,
        )?;
    }
    Ok(FileContents {
        series: out,
        exemplars,
        metadata,
    })
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
#[path = "file_tests.rs"]
mod tests;

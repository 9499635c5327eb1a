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
    DictionaryArray, Float64Array, Int8Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
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
use crate::metrics::decimal::{common_step, decimal, digits, zigzag};
pub use crate::metrics::decode::{Run, batch_series};
pub(crate) use crate::metrics::decode::{column, dict_column};
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
    let groups = write_groups(
        &mut writer,
        series,
        |s| s.samples.len(),
        to_batch,
        |part| {
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
        },
    )?;
    if exemplars.iter().any(|s| !s.exemplars.is_empty()) {
        writer.append_key_value_metadata(KeyValue::new(
            EXEMPLAR_GROUPS_KEY.to_string(),
            groups.to_string(),
        ));
        write_groups(
            &mut writer,
            exemplars,
            |s| s.exemplars.len(),
            exemplars::to_batch,
            |part| {
                for e in part.iter().flat_map(|s| &s.exemplars) {
                    min_t = min_t.min(e.t);
                    max_t = max_t.max(e.t);
                }
            },
        )?;
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

/// Writes `items` (series, or exemplars by series) as row groups of whole items, about
/// [`ROW_GROUP_ROWS`] rows each, so a series never crosses one; `done` sees each group's
/// items. Returns how many row groups were written.
fn write_groups<T>(
    writer: &mut ArrowWriter<Vec<u8>>,
    items: &[T],
    rows: impl Fn(&T) -> usize,
    batch: impl Fn(&[T]) -> Result<RecordBatch, StorageError>,
    mut done: impl FnMut(&[T]),
) -> Result<usize, StorageError> {
    let err = |e: parquet::errors::ParquetError| StorageError::parquet("<new metric file>", e);
    let (mut start, mut groups) = (0, 0);
    while start < items.len() {
        let (mut end, mut n) = (start, 0);
        while end < items.len() && (n == 0 || n + rows(&items[end]) <= ROW_GROUP_ROWS) {
            n += rows(&items[end]);
            end += 1;
        }
        let part = &items[start..end];
        writer.write(&batch(part)?).map_err(err)?;
        writer.flush().map_err(err)?;
        groups += 1;
        done(part);
        start = end;
    }
    Ok(groups)
}

/// The `metric` and `labels` columns of a batch being written: each series' name and label
/// text once in the dictionaries, and per row either the series' keys or null (a sample row
/// after its series' first carries it forward).
pub(crate) struct NameColumns<'a> {
    metric_values: Vec<&'a str>,
    metric_keys: Vec<Option<i32>>,
    label_values: Vec<String>,
    label_keys: Vec<Option<i32>>,
}

impl<'a> NameColumns<'a> {
    pub(crate) fn with_capacity(rows: usize, series: usize) -> Self {
        NameColumns {
            metric_values: Vec::new(),
            metric_keys: Vec::with_capacity(rows),
            label_values: Vec::with_capacity(series),
            label_keys: Vec::with_capacity(rows),
        }
    }

    /// Starts the rows of the series `labels` (series come sorted, so a metric is a run).
    pub(crate) fn series(&mut self, labels: &'a Labels) {
        let name = labels.name();
        if self.metric_values.last() != Some(&name) {
            self.metric_values.push(name);
        }
        self.label_values.push(labels.key_without_name());
    }

    /// One row of the current series, naming it or not.
    pub(crate) fn row(&mut self, named: bool) {
        let (m, l) = (
            (self.metric_values.len() - 1) as i32,
            (self.label_values.len() - 1) as i32,
        );
        self.metric_keys.push(named.then_some(m));
        self.label_keys.push(named.then_some(l));
    }

    /// The two dictionary columns.
    pub(crate) fn finish(
        self,
    ) -> Result<(DictionaryArray<Int32Type>, DictionaryArray<Int32Type>), StorageError> {
        Ok((
            dict_array(self.metric_keys, StringArray::from(self.metric_values))?,
            dict_array(self.label_keys, StringArray::from(self.label_values))?,
        ))
    }
}

fn to_batch(series: &[Series]) -> Result<RecordBatch, StorageError> {
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    let mut names = NameColumns::with_capacity(n, series.len());
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
        names.series(&s.labels);
        let mut prev: Option<i64> = None;
        for (k, x) in s.samples.iter().enumerate() {
            // Named on its first row only: the writer need not look up the same label
            // text in its dictionary for every sample.
            let first = k == 0;
            names.row(first);
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
    let (metric, labels) = names.finish()?;
    RecordBatch::try_new(
        METRIC_SCHEMA.clone(),
        vec![
            Arc::new(metric),
            Arc::new(labels),
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

/// A dictionary string column for a batch being written.
pub(crate) fn dict_array(
    keys: Vec<Option<i32>>,
    values: StringArray,
) -> Result<DictionaryArray<Int32Type>, StorageError> {
    DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), Arc::new(values))
        .map_err(|e| StorageError::Internal(format!("metric batch: {e}")))
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

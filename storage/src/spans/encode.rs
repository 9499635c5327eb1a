//! `SpanRecord`s → one sorted, zstd-compressed Parquet file and the statistics its catalog
//! entry carries (time range, services, trace-id filter).

use std::collections::{BTreeSet, HashSet};

/// The keys that went to the JSON columns, hashed with foldhash: SipHash here was ~2% of
/// ingest CPU (perf on loupe-bench).
type KeySet<'a> = HashSet<&'a str, foldhash::fast::RandomState>;
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int8Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::StorageError;
use crate::lifecycle::EncodedFile;
use crate::model::{AttrValue, Attrs, SpanRecord};
use crate::spans::bloom::TraceIdFilter;
use crate::spans::schema::{
    self, RESOURCE_STR_COLUMNS, SPAN_ID, SPAN_INT_COLUMNS, SPAN_SCHEMA, SPAN_STR_COLUMNS,
};

/// Rows per row group. Lookups prune to pages (column and offset index), so row groups can be
/// large enough to compress well.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page: the unit a trace lookup reads from each column.
pub const PAGE_ROWS: usize = 4 * 1024;
/// Rows per data page in compacted files.
pub const COMPACTED_PAGE_ROWS: usize = 16 * 1024;
/// zstd level of files written by flushes (on the ingest path).
pub const FLUSH_ZSTD_LEVEL: i32 = 3;
/// zstd level of files written by compaction (in the background, read many times).
pub const COMPACTION_ZSTD_LEVEL: i32 = 9;

/// Sorts `spans` by (trace id, start) and encodes them as Parquet.
pub fn encode_spans(mut spans: Vec<&SpanRecord>) -> Result<EncodedFile, StorageError> {
    spans.sort_unstable_by(|a, b| {
        (a.trace_id, a.start_unix_nano, a.span_id).cmp(&(b.trace_id, b.start_unix_nano, b.span_id))
    });
    let (batch, json_keys) = to_record_batch(&spans)?;
    let mut services = BTreeSet::new();
    let mut filter = TraceIdFilter::with_capacity(distinct_traces(&spans));
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut last = None;
    for s in &spans {
        if last != Some(s.trace_id) {
            filter.insert(&s.trace_id);
            last = Some(s.trace_id);
        }
        if !services.contains(s.service_name()) {
            services.insert(s.service_name().to_string());
        }
        min_t = min_t.min(s.start_unix_nano);
        max_t = max_t.max(s.end_unix_nano());
    }
    let bytes = write_parquet_batches(
        std::iter::once(Ok(batch)),
        FLUSH_ZSTD_LEVEL,
        Some(&json_keys),
    )?;
    Ok(EncodedFile {
        bytes,
        rows: spans.len() as u64,
        min_time_unix_nano: if spans.is_empty() { 0 } else { min_t },
        max_time_unix_nano: if spans.is_empty() { 0 } else { max_t },
        services: services.into_iter().collect(),
        trace_filter: Some(filter),
    })
}

fn distinct_traces(sorted: &[&SpanRecord]) -> usize {
    sorted
        .windows(2)
        .filter(|w| w[0].trace_id != w[1].trace_id)
        .count()
        + 1
}

/// Writer settings shared by flushes and compaction.
pub fn writer_properties(zstd_level: i32) -> WriterProperties {
    // Compacted files (written at the higher level) get larger pages: better compression,
    // still one page per column per lookup.
    let page_rows = if zstd_level >= COMPACTION_ZSTD_LEVEL {
        COMPACTED_PAGE_ROWS
    } else {
        PAGE_ROWS
    };
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(page_rows)
        .set_statistics_enabled(EnabledStatistics::Page)
        // Random ids never repeat: skip the dictionary attempt.
        .set_column_dictionary_enabled(ColumnPath::from(SPAN_ID), false)
        // Timestamps and durations rarely repeat: delta encoding (readable by DuckDB, Spark,
        // Trino) beats the dictionary fallback by ~3 bytes per span (loupe-bench, 1M spans).
        .set_column_dictionary_enabled(ColumnPath::from(schema::START), false)
        .set_column_encoding(
            ColumnPath::from(schema::START),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_dictionary_enabled(ColumnPath::from(schema::DURATION), false)
        .set_column_encoding(
            ColumnPath::from(schema::DURATION),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 6,
                descending: false,
                nulls_first: false,
            },
        ]))
        .build()
}

/// Writes batches, in order, into one Parquet file, recording `json_keys` (the attribute keys
/// of its JSON columns) when they are known.
pub fn write_parquet_batches(
    batches: impl Iterator<Item = Result<RecordBatch, StorageError>>,
    zstd_level: i32,
    json_keys: Option<&BTreeSet<String>>,
) -> Result<Vec<u8>, StorageError> {
    let err = |e: parquet::errors::ParquetError| StorageError::parquet("<new file>", e);
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        SPAN_SCHEMA.clone(),
        Some(writer_properties(zstd_level)),
    )
    .map_err(err)?;
    for batch in batches {
        writer.write(&batch?).map_err(err)?;
    }
    // No key list means "keys unknown" to readers (they then read the JSON columns), never
    // "no keys": a merge of a file without the list must not claim one.
    if let Some(keys) = json_keys {
        let keys = serde_json::to_string(keys).unwrap_or_default();
        writer.append_key_value_metadata(KeyValue::new(JSON_KEYS_METADATA.to_string(), keys));
    }
    writer.into_inner().map_err(err)
}

/// Splits attributes into the promoted columns' values and the JSON of the rest.
/// Keys that went to the JSON columns are added to `json_keys`.
fn split_attrs<'a>(
    attrs: &'a Attrs,
    str_cols: &[(&str, &str)],
    int_cols: &[(&str, &str)],
    skip: &[&str],
    str_out: &mut [Option<&'a str>],
    int_out: &mut [Option<i64>],
    json_keys: &mut KeySet<'a>,
) -> Option<String> {
    let mut rest: Vec<&(String, AttrValue)> = Vec::new();
    for kv in &attrs.0 {
        let (k, v) = (kv.0.as_str(), &kv.1);
        if skip.contains(&k) {
            continue;
        }
        if let AttrValue::Str(s) = v
            && let Some(i) = str_cols.iter().position(|(key, _)| *key == k)
        {
            str_out[i] = Some(s);
            continue;
        }
        if let AttrValue::Int(n) = v
            && let Some(i) = int_cols.iter().position(|(key, _)| *key == k)
        {
            int_out[i] = Some(*n);
            continue;
        }
        rest.push(kv);
    }
    if rest.is_empty() {
        return None;
    }
    for (k, _) in &rest {
        json_keys.insert(k.as_str());
    }
    Some(serde_json::to_string(&RestAttrs(&rest)).unwrap_or_else(|_| "{}".to_string()))
}

/// Serializes borrowed attributes as a JSON object without cloning them.
struct RestAttrs<'a, 'b>(&'b [&'a (String, AttrValue)]);

impl serde::Serialize for RestAttrs<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Parquet key-value metadata listing the attribute keys stored in the JSON columns, so a
/// search for a key a file does not have skips the file.
pub const JSON_KEYS_METADATA: &str = "loupe.json_keys";

/// A resource already split into its promoted columns and JSON rest, keyed by its `Arc`.
type ResourceColumns = (
    *const crate::model::Resource,
    Vec<Option<String>>,
    Option<String>,
);

/// Builds a string column of the type the schema gives it (plain or dictionary).
enum StrBuilder {
    Plain(StringBuilder),
    Dict(StringDictionaryBuilder<Int32Type>),
}

impl StrBuilder {
    fn new(column: &str) -> Self {
        match SPAN_SCHEMA.field_with_name(column).map(|f| f.data_type()) {
            Ok(DataType::Dictionary(..)) => StrBuilder::Dict(StringDictionaryBuilder::new()),
            _ => StrBuilder::Plain(StringBuilder::new()),
        }
    }

    fn append(&mut self, v: Option<impl AsRef<str>>) {
        match self {
            StrBuilder::Plain(b) => b.append_option(v),
            StrBuilder::Dict(b) => b.append_option(v),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            StrBuilder::Plain(b) => Arc::new(b.finish()),
            StrBuilder::Dict(b) => Arc::new(b.finish()),
        }
    }
}

fn to_record_batch<'a>(
    spans: &[&'a SpanRecord],
) -> Result<(RecordBatch, BTreeSet<String>), StorageError> {
    let n = spans.len();
    let mut json_keys: KeySet<'a> = KeySet::default();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut trace_state = StrBuilder::new(schema::TRACE_STATE);
    let mut name = StrBuilder::new(schema::NAME);
    let mut kind = Int8Builder::with_capacity(n);
    let mut start = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration = Int64Builder::with_capacity(n);
    let mut status_code = Int8Builder::with_capacity(n);
    let mut status_message = StrBuilder::new(schema::STATUS_MESSAGE);
    let mut service = StrBuilder::new(schema::SERVICE_NAME);
    let mut res_cols: Vec<StrBuilder> = RESOURCE_STR_COLUMNS
        .iter()
        .map(|(_, c)| StrBuilder::new(c))
        .collect();
    let mut res_json = StrBuilder::new(schema::RESOURCE_ATTRIBUTES);
    let mut scope_name = StrBuilder::new(schema::SCOPE_NAME);
    let mut scope_version = StrBuilder::new(schema::SCOPE_VERSION);
    let mut span_cols: Vec<StrBuilder> = SPAN_STR_COLUMNS
        .iter()
        .map(|(_, c)| StrBuilder::new(c))
        .collect();
    let mut int_cols: Vec<Int64Builder> = SPAN_INT_COLUMNS
        .iter()
        .map(|_| Int64Builder::new())
        .collect();
    let mut attrs_json = StrBuilder::new(schema::ATTRIBUTES);
    let mut events = StrBuilder::new(schema::EVENTS);
    let mut links = StrBuilder::new(schema::LINKS);

    let bad = |e: arrow_schema::ArrowError| StorageError::parquet("<new file>", e);
    // Spans of one resource share an Arc: split its attributes once per run.
    let mut res_cache: Option<ResourceColumns> = None;
    let mut res_str: Vec<Option<&str>> = vec![None; RESOURCE_STR_COLUMNS.len()];
    let mut span_str: Vec<Option<&str>> = vec![None; SPAN_STR_COLUMNS.len()];
    let mut span_int: Vec<Option<i64>> = vec![None; SPAN_INT_COLUMNS.len()];
    for s in spans {
        trace_id.append_value(s.trace_id).map_err(bad)?;
        span_id.append_value(s.span_id).map_err(bad)?;
        match &s.parent_span_id {
            Some(p) => parent.append_value(p).map_err(bad)?,
            None => parent.append_null(),
        }
        trace_state.append((!s.trace_state.is_empty()).then_some(&s.trace_state));
        name.append(Some(&s.name));
        kind.append_value(s.kind as i8);
        start.append_value(s.start_unix_nano);
        duration.append_value(s.duration_nano);
        status_code.append_value(s.status_code as i8);
        status_message.append((!s.status_message.is_empty()).then_some(&s.status_message));
        service.append(Some(s.service_name()));

        let ptr = Arc::as_ptr(&s.resource);
        if res_cache.as_ref().map(|c| c.0) != Some(ptr) {
            res_str.iter_mut().for_each(|v| *v = None);
            let json = split_attrs(
                &s.resource.attributes,
                RESOURCE_STR_COLUMNS,
                &[],
                &["service.name"],
                &mut res_str,
                &mut [],
                &mut json_keys,
            );
            let owned = res_str.iter().map(|v| v.map(str::to_string)).collect();
            res_cache = Some((ptr, owned, json));
        }
        if let Some((_, cols, json)) = &res_cache {
            for (b, v) in res_cols.iter_mut().zip(cols) {
                b.append(v.as_deref());
            }
            res_json.append(json.as_deref());
        }
        scope_name.append((!s.scope.name.is_empty()).then_some(&s.scope.name));
        scope_version.append((!s.scope.version.is_empty()).then_some(&s.scope.version));

        span_str.iter_mut().for_each(|v| *v = None);
        span_int.iter_mut().for_each(|v| *v = None);
        let json = split_attrs(
            &s.attributes,
            SPAN_STR_COLUMNS,
            SPAN_INT_COLUMNS,
            &[],
            &mut span_str,
            &mut span_int,
            &mut json_keys,
        );
        for (b, v) in span_cols.iter_mut().zip(&span_str) {
            b.append(*v);
        }
        for (b, v) in int_cols.iter_mut().zip(&span_int) {
            b.append_option(*v);
        }
        attrs_json.append(json);
        if s.events.is_empty() {
            events.append(None::<&str>);
        } else {
            events.append(Some(serde_json::to_string(&s.events).unwrap_or_default()));
        }
        if s.links.is_empty() {
            links.append(None::<&str>);
        } else {
            links.append(Some(serde_json::to_string(&s.links).unwrap_or_default()));
        }
    }

    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        trace_state.finish(),
        name.finish(),
        Arc::new(kind.finish()),
        Arc::new(start.finish()),
        Arc::new(duration.finish()),
        Arc::new(status_code.finish()),
        status_message.finish(),
        service.finish(),
    ];
    columns.extend(res_cols.iter_mut().map(StrBuilder::finish));
    columns.push(res_json.finish());
    columns.push(scope_name.finish());
    columns.push(scope_version.finish());
    columns.extend(span_cols.iter_mut().map(StrBuilder::finish));
    columns.extend(
        int_cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    columns.push(attrs_json.finish());
    columns.push(events.finish());
    columns.push(links.finish());
    let batch = RecordBatch::try_new(SPAN_SCHEMA.clone(), columns).map_err(bad)?;
    Ok((batch, json_keys.into_iter().map(str::to_string).collect()))
}

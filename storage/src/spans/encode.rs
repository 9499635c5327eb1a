//! `SpanRecord`s → one sorted, zstd-compressed Parquet file and the statistics its catalog
//! entry carries (time range, services, trace-id filter).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int8Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::StorageError;
use crate::model::{AttrValue, Attrs, SpanRecord};
use crate::spans::bloom::TraceIdFilter;
use crate::spans::schema::{RESOURCE_STR_COLUMNS, SPAN_INT_COLUMNS, SPAN_SCHEMA, SPAN_STR_COLUMNS};

/// Rows per row group: small enough that a trace lookup reads little, large enough to
/// compress well.
pub const ROW_GROUP_ROWS: usize = 32 * 1024;

/// An encoded file and what the catalog needs to know about it.
pub struct EncodedFile {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub min_time_unix_nano: i64,
    pub max_time_unix_nano: i64,
    pub services: Vec<String>,
    pub trace_filter: TraceIdFilter,
}

/// Sorts `spans` by (trace id, start) and encodes them as Parquet.
pub fn encode_spans(spans: &[SpanRecord]) -> Result<EncodedFile, StorageError> {
    let mut spans: Vec<&SpanRecord> = spans.iter().collect();
    spans.sort_unstable_by(|a, b| {
        (a.trace_id, a.start_unix_nano, a.span_id).cmp(&(b.trace_id, b.start_unix_nano, b.span_id))
    });
    let batch = to_record_batch(&spans)?;
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
    let bytes = write_parquet(&batch)?;
    Ok(EncodedFile {
        bytes,
        rows: spans.len() as u64,
        min_time_unix_nano: if spans.is_empty() { 0 } else { min_t },
        max_time_unix_nano: if spans.is_empty() { 0 } else { max_t },
        services: services.into_iter().collect(),
        trace_filter: filter,
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
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
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

/// Writes batches that are already sorted into one Parquet file.
pub fn write_parquet(batch: &RecordBatch) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let err = |e: parquet::errors::ParquetError| StorageError::parquet("<new file>", e);
    let mut writer = ArrowWriter::try_new(&mut buf, SPAN_SCHEMA.clone(), Some(writer_properties()))
        .map_err(err)?;
    writer.write(batch).map_err(err)?;
    writer.close().map_err(err)?;
    Ok(buf)
}

/// Splits attributes into the promoted columns' values and the JSON of the rest.
fn split_attrs<'a>(
    attrs: &'a Attrs,
    str_cols: &[(&str, &str)],
    int_cols: &[(&str, &str)],
    skip: &[&str],
    str_out: &mut [Option<&'a str>],
    int_out: &mut [Option<i64>],
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
    let rest = Attrs(rest.into_iter().cloned().collect());
    Some(rest.to_json())
}

/// A resource already split into its promoted columns and JSON rest, keyed by its `Arc`.
type ResourceColumns = (
    *const crate::model::Resource,
    Vec<Option<String>>,
    Option<String>,
);

fn to_record_batch(spans: &[&SpanRecord]) -> Result<RecordBatch, StorageError> {
    let n = spans.len();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut trace_state = StringBuilder::new();
    let mut name = StringBuilder::with_capacity(n, n * 16);
    let mut kind = Int8Builder::with_capacity(n);
    let mut start = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration = Int64Builder::with_capacity(n);
    let mut status_code = Int8Builder::with_capacity(n);
    let mut status_message = StringBuilder::new();
    let mut service = StringBuilder::with_capacity(n, n * 8);
    let mut res_cols: Vec<StringBuilder> = RESOURCE_STR_COLUMNS
        .iter()
        .map(|_| StringBuilder::new())
        .collect();
    let mut res_json = StringBuilder::new();
    let mut scope_name = StringBuilder::new();
    let mut scope_version = StringBuilder::new();
    let mut span_cols: Vec<StringBuilder> = SPAN_STR_COLUMNS
        .iter()
        .map(|_| StringBuilder::new())
        .collect();
    let mut int_cols: Vec<Int64Builder> = SPAN_INT_COLUMNS
        .iter()
        .map(|_| Int64Builder::new())
        .collect();
    let mut attrs_json = StringBuilder::new();
    let mut events = StringBuilder::new();
    let mut links = StringBuilder::new();

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
        trace_state.append_option((!s.trace_state.is_empty()).then_some(&s.trace_state));
        name.append_value(&s.name);
        kind.append_value(s.kind as i8);
        start.append_value(s.start_unix_nano);
        duration.append_value(s.duration_nano);
        status_code.append_value(s.status_code as i8);
        status_message.append_option((!s.status_message.is_empty()).then_some(&s.status_message));
        service.append_value(s.service_name());

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
            );
            let owned = res_str.iter().map(|v| v.map(str::to_string)).collect();
            res_cache = Some((ptr, owned, json));
        }
        if let Some((_, cols, json)) = &res_cache {
            for (b, v) in res_cols.iter_mut().zip(cols) {
                b.append_option(v.as_deref());
            }
            res_json.append_option(json.as_deref());
        }
        scope_name.append_option((!s.scope.name.is_empty()).then_some(&s.scope.name));
        scope_version.append_option((!s.scope.version.is_empty()).then_some(&s.scope.version));

        span_str.iter_mut().for_each(|v| *v = None);
        span_int.iter_mut().for_each(|v| *v = None);
        let json = split_attrs(
            &s.attributes,
            SPAN_STR_COLUMNS,
            SPAN_INT_COLUMNS,
            &[],
            &mut span_str,
            &mut span_int,
        );
        for (b, v) in span_cols.iter_mut().zip(&span_str) {
            b.append_option(*v);
        }
        for (b, v) in int_cols.iter_mut().zip(&span_int) {
            b.append_option(*v);
        }
        attrs_json.append_option(json);
        if s.events.is_empty() {
            events.append_null();
        } else {
            events.append_value(serde_json::to_string(&s.events).unwrap_or_default());
        }
        if s.links.is_empty() {
            links.append_null();
        } else {
            links.append_value(serde_json::to_string(&s.links).unwrap_or_default());
        }
    }

    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(trace_state.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(start.finish()),
        Arc::new(duration.finish()),
        Arc::new(status_code.finish()),
        Arc::new(status_message.finish()),
        Arc::new(service.finish()),
    ];
    columns.extend(
        res_cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    columns.push(Arc::new(res_json.finish()));
    columns.push(Arc::new(scope_name.finish()));
    columns.push(Arc::new(scope_version.finish()));
    columns.extend(
        span_cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    columns.extend(
        int_cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    columns.push(Arc::new(attrs_json.finish()));
    columns.push(Arc::new(events.finish()));
    columns.push(Arc::new(links.finish()));
    RecordBatch::try_new(SPAN_SCHEMA.clone(), columns).map_err(bad)
}

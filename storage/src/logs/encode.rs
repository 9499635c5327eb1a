//! Log records → one object: a Parquet file sorted by (service, time) followed by its
//! index (`index::build`), with what its catalog entry carries (time range, services,
//! trace-id filter, where the index is).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder,
    StringBuilder, StringDictionaryBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::StorageError;
use crate::lifecycle::EncodedFile;
use crate::logs::body_ids;
use crate::logs::model::LogRecord;
use crate::logs::schema::{self, LOG_SCHEMA};
use crate::model::AttrValue;
use crate::spans::TraceIdFilter;

/// The trace context written in a line's text, as the collector lifts it.
pub fn context_in(text: &str) -> (Option<crate::model::TraceId>, Option<crate::model::SpanId>) {
    loupe_core::trace_context::find(text).map_or((None, None), |c| (Some(c.trace_id), c.span_id))
}

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Sorts `records` by (service, time) and encodes them as one file.
pub fn encode_records(
    records: &[&LogRecord],
    zstd_level: i32,
) -> Result<EncodedFile, StorageError> {
    let mut order: Vec<&LogRecord> = records.to_vec();
    order.sort_by(|a, b| {
        a.service_name()
            .cmp(b.service_name())
            .then(a.time_unix_nano.cmp(&b.time_unix_nano))
    });
    let mut trace_ids: Vec<_> = order.iter().filter_map(|r| r.trace_id).collect();
    trace_ids.sort_unstable();
    trace_ids.dedup();
    let mut filter = TraceIdFilter::with_capacity(trace_ids.len().max(1));
    for id in &trace_ids {
        filter.insert(id);
    }
    let services: BTreeSet<String> = order.iter().map(|r| r.service_name().to_string()).collect();
    let min_t = order.iter().map(|r| r.time_unix_nano).min().unwrap_or(0);
    let max_t = order.iter().map(|r| r.time_unix_nano).max().unwrap_or(0);
    let err = |e: parquet::errors::ParquetError| StorageError::parquet("<new log file>", e);
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        LOG_SCHEMA.clone(),
        Some(writer_properties(zstd_level)),
    )
    .map_err(err)?;
    // Whether a record's trace context is written in its body (then not stored twice).
    let lifted: Vec<bool> = order
        .iter()
        .map(|r| {
            r.trace_id.is_some()
                && matches!(&r.body, AttrValue::Str(text) if context_in(text) == (r.trace_id, r.span_id))
        })
        .collect();
    for (part, lifted) in order
        .chunks(ROW_GROUP_ROWS)
        .zip(lifted.chunks(ROW_GROUP_ROWS))
    {
        writer.write(&to_batch(part, lifted)?).map_err(err)?;
    }
    let parquet = writer.into_inner().map_err(err)?;
    let (bytes, index) = crate::logs::index::build::build_and_pack(parquet, &order, &lifted)?;
    Ok(EncodedFile {
        bytes,
        rows: order.len() as u64,
        min_time_unix_nano: min_t,
        max_time_unix_nano: max_t,
        services: services.into_iter().collect(),
        trace_filter: Some(filter),
        index: Some(index),
        series: None,
    })
}

/// The least zstd level of the body column. With the ids cut out, the text left is a
/// quarter of the line and repeats: level 9 stores it in 0.77 of level 3's bytes for 2 ms
/// more per MB of it (the benchmark's lines: 1.09 → 0.84 MB per 66k lines), where the
/// other columns gain nothing worth their time.
const BODY_ZSTD_LEVEL: i32 = 9;

fn writer_properties(zstd_level: i32) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let body_level = ZstdLevel::try_new(zstd_level.max(BODY_ZSTD_LEVEL)).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_column_compression(
            ColumnPath::from(schema::BODY),
            Compression::ZSTD(body_level),
        )
        // Lines seldom repeat whole: a dictionary costs time and, falling back, bytes.
        .set_column_dictionary_enabled(ColumnPath::from(schema::BODY), false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(8 * 1024)
        .set_column_encoding(
            ColumnPath::from(schema::TIME),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_dictionary_enabled(ColumnPath::from(schema::TIME), false)
        // Random bytes: nothing for a dictionary or zstd to find; lengths apart from bytes.
        .set_column_dictionary_enabled(ColumnPath::from(schema::BODY_IDS), false)
        .set_column_encoding(
            ColumnPath::from(schema::BODY_IDS),
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        )
        .set_column_compression(
            ColumnPath::from(schema::BODY_IDS),
            Compression::UNCOMPRESSED,
        )
        .build()
}

/// The records as one batch of the file schema, in the given order; `lifted[i]`: record
/// `i`'s trace context is written in its body.
pub fn to_batch(records: &[&LogRecord], lifted: &[bool]) -> Result<RecordBatch, StorageError> {
    let n = records.len();
    let mut time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut observed = Int64Builder::with_capacity(n);
    let mut in_body = BooleanBuilder::with_capacity(n);
    let mut sev = Int32Builder::with_capacity(n);
    let mut sev_text = StringDictionaryBuilder::<Int32Type>::new();
    let mut service = StringDictionaryBuilder::<Int32Type>::new();
    let mut body = StringBuilder::with_capacity(n, n * 64);
    let mut body_json = BooleanBuilder::with_capacity(n);
    let mut body_ids = BinaryBuilder::with_capacity(n, n * 24);
    let mut ids = Vec::new();
    let mut text = |s: &str| {
        ids.clear();
        match body_ids::split(s, &mut ids) {
            Some(t) => {
                body.append_value(t);
                body_ids.append_value(&ids);
            }
            None => {
                body.append_value(s);
                body_ids.append_null();
            }
        }
    };
    let mut trace = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut flags = Int64Builder::with_capacity(n);
    let mut event = StringBuilder::new();
    let mut resource = StringDictionaryBuilder::<Int32Type>::new();
    let mut scope_name = StringDictionaryBuilder::<Int32Type>::new();
    let mut scope_version = StringDictionaryBuilder::<Int32Type>::new();
    let mut attrs = StringBuilder::with_capacity(n, n * 32);
    let err = |e: arrow_schema::ArrowError| StorageError::Internal(format!("log rows: {e}"));
    // Records of one resource are usually adjacent: serialize its attributes once.
    let mut last_resource: Option<(*const crate::model::Resource, String)> = None;
    for (r, &context_in_body) in records.iter().zip(lifted) {
        time.append_value(r.time_unix_nano);
        observed.append_value(r.observed_unix_nano.wrapping_sub(r.time_unix_nano));
        sev.append_value(r.severity_number);
        sev_text.append_value(&r.severity_text);
        service.append_value(r.service_name());
        match &r.body {
            AttrValue::Str(s) => {
                text(s);
                body_json.append_value(false);
            }
            other => {
                text(&serde_json::to_string(other).unwrap_or_default());
                body_json.append_value(true);
            }
        }
        in_body.append_value(context_in_body);
        match r.trace_id.filter(|_| !context_in_body) {
            Some(id) => trace.append_value(id).map_err(err)?,
            None => trace.append_null(),
        }
        match r.span_id.filter(|_| !context_in_body) {
            Some(id) => span.append_value(id).map_err(err)?,
            None => span.append_null(),
        }
        flags.append_value(i64::from(r.flags));
        if r.event_name.is_empty() {
            event.append_null();
        } else {
            event.append_value(&r.event_name);
        }
        let ptr = Arc::as_ptr(&r.resource);
        if last_resource.as_ref().is_none_or(|(p, _)| *p != ptr) {
            last_resource = Some((ptr, r.resource.attributes.to_json()));
        }
        if let Some((_, json)) = &last_resource {
            resource.append_value(json);
        }
        scope_name.append_value(&r.scope.name);
        scope_version.append_value(&r.scope.version);
        attrs.append_value(r.attributes.to_json());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(observed.finish()),
        Arc::new(sev.finish()),
        Arc::new(sev_text.finish()),
        Arc::new(service.finish()),
        Arc::new(body.finish()),
        Arc::new(body_json.finish()),
        Arc::new(body_ids.finish()),
        Arc::new(in_body.finish()),
        Arc::new(trace.finish()),
        Arc::new(span.finish()),
        Arc::new(flags.finish()),
        Arc::new(event.finish()),
        Arc::new(resource.finish()),
        Arc::new(scope_name.finish()),
        Arc::new(scope_version.finish()),
        Arc::new(attrs.finish()),
    ];
    RecordBatch::try_new(LOG_SCHEMA.clone(), columns).map_err(err)
}

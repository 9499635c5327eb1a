//! One export's spans as a columnar Arrow batch: what the collector buffers between the ack
//! and the flush, built once at ingest straight from the export (no per-span records).
//!
//! The batch has the span file's columns in export order (`ROWS_SCHEMA`), shaped so that
//! building it and a flush's gather move as few bytes as they can:
//! - the columns of a span's resource and scope (service, promoted resource attributes, the
//!   resource's JSON, scope name and version) are dictionaries whose values are written once
//!   per resource and scope of the export: a span costs a 4-byte key in each;
//! - the name and the attributes' JSON are string views, so a flush's gather moves 16 bytes
//!   per value, not the value (the builder copies each value once: views into the export
//!   itself would keep every export's bytes alive until its flush, for ~20-byte names);
//! - sparse columns (trace state, status message, promoted span attributes, events, links)
//!   are plain, where a null costs 4 bytes.
//!
//! Building hashes nothing. A flush sorts and gathers the rows of its chunks
//! ([`super::encode`]) and Parquet's own dictionary encoding dedups the values once. Queries over fresh data use the same row filter and decoder as
//! over files, so a fresh span and a stored one answer every query alike.
//!
//! [`RowsBuilder`] (in [`super::builder`]) is the one place spans become columns: the collector drives it from the
//! OTLP wire format, and [`SpanRows::from_records`] from `SpanRecord`s (JSON exports, tests).

use std::sync::{Arc, LazyLock};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::error::StorageError;
use crate::model::{SpanRecord, TraceId};
use crate::spans::builder::{RowsBuilder, SpanIn, Value};
use crate::spans::decode::{Columns, decode_rows};
use crate::spans::schema::{self, RESOURCE_STR_COLUMNS, SPAN_SCHEMA};

/// The columns a span's resource and scope decide, in schema order.
pub const OWNER_COLUMNS: [&str; 8] = [
    schema::SERVICE_NAME,
    RESOURCE_STR_COLUMNS[0].1,
    RESOURCE_STR_COLUMNS[1].1,
    RESOURCE_STR_COLUMNS[2].1,
    RESOURCE_STR_COLUMNS[3].1,
    schema::RESOURCE_ATTRIBUTES,
    schema::SCOPE_NAME,
    schema::SCOPE_VERSION,
];

/// The span schema as the rows hold it (see the module docs).
pub static ROWS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<Field> = SPAN_SCHEMA
        .fields()
        .iter()
        .map(|f| {
            let name = f.name().as_str();
            let t = if OWNER_COLUMNS.contains(&name) {
                dict.clone()
            } else if name == schema::NAME || name == schema::ATTRIBUTES {
                DataType::Utf8View
            } else if matches!(f.data_type(), DataType::Dictionary(..)) {
                DataType::Utf8
            } else {
                f.data_type().clone()
            };
            f.as_ref().clone().with_data_type(t)
        })
        .collect();
    Arc::new(Schema::new(fields))
});

/// The spans of one export, columnar, in export order (see the module docs).
#[derive(Debug)]
pub struct SpanRows {
    batch: RecordBatch,
    /// The attribute keys in the JSON columns, sorted.
    json_keys: Vec<String>,
}

impl SpanRows {
    pub(super) fn new(batch: RecordBatch, json_keys: Vec<String>) -> Self {
        SpanRows { batch, json_keys }
    }

    /// The same rows from records (as the wire path would build them from their export).
    pub fn from_records(spans: &[SpanRecord]) -> Result<Self, StorageError> {
        let mut b = RowsBuilder::new(spans.len());
        let (mut resource, mut scope) = (None, None);
        let mut attrs: Vec<(&str, Value)> = Vec::new();
        for s in spans {
            if resource != Some(Arc::as_ptr(&s.resource)) {
                resource = Some(Arc::as_ptr(&s.resource));
                let res: Vec<(&str, Value)> = s
                    .resource
                    .attributes
                    .0
                    .iter()
                    .map(|(k, v)| (k.as_str(), Value::of(v)))
                    .collect();
                b.resource(&res);
            }
            if scope != Some(Arc::as_ptr(&s.scope)) {
                scope = Some(Arc::as_ptr(&s.scope));
                b.scope(&s.scope.name, &s.scope.version);
            }
            attrs.clear();
            attrs.extend(
                s.attributes
                    .0
                    .iter()
                    .map(|(k, v)| (k.as_str(), Value::of(v))),
            );
            b.span(&SpanIn {
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
                trace_state: &s.trace_state,
                name: &s.name,
                kind: s.kind,
                start_unix_nano: s.start_unix_nano,
                duration_nano: s.duration_nano,
                status_code: s.status_code,
                status_message: &s.status_message,
                attributes: &attrs,
                events: &s.events,
                links: &s.links,
            })?;
        }
        b.finish()
    }

    /// The rows (plain schema, export order).
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    pub fn json_keys(&self) -> &[String] {
        &self.json_keys
    }

    /// The rows for which `keep(row)` holds, as records.
    pub fn decode(&self, keep: impl FnMut(usize) -> bool) -> Result<Vec<SpanRecord>, StorageError> {
        decode_rows(&self.batch, keep)
    }

    /// Every row as a record.
    pub fn records(&self) -> Result<Vec<SpanRecord>, StorageError> {
        self.decode(|_| true)
    }

    /// The trace id of every row, in row order.
    pub fn trace_id_column(&self) -> impl Iterator<Item = TraceId> + '_ {
        let col = Columns::new(&self.batch).fixed(schema::TRACE_ID);
        (0..self.batch.num_rows()).map(move |i| {
            let mut id = [0u8; 16];
            if let Some(c) = col {
                id.copy_from_slice(c.value(i));
            }
            id
        })
    }
}

impl crate::fresh::Rows for SpanRows {
    fn len(&self) -> usize {
        self.batch.num_rows()
    }
    fn trace_ids(&self) -> Vec<TraceId> {
        self.trace_id_column().collect()
    }
}

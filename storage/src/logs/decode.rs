//! Log file batches → [`LogRecord`]s, and reading a whole log file.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayAccessor, ArrayRef, RecordBatch, StringArray, TypedDictionaryArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::StorageError;
use crate::logs::body_ids;
use crate::logs::model::LogRecord;
use crate::logs::schema;
use crate::model::{AttrValue, Attrs, Resource, Scope};

/// Decodes every row of a log file's bytes.
pub fn read_file(path: &str, bytes: Bytes) -> Result<Vec<RecordBatch>, StorageError> {
    let err = |e: parquet::errors::ParquetError| StorageError::parquet(path, e);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(err)?
        .with_batch_size(8 * 1024)
        .build()
        .map_err(err)?;
    reader
        .map(|b| b.map_err(|e| StorageError::parquet(path, e)))
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, StorageError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| StorageError::parquet("<log batch>", format!("no column {name}")))
}

/// A string column, plain or dictionary-typed.
enum Strings<'a> {
    Plain(&'a StringArray),
    Dict(TypedDictionaryArray<'a, Int32Type, StringArray>),
}

impl Strings<'_> {
    fn value(&self, i: usize) -> &str {
        match self {
            Strings::Plain(a) => a.value(i),
            Strings::Dict(d) => d.value(i),
        }
    }
    fn is_null(&self, i: usize) -> bool {
        match self {
            Strings::Plain(a) => a.is_null(i),
            Strings::Dict(d) => d.is_null(i),
        }
    }
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<Strings<'a>, StorageError> {
    let c = column(batch, name)?;
    if let Some(a) = c.as_string_opt::<i32>() {
        return Ok(Strings::Plain(a));
    }
    c.as_dictionary_opt::<Int32Type>()
        .and_then(|d| d.downcast_dict::<StringArray>())
        .map(Strings::Dict)
        .ok_or_else(|| StorageError::parquet("<log batch>", format!("bad column {name}")))
}

/// Every row of `batch` as records (rows of one resource and scope share them).
pub fn decode_batch(batch: &RecordBatch) -> Result<Vec<LogRecord>, StorageError> {
    let bad = |what: &str| StorageError::parquet("<log batch>", format!("bad column {what}"));
    let time = column(batch, schema::TIME)?
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| bad(schema::TIME))?;
    let observed = column(batch, schema::OBSERVED_DELTA)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| bad(schema::OBSERVED_DELTA))?;
    let in_body = column(batch, schema::CONTEXT_IN_BODY)?
        .as_boolean_opt()
        .ok_or_else(|| bad(schema::CONTEXT_IN_BODY))?;
    let sev = column(batch, schema::SEVERITY_NUMBER)?
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| bad(schema::SEVERITY_NUMBER))?;
    let flags = column(batch, schema::FLAGS)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| bad(schema::FLAGS))?;
    let body_json = column(batch, schema::BODY_JSON)?
        .as_boolean_opt()
        .ok_or_else(|| bad(schema::BODY_JSON))?;
    let trace = column(batch, schema::TRACE_ID)?
        .as_fixed_size_binary_opt()
        .ok_or_else(|| bad(schema::TRACE_ID))?;
    let span = column(batch, schema::SPAN_ID)?
        .as_fixed_size_binary_opt()
        .ok_or_else(|| bad(schema::SPAN_ID))?;
    let sev_text = strings(batch, schema::SEVERITY_TEXT)?;
    let service = strings(batch, schema::SERVICE_NAME)?;
    let body = strings(batch, schema::BODY)?;
    let body_ids = batch
        .column_by_name(schema::BODY_IDS)
        .map(|c| {
            c.as_binary_opt::<i32>()
                .ok_or_else(|| bad(schema::BODY_IDS))
        })
        .transpose()?;
    let event = strings(batch, schema::EVENT_NAME)?;
    let resource = strings(batch, schema::RESOURCE_ATTRIBUTES)?;
    let scope_name = strings(batch, schema::SCOPE_NAME)?;
    let scope_version = strings(batch, schema::SCOPE_VERSION)?;
    let attrs = strings(batch, schema::ATTRIBUTES)?;
    let json = |s: &str, what: &str| {
        Attrs::from_json(s)
            .map_err(|e| StorageError::parquet("<log batch>", format!("{what}: {e}")))
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut res: Option<Arc<Resource>> = None;
    let mut scope: Option<Arc<Scope>> = None;
    for i in 0..batch.num_rows() {
        let r = match &res {
            Some(r)
                if r.service_name == service.value(i)
                    && i > 0
                    && resource.value(i) == resource.value(i - 1) =>
            {
                r.clone()
            }
            _ => {
                let r = Arc::new(Resource {
                    service_name: service.value(i).to_string(),
                    attributes: json(resource.value(i), schema::RESOURCE_ATTRIBUTES)?,
                });
                res = Some(r.clone());
                r
            }
        };
        let s = match &scope {
            Some(s) if s.name == scope_name.value(i) && s.version == scope_version.value(i) => {
                s.clone()
            }
            _ => {
                let s = Arc::new(Scope {
                    name: scope_name.value(i).to_string(),
                    version: scope_version.value(i).to_string(),
                });
                scope = Some(s.clone());
                s
            }
        };
        let text = match body_ids {
            Some(ids) if !ids.is_null(i) => body_ids::join(body.value(i), ids.value(i))
                .ok_or_else(|| bad("body_ids (does not fit its template)"))?,
            _ => body.value(i).to_string(),
        };
        let body = if body_json.value(i) {
            serde_json::from_str::<AttrValue>(&text)
                .map_err(|e| StorageError::parquet("<log batch>", format!("body: {e}")))?
        } else {
            AttrValue::Str(text)
        };
        let (trace_id, span_id) = match &body {
            AttrValue::Str(text) if in_body.value(i) => crate::logs::encode::context_in(text),
            _ => (
                (!trace.is_null(i))
                    .then(|| trace.value(i).try_into().ok())
                    .flatten(),
                (!span.is_null(i))
                    .then(|| span.value(i).try_into().ok())
                    .flatten(),
            ),
        };
        out.push(LogRecord {
            time_unix_nano: time.value(i),
            observed_unix_nano: time.value(i).wrapping_add(observed.value(i)),
            severity_number: sev.value(i),
            severity_text: sev_text.value(i).to_string(),
            body,
            attributes: json(attrs.value(i), schema::ATTRIBUTES)?,
            trace_id,
            span_id,
            flags: u32::try_from(flags.value(i)).unwrap_or(0),
            event_name: if event.is_null(i) {
                String::new()
            } else {
                event.value(i).to_string()
            },
            resource: r,
            scope: s,
        });
    }
    Ok(out)
}

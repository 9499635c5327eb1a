//! Arrow rows of a span file → `SpanRecord`s (the inverse of [`super::encode`]).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow_array::{
    Array, DictionaryArray, FixedSizeBinaryArray, RecordBatch, StringArray, StringViewArray,
};

use crate::error::StorageError;
use crate::model::{AttrValue, Attrs, Resource, Scope, SpanKind, SpanRecord, StatusCode};
use crate::spans::schema::*;

/// Typed access to the columns of a span batch; missing columns read as null.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Self {
        Columns { batch }
    }
    pub fn fixed(&self, name: &str) -> Option<&'a FixedSizeBinaryArray> {
        self.batch.column_by_name(name)?.as_fixed_size_binary_opt()
    }
    /// A string column: plain, views (fresh rows) or dictionary-encoded (files).
    pub fn string(&self, name: &str) -> Option<StrCol<'a>> {
        let col = self.batch.column_by_name(name)?;
        if let Some(a) = col.as_string_opt::<i32>() {
            return Some(StrCol::Plain(a));
        }
        if let Some(a) = col.as_string_view_opt() {
            return Some(StrCol::View(a));
        }
        let d = col.as_dictionary_opt::<Int32Type>()?;
        Some(StrCol::Dict(d, d.values().as_string_opt::<i32>()?))
    }
    pub fn i64(&self, name: &str) -> Option<&'a arrow_array::PrimitiveArray<Int64Type>> {
        self.batch
            .column_by_name(name)?
            .as_primitive_opt::<Int64Type>()
    }
    pub fn i8(&self, name: &str) -> Option<&'a arrow_array::PrimitiveArray<Int8Type>> {
        self.batch
            .column_by_name(name)?
            .as_primitive_opt::<Int8Type>()
    }
    pub fn timestamp(
        &self,
        name: &str,
    ) -> Option<&'a arrow_array::PrimitiveArray<TimestampNanosecondType>> {
        self.batch
            .column_by_name(name)?
            .as_primitive_opt::<TimestampNanosecondType>()
    }
}

/// A string column as read: plain, views, or dictionary keys with their values.
#[derive(Clone, Copy)]
pub enum StrCol<'a> {
    Plain(&'a StringArray),
    View(&'a StringViewArray),
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
}

impl<'a> StrCol<'a> {
    /// The value at row `i`; `None` when null.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StrCol::Plain(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::View(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::Dict(d, values) => d
                .is_valid(i)
                .then(|| values.value(d.keys().value(i) as usize)),
        }
    }
}

pub fn str_at<'a>(a: Option<StrCol<'a>>, i: usize) -> Option<&'a str> {
    a.and_then(|a| a.get(i))
}

/// The distinct services of span batches (files' and fresh rows' alike).
pub fn services_in<'a>(
    batches: impl Iterator<Item = &'a RecordBatch>,
) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for b in batches {
        let Some(col) = Columns::new(b).string(SERVICE_NAME) else {
            continue;
        };
        let mut last = None;
        for i in 0..b.num_rows() {
            let name = col.get(i).unwrap_or_default();
            // Rows of one resource sit together: compare with the previous row first.
            if last != Some(name) {
                last = Some(name);
                if !out.contains(name) {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

fn corrupt(reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what: "span file",
        path: String::new(),
        reason: reason.to_string(),
    }
}

fn parse_attrs(json: Option<&str>) -> Result<Attrs, StorageError> {
    match json {
        None => Ok(Attrs::default()),
        Some(s) => Attrs::from_json(s).map_err(|e| corrupt(format!("attributes json: {e}"))),
    }
}

/// Decodes the rows of `batch` (a full-schema span batch) for which `keep(row)` holds.
pub fn decode_rows(
    batch: &RecordBatch,
    mut keep: impl FnMut(usize) -> bool,
) -> Result<Vec<SpanRecord>, StorageError> {
    let c = Columns::new(batch);
    let missing = |n: &str| corrupt(format!("missing column {n}"));
    let trace_id = c.fixed(TRACE_ID).ok_or_else(|| missing(TRACE_ID))?;
    let span_id = c.fixed(SPAN_ID).ok_or_else(|| missing(SPAN_ID))?;
    let parent = c.fixed(PARENT_SPAN_ID);
    let name = c.string(NAME).ok_or_else(|| missing(NAME))?;
    let start = c.timestamp(START).ok_or_else(|| missing(START))?;
    let duration = c.i64(DURATION).ok_or_else(|| missing(DURATION))?;
    let service = c
        .string(SERVICE_NAME)
        .ok_or_else(|| missing(SERVICE_NAME))?;
    let kind = c.i8(KIND);
    let status = c.i8(STATUS_CODE);
    let status_msg = c.string(STATUS_MESSAGE);
    let trace_state = c.string(TRACE_STATE);
    let res_cols: Vec<_> = RESOURCE_STR_COLUMNS
        .iter()
        .map(|(_, n)| c.string(n))
        .collect();
    let res_json = c.string(RESOURCE_ATTRIBUTES);
    let scope_name = c.string(SCOPE_NAME);
    let scope_version = c.string(SCOPE_VERSION);
    let span_cols: Vec<_> = SPAN_STR_COLUMNS.iter().map(|(_, n)| c.string(n)).collect();
    let int_cols: Vec<_> = SPAN_INT_COLUMNS.iter().map(|(_, n)| c.i64(n)).collect();
    let attrs = c.string(ATTRIBUTES);
    let events = c.string(EVENTS);
    let links = c.string(LINKS);

    let mut out = Vec::new();
    let mut last_resource: Option<Arc<Resource>> = None;
    let mut last_scope: Option<Arc<Scope>> = None;
    for i in 0..batch.num_rows() {
        if !keep(i) {
            continue;
        }
        let id = |a: &FixedSizeBinaryArray| a.value(i).to_vec();
        let mut resource_attrs = vec![(
            "service.name".to_string(),
            AttrValue::Str(service.get(i).unwrap_or_default().to_string()),
        )];
        for ((key, _), col) in RESOURCE_STR_COLUMNS.iter().zip(&res_cols) {
            if let Some(v) = str_at(*col, i) {
                resource_attrs.push((key.to_string(), AttrValue::Str(v.to_string())));
            }
        }
        resource_attrs.extend(parse_attrs(str_at(res_json, i))?.0);
        let resource = Resource {
            service_name: service.get(i).unwrap_or_default().to_string(),
            attributes: Attrs(resource_attrs),
        };
        let resource = match &last_resource {
            Some(r) if **r == resource => r.clone(),
            _ => {
                let r = Arc::new(resource);
                last_resource = Some(r.clone());
                r
            }
        };
        let scope = Scope {
            name: str_at(scope_name, i).unwrap_or_default().to_string(),
            version: str_at(scope_version, i).unwrap_or_default().to_string(),
        };
        let scope = match &last_scope {
            Some(s) if **s == scope => s.clone(),
            _ => {
                let s = Arc::new(scope);
                last_scope = Some(s.clone());
                s
            }
        };
        let mut span_attrs = Vec::new();
        for ((key, _), col) in SPAN_STR_COLUMNS.iter().zip(&span_cols) {
            if let Some(v) = str_at(*col, i) {
                span_attrs.push((key.to_string(), AttrValue::Str(v.to_string())));
            }
        }
        for ((key, _), col) in SPAN_INT_COLUMNS.iter().zip(&int_cols) {
            if let Some(a) = col.filter(|a| a.is_valid(i)) {
                span_attrs.push((key.to_string(), AttrValue::Int(a.value(i))));
            }
        }
        span_attrs.extend(parse_attrs(str_at(attrs, i))?.0);
        let events = match str_at(events, i) {
            Some(j) => serde_json::from_str(j).map_err(|e| corrupt(format!("events json: {e}")))?,
            None => Vec::new(),
        };
        let links = match str_at(links, i) {
            Some(j) => serde_json::from_str(j).map_err(|e| corrupt(format!("links json: {e}")))?,
            None => Vec::new(),
        };
        out.push(SpanRecord {
            trace_id: id(trace_id)
                .try_into()
                .map_err(|_| corrupt("trace id width"))?,
            span_id: id(span_id)
                .try_into()
                .map_err(|_| corrupt("span id width"))?,
            parent_span_id: match parent {
                Some(p) if p.is_valid(i) => {
                    Some(id(p).try_into().map_err(|_| corrupt("parent id width"))?)
                }
                _ => None,
            },
            trace_state: str_at(trace_state, i).unwrap_or_default().to_string(),
            name: name.get(i).unwrap_or_default().to_string(),
            kind: SpanKind::from_i32(kind.map_or(0, |k| k.value(i) as i32)),
            start_unix_nano: start.value(i),
            duration_nano: duration.value(i),
            status_code: StatusCode::from_i32(status.map_or(0, |s| s.value(i) as i32)),
            status_message: str_at(status_msg, i).unwrap_or_default().to_string(),
            resource,
            scope,
            attributes: Attrs(span_attrs),
            events,
            links,
        });
    }
    Ok(out)
}

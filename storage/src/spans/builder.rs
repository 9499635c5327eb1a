//! Building [`SpanRows`]: the one place spans become columns, for both ingest paths (the
//! OTLP wire reader in the collector, and [`SpanRows::from_records`]). See [`super::rows`]
//! for the shape of the columns.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int8Builder, Int32Builder, Int64Builder, StringBuilder,
    StringViewBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, RecordBatch};

use crate::error::StorageError;
use crate::model::{AttrValue, Event, Link, SpanKind, StatusCode, TraceId};
use crate::spans::rows::{OWNER_COLUMNS, ROWS_SCHEMA, SpanRows};
use crate::spans::schema::{RESOURCE_STR_COLUMNS, SPAN_INT_COLUMNS, SPAN_STR_COLUMNS};

/// An attribute value as the builder receives it: strings and integers borrowed (the common
/// cases, no copies), anything else as a model value.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Other(Cow<'a, AttrValue>),
}

impl<'a> Value<'a> {
    pub fn of(v: &'a AttrValue) -> Self {
        match v {
            AttrValue::Str(s) => Value::Str(s),
            AttrValue::Int(n) => Value::Int(*n),
            other => Value::Other(Cow::Borrowed(other)),
        }
    }
}

/// The same JSON as `AttrValue` (so a JSON column reads back into the same attributes).
impl serde::Serialize for Value<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(v) => s.serialize_str(v),
            Value::Int(n) => s.serialize_i64(*n),
            Value::Other(v) => v.serialize(s),
        }
    }
}

/// One span as the builder receives it. `'k`: the attribute keys, which the builder keeps
/// (they outlive it); `'s`: everything else, read during the call.
pub struct SpanIn<'k, 's> {
    pub trace_id: TraceId,
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: &'s str,
    pub name: &'s str,
    pub kind: SpanKind,
    pub start_unix_nano: i64,
    pub duration_nano: i64,
    pub status_code: StatusCode,
    pub status_message: &'s str,
    pub attributes: &'s [(&'k str, Value<'s>)],
    pub events: &'s [Event],
    pub links: &'s [Link],
}

/// Where a span attribute goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Str(usize),
    Int(usize),
    Rest,
}

fn span_slot(key: &str) -> Slot {
    if let Some(i) = SPAN_STR_COLUMNS.iter().position(|(k, _)| *k == key) {
        return Slot::Str(i);
    }
    if let Some(i) = SPAN_INT_COLUMNS.iter().position(|(k, _)| *k == key) {
        return Slot::Int(i);
    }
    Slot::Rest
}

/// The current resource, split once into its columns.
#[derive(Default)]
struct ResourceCols<'k> {
    service: &'k str,
    promoted: Vec<Option<&'k str>>,
    json: Option<String>,
    /// The keys in `json`, listed for the file once the resource has a span.
    json_keys: Vec<String>,
}

/// The dictionaries of the owner columns: each (resource, scope) pair that has spans adds
/// its values once; its spans add keys.
struct Owners {
    keys: Vec<Int32Builder>,
    values: Vec<StringBuilder>,
    /// The current pair's key in each column (null: no value); `None` once the resource or
    /// scope changed, until the next span.
    current: Option<[Option<i32>; OWNER_COLUMNS.len()]>,
}

/// An empty string is stored as null (as OTLP has no null strings).
fn non_empty(b: &mut StringBuilder, v: &str) {
    b.append_option((!v.is_empty()).then_some(v))
}

/// Builds the [`SpanRows`] of one export: call [`resource`](Self::resource) and
/// [`scope`](Self::scope) before the spans they own.
pub struct RowsBuilder<'k> {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    name: StringViewBuilder,
    kind: Int8Builder,
    start: TimestampNanosecondBuilder,
    duration: Int64Builder,
    status_code: Int8Builder,
    status_message: StringBuilder,
    owners: Owners,
    span_cols: Vec<StringBuilder>,
    int_cols: Vec<Int64Builder>,
    attrs_json: StringViewBuilder,
    events: StringBuilder,
    links: StringBuilder,
    resource: ResourceCols<'k>,
    scope: (&'k str, &'k str),
    /// Every span attribute key seen, with where it went: one hash per attribute decides
    /// both its column and whether the file's key list must name it.
    keys: HashMap<&'k str, Slot, foldhash::fast::RandomState>,
    /// Keys in the JSON columns that `keys` does not mark `Rest` (resource attributes, and
    /// promoted keys whose value had another type).
    other_json_keys: BTreeSet<String>,
    str_at: Vec<Option<usize>>,
    int_at: Vec<Option<i64>>,
    rest: Vec<usize>,
    json: Vec<u8>,
}

fn bad(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(format!("building span rows: {e}"))
}

impl<'k> RowsBuilder<'k> {
    /// `spans`: a capacity hint.
    pub fn new(spans: usize) -> Self {
        RowsBuilder {
            trace_id: FixedSizeBinaryBuilder::with_capacity(spans, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(spans, 8),
            parent: FixedSizeBinaryBuilder::with_capacity(spans, 8),
            trace_state: StringBuilder::with_capacity(spans, 0),
            name: StringViewBuilder::with_capacity(spans),
            kind: Int8Builder::with_capacity(spans),
            start: TimestampNanosecondBuilder::with_capacity(spans).with_timezone("UTC"),
            duration: Int64Builder::with_capacity(spans),
            status_code: Int8Builder::with_capacity(spans),
            status_message: StringBuilder::with_capacity(spans, 0),
            owners: Owners {
                keys: OWNER_COLUMNS
                    .iter()
                    .map(|_| Int32Builder::with_capacity(spans))
                    .collect(),
                values: OWNER_COLUMNS.iter().map(|_| StringBuilder::new()).collect(),
                current: None,
            },
            span_cols: SPAN_STR_COLUMNS
                .iter()
                .map(|_| StringBuilder::with_capacity(spans, 0))
                .collect(),
            int_cols: SPAN_INT_COLUMNS
                .iter()
                .map(|_| Int64Builder::with_capacity(spans))
                .collect(),
            attrs_json: StringViewBuilder::with_capacity(spans),
            events: StringBuilder::new(),
            links: StringBuilder::new(),
            resource: ResourceCols::default(),
            scope: ("", ""),
            keys: HashMap::default(),
            other_json_keys: BTreeSet::new(),
            str_at: vec![None; SPAN_STR_COLUMNS.len()],
            int_at: vec![None; SPAN_INT_COLUMNS.len()],
            rest: Vec::new(),
            json: Vec::new(),
        }
    }

    /// The resource of the spans that follow. `service.name` goes to its column (a missing,
    /// empty or non-string one reads `unknown_service`), promoted string attributes to theirs,
    /// the rest to the resource's JSON.
    pub fn resource(&mut self, attrs: &[(&'k str, Value<'k>)]) {
        let service = attrs
            .iter()
            .rev()
            .find(|(k, _)| *k == "service.name")
            .and_then(|(_, v)| match v {
                Value::Str(s) if !s.is_empty() => Some(*s),
                _ => None,
            })
            .unwrap_or("unknown_service");
        let mut promoted = vec![None; RESOURCE_STR_COLUMNS.len()];
        let mut rest = Vec::new();
        for (k, v) in attrs {
            if *k == "service.name" {
                continue;
            }
            if let Value::Str(s) = v
                && let Some(i) = RESOURCE_STR_COLUMNS.iter().position(|(key, _)| key == k)
            {
                promoted[i] = Some(*s);
                continue;
            }
            rest.push((*k, v));
        }
        let json = (!rest.is_empty()).then(|| {
            serde_json::to_string(&JsonMap(rest.iter().map(|(k, v)| (*k, *v))))
                .unwrap_or_else(|_| "{}".to_string())
        });
        self.resource = ResourceCols {
            service,
            promoted,
            json,
            json_keys: rest.iter().map(|(k, _)| k.to_string()).collect(),
        };
        self.owners.current = None;
    }

    /// The instrumentation scope of the spans that follow.
    pub fn scope(&mut self, name: &'k str, version: &'k str) {
        self.scope = (name, version);
        self.owners.current = None;
    }

    /// The keys of the current (resource, scope) pair, adding its values on its first span.
    fn owner_keys(&mut self) -> [Option<i32>; OWNER_COLUMNS.len()] {
        if let Some(keys) = self.owners.current {
            return keys;
        }
        let r = &self.resource;
        let (scope_name, scope_version) = self.scope;
        let values: [Option<&str>; OWNER_COLUMNS.len()] = [
            Some(r.service),
            r.promoted.first().copied().flatten(),
            r.promoted.get(1).copied().flatten(),
            r.promoted.get(2).copied().flatten(),
            r.promoted.get(3).copied().flatten(),
            r.json.as_deref(),
            (!scope_name.is_empty()).then_some(scope_name),
            (!scope_version.is_empty()).then_some(scope_version),
        ];
        let mut keys = [None; OWNER_COLUMNS.len()];
        for ((key, v), b) in keys.iter_mut().zip(values).zip(&mut self.owners.values) {
            if let Some(v) = v {
                *key = Some(arrow_array::builder::ArrayBuilder::len(b) as i32);
                b.append_value(v);
            }
        }
        for k in self.resource.json_keys.drain(..) {
            self.other_json_keys.insert(k);
        }
        self.owners.current = Some(keys);
        keys
    }

    pub fn span(&mut self, s: &SpanIn<'k, '_>) -> Result<(), StorageError> {
        self.trace_id.append_value(s.trace_id).map_err(bad)?;
        self.span_id.append_value(s.span_id).map_err(bad)?;
        match &s.parent_span_id {
            Some(p) => self.parent.append_value(p).map_err(bad)?,
            None => self.parent.append_null(),
        }
        non_empty(&mut self.trace_state, s.trace_state);
        self.name.append_value(s.name);
        self.kind.append_value(s.kind as i8);
        self.start.append_value(s.start_unix_nano);
        self.duration.append_value(s.duration_nano);
        self.status_code.append_value(s.status_code as i8);
        non_empty(&mut self.status_message, s.status_message);
        let owner = self.owner_keys();
        for (b, key) in self.owners.keys.iter_mut().zip(owner) {
            b.append_option(key);
        }

        self.str_at.iter_mut().for_each(|v| *v = None);
        self.int_at.iter_mut().for_each(|v| *v = None);
        self.rest.clear();
        for (i, (k, v)) in s.attributes.iter().enumerate() {
            let slot = match self.keys.get(k) {
                Some(slot) => *slot,
                None => {
                    let slot = span_slot(k);
                    self.keys.insert(k, slot);
                    slot
                }
            };
            match (slot, v) {
                (Slot::Str(c), Value::Str(_)) => self.str_at[c] = Some(i),
                (Slot::Int(c), Value::Int(n)) => self.int_at[c] = Some(*n),
                (Slot::Rest, _) => self.rest.push(i),
                _ => {
                    if !self.other_json_keys.contains(*k) {
                        self.other_json_keys.insert(k.to_string());
                    }
                    self.rest.push(i)
                }
            }
        }
        for (b, at) in self.span_cols.iter_mut().zip(&self.str_at) {
            match at.map(|i| &s.attributes[i].1) {
                Some(Value::Str(v)) => b.append_value(v),
                _ => b.append_null(),
            }
        }
        for (b, v) in self.int_cols.iter_mut().zip(&self.int_at) {
            b.append_option(*v);
        }
        if self.rest.is_empty() {
            self.attrs_json.append_null();
        } else {
            self.json.clear();
            let entries = self.rest.iter().map(|i| {
                let (k, v) = &s.attributes[*i];
                (*k, v)
            });
            serde_json::to_writer(&mut self.json, &JsonMap(entries)).map_err(bad)?;
            self.attrs_json
                .append_value(std::str::from_utf8(&self.json).map_err(bad)?);
        }
        append_json_list(&mut self.events, s.events)?;
        append_json_list(&mut self.links, s.links)?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<SpanRows, StorageError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
        ];
        for (keys, values) in self.owners.keys.iter_mut().zip(&mut self.owners.values) {
            let dict =
                DictionaryArray::<Int32Type>::try_new(keys.finish(), Arc::new(values.finish()))
                    .map_err(bad)?;
            columns.push(Arc::new(dict));
        }
        columns.extend(
            self.span_cols
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.extend(
            self.int_cols
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.attrs_json.finish()));
        columns.push(Arc::new(self.events.finish()));
        columns.push(Arc::new(self.links.finish()));
        let batch = RecordBatch::try_new(ROWS_SCHEMA.clone(), columns).map_err(bad)?;
        let mut json_keys = self.other_json_keys;
        json_keys.extend(
            self.keys
                .iter()
                .filter(|(_, slot)| **slot == Slot::Rest)
                .map(|(k, _)| k.to_string()),
        );
        Ok(SpanRows::new(batch, json_keys.into_iter().collect()))
    }
}

/// A list as its JSON column holds it: null when empty.
fn append_json_list<T: serde::Serialize>(
    b: &mut StringBuilder,
    items: &[T],
) -> Result<(), StorageError> {
    if items.is_empty() {
        b.append_null();
    } else {
        b.append_value(serde_json::to_string(items).map_err(bad)?);
    }
    Ok(())
}

/// Serializes borrowed (key, value) pairs as one JSON object.
struct JsonMap<I>(I);

impl<'a, 'v, I> serde::Serialize for JsonMap<I>
where
    I: Iterator<Item = (&'a str, &'v Value<'v>)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.0.clone() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

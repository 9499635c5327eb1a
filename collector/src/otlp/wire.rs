//! The fast path of trace ingest: an `ExportTraceServiceRequest` read straight from its
//! protobuf bytes into span rows, with no message structs and no per-string allocation
//! (strings are borrowed from the request until the builder copies them into its columns).
//!
//! It handles exactly the requests the general path (prost decoding,
//! [`super::validate_traces`], [`super::to_span_records`]) would accept whole, and gives up —
//! `None`, the caller then takes the general path, which produces the errors and
//! partial-success messages — on anything else: an empty body, a span that validation would
//! reject, malformed protobuf, invalid UTF-8 in a string field, a singular message field sent
//! twice (prost merges those), nesting deeper than [`MAX_DEPTH`]. Both paths feed the same [`RowsBuilder`], and a test checks that they build
//! the same rows.

use std::borrow::Cow;

use loupe_storage::model::{AttrValue, Attrs, Event, Link, SpanKind, StatusCode};
use loupe_storage::spans::{RowsBuilder, SpanIn, SpanRows, Value};

use super::TimeWindow;
use super::fields::{Fields, Wire, bytes, fixed64, string, varint};

/// Deepest array/kvlist nesting read here (prost allows more; such requests take the
/// general path).
pub const MAX_DEPTH: usize = 32;

/// The one occurrence of singular message field `field` (`Some(None)`: absent; `None`: sent
/// twice, malformed, or of another wire type).
fn singular(msg: &[u8], field: u32) -> Option<Option<&[u8]>> {
    let mut found = None;
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        if f == field {
            if found.is_some() {
                return None;
            }
            found = Some(bytes(w)?);
        }
    }
    (!fields.fail).then_some(found)
}

/// Checks a field this path does not use but prost would validate (strings must be UTF-8).
fn check_ignored(w: Wire<'_>, is_string: bool) -> Option<()> {
    if is_string {
        string(w)?;
    }
    Some(())
}

/// Reads an export into span rows, or `None` when the general path must handle it (see the
/// module docs). Also returns the number of spans.
pub fn rows_from_wire(payload: &[u8], window: &TimeWindow) -> Option<(SpanRows, u64)> {
    // An empty body is valid protobuf, but the general path refuses it.
    if payload.is_empty() {
        return None;
    }
    let mut b = RowsBuilder::new(payload.len() / 320 + 1);
    let mut spans = 0u64;
    let mut fields = Fields::new(payload);
    for (f, w) in fields.by_ref() {
        if f == 1 {
            spans += resource_spans(bytes(w)?, window, &mut b)?;
        }
    }
    if fields.fail {
        return None;
    }
    Some((b.finish().ok()?, spans))
}

fn resource_spans<'a>(msg: &'a [u8], window: &TimeWindow, b: &mut RowsBuilder<'a>) -> Option<u64> {
    let mut attrs: Vec<(&'a str, Value<'a>)> = Vec::new();
    if let Some(resource) = singular(msg, 1)? {
        let mut fields = Fields::new(resource);
        for (f, w) in fields.by_ref() {
            if f == 1 {
                attrs.push(key_value(bytes(w)?, 0)?);
            }
        }
        if fields.fail {
            return None;
        }
    }
    b.resource(&attrs);
    let mut spans = 0;
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        match f {
            2 => spans += scope_spans(bytes(w)?, window, b)?,
            3 => check_ignored(w, true)?,
            _ => {}
        }
    }
    (!fields.fail).then_some(spans)
}

fn scope_spans<'a>(msg: &'a [u8], window: &TimeWindow, b: &mut RowsBuilder<'a>) -> Option<u64> {
    let (mut name, mut version) = ("", "");
    if let Some(scope) = singular(msg, 1)? {
        let mut fields = Fields::new(scope);
        for (f, w) in fields.by_ref() {
            match f {
                1 => name = string(w)?,
                2 => version = string(w)?,
                3 => {
                    key_value(bytes(w)?, 0)?;
                }
                _ => {}
            }
        }
        if fields.fail {
            return None;
        }
    }
    b.scope(name, version);
    let mut spans = 0;
    let mut attrs: Vec<(&'a str, Value<'a>)> = Vec::new();
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        match f {
            2 => {
                span(bytes(w)?, window, b, &mut attrs)?;
                spans += 1;
            }
            3 => check_ignored(w, true)?,
            _ => {}
        }
    }
    (!fields.fail).then_some(spans)
}

fn id<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = b.try_into().ok()?;
    id.iter().any(|x| *x != 0).then_some(id)
}

fn span<'a>(
    msg: &'a [u8],
    window: &TimeWindow,
    b: &mut RowsBuilder<'a>,
    attrs: &mut Vec<(&'a str, Value<'a>)>,
) -> Option<()> {
    attrs.clear();
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut trace_state, mut name) = ("", "");
    let (mut kind, mut start, mut end) = (0i32, 0u64, 0u64);
    let mut status: Option<&[u8]> = None;
    let mut events: Vec<Event> = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        match f {
            1 => trace_id = bytes(w)?,
            2 => span_id = bytes(w)?,
            3 => trace_state = string(w)?,
            4 => parent = bytes(w)?,
            5 => name = string(w)?,
            6 => kind = varint(w)? as i32,
            7 => start = fixed64(w)?,
            8 => end = fixed64(w)?,
            9 => attrs.push(key_value(bytes(w)?, 0)?),
            11 => events.push(event(bytes(w)?)?),
            13 => {
                if let Some(l) = link(bytes(w)?)? {
                    links.push(l);
                }
            }
            15 => {
                if status.is_some() {
                    return None;
                }
                status = Some(bytes(w)?);
            }
            10 | 12 | 14 => {
                varint(w)?;
            }
            16 if !matches!(w, Wire::Fixed32) => return None,
            _ => {}
        }
    }
    if fields.fail {
        return None;
    }
    // The general path's validation, as a yes/no (it words the rejections).
    let (trace_id, span_id) = (id::<16>(trace_id)?, id::<8>(span_id)?);
    let parent_span_id = match parent.len() {
        0 => None,
        8 => Some(<[u8; 8]>::try_from(parent).ok()?),
        _ => return None,
    };
    let max = i64::MAX as u64;
    if start == 0
        || start > max
        || end > max
        || end < start
        || end > window.newest_unix_nano
        || start < window.oldest_unix_nano
    {
        return None;
    }
    let (mut code, mut message) = (0i32, "");
    if let Some(st) = status {
        let mut fields = Fields::new(st);
        for (f, w) in fields.by_ref() {
            match f {
                2 => message = string(w)?,
                3 => code = varint(w)? as i32,
                _ => {}
            }
        }
        if fields.fail {
            return None;
        }
    }
    b.span(&SpanIn {
        trace_id,
        span_id,
        parent_span_id,
        trace_state,
        name,
        kind: SpanKind::from_i32(kind),
        start_unix_nano: start as i64,
        duration_nano: (end as i64).saturating_sub(start as i64),
        status_code: StatusCode::from_i32(code),
        status_message: message,
        attributes: attrs,
        events: &events,
        links: &links,
    })
    .ok()
}

/// A `KeyValue`; a missing value reads as the empty string (as on the general path).
fn key_value(msg: &[u8], depth: usize) -> Option<(&str, Value<'_>)> {
    let (mut key, mut value) = ("", None);
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        match f {
            1 => key = string(w)?,
            2 => {
                if value.is_some() {
                    return None;
                }
                value = Some(any_value(bytes(w)?, depth)?);
            }
            _ => {}
        }
    }
    if fields.fail {
        return None;
    }
    Some((key, value.unwrap_or(Value::Str(""))))
}

/// An `AnyValue`: strings and integers borrowed, the rest owned.
fn any_value(msg: &[u8], depth: usize) -> Option<Value<'_>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut value = None;
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        let v = match f {
            1 => Value::Str(string(w)?),
            2 => Value::Other(Cow::Owned(AttrValue::Bool(varint(w)? != 0))),
            3 => Value::Int(varint(w)? as i64),
            4 => Value::Other(Cow::Owned(AttrValue::Double(f64::from_bits(fixed64(w)?)))),
            5 => {
                let mut items = Vec::new();
                let mut inner = Fields::new(bytes(w)?);
                for (f, w) in inner.by_ref() {
                    if f == 1 {
                        items.push(owned(any_value(bytes(w)?, depth + 1)?));
                    }
                }
                if inner.fail {
                    return None;
                }
                Value::Other(Cow::Owned(AttrValue::Array(items)))
            }
            6 => Value::Other(Cow::Owned(AttrValue::Map(key_values(
                bytes(w)?,
                depth + 1,
            )?))),
            7 => Value::Other(Cow::Owned(AttrValue::Bytes(bytes(w)?.to_vec()))),
            _ => continue,
        };
        // A oneof sent twice: prost's merge rules decide; leave it to the general path.
        if value.is_some() {
            return None;
        }
        value = Some(v);
    }
    if fields.fail {
        return None;
    }
    Some(value.unwrap_or(Value::Str("")))
}

fn owned(v: Value<'_>) -> AttrValue {
    match v {
        Value::Str(s) => AttrValue::Str(s.to_string()),
        Value::Int(n) => AttrValue::Int(n),
        Value::Other(v) => v.into_owned(),
    }
}

/// A `KeyValue` field, owned (events, links and nested maps keep model values).
fn owned_key_value(w: Wire<'_>, depth: usize) -> Option<(String, AttrValue)> {
    let (k, v) = key_value(bytes(w)?, depth)?;
    Some((k.to_string(), owned(v)))
}

/// Repeated `KeyValue` field 1 of `msg` (a `KeyValueList`), owned.
fn key_values(msg: &[u8], depth: usize) -> Option<Attrs> {
    let mut out = Vec::new();
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        if f == 1 {
            out.push(owned_key_value(w, depth)?);
        }
    }
    (!fields.fail).then_some(Attrs(out))
}

fn event(msg: &[u8]) -> Option<Event> {
    let mut e = Event {
        time_unix_nano: 0,
        name: String::new(),
        attributes: Attrs::default(),
    };
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        match f {
            1 => e.time_unix_nano = fixed64(w)?.min(i64::MAX as u64) as i64,
            2 => e.name = string(w)?.to_string(),
            3 => e.attributes.0.push(owned_key_value(w, 0)?),
            4 => {
                varint(w)?;
            }
            _ => {}
        }
    }
    (!fields.fail).then_some(e)
}

/// A link; `Some(None)` for one the general path drops (ids of the wrong width).
fn link(msg: &[u8]) -> Option<Option<Link>> {
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut trace_state = "";
    let mut attributes = Attrs::default();
    let mut fields = Fields::new(msg);
    for (f, w) in fields.by_ref() {
        match f {
            1 => trace_id = bytes(w)?,
            2 => span_id = bytes(w)?,
            3 => trace_state = string(w)?,
            4 => attributes.0.push(owned_key_value(w, 0)?),
            5 => {
                varint(w)?;
            }
            6 if !matches!(w, Wire::Fixed32) => return None,
            _ => {}
        }
    }
    if fields.fail {
        return None;
    }
    let (Ok(trace_id), Ok(span_id)) = (trace_id.try_into(), span_id.try_into()) else {
        return Some(None);
    };
    Some(Some(Link {
        trace_id,
        span_id,
        trace_state: trace_state.to_string(),
        attributes,
    }))
}

//! Loupe's own span structs: what queries return, decoded from span files and fresh rows
//! (the collector buffers columnar rows, `spans::rows`, and builds these only on the JSON and
//! partial-success ingest path, where the builder takes them as input).
//!
//! Attribute values keep their OTLP type. As JSON (the form stored in Parquet for attributes
//! without a column of their own, and the form the APIs return) a value is its natural JSON
//! value: strings, integers, doubles (always written with a fraction or exponent, so `1.0`
//! stays a double), booleans, arrays and objects; bytes are `{"$bytes": "<base64>"}` and
//! non-finite doubles are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// One OTLP attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    Map(Attrs),
}

impl AttrValue {
    /// The value as a tag filter compares it: strings as themselves, other scalars printed.
    pub fn to_filter_string(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// An ordered list of key/value attributes; serialized as a JSON object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attrs(pub Vec<(String, AttrValue)>);

impl Attrs {
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttrValue::Str(v) => s.serialize_str(v),
            AttrValue::Bool(v) => s.serialize_bool(*v),
            AttrValue::Int(v) => s.serialize_i64(*v),
            AttrValue::Double(v) if v.is_finite() => s.serialize_f64(*v),
            AttrValue::Double(v) if v.is_nan() => s.serialize_str("NaN"),
            AttrValue::Double(v) if *v > 0.0 => s.serialize_str("Infinity"),
            AttrValue::Double(_) => s.serialize_str("-Infinity"),
            AttrValue::Bytes(b) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(
                    "$bytes",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                )?;
                m.end()
            }
            AttrValue::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            AttrValue::Map(attrs) => attrs.serialize(s),
        }
    }
}

impl Serialize for Attrs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = AttrValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<AttrValue, E> {
        Ok(AttrValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AttrValue, E> {
        Ok(AttrValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<AttrValue, E> {
        Ok(i64::try_from(v).map_or(AttrValue::Double(v as f64), AttrValue::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<AttrValue, E> {
        Ok(AttrValue::Double(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(v))
    }
    fn visit_unit<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(String::new()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttrValue, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(AttrValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AttrValue, A::Error> {
        let attrs = AttrsVisitor.visit_map(map)?;
        if let [(k, AttrValue::Str(b64))] = attrs.0.as_slice()
            && k == "$bytes"
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64)
        {
            return Ok(AttrValue::Bytes(bytes));
        }
        Ok(AttrValue::Map(attrs))
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct AttrsVisitor;

impl<'de> Visitor<'de> for AttrsVisitor {
    type Value = Attrs;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attributes object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attrs, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some((k, v)) = map.next_entry::<String, AttrValue>()? {
            out.push((k, v));
        }
        Ok(Attrs(out))
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AttrsVisitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        (0..=5).map(Self::from_i32).find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [StatusCode::Unset, StatusCode::Ok, StatusCode::Error]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// The resource a span came from; shared by every span of one OTLP `ResourceSpans`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub service_name: String,
    /// All resource attributes, `service.name` included.
    pub attributes: Attrs,
}

/// The instrumentation scope that produced a span.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time_unix_nano: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attributes: Attrs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    #[serde(with = "hex_id")]
    pub trace_id: TraceId,
    #[serde(with = "hex_id")]
    pub span_id: SpanId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attributes: Attrs,
}

/// One span, as stored and queried.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: i64,
    pub duration_nano: i64,
    pub status_code: StatusCode,
    pub status_message: String,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
    pub attributes: Attrs,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
}

impl SpanRecord {
    pub fn end_unix_nano(&self) -> i64 {
        self.start_unix_nano.saturating_add(self.duration_nano)
    }
    pub fn service_name(&self) -> &str {
        &self.resource.service_name
    }
    /// Looks an attribute up on the span first, then on its resource.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .get(key)
            .or_else(|| self.resource.attributes.get(key))
    }
}

/// Lower-case hex ids in JSON.
pub mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(id: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Parses a hex trace id (any case); `None` unless it is exactly 32 hex digits.
pub fn parse_trace_id(s: &str) -> Option<TraceId> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(s, &mut out).ok().map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_json_round_trips_with_types() {
        let attrs = Attrs(vec![
            ("s".into(), AttrValue::Str("x".into())),
            ("i".into(), AttrValue::Int(-3)),
            ("d".into(), AttrValue::Double(1.0)),
            ("b".into(), AttrValue::Bool(true)),
            ("bytes".into(), AttrValue::Bytes(vec![0, 255])),
            (
                "arr".into(),
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("a".into())]),
            ),
            (
                "map".into(),
                AttrValue::Map(Attrs(vec![("k".into(), AttrValue::Double(2.5))])),
            ),
        ]);
        let json = attrs.to_json();
        assert!(json.contains(r#""d":1.0"#), "{json}");
        assert_eq!(Attrs::from_json(&json).unwrap(), attrs);
    }

    #[test]
    fn non_finite_doubles_become_strings() {
        let attrs = Attrs(vec![("n".into(), AttrValue::Double(f64::NAN))]);
        assert_eq!(attrs.to_json(), r#"{"n":"NaN"}"#);
    }

    #[test]
    fn filter_strings() {
        assert_eq!(AttrValue::Int(500).to_filter_string(), "500");
        assert_eq!(AttrValue::Bool(false).to_filter_string(), "false");
        assert_eq!(AttrValue::Str("GET".into()).to_filter_string(), "GET");
    }
}

//! Log records encoded as an OTLP `ExportLogsServiceRequest`, straight into protobuf bytes.
//!
//! Written with prost's wire helpers rather than opentelemetry-proto's generated structs: at
//! full speed the agent encodes a million lines a second, and the generated types would
//! allocate a `String` per attribute and a struct tree per line only to serialise them once.
//! The layout is the OTLP one (`logs.proto`): one `ResourceLogs` per log file (its
//! Kubernetes identity as resource attributes, encoded once), one `ScopeLogs` named
//! `loupe-agent`, and per line a `LogRecord` with time, observed time, body (a string, or
//! bytes when the line is not UTF-8: kept byte for byte either way), attributes, and trace
//! context when the line carried one. The tests decode the output with the generated types.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

/// One log line to encode.
#[derive(Debug, Clone, Default)]
pub struct Line<'a> {
    pub time_unix_nano: u64,
    pub observed_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: &'a [u8],
    pub attributes: &'a [(&'a str, Value<'a>)],
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub trace_flags: Option<u8>,
}

fn len_field(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => len_field(1, s.len()),
        Value::Int(i) => key_len(3) + encoded_len_varint(*i as u64),
        Value::Bool(_) => key_len(2) + 1,
    }
}

fn put_len(out: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            put_len(out, 1, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Int(i) => {
            encode_key(3, WireType::Varint, out);
            encode_varint(*i as u64, out);
        }
        Value::Bool(b) => {
            encode_key(2, WireType::Varint, out);
            out.push(u8::from(*b));
        }
    }
}

fn key_value_len(k: &str, v: &Value) -> usize {
    len_field(1, k.len()) + len_field(2, value_len(v))
}

/// Writes `KeyValue` entries as field `tag` of the enclosing message.
fn put_attributes(out: &mut Vec<u8>, tag: u32, attrs: &[(&str, Value)]) {
    for (k, v) in attrs {
        put_len(out, tag, key_value_len(k, v));
        put_len(out, 1, k.len());
        out.extend_from_slice(k.as_bytes());
        put_len(out, 2, value_len(v));
        put_value(out, v);
    }
}

/// A `Resource` message, encoded once per file.
pub fn resource(attrs: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_attributes(&mut out, 1, attrs);
    out
}

fn record_len(l: &Line, body_tag: u32) -> usize {
    let mut n = 0;
    if l.time_unix_nano != 0 {
        n += key_len(1) + 8;
    }
    if l.observed_unix_nano != 0 {
        n += key_len(11) + 8;
    }
    if l.severity_number != 0 {
        n += key_len(2) + encoded_len_varint(l.severity_number as u64);
    }
    if !l.severity_text.is_empty() {
        n += len_field(3, l.severity_text.len());
    }
    n += len_field(5, len_field(body_tag, l.body.len()));
    for (k, v) in l.attributes {
        n += len_field(6, key_value_len(k, v));
    }
    if l.trace_flags.is_some() {
        n += key_len(8) + 4;
    }
    if l.trace_id.is_some() {
        n += len_field(9, 16);
    }
    if l.span_id.is_some() {
        n += len_field(10, 8);
    }
    n
}

/// Writes one `LogRecord` as field 2 of a `ScopeLogs`.
fn put_record(out: &mut Vec<u8>, l: &Line) {
    let body_tag = if std::str::from_utf8(l.body).is_ok() {
        1
    } else {
        7
    };
    put_len(out, 2, record_len(l, body_tag));
    if l.time_unix_nano != 0 {
        encode_key(1, WireType::SixtyFourBit, out);
        out.extend_from_slice(&l.time_unix_nano.to_le_bytes());
    }
    if l.severity_number != 0 {
        encode_key(2, WireType::Varint, out);
        encode_varint(l.severity_number as u64, out);
    }
    if !l.severity_text.is_empty() {
        put_len(out, 3, l.severity_text.len());
        out.extend_from_slice(l.severity_text.as_bytes());
    }
    put_len(out, 5, len_field(body_tag, l.body.len()));
    put_len(out, body_tag, l.body.len());
    out.extend_from_slice(l.body);
    put_attributes(out, 6, l.attributes);
    if let Some(f) = l.trace_flags {
        encode_key(8, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&u32::from(f).to_le_bytes());
    }
    if let Some(t) = &l.trace_id {
        put_len(out, 9, 16);
        out.extend_from_slice(t);
    }
    if let Some(s) = &l.span_id {
        put_len(out, 10, 8);
        out.extend_from_slice(s);
    }
    if l.observed_unix_nano != 0 {
        encode_key(11, WireType::SixtyFourBit, out);
        out.extend_from_slice(&l.observed_unix_nano.to_le_bytes());
    }
}

struct Group {
    resource: std::sync::Arc<[u8]>,
    records: Vec<u8>,
}

/// The records of one request, grouped by the resource (file) they came from.
#[derive(Default)]
pub struct LogsBatch {
    groups: Vec<Group>,
    lines: usize,
}

const SCOPE_NAME: &str = "loupe-agent";

impl LogsBatch {
    /// Adds a line of the resource whose encoding is `resource` (lines of one resource
    /// should come with the same `Arc`, as they then share a `ResourceLogs`).
    pub fn push(&mut self, resource: &std::sync::Arc<[u8]>, line: &Line) {
        let group = match self
            .groups
            .iter()
            .rposition(|g| std::sync::Arc::ptr_eq(&g.resource, resource))
        {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push(Group {
                    resource: resource.clone(),
                    records: Vec::new(),
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        put_record(&mut group.records, line);
        self.lines += 1;
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Encoded bytes of the records so far.
    pub fn bytes(&self) -> usize {
        self.groups.iter().map(|g| g.records.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The `ExportLogsServiceRequest`; the batch is left empty.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    /// Encoded bytes of the request [`LogsBatch::finish_into`] writes.
    pub fn request_len(&self) -> usize {
        self.bytes() + 64 * self.groups.len()
    }

    /// Appends the `ExportLogsServiceRequest` to `out`; the batch is left empty.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        let scope_len = len_field(1, SCOPE_NAME.len()) + len_field(2, VERSION.len());
        out.reserve(self.request_len());
        for g in self.groups.drain(..) {
            let scope_logs_len = len_field(1, scope_len) + g.records.len();
            let resource_logs_len = len_field(1, g.resource.len()) + len_field(2, scope_logs_len);
            put_len(out, 1, resource_logs_len);
            put_len(out, 1, g.resource.len());
            out.extend_from_slice(&g.resource);
            put_len(out, 2, scope_logs_len);
            put_len(out, 1, scope_len);
            put_len(out, 1, SCOPE_NAME.len());
            out.extend_from_slice(SCOPE_NAME.as_bytes());
            put_len(out, 2, VERSION.len());
            out.extend_from_slice(VERSION.as_bytes());
            out.extend_from_slice(&g.records);
        }
        self.lines = 0;
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
    use prost::Message;
    use std::sync::Arc;

    fn attr(kv: &opentelemetry_proto::tonic::common::v1::KeyValue) -> (String, Option<Av>) {
        (
            kv.key.clone(),
            kv.value.as_ref().and_then(|v| v.value.clone()),
        )
    }

    #[test]
    fn requests_decode_as_otlp_with_every_byte_of_the_lines() {
        let r1: Arc<[u8]> = resource(&[
            ("k8s.namespace.name", Value::Str("shop")),
            ("k8s.container.restart_count", Value::Int(3)),
        ])
        .into();
        let r2: Arc<[u8]> = resource(&[("k8s.pod.name", Value::Str("web-1"))]).into();
        let mut b = LogsBatch::default();
        let attrs = [("log.iostream", Value::Str("stderr"))];
        b.push(
            &r1,
            &Line {
                time_unix_nano: 1_700_000_000_123_456_789,
                observed_unix_nano: 1_700_000_001_000_000_000,
                body: "héllo\tworld".as_bytes(),
                attributes: &attrs,
                trace_id: Some([0xab; 16]),
                span_id: Some([0xcd; 8]),
                trace_flags: Some(1),
                severity_number: 17,
                severity_text: "ERROR",
            },
        );
        b.push(
            &r2,
            &Line {
                body: &[0xff, 0xfe, b'x'],
                ..Line::default()
            },
        );
        b.push(
            &r1,
            &Line {
                body: b"",
                attributes: &[("flag", Value::Bool(true))],
                ..Line::default()
            },
        );
        assert_eq!(b.lines(), 3);
        let bytes = b.finish();
        assert!(b.is_empty());
        let req = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.resource_logs.len(), 2);
        let rl = &req.resource_logs[0];
        let res: Vec<_> = rl
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(attr)
            .collect();
        assert_eq!(
            res,
            vec![
                (
                    "k8s.namespace.name".into(),
                    Some(Av::StringValue("shop".into()))
                ),
                ("k8s.container.restart_count".into(), Some(Av::IntValue(3))),
            ]
        );
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "loupe-agent");
        assert_eq!(sl.log_records.len(), 2);
        let l = &sl.log_records[0];
        assert_eq!(l.time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(l.observed_time_unix_nano, 1_700_000_001_000_000_000);
        assert_eq!(
            l.body.as_ref().unwrap().value,
            Some(Av::StringValue("héllo\tworld".into()))
        );
        assert_eq!((l.severity_number, l.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(l.trace_id, vec![0xab; 16]);
        assert_eq!(l.span_id, vec![0xcd; 8]);
        assert_eq!(l.flags, 1);
        assert_eq!(
            l.attributes.iter().map(attr).collect::<Vec<_>>(),
            vec![(
                "log.iostream".into(),
                Some(Av::StringValue("stderr".into()))
            )]
        );
        let empty = &sl.log_records[1];
        assert_eq!(
            empty.body.as_ref().unwrap().value,
            Some(Av::StringValue(String::new()))
        );
        assert_eq!(attr(&empty.attributes[0]).1, Some(Av::BoolValue(true)));
        let other = &req.resource_logs[1].scope_logs[0].log_records[0];
        assert_eq!(
            other.body.as_ref().unwrap().value,
            Some(Av::BytesValue(vec![0xff, 0xfe, b'x'])),
            "not UTF-8: kept as bytes"
        );
        // Two requests concatenated are one request holding both (how the shipper joins them).
        let mut joined = bytes.clone();
        joined.extend_from_slice(&bytes);
        let req = ExportLogsServiceRequest::decode(joined.as_slice()).unwrap();
        assert_eq!(req.resource_logs.len(), 4);
    }
}

//! A trace back in OTLP shape for the Tempo API: spans grouped by resource and scope, as
//! protobuf (`TracesData`'s wire shape, which is Tempo's `Trace`) or as the JSON Tempo writes
//! (Go's gogo `jsonpb` with defaults: proto field names, 64-bit integers and nanosecond times as
//! strings, ids as base64, enums by name, empty fields left out).

use std::sync::Arc;

use base64::Engine;
use loupe_storage::model::{AttrValue, Attrs, Resource, Scope, SpanRecord};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, TracesData, span,
};
use serde_json::{Map, Value, json};

/// Spans grouped by resource, then scope, in first-seen order.
type Groups<'a> = Vec<(Arc<Resource>, Vec<(Arc<Scope>, Vec<&'a SpanRecord>)>)>;

fn group(spans: &[SpanRecord]) -> Groups<'_> {
    let mut out: Groups<'_> = Vec::new();
    for s in spans {
        let r = match out
            .iter()
            .position(|(r, _)| Arc::ptr_eq(r, &s.resource) || **r == *s.resource)
        {
            Some(i) => i,
            None => {
                out.push((s.resource.clone(), Vec::new()));
                out.len() - 1
            }
        };
        let scopes = &mut out[r].1;
        match scopes
            .iter()
            .position(|(sc, _)| Arc::ptr_eq(sc, &s.scope) || **sc == *s.scope)
        {
            Some(i) => scopes[i].1.push(s),
            None => scopes.push((s.scope.clone(), vec![s])),
        }
    }
    out
}

pub fn traces_data(spans: &[SpanRecord]) -> TracesData {
    TracesData {
        resource_spans: group(spans)
            .into_iter()
            .map(|(resource, scopes)| ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: key_values(&resource.attributes),
                    ..Default::default()
                }),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: scope.name.clone(),
                            version: scope.version.clone(),
                            ..Default::default()
                        }),
                        spans: spans.into_iter().map(otlp_span).collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    }
}

fn otlp_span(s: &SpanRecord) -> Span {
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name.clone(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_unix_nano.max(0) as u64,
        end_time_unix_nano: s.end_unix_nano().max(0) as u64,
        attributes: key_values(&s.attributes),
        events: s
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: e.time_unix_nano.max(0) as u64,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                ..Default::default()
            })
            .collect(),
        links: s
            .links
            .iter()
            .map(|l| span::Link {
                trace_id: l.trace_id.to_vec(),
                span_id: l.span_id.to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: key_values(&l.attributes),
                ..Default::default()
            })
            .collect(),
        status: Some(Status {
            message: s.status_message.clone(),
            code: s.status_code as i32,
        }),
        ..Default::default()
    }
}

fn key_values(attrs: &Attrs) -> Vec<KeyValue> {
    attrs
        .0
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any_value(v)),
            ..Default::default()
        })
        .collect()
}

fn any_value(v: &AttrValue) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        AttrValue::Str(s) => V::StringValue(s.clone()),
        AttrValue::Bool(b) => V::BoolValue(*b),
        AttrValue::Int(i) => V::IntValue(*i),
        AttrValue::Double(d) => V::DoubleValue(*d),
        AttrValue::Bytes(b) => V::BytesValue(b.clone()),
        AttrValue::Array(items) => V::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        }),
        AttrValue::Map(m) => V::KvlistValue(KeyValueList {
            values: key_values(m),
        }),
    };
    AnyValue { value: Some(value) }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `resourceSpans` (Tempo's v2 and current name) or `batches` (its v1 answer).
pub fn trace_json(spans: &[SpanRecord], field: &str) -> Value {
    let batches: Vec<Value> = group(spans)
        .into_iter()
        .map(|(resource, scopes)| {
            let mut rs = Map::new();
            let mut res = Map::new();
            put_attrs(&mut res, &resource.attributes);
            rs.insert("resource".into(), Value::Object(res));
            let scope_spans: Vec<Value> = scopes
                .into_iter()
                .map(|(scope, spans)| {
                    let mut sc = Map::new();
                    put_str(&mut sc, "name", &scope.name);
                    put_str(&mut sc, "version", &scope.version);
                    json!({
                        "scope": sc,
                        "spans": spans.into_iter().map(span_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
            rs.insert("scopeSpans".into(), Value::Array(scope_spans));
            Value::Object(rs)
        })
        .collect();
    let mut out = Map::new();
    if !batches.is_empty() {
        out.insert(field.to_string(), Value::Array(batches));
    }
    Value::Object(out)
}

fn span_json(s: &SpanRecord) -> Value {
    let mut m = Map::new();
    m.insert("traceId".into(), b64(&s.trace_id).into());
    m.insert("spanId".into(), b64(&s.span_id).into());
    put_str(&mut m, "traceState", &s.trace_state);
    if let Some(p) = s.parent_span_id {
        m.insert("parentSpanId".into(), b64(&p).into());
    }
    put_str(&mut m, "name", &s.name);
    if s.kind as i32 != 0 {
        m.insert(
            "kind".into(),
            format!("SPAN_KIND_{}", s.kind.as_str().to_uppercase()).into(),
        );
    }
    m.insert(
        "startTimeUnixNano".into(),
        s.start_unix_nano.max(0).to_string().into(),
    );
    m.insert(
        "endTimeUnixNano".into(),
        s.end_unix_nano().max(0).to_string().into(),
    );
    put_attrs(&mut m, &s.attributes);
    if !s.events.is_empty() {
        let events: Vec<Value> = s
            .events
            .iter()
            .map(|e| {
                let mut ev = Map::new();
                ev.insert(
                    "timeUnixNano".into(),
                    e.time_unix_nano.max(0).to_string().into(),
                );
                put_str(&mut ev, "name", &e.name);
                put_attrs(&mut ev, &e.attributes);
                Value::Object(ev)
            })
            .collect();
        m.insert("events".into(), Value::Array(events));
    }
    if !s.links.is_empty() {
        let links: Vec<Value> = s
            .links
            .iter()
            .map(|l| {
                let mut lk = Map::new();
                lk.insert("traceId".into(), b64(&l.trace_id).into());
                lk.insert("spanId".into(), b64(&l.span_id).into());
                put_str(&mut lk, "traceState", &l.trace_state);
                put_attrs(&mut lk, &l.attributes);
                Value::Object(lk)
            })
            .collect();
        m.insert("links".into(), Value::Array(links));
    }
    let mut status = Map::new();
    put_str(&mut status, "message", &s.status_message);
    if s.status_code as i32 != 0 {
        status.insert(
            "code".into(),
            format!("STATUS_CODE_{}", s.status_code.as_str().to_uppercase()).into(),
        );
    }
    m.insert("status".into(), Value::Object(status));
    Value::Object(m)
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: &str) {
    if !v.is_empty() {
        m.insert(key.into(), v.into());
    }
}

fn put_attrs(m: &mut Map<String, Value>, attrs: &Attrs) {
    if !attrs.is_empty() {
        m.insert("attributes".into(), key_values_json(&attrs.0));
    }
}

pub fn key_values_json(attrs: &[(String, AttrValue)]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": any_value_json(v)}))
            .collect(),
    )
}

/// An OTLP `AnyValue` in jsonpb form.
pub fn any_value_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({"stringValue": s}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(d) if d.is_finite() => json!({"doubleValue": d}),
        AttrValue::Double(d) => {
            json!({"doubleValue": if d.is_nan() { "NaN" } else if *d > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        AttrValue::Bytes(b) => json!({"bytesValue": b64(b)}),
        AttrValue::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(any_value_json).collect::<Vec<_>>()}})
        }
        AttrValue::Map(m) => json!({"kvlistValue": {"values": key_values_json(&m.0)}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_storage::conformance::span;
    use prost::Message;

    #[test]
    fn protobuf_round_trips_and_groups_by_resource() {
        let spans = vec![
            span(1, 1, None, "a", "root", 10, 5),
            span(1, 2, Some(1), "b", "child", 11, 2),
            span(1, 3, Some(1), "a", "sibling", 12, 1),
        ];
        let td = traces_data(&spans);
        assert_eq!(
            td.resource_spans.len(),
            2,
            "one group per service's resource"
        );
        let bytes = td.encode_to_vec();
        let back = TracesData::decode(bytes.as_slice()).unwrap();
        let names: Vec<&str> = back
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, vec!["root", "sibling", "child"]);
        let s = &back.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id, vec![1; 16]);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 5);
    }

    #[test]
    fn json_is_tempos_jsonpb() {
        let spans = vec![span(1, 2, Some(1), "a", "child", 11, 2)];
        let v = trace_json(&spans, "batches");
        let s = &v["batches"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], b64(&[1; 16]));
        assert_eq!(s["parentSpanId"], b64(&[1; 8]));
        assert_eq!(s["startTimeUnixNano"], "11");
        assert_eq!(s["endTimeUnixNano"], "13");
        assert_eq!(s["kind"], "SPAN_KIND_SERVER");
        assert_eq!(trace_json(&[], "trace"), json!({}));
    }
}

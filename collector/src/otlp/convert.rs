//! Validating OTLP spans (bad ones are dropped and counted for partial success) and
//! converting them into `SpanRecord`s.

use std::sync::Arc;

use loupe_storage::model::{
    AttrValue, Attrs, Event, Link, Resource, Scope, SpanKind, SpanRecord, StatusCode,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;

/// The outcome of validation: the request now holds only valid spans.
#[derive(Debug, Default, PartialEq)]
pub struct Validated {
    pub accepted: u64,
    pub rejected: u64,
    /// Describes the first few problems, for the partial-success message.
    pub message: String,
}

/// The times a span may have: from the start of the retention window (older data would be
/// dropped at once, and would widen its file's time range) to now plus the allowed clock
/// skew (a span "ending in 2262" would keep its file from ever expiring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub oldest_unix_nano: u64,
    pub newest_unix_nano: u64,
}

impl TimeWindow {
    /// The window around the current time.
    pub fn around_now(retention: std::time::Duration, future_skew: std::time::Duration) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        TimeWindow {
            oldest_unix_nano: now.saturating_sub(retention.as_nanos() as u64),
            newest_unix_nano: now.saturating_add(future_skew.as_nanos() as u64),
        }
    }

    /// Any time a span can carry (tests, tools).
    pub fn unbounded() -> Self {
        TimeWindow {
            oldest_unix_nano: 1,
            newest_unix_nano: i64::MAX as u64,
        }
    }
}

fn problem(span: &Span, window: &TimeWindow) -> Option<String> {
    let id = |b: &[u8]| hex::encode(b);
    if span.trace_id.len() != 16 {
        return Some(format!(
            "trace_id must be 16 bytes, got {}",
            span.trace_id.len()
        ));
    }
    if span.trace_id.iter().all(|b| *b == 0) {
        return Some("trace_id must not be all zeros".into());
    }
    if span.span_id.len() != 8 {
        return Some(format!(
            "span_id must be 8 bytes, got {} (trace {})",
            span.span_id.len(),
            id(&span.trace_id)
        ));
    }
    if span.span_id.iter().all(|b| *b == 0) {
        return Some(format!(
            "span_id must not be all zeros (trace {})",
            id(&span.trace_id)
        ));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Some(format!(
            "parent_span_id must be empty or 8 bytes, got {} (span {})",
            span.parent_span_id.len(),
            id(&span.span_id)
        ));
    }
    if span.start_time_unix_nano == 0 {
        return Some(format!(
            "start_time_unix_nano is missing (span {})",
            id(&span.span_id)
        ));
    }
    if span.start_time_unix_nano > i64::MAX as u64 || span.end_time_unix_nano > i64::MAX as u64 {
        return Some(format!(
            "timestamp out of range (span {})",
            id(&span.span_id)
        ));
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Some(format!(
            "end_time_unix_nano is before start_time_unix_nano (span {})",
            id(&span.span_id)
        ));
    }
    if span.end_time_unix_nano > window.newest_unix_nano {
        return Some(format!(
            "end_time_unix_nano {} is further in the future than LOUPE_MAX_FUTURE_SKEW allows (span {})",
            span.end_time_unix_nano,
            id(&span.span_id)
        ));
    }
    if span.start_time_unix_nano < window.oldest_unix_nano {
        return Some(format!(
            "start_time_unix_nano {} is older than the retention window (span {})",
            span.start_time_unix_nano,
            id(&span.span_id)
        ));
    }
    None
}

/// Drops invalid spans (malformed, or outside `window`) from `req` in place and reports how
/// many were kept and dropped.
pub fn validate_traces(req: &mut ExportTraceServiceRequest, window: &TimeWindow) -> Validated {
    let mut v = Tally::default();
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| v.keep(problem(s, window)));
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    req.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    v.finish("span(s)")
}

/// Counts kept and refused items and keeps the first few problems, for partial success.
#[derive(Default)]
pub(crate) struct Tally {
    v: Validated,
    problems: Vec<String>,
}

impl Tally {
    /// Counts an item; true if it has no problem (is kept).
    pub(crate) fn keep(&mut self, problem: Option<String>) -> bool {
        match problem {
            None => {
                self.v.accepted += 1;
                true
            }
            Some(p) => {
                self.v.rejected += 1;
                if self.problems.len() < 3 {
                    self.problems.push(p);
                }
                false
            }
        }
    }

    /// The outcome; `what` names the items in the message (`span(s)`, `log record(s)`).
    pub(crate) fn finish(self, what: &str) -> Validated {
        let Tally { mut v, problems } = self;
        if v.rejected > 0 {
            v.message = format!(
                "rejected {} invalid {what}: {}",
                v.rejected,
                problems.join("; ")
            );
            if v.rejected as usize > problems.len() {
                v.message.push_str("; ...");
            }
        }
        v
    }
}

/// The resource of an OTLP `Resource*` message, with its service name (`unknown_service`
/// when it has none, as the OpenTelemetry specification says).
pub(crate) fn resource_of(
    r: Option<opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Arc<Resource> {
    let attributes = r.map(|r| attrs(r.attributes)).unwrap_or_default();
    let service_name = match attributes.get("service.name") {
        Some(AttrValue::Str(s)) if !s.is_empty() => s.clone(),
        _ => "unknown_service".to_string(),
    };
    Arc::new(Resource {
        service_name,
        attributes,
    })
}

pub(crate) fn any_value(v: AnyValue) -> AttrValue {
    match v.value {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(any_value::Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(any_value::Value::ArrayValue(a)) => {
            AttrValue::Array(a.values.into_iter().map(any_value).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => AttrValue::Map(attrs(kv.values)),
        // An empty value is valid OTLP; keep the key.
        None => AttrValue::Str(String::new()),
        #[allow(unreachable_patterns)]
        Some(_) => AttrValue::Str(String::new()),
    }
}

pub(crate) fn attrs(kvs: Vec<KeyValue>) -> Attrs {
    Attrs(
        kvs.into_iter()
            .map(|kv| {
                (
                    kv.key,
                    kv.value.map_or(AttrValue::Str(String::new()), any_value),
                )
            })
            .collect(),
    )
}

fn id<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if b.len() == N {
        out.copy_from_slice(b);
    }
    out
}

/// Converts a validated request into span records, moving its strings and values (no copies:
/// they were most of the conversion's allocations).
pub fn to_span_records(req: ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = resource_of(rs.resource);
        for ss in rs.scope_spans {
            let scope = Arc::new(
                ss.scope
                    .map(|s| Scope {
                        name: s.name,
                        version: s.version,
                    })
                    .unwrap_or_default(),
            );
            out.reserve(ss.spans.len());
            for s in ss.spans {
                let start = s.start_time_unix_nano as i64;
                let (status_code, status_message) = s
                    .status
                    .map_or((0, String::new()), |st| (st.code, st.message));
                out.push(SpanRecord {
                    trace_id: id(&s.trace_id),
                    span_id: id(&s.span_id),
                    parent_span_id: (s.parent_span_id.len() == 8).then(|| id(&s.parent_span_id)),
                    trace_state: s.trace_state,
                    name: s.name,
                    kind: SpanKind::from_i32(s.kind),
                    start_unix_nano: start,
                    duration_nano: (s.end_time_unix_nano as i64).saturating_sub(start),
                    status_code: StatusCode::from_i32(status_code),
                    status_message,
                    resource: resource.clone(),
                    scope: scope.clone(),
                    attributes: attrs(s.attributes),
                    events: s
                        .events
                        .into_iter()
                        .map(|e| Event {
                            time_unix_nano: e.time_unix_nano.min(i64::MAX as u64) as i64,
                            name: e.name,
                            attributes: attrs(e.attributes),
                        })
                        .collect(),
                    links: s
                        .links
                        .into_iter()
                        .filter(|l| l.trace_id.len() == 16 && l.span_id.len() == 8)
                        .map(|l| Link {
                            trace_id: id(&l.trace_id),
                            span_id: id(&l.span_id),
                            trace_state: l.trace_state,
                            attributes: attrs(l.attributes),
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn span(trace: &[u8], span: &[u8], start: u64, end: u64) -> Span {
        Span {
            trace_id: trace.to_vec(),
            span_id: span.to_vec(),
            name: "op".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("svc".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn invalid_spans_are_dropped_and_counted() {
        let mut req = request(vec![
            span(&[1; 16], &[1; 8], 10, 20),
            span(&[1; 15], &[2; 8], 10, 20),
            span(&[1; 16], &[3; 7], 10, 20),
            span(&[1; 16], &[4; 8], 20, 10),
            span(&[0; 16], &[5; 8], 10, 20),
        ]);
        let v = validate_traces(&mut req, &TimeWindow::unbounded());
        assert_eq!((v.accepted, v.rejected), (1, 4));
        assert!(
            v.message.contains("trace_id must be 16 bytes, got 15"),
            "{}",
            v.message
        );
        assert!(
            v.message.contains("span_id must be 8 bytes"),
            "{}",
            v.message
        );
        let recs = to_span_records(req);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].service_name(), "svc");
        assert_eq!(recs[0].duration_nano, 10);
    }

    #[test]
    fn all_invalid_leaves_an_empty_request() {
        let mut req = request(vec![span(&[1; 3], &[1; 8], 1, 2)]);
        let v = validate_traces(&mut req, &TimeWindow::unbounded());
        assert_eq!(v.accepted, 0);
        assert!(req.resource_spans.is_empty());
    }

    #[test]
    fn spans_outside_the_time_window_are_rejected_with_a_reason() {
        let hour = std::time::Duration::from_secs(3600);
        let w = TimeWindow::around_now(hour * 24, hour);
        let now = w.newest_unix_nano - hour.as_nanos() as u64;
        let mut req = request(vec![
            span(&[1; 16], &[1; 8], now - 1000, now),
            // Ending in 2262: would keep its file from ever expiring.
            span(&[1; 16], &[2; 8], now, i64::MAX as u64),
            // Starting in 1970: would stretch its file's time range over every search.
            span(&[1; 16], &[3; 8], 1, now),
        ]);
        let v = validate_traces(&mut req, &w);
        assert_eq!((v.accepted, v.rejected), (1, 2));
        assert!(v.message.contains("LOUPE_MAX_FUTURE_SKEW"), "{}", v.message);
        assert!(
            v.message.contains("older than the retention window"),
            "{}",
            v.message
        );
    }
}

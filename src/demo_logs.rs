//! The demo services' logs: every request a service handles writes one line when it ends.
//! Half the services log through an OTLP log SDK (records carry the span's trace context and
//! attributes); the others only print to stdout, as many services do: JSON lines or logfmt
//! lines whose trace context is in the text (`trace_id`, `traceparent`), which the collector
//! lifts, so every line of the demo leads to its trace.

use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// How a service writes its lines.
#[derive(Clone, Copy, PartialEq)]
pub enum Style {
    /// Through a log SDK: context and attributes on the record.
    Sdk,
    /// JSON lines on stdout, `trace_id` and `span_id` fields in the line.
    Json,
    /// logfmt lines on stdout with a `traceparent` pair.
    Logfmt,
}

pub fn style_of(service: &str) -> Style {
    match service {
        "cart" | "notification" => Style::Json,
        "inventory" => Style::Logfmt,
        _ => Style::Sdk,
    }
}

/// One handled request, as its service logs it.
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub code: u16,
    pub millis: u64,
    pub trace: [u8; 16],
    pub span: [u8; 8],
    /// The error the span recorded, if any.
    pub error: Option<&'a str>,
}

fn text(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// The record `style` writes for `a` at `now`.
pub fn record(style: Style, a: &Access, now: u64) -> LogRecord {
    let (sev, level) = match a.code {
        500.. => (SeverityNumber::Error, "ERROR"),
        400.. => (SeverityNumber::Warn, "WARN"),
        _ => (SeverityNumber::Info, "INFO"),
    };
    let (trace, span) = (hex::encode(a.trace), hex::encode(a.span));
    let msg = match a.error {
        Some(e) => format!("{} {} failed: {e}", a.method, a.path),
        None => format!("{} {} completed", a.method, a.path),
    };
    match style {
        Style::Sdk => LogRecord {
            time_unix_nano: now,
            severity_number: sev as i32,
            severity_text: level.into(),
            body: text(msg),
            attributes: vec![
                kv("http.request.method", text(a.method)),
                kv("url.path", text(a.path)),
                kv(
                    "http.response.status_code",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i64::from(a.code))),
                    }),
                ),
                kv(
                    "duration_ms",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(a.millis as i64)),
                    }),
                ),
            ],
            trace_id: a.trace.to_vec(),
            span_id: a.span.to_vec(),
            flags: 1,
            ..Default::default()
        },
        // What a container runtime collects from stdout: the line, nothing else.
        Style::Json => LogRecord {
            observed_time_unix_nano: now,
            body: text(
                serde_json::json!({
                    "level": level.to_lowercase(), "msg": msg, "method": a.method,
                    "path": a.path, "status": a.code, "duration_ms": a.millis,
                    "trace_id": trace, "span_id": span,
                })
                .to_string(),
            ),
            ..Default::default()
        },
        Style::Logfmt => LogRecord {
            observed_time_unix_nano: now,
            body: text(format!(
                "level={} msg=\"{msg}\" method={} path={} status={} duration_ms={} traceparent=00-{trace}-{span}-01",
                level.to_lowercase(),
                a.method,
                a.path,
                a.code,
                a.millis
            )),
            ..Default::default()
        },
    }
}

/// Log records of one service waiting for export.
#[derive(Default)]
pub struct Pending(Mutex<Vec<LogRecord>>);

impl Pending {
    pub fn push(&self, r: LogRecord) {
        if let Ok(mut p) = self.0.lock() {
            p.push(r);
        }
    }

    /// The records so far, as this service's part of an export.
    pub fn take(&self, resource: &Resource) -> Option<ResourceLogs> {
        let records = std::mem::take(&mut *self.0.lock().ok()?);
        (!records.is_empty()).then(|| ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "loupe-demo".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        })
    }
}

/// An export of every service's pending records, if any.
pub fn export<'a>(
    parts: impl Iterator<Item = (&'a Pending, &'a Resource)>,
) -> Option<ExportLogsServiceRequest> {
    let resource_logs: Vec<ResourceLogs> = parts.filter_map(|(p, r)| p.take(r)).collect();
    (!resource_logs.is_empty()).then_some(ExportLogsServiceRequest { resource_logs })
}

//! OTLP logs at the edge: decoding `ExportLogsServiceRequest` bodies, validating records
//! (bad ones are dropped and counted for partial success), filling in what the sender left
//! out, and converting them into [`LogRecord`]s.
//!
//! Validation drops a record whose trace or span id has the wrong width, whose body is larger
//! than the line limit (`LOUPE_MAX_LOG_LINE_BYTES`: refused with the reason, never
//! truncated), or whose time lies outside the accepted window. A record without an observed
//! time gets the time of receipt, and one without a time gets its observed time; both are
//! written into the request, so the WAL payload replays to the same records. A record
//! without a trace id whose body carries one (JSON field, logfmt pair, `traceparent`) gets it
//! at conversion (deterministic, so replay lifts it again).

use std::sync::Arc;

use loupe_core::trace_context;
use loupe_storage::logs::{LogRecord, severity_from_text};
use loupe_storage::model::{AttrValue, Scope};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLog;
use prost::Message;

use crate::error::IngestError;
use crate::otlp::convert::{Tally, any_value, attrs, resource_of};
use crate::otlp::{Encoding, TimeWindow, Validated};

/// Decodes an `ExportLogsServiceRequest` body.
pub fn decode_logs(body: &[u8], enc: Encoding) -> Result<ExportLogsServiceRequest, IngestError> {
    if body.is_empty() {
        return Err(IngestError::BadRequest(
            "request body is empty: expected an OTLP ExportLogsServiceRequest".into(),
        ));
    }
    match enc {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| {
            IngestError::BadRequest(format!(
                "invalid OTLP protobuf ExportLogsServiceRequest: {e}"
            ))
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            IngestError::BadRequest(format!("invalid OTLP/JSON ExportLogsServiceRequest: {e}"))
        }),
    }
}

/// The encoded size of a record's body (what the line limit counts).
fn body_bytes(r: &OtlpLog) -> usize {
    r.body.as_ref().map_or(0, |b| match &b.value {
        Some(any_value::Value::StringValue(s)) => s.len(),
        Some(any_value::Value::BytesValue(v)) => v.len(),
        _ => b.encoded_len(),
    })
}

fn problem(r: &OtlpLog, window: &TimeWindow, max_line: usize) -> Option<String> {
    if !r.trace_id.is_empty() && r.trace_id.len() != 16 {
        return Some(format!(
            "trace_id must be empty or 16 bytes, got {}",
            r.trace_id.len()
        ));
    }
    if !r.span_id.is_empty() && r.span_id.len() != 8 {
        return Some(format!(
            "span_id must be empty or 8 bytes, got {}",
            r.span_id.len()
        ));
    }
    let size = body_bytes(r);
    if size > max_line {
        return Some(format!(
            "log body of {size} bytes exceeds the limit of {max_line} bytes (LOUPE_MAX_LOG_LINE_BYTES)"
        ));
    }
    let t = r.time_unix_nano;
    if t > i64::MAX as u64 {
        return Some(format!("time_unix_nano {t} is out of range"));
    }
    if t > window.newest_unix_nano {
        return Some(format!(
            "time_unix_nano {t} is further in the future than LOUPE_MAX_FUTURE_SKEW allows"
        ));
    }
    if t < window.oldest_unix_nano {
        return Some(format!(
            "time_unix_nano {t} is older than the retention window"
        ));
    }
    None
}

/// Fills in missing times (see the module docs), then drops invalid records from `req` in
/// place and reports how many were kept and dropped. `now`: the time of receipt.
pub fn validate_logs(
    req: &mut ExportLogsServiceRequest,
    window: &TimeWindow,
    max_line: usize,
    now_unix_nano: u64,
) -> Validated {
    let mut v = Tally::default();
    for rl in &mut req.resource_logs {
        for sl in &mut rl.scope_logs {
            sl.log_records.retain_mut(|r| {
                if r.observed_time_unix_nano == 0 {
                    r.observed_time_unix_nano = now_unix_nano;
                }
                if r.time_unix_nano == 0 {
                    r.time_unix_nano = r.observed_time_unix_nano;
                }
                v.keep(problem(r, window, max_line))
            });
        }
        rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
    }
    req.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
    v.finish("log record(s)")
}

fn fixed<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = b.try_into().ok()?;
    (id != [0u8; N]).then_some(id)
}

/// Converts a validated request into records (moving its strings and values).
pub fn to_log_records(req: ExportLogsServiceRequest) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let resource = resource_of(rl.resource);
        for sl in rl.scope_logs {
            let scope = Arc::new(
                sl.scope
                    .map(|s| Scope {
                        name: s.name,
                        version: s.version,
                    })
                    .unwrap_or_default(),
            );
            for r in sl.log_records {
                let body = r.body.map_or(AttrValue::Str(String::new()), any_value);
                let (mut trace_id, mut span_id) =
                    (fixed::<16>(&r.trace_id), fixed::<8>(&r.span_id));
                if trace_id.is_none()
                    && let AttrValue::Str(text) = &body
                    && let Some(ctx) = trace_context::find(text)
                {
                    trace_id = Some(ctx.trace_id);
                    span_id = ctx.span_id;
                }
                let mut severity_number = if r.severity_number == 0 {
                    severity_from_text(&r.severity_text)
                } else {
                    r.severity_number
                };
                if severity_number == 0
                    && let AttrValue::Str(text) = &body
                    && let Some(level) = loupe_core::log_level::find(text)
                {
                    // The level the line states (JSON `"level"` or logfmt `level=`).
                    severity_number = severity_from_text(level);
                }
                out.push(LogRecord {
                    time_unix_nano: r.time_unix_nano as i64,
                    observed_unix_nano: r.observed_time_unix_nano.min(i64::MAX as u64) as i64,
                    severity_number,
                    severity_text: r.severity_text,
                    body,
                    attributes: attrs(r.attributes),
                    trace_id,
                    span_id,
                    flags: r.flags,
                    event_name: r.event_name,
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    out
}

/// Decodes a logs WAL payload (the request as acknowledged, times filled in) into records.
pub fn decode_log_payload(payload: &[u8]) -> Result<Vec<LogRecord>, String> {
    let req = ExportLogsServiceRequest::decode(payload)
        .map_err(|e| format!("invalid ExportLogsServiceRequest: {e}"))?;
    Ok(to_log_records(req))
}

//! One log record as stored and queried: an OTLP `LogRecord` with its resource and scope
//! (shared by every record of one OTLP `ResourceLogs` / `ScopeLogs`).

use std::borrow::Cow;
use std::sync::Arc;

use crate::fresh::Row;
use crate::model::{AttrValue, Attrs, Resource, Scope, SpanId, TraceId};

#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// When the event happened; the observed time when the sender did not say.
    pub time_unix_nano: i64,
    /// When a collector first saw it (set at ingest when the sender did not).
    pub observed_unix_nano: i64,
    /// OTLP severity number (1–24; 0 unspecified).
    pub severity_number: i32,
    pub severity_text: String,
    /// A string body as sent; other bodies (maps, arrays, numbers, bytes) keep their type.
    pub body: AttrValue,
    pub attributes: Attrs,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub flags: u32,
    pub event_name: String,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
}

impl LogRecord {
    pub fn service_name(&self) -> &str {
        &self.resource.service_name
    }

    /// The body as text: a string body itself, any other as its JSON.
    pub fn body_text(&self) -> Cow<'_, str> {
        match &self.body {
            AttrValue::Str(s) => Cow::Borrowed(s),
            other => Cow::Owned(serde_json::to_string(other).unwrap_or_default()),
        }
    }

    /// Looks an attribute up on the record first, then on its resource.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .get(key)
            .or_else(|| self.resource.attributes.get(key))
    }
}

impl Row for LogRecord {
    fn trace_id(&self) -> Option<TraceId> {
        self.trace_id
    }
}

/// The OTLP severity number of a severity text (`WARN`, `warning`, `Err`, ...), the way the
/// OpenTelemetry log data model maps common level names; 0 when unknown.
pub fn severity_from_text(text: &str) -> i32 {
    let t = text.trim().to_ascii_lowercase();
    let name = t.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = match name {
        "trace" | "finest" => 1,
        "debug" | "fine" | "finer" | "dbg" => 5,
        "info" | "information" | "informational" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "err" | "severe" => 17,
        "fatal" | "critical" | "crit" | "alert" | "emergency" | "emerg" | "panic" => 21,
        _ => return 0,
    };
    // TRACE2..4, DEBUG2..4, ...: the data model's short names.
    match t[name.len()..].parse::<i32>() {
        Ok(n @ 2..=4) => base + n - 1,
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_texts_map_to_numbers() {
        for (t, n) in [
            ("INFO", 9),
            ("info", 9),
            ("Warning", 13),
            ("WARN", 13),
            ("ERROR", 17),
            ("err", 17),
            ("DEBUG", 5),
            ("TRACE", 1),
            ("FATAL", 21),
            ("critical", 21),
            ("ERROR2", 18),
            ("INFO4", 12),
            ("", 0),
            ("chatty", 0),
        ] {
            assert_eq!(severity_from_text(t), n, "{t}");
        }
    }
}

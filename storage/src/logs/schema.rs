//! The log Parquet schema (version 1). Strings that repeat from line to line (service,
//! severity text, resource, scope) are dictionary-typed; attributes and non-string resource
//! values are JSON objects that keep OTLP types (see `crate::model`). A body that is not a
//! string is stored as its JSON with `body_json` set.
//!
//! Two columns store nothing in the common case: `observed_delta` is the observed time minus
//! the time (0 when the sender gave no time), and a trace context that is written in the
//! body's text (`context_in_body`) is not stored again in `trace_id`/`span_id` (random ids do
//! not compress: they were a quarter of the bytes of stdout logs); reading finds it in the
//! text again with the same function the collector lifted it with.
//!
//! `body` holds a template where the line's hex ids are cut out into `body_ids` (see
//! [`crate::logs::body_ids`]); `body_ids` is null where `body` is the line itself, and files
//! written before it have no such column. Other readers of these files (DuckDB, Spark) see
//! the template; Loupe joins the two.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const SCHEMA_VERSION: u32 = 1;

pub const TIME: &str = "time";
pub const OBSERVED_DELTA: &str = "observed_delta";
pub const CONTEXT_IN_BODY: &str = "context_in_body";
pub const SEVERITY_NUMBER: &str = "severity_number";
pub const SEVERITY_TEXT: &str = "severity_text";
pub const SERVICE_NAME: &str = "service_name";
pub const BODY: &str = "body";
pub const BODY_JSON: &str = "body_json";
pub const BODY_IDS: &str = "body_ids";
pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const FLAGS: &str = "flags";
pub const EVENT_NAME: &str = "event_name";
pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
pub const SCOPE_NAME: &str = "scope_name";
pub const SCOPE_VERSION: &str = "scope_version";
pub const ATTRIBUTES: &str = "attributes";

pub static LOG_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let dict = |name: &str| {
        Field::new(
            name,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new(TIME, ts, false),
        Field::new(OBSERVED_DELTA, DataType::Int64, false),
        Field::new(SEVERITY_NUMBER, DataType::Int32, false),
        dict(SEVERITY_TEXT),
        dict(SERVICE_NAME),
        Field::new(BODY, DataType::Utf8, false),
        Field::new(BODY_JSON, DataType::Boolean, false),
        Field::new(BODY_IDS, DataType::Binary, true),
        Field::new(CONTEXT_IN_BODY, DataType::Boolean, false),
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), true),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(FLAGS, DataType::Int64, false),
        Field::new(EVENT_NAME, DataType::Utf8, true),
        dict(RESOURCE_ATTRIBUTES),
        dict(SCOPE_NAME),
        dict(SCOPE_VERSION),
        Field::new(ATTRIBUTES, DataType::Utf8, false),
    ]))
});

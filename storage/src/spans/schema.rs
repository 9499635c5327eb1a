//! The Arrow schema of span files (version 1).
//!
//! Semantic-convention attributes that most spans carry and most searches use get a column of
//! their own (dictionary-encoded by Parquet, so repeated values cost a few bits); the value is
//! promoted only when it has the expected type, so nothing is lost when a client sends e.g. a
//! string status code. Everything else stays in the JSON columns `attributes` and
//! `resource_attributes`. Column names are snake_case so SQL engines read them unquoted.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// 2: repetitive string columns are dictionary-typed in Arrow (same Parquet physical layout).
pub const SCHEMA_VERSION: u32 = 2;

pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const PARENT_SPAN_ID: &str = "parent_span_id";
pub const TRACE_STATE: &str = "trace_state";
pub const NAME: &str = "name";
pub const KIND: &str = "kind";
pub const START: &str = "start_time";
pub const DURATION: &str = "duration_nano";
pub const STATUS_CODE: &str = "status_code";
pub const STATUS_MESSAGE: &str = "status_message";
pub const SERVICE_NAME: &str = "service_name";
pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
pub const SCOPE_NAME: &str = "scope_name";
pub const SCOPE_VERSION: &str = "scope_version";
pub const ATTRIBUTES: &str = "attributes";
pub const EVENTS: &str = "events";
pub const LINKS: &str = "links";

/// Resource attributes with their own string column: (attribute key, column name).
/// Few on purpose: every resource attribute of one pod is the same for all its spans, so the
/// JSON of the rest is one dictionary entry per resource, while each promoted column costs its
/// own dictionary index per span (measured: ~0.9 bytes per span per pod-unique column).
pub const RESOURCE_STR_COLUMNS: &[(&str, &str)] = &[
    ("service.version", "service_version"),
    ("deployment.environment.name", "deployment_environment_name"),
    ("k8s.namespace.name", "k8s_namespace_name"),
    ("k8s.pod.name", "k8s_pod_name"),
];

/// Span attributes with their own string column: (attribute key, column name).
pub const SPAN_STR_COLUMNS: &[(&str, &str)] = &[
    ("http.request.method", "http_request_method"),
    ("http.route", "http_route"),
    ("url.full", "url_full"),
    ("server.address", "server_address"),
    ("db.system", "db_system"),
    ("db.query.text", "db_query_text"),
    ("rpc.system", "rpc_system"),
    ("rpc.service", "rpc_service"),
    ("rpc.method", "rpc_method"),
    ("messaging.system", "messaging_system"),
    ("messaging.destination.name", "messaging_destination_name"),
];

/// Span attributes with their own integer column: (attribute key, column name).
pub const SPAN_INT_COLUMNS: &[(&str, &str)] =
    &[("http.response.status_code", "http_response_status_code")];

/// Where an attribute key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrColumn {
    /// `service.name`: the `service_name` column.
    ServiceName,
    /// A promoted column; `is_int` tells its type; `resource` whether it is a resource attribute.
    Promoted {
        column: &'static str,
        is_int: bool,
        resource: bool,
    },
}

/// The promoted column holding `key`, if any.
pub fn column_for_key(key: &str) -> Option<AttrColumn> {
    if key == "service.name" {
        return Some(AttrColumn::ServiceName);
    }
    let find = |table: &[(&'static str, &'static str)], is_int, resource| {
        table
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, c)| AttrColumn::Promoted {
                column: c,
                is_int,
                resource,
            })
    };
    find(RESOURCE_STR_COLUMNS, false, true)
        .or_else(|| find(SPAN_STR_COLUMNS, false, false))
        .or_else(|| find(SPAN_INT_COLUMNS, true, false))
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

/// A string column with few distinct values: dictionary-typed in Arrow, so reading it (for
/// queries and compaction) does not materialize one string per row.
fn dict(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        nullable,
    )
}

pub static SPAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(SPAN_ID, DataType::FixedSizeBinary(8), false),
        Field::new(PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
        utf8(TRACE_STATE),
        dict(NAME, false),
        Field::new(KIND, DataType::Int8, false),
        Field::new(
            START,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(DURATION, DataType::Int64, false),
        Field::new(STATUS_CODE, DataType::Int8, false),
        dict(STATUS_MESSAGE, true),
        dict(SERVICE_NAME, false),
    ];
    fields.extend(RESOURCE_STR_COLUMNS.iter().map(|(_, c)| dict(c, true)));
    fields.push(dict(RESOURCE_ATTRIBUTES, true));
    fields.push(dict(SCOPE_NAME, true));
    fields.push(dict(SCOPE_VERSION, true));
    fields.extend(SPAN_STR_COLUMNS.iter().map(|(key, c)| {
        // Full URLs carry ids and query strings: nearly unique per span.
        if *key == "url.full" {
            utf8(c)
        } else {
            dict(c, true)
        }
    }));
    fields.extend(
        SPAN_INT_COLUMNS
            .iter()
            .map(|(_, c)| Field::new(*c, DataType::Int64, true)),
    );
    fields.push(utf8(ATTRIBUTES));
    fields.push(utf8(EVENTS));
    fields.push(utf8(LINKS));
    Arc::new(Schema::new(fields))
});

/// The columns a trace summary (root, duration, per-service span and error counts) needs.
pub const SUMMARY_COLUMNS: &[&str] = &[
    TRACE_ID,
    SPAN_ID,
    PARENT_SPAN_ID,
    NAME,
    START,
    DURATION,
    SERVICE_NAME,
    KIND,
    STATUS_CODE,
];

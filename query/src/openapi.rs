//! The OpenAPI document of the native API (`/api/v1/openapi.json`), generated from the
//! handlers' annotations and then made exact where the annotations cannot say enough: the
//! accepted forms of times, durations, limits, tags and trace ids, and TraceQL as the custom
//! string format `traceql`. `schemathesis` checks the server against it (tests/e2e/openapi.rs).

use axum::Json;
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorDetail};
use crate::native::{
    self, Operation, OperationsResponse, SearchResponse, ServiceStats, ServicesResponse, SpanJson,
    SpanStatus, TraceResponse, TraceSummary,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Loupe query API",
        description = "Native JSON API of Loupe, used by its web UI."
    ),
    paths(
        native::get_trace,
        native::search_traces,
        native::list_services,
        native::list_operations,
        crate::stats::stats,
        crate::logs::native::search_logs,
        crate::logs::histogram::log_histogram,
        crate::logs::facets::log_facets,
        crate::logs::context::log_context,
        crate::logs::tail::tail_logs
    ),
    components(schemas(
        TraceResponse,
        SpanJson,
        SpanStatus,
        SearchResponse,
        TraceSummary,
        ServiceStats,
        ServicesResponse,
        OperationsResponse,
        Operation,
        ErrorBody,
        ErrorDetail,
        crate::stats::StatsResponse,
        crate::logs::native::LogsResponse,
        crate::logs::native::LogLine,
        crate::logs::histogram::HistogramResponse,
        crate::logs::histogram::LevelCounts,
        crate::logs::facets::FacetResponse,
        crate::logs::facets::FacetValue,
        crate::logs::context::ContextResponse,
        crate::stats::SignalStats
    ))
)]
pub struct ApiDoc;

/// A parameter's schema by its name, wherever it appears.
fn schema_for(name: &str) -> Option<Value> {
    let time = json!({"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_i64},
        {"type": "string", "format": "date-time"}
    ]});
    Some(match name {
        "start" | "end" => time,
        "minDuration" | "maxDuration" | "step" => json!({
            "type": "string",
            "pattern": "^([0-9]{1,12}(\\.[0-9]{1,9})?(ns|us|µs|ms|s|m|h|d))+$"
        }),
        "limit" | "sample" => json!({"type": "integer", "minimum": 1}),
        "before" | "after" => json!({"type": "integer", "minimum": 0}),
        "time" => json!({"type": "string", "pattern": "^[0-9]{1,19}$"}),
        "field" => json!({"type": "string", "minLength": 1, "pattern": "\\S"}),
        "status" => json!({"type": "string", "enum": ["error", "ok", "unset"]}),
        "traceId" => json!({"type": "string", "pattern": "^[0-9a-fA-F]{1,32}$"}),
        "tags" => json!({
            "type": "array",
            // key=value with a printable-ASCII key and value; the description names the
            // other accepted forms (quoted values, logfmt lists, a JSON object).
            "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:/@-]+=[!#-~]*$"}
        }),
        "q" => json!({"type": "string", "format": "traceql"}),
        "order" => json!({"type": "string", "enum": ["newest", "oldest"]}),
        "cursor" => json!({"type": "string", "pattern": "^[no][0-9]{1,19}-[0-9]{1,5}$"}),
        _ => return None,
    })
}

/// The document as served.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(params) = item
                .get_mut("get")
                .and_then(|g| g.get_mut("parameters"))
                .and_then(|p| p.as_array_mut())
            else {
                continue;
            };
            for p in params {
                let name = p["name"].as_str().unwrap_or_default().to_string();
                if let Some(schema) = schema_for(&name) {
                    p["schema"] = schema;
                }
            }
        }
    }
    doc
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

//! What the OTLP edges (gRPC and HTTP) need to know about a signal: its service and path,
//! how a body becomes a decoded export, how that is made durable, and how partial success is
//! answered. The edges are generic over it, so every signal gets the same admission, limits,
//! overload and error handling.

use std::future::Future;

use bytes::Bytes;
use loupe_core::{Signal, TenantId};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

use crate::error::IngestError;
use crate::ingest::Ingester;
use crate::otlp::{Encoding, TimeWindow, Validated};

pub trait SignalEdge: Send + Sync + 'static {
    const SIGNAL: Signal;
    /// The gRPC service name and its `Export` method's path.
    const GRPC_SERVICE: &'static str;
    const GRPC_PATH: &'static str;
    /// The OTLP/HTTP path.
    const HTTP_PATH: &'static str;
    /// What decoding needs from the ingester, taken on the runtime before the CPU pool runs.
    type Params: Send + 'static;
    type Decoded: Send + 'static;
    type Response: prost::Message + Default + Send + 'static;

    fn params(ingester: &Ingester, tenant: &TenantId) -> Self::Params;
    /// Decodes and validates a (decompressed) body. CPU-heavy: runs on the CPU pool.
    fn decode(plain: Bytes, enc: Encoding, p: Self::Params) -> Result<Self::Decoded, IngestError>;
    /// Makes the valid part durable and hands it to the signal's lane.
    fn export(
        ingester: &Ingester,
        tenant: &TenantId,
        decoded: Self::Decoded,
        protocol: &'static str,
    ) -> impl Future<Output = Result<Validated, IngestError>> + Send;
    fn response(v: &Validated) -> Self::Response;
    /// The OTLP/JSON form of the response.
    fn json_response(v: &Validated) -> serde_json::Value;
}

/// OTLP/JSON's response: `{}`, or the partial success with its count under `rejected_key`
/// (an int64, so a string in OTLP/JSON).
fn partial_success_json(v: &Validated, rejected_key: &str) -> serde_json::Value {
    if v.rejected == 0 {
        return serde_json::json!({});
    }
    serde_json::json!({"partialSuccess": {rejected_key: v.rejected.to_string(), "errorMessage": v.message}})
}

pub struct Traces;

impl SignalEdge for Traces {
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const HTTP_PATH: &'static str = "/v1/traces";
    type Params = TimeWindow;
    type Decoded = crate::traces::DecodedTraces;
    type Response = ExportTraceServiceResponse;

    fn params(ingester: &Ingester, _: &TenantId) -> TimeWindow {
        ingester.time_window()
    }
    fn decode(
        plain: Bytes,
        enc: Encoding,
        window: TimeWindow,
    ) -> Result<Self::Decoded, IngestError> {
        crate::traces::decode_request(plain, enc, window)
    }
    async fn export(
        ingester: &Ingester,
        tenant: &TenantId,
        decoded: Self::Decoded,
        protocol: &'static str,
    ) -> Result<Validated, IngestError> {
        crate::traces::export(ingester, tenant, decoded, protocol).await
    }
    fn response(v: &Validated) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (v.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: v.rejected as i64,
                error_message: v.message.clone(),
            }),
        }
    }
    fn json_response(v: &Validated) -> serde_json::Value {
        partial_success_json(v, "rejectedSpans")
    }
}

pub struct Logs;

impl SignalEdge for Logs {
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const HTTP_PATH: &'static str = "/v1/logs";
    type Params = (TimeWindow, usize);
    type Decoded = crate::logs::DecodedLogs;
    type Response = ExportLogsServiceResponse;

    fn params(ingester: &Ingester, _: &TenantId) -> (TimeWindow, usize) {
        (ingester.time_window(), ingester.limits.max_log_line_bytes)
    }
    fn decode(
        plain: Bytes,
        enc: Encoding,
        (window, max_line): (TimeWindow, usize),
    ) -> Result<Self::Decoded, IngestError> {
        crate::logs::decode_request(plain, enc, window, max_line)
    }
    async fn export(
        ingester: &Ingester,
        tenant: &TenantId,
        decoded: Self::Decoded,
        protocol: &'static str,
    ) -> Result<Validated, IngestError> {
        crate::logs::export(ingester, tenant, decoded, protocol).await
    }
    fn response(v: &Validated) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (v.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: v.rejected as i64,
                error_message: v.message.clone(),
            }),
        }
    }
    fn json_response(v: &Validated) -> serde_json::Value {
        partial_success_json(v, "rejectedLogRecords")
    }
}

pub struct Metrics;

impl SignalEdge for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const HTTP_PATH: &'static str = "/v1/metrics";
    type Params = crate::prom::MetricParams;
    type Decoded = crate::prom::DecodedMetrics;
    type Response = ExportMetricsServiceResponse;

    fn params(ingester: &Ingester, tenant: &TenantId) -> crate::prom::MetricParams {
        crate::prom::MetricParams {
            window: ingester.time_window(),
            tenant: tenant.clone(),
            deltas: ingester.deltas().clone(),
            cache: ingester.series_cache().clone(),
        }
    }
    fn decode(
        plain: Bytes,
        enc: Encoding,
        p: crate::prom::MetricParams,
    ) -> Result<Self::Decoded, IngestError> {
        crate::prom::decode_otlp(plain, enc, p)
    }
    async fn export(
        ingester: &Ingester,
        _tenant: &TenantId,
        decoded: Self::Decoded,
        protocol: &'static str,
    ) -> Result<Validated, IngestError> {
        // The decoded export carries its tenant (the one its series were resolved for).
        crate::prom::export(ingester, decoded, protocol).await
    }
    fn response(v: &Validated) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (v.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: v.rejected as i64,
                error_message: v.message.clone(),
            }),
        }
    }
    fn json_response(v: &Validated) -> serde_json::Value {
        partial_success_json(v, "rejectedDataPoints")
    }
}

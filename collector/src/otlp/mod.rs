//! The OTLP edge: validation and conversion of OTLP trace requests into span rows (by the
//! [`wire`] fast path, or prost decoding and [`convert`]),
//! decoding of protobuf and JSON bodies, and the `google.rpc.Status` error body of OTLP/HTTP.
//! OTLP types do not travel further than this module and the gRPC/HTTP handlers.

pub mod convert;
pub mod decode;
pub mod fields;
pub mod logs;
pub mod wire;
#[cfg(test)]
mod wire_tests;

pub use convert::{TimeWindow, Validated, to_span_records, validate_traces};
pub use decode::{Encoding, RpcStatus, decode_traces};

/// Decodes a traces WAL payload (an `ExportTraceServiceRequest` as acknowledged) into span
/// rows: by the wire fast path, or else the general one.
pub fn decode_trace_payload(payload: &[u8]) -> Result<loupe_storage::spans::SpanRows, String> {
    use prost::Message;
    if let Some((rows, _)) = wire::rows_from_wire(payload, &TimeWindow::unbounded()) {
        return Ok(rows);
    }
    let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
        payload,
    )
    .map_err(|e| format!("invalid ExportTraceServiceRequest: {e}"))?;
    loupe_storage::spans::SpanRows::from_records(&to_span_records(req)).map_err(|e| e.to_string())
}

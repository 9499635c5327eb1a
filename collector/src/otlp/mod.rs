//! The OTLP edge: validation and conversion of OTLP trace requests into Loupe's span records,
//! decoding of protobuf and JSON bodies, and the `google.rpc.Status` error body of OTLP/HTTP.
//! OTLP types do not travel further than this module and the gRPC/HTTP handlers.

pub mod convert;
pub mod decode;

pub use convert::{TimeWindow, Validated, to_span_records, validate_traces};
pub use decode::{Encoding, RpcStatus, decode_traces};

/// Decodes a traces WAL payload (an `ExportTraceServiceRequest` as acknowledged) into spans.
pub fn decode_trace_payload(
    payload: &[u8],
) -> Result<Vec<loupe_storage::model::SpanRecord>, String> {
    use prost::Message;
    let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
        payload,
    )
    .map_err(|e| format!("invalid ExportTraceServiceRequest: {e}"))?;
    Ok(to_span_records(req))
}

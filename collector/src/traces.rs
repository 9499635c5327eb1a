//! Traces at the edge: a request body (decompressed) becomes validated span rows, the WAL payload
//! and the chunk its lane will buffer — all CPU work, run on the CPU pool by the edges — and
//! is then made durable through the ingest core.

use bytes::Bytes;
use loupe_core::TenantId;
use loupe_storage::fresh::Chunk;
use loupe_storage::spans::SpanRows;
use prost::Message;

use crate::error::IngestError;
use crate::ingest::{Decoded, ExportCounters, Ingester};
use crate::otlp::{
    Encoding, TimeWindow, Validated, decode_traces, to_span_records, validate_traces,
};

/// A decoded trace export.
pub type DecodedTraces = Decoded<SpanRows>;

/// Decodes, validates (spans outside `window` are rejected) and converts one request.
/// CPU-heavy: call on the CPU pool.
pub fn decode_request(
    plain: Bytes,
    enc: Encoding,
    window: TimeWindow,
) -> Result<DecodedTraces, IngestError> {
    if enc == Encoding::Protobuf
        && let Some((rows, spans)) = crate::otlp::wire::rows_from_wire(&plain, &window)
    {
        let validated = Validated {
            accepted: spans,
            ..Validated::default()
        };
        if spans == 0 {
            return Ok(Decoded {
                validated,
                payload: Bytes::new(),
                chunk: None,
            });
        }
        let chunk = Chunk::new(rows, plain.len() as u64);
        return Ok(Decoded {
            validated,
            payload: plain,
            chunk: Some(chunk),
        });
    }
    let mut req = decode_traces(&plain, enc)?;
    let validated = validate_traces(&mut req, &window);
    if validated.accepted == 0 {
        return Ok(Decoded {
            validated,
            payload: Bytes::new(),
            chunk: None,
        });
    }
    let payload = if enc == Encoding::Protobuf && validated.rejected == 0 {
        plain
    } else {
        Bytes::from(req.encode_to_vec())
    };
    let rows = SpanRows::from_records(&to_span_records(req))
        .map_err(|e| IngestError::Internal(e.to_string()))?;
    let chunk = Chunk::new(rows, payload.len() as u64);
    Ok(Decoded {
        validated,
        payload,
        chunk: Some(chunk),
    })
}

/// Makes the valid spans durable and hands them to the traces lane.
pub async fn export(
    ingester: &Ingester,
    tenant: &TenantId,
    decoded: DecodedTraces,
    protocol: &'static str,
) -> Result<Validated, IngestError> {
    let counters = ExportCounters {
        accepted: "loupe_ingest_spans_total",
        rejected: "loupe_ingest_rejected_spans_total",
    };
    ingester
        .export(ingester.traces(), tenant, decoded, protocol, counters)
        .await
}

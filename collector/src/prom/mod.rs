//! Metrics at the edge: OTLP metrics (gRPC and HTTP, through the generic edges) and
//! Prometheus remote write 1.0 (`POST /prometheus/api/v1/write`, [`remote_write`]) both
//! become a remote-write [`wire::WriteRequest`] — the metrics WAL payload — and the series
//! the metrics lane buffers. What is durable when is the ingest core's rule
//! (`crate::ingest`): an export is answered after its WAL record is fsynced.
//!
//! - [`wire`]: the remote-write messages; [`names`]: OpenTelemetry → Prometheus names;
//!   [`otlp`]: OTLP → series (delta → cumulative); [`validate`]: names, labels, times.

pub mod names;
pub mod otlp;
pub mod remote_write;
pub mod validate;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use loupe_core::TenantId;
use loupe_storage::fresh::Chunk;
use loupe_storage::metrics::MetricRows;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use crate::error::IngestError;
use crate::ingest::{Decoded, ExportCounters, Ingester};
use crate::otlp::{Encoding, TimeWindow, Validated};
use crate::prom::otlp::{Applied, Deltas};
use crate::prom::wire::WriteRequest;

/// A decoded OTLP metrics export, with the deltas its conversion added to running totals.
pub struct DecodedOtlpMetrics {
    pub decoded: Decoded<MetricRows>,
    applied: Applied,
    deltas: Arc<Deltas>,
}

/// What decoding an OTLP metrics export needs.
pub struct OtlpParams {
    pub window: TimeWindow,
    pub tenant: TenantId,
    pub deltas: Arc<Deltas>,
}

/// Validates a remote-write request into the decoded export (the payload is `plain` when
/// nothing was left out).
fn finish(
    mut req: WriteRequest,
    plain: Option<Bytes>,
    window: &TimeWindow,
    extra_rejected: u64,
    mut extra: Vec<String>,
) -> Decoded<MetricRows> {
    let (mut validated, rows, changed) = validate::validate(&mut req, window);
    validated.rejected += extra_rejected;
    if !extra.is_empty() {
        extra.truncate(3);
        if !validated.message.is_empty() {
            extra.push(std::mem::take(&mut validated.message));
        }
        validated.message = extra.join("; ");
    }
    if validated.accepted == 0 {
        return Decoded {
            validated,
            payload: Bytes::new(),
            chunk: None,
        };
    }
    let payload = match plain {
        Some(p) if !changed => p,
        _ => Bytes::from(req.encode_to_vec()),
    };
    let chunk = Chunk::new(rows, payload.len() as u64);
    Decoded {
        validated,
        payload,
        chunk: Some(chunk),
    }
}

/// Decodes an OTLP metrics export. CPU-heavy: call on the CPU pool.
pub fn decode_otlp(
    plain: Bytes,
    enc: Encoding,
    p: OtlpParams,
) -> Result<DecodedOtlpMetrics, IngestError> {
    if plain.is_empty() {
        return Err(IngestError::BadRequest(
            "request body is empty: expected an OTLP ExportMetricsServiceRequest".into(),
        ));
    }
    let req: ExportMetricsServiceRequest = match enc {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(plain).map_err(|e| {
            IngestError::BadRequest(format!(
                "invalid OTLP protobuf ExportMetricsServiceRequest: {e}"
            ))
        })?,
        Encoding::Json => serde_json::from_slice(&plain).map_err(|e| {
            IngestError::BadRequest(format!(
                "invalid OTLP/JSON ExportMetricsServiceRequest: {e}"
            ))
        })?,
    };
    let (write, rejected, problems, applied) = otlp::convert(req, &p.tenant, &p.deltas);
    Ok(DecodedOtlpMetrics {
        decoded: finish(write, None, &p.window, rejected, problems),
        applied,
        deltas: p.deltas,
    })
}

/// Decodes a remote-write body (snappy block format). CPU-heavy: call on the CPU pool.
pub fn decode_remote_write(
    raw: Bytes,
    max_bytes: usize,
    window: &TimeWindow,
) -> Result<Decoded<MetricRows>, IngestError> {
    let len = snap::raw::decompress_len(&raw).map_err(|e| {
        IngestError::BadRequest(format!(
            "invalid snappy body (remote write uses snappy's block format): {e}"
        ))
    })?;
    if len > max_bytes {
        return Err(IngestError::TooLarge(format!(
            "request body decompresses to {len} bytes, over the limit of {max_bytes}"
        )));
    }
    let plain = snap::raw::Decoder::new()
        .decompress_vec(&raw)
        .map_err(|e| {
            IngestError::BadRequest(format!(
                "invalid snappy body (remote write uses snappy's block format): {e}"
            ))
        })?;
    let plain = Bytes::from(plain);
    let req = WriteRequest::decode(plain.clone()).map_err(|e| {
        IngestError::BadRequest(format!("invalid remote-write protobuf WriteRequest: {e}"))
    })?;
    Ok(finish(req, Some(plain), window, 0, Vec::new()))
}

/// Decodes a metrics WAL payload (a `WriteRequest` as acknowledged) into rows.
pub fn decode_metric_payload(payload: &[u8]) -> Result<MetricRows, String> {
    let mut req =
        WriteRequest::decode(payload).map_err(|e| format!("invalid WriteRequest: {e}"))?;
    let (_, rows, _) = validate::validate(&mut req, &TimeWindow::unbounded());
    Ok(rows)
}

const COUNTERS: ExportCounters = ExportCounters {
    accepted: "loupe_ingest_samples_total",
    rejected: "loupe_ingest_rejected_samples_total",
};

/// Makes the valid samples of an OTLP export durable; takes its deltas back if that fails.
pub async fn export_otlp(
    ingester: &Ingester,
    tenant: &TenantId,
    d: DecodedOtlpMetrics,
    protocol: &'static str,
) -> Result<Validated, IngestError> {
    let DecodedOtlpMetrics {
        decoded,
        applied,
        deltas,
    } = d;
    match ingester
        .export(ingester.metrics(), tenant, decoded, protocol, COUNTERS)
        .await
    {
        Ok(v) => Ok(v),
        Err(e) => {
            deltas.undo(applied);
            Err(e)
        }
    }
}

/// Makes the valid samples of a remote-write request durable.
pub async fn export_remote_write(
    ingester: &Ingester,
    tenant: &TenantId,
    d: Decoded<MetricRows>,
) -> Result<Validated, IngestError> {
    ingester
        .export(ingester.metrics(), tenant, d, "remote_write", COUNTERS)
        .await
}

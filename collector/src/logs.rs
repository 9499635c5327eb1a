//! Logs at the edge: a request body (decompressed) becomes validated log records, the WAL
//! payload and the chunk the logs lane will buffer — CPU work, run on the CPU pool by the
//! edges — and is then made durable through the ingest core.

use bytes::Bytes;
use loupe_core::{Signal, TenantId};
use loupe_storage::fresh::Chunk;
use loupe_storage::logs::LogRecord;
use prost::Message;

use crate::error::IngestError;
use crate::ingest::Ingester;
use crate::otlp::logs::{decode_logs, to_log_records, validate_logs};
use crate::otlp::{Encoding, TimeWindow, Validated};

/// A decoded log export.
pub struct DecodedLogs {
    pub validated: Validated,
    /// What goes to the WAL: the request as received when it was protobuf, every record was
    /// valid and had both times; else the valid records with their filled-in times,
    /// re-encoded.
    payload: Bytes,
    chunk: Option<Chunk<Vec<LogRecord>>>,
}

/// Decodes, validates and converts one request. CPU-heavy: call on the CPU pool.
pub fn decode_request(
    plain: Bytes,
    enc: Encoding,
    window: TimeWindow,
    max_line: usize,
) -> Result<DecodedLogs, IngestError> {
    let mut req = decode_logs(&plain, enc)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let timed = req
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .all(|r| r.time_unix_nano != 0 && r.observed_time_unix_nano != 0);
    let validated = validate_logs(&mut req, &window, max_line, now);
    if validated.accepted == 0 {
        return Ok(DecodedLogs {
            validated,
            payload: Bytes::new(),
            chunk: None,
        });
    }
    let payload = if enc == Encoding::Protobuf && timed && validated.rejected == 0 {
        plain
    } else {
        Bytes::from(req.encode_to_vec())
    };
    let chunk = Chunk::new(to_log_records(req), payload.len() as u64);
    Ok(DecodedLogs {
        validated,
        payload,
        chunk: Some(chunk),
    })
}

/// Makes the valid records durable and hands them to the logs lane.
pub async fn export(
    ingester: &Ingester,
    tenant: &TenantId,
    decoded: DecodedLogs,
    protocol: &'static str,
) -> Result<Validated, IngestError> {
    let DecodedLogs {
        validated,
        payload,
        chunk,
    } = decoded;
    metrics::counter!("loupe_ingest_rejected_log_records_total", "signal" => "logs", "reason" => "invalid")
        .increment(validated.rejected);
    if let Some(chunk) = chunk {
        let staged = ingester.logs().stage(tenant, chunk);
        ingester
            .append(tenant, Signal::Logs, payload, staged)
            .await?;
        metrics::counter!("loupe_ingest_log_records_total", "signal" => "logs", "protocol" => protocol)
            .increment(validated.accepted);
    }
    Ok(validated)
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;

//! Logs at the edge: a request body (decompressed) becomes validated log records, the WAL
//! payload and the chunk the logs lane will buffer — CPU work, run on the CPU pool by the
//! edges — and is then made durable through the ingest core: the export is answered after its
//! WAL record (with any filled-in times, so replay rebuilds the same records) is fsynced; see
//! `crate::ingest` for what is synced when after that.

use bytes::Bytes;
use loupe_core::TenantId;
use loupe_storage::fresh::Chunk;
use loupe_storage::logs::LogRecord;
use prost::Message;

use crate::error::IngestError;
use crate::ingest::{Decoded, ExportCounters, Ingester};
use crate::otlp::logs::{decode_logs, to_log_records, validate_logs};
use crate::otlp::{Encoding, TimeWindow, Validated};

/// A decoded log export.
pub type DecodedLogs = Decoded<Vec<LogRecord>>;

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
        return Ok(Decoded {
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
    Ok(Decoded {
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
    let counters = ExportCounters {
        accepted: "loupe_ingest_log_records_total",
        rejected: "loupe_ingest_rejected_log_records_total",
    };
    ingester
        .export(ingester.logs(), tenant, decoded, protocol, counters)
        .await
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;

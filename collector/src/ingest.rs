//! The ingest pipeline shared by the gRPC and HTTP edges:
//! validate → WAL append (durable) → ack, then buffer for the next flush; plus WAL replay at
//! start and the flush loop (upload → catalog commit → WAL trim).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use loupe_storage::TenantId;
use loupe_storage::catalog::{Catalog, WalSource};
use loupe_storage::lifecycle::upload_spans;
use loupe_storage::store::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::batcher::{Batch, Batcher};
use crate::error::IngestError;
use crate::otlp::{Validated, to_span_records, validate_traces};
use crate::wal::{Record, Wal};

#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Buffered (not yet flushed) bytes above which exports are refused with 503.
    pub max_buffer_bytes: u64,
}

pub struct Ingester {
    wal: Wal,
    batcher: Arc<Batcher>,
    catalog: Catalog,
    limits: IngestLimits,
    ready: AtomicBool,
}

impl Ingester {
    pub fn new(wal: Wal, batcher: Arc<Batcher>, catalog: Catalog, limits: IngestLimits) -> Self {
        Ingester {
            wal,
            batcher,
            catalog,
            limits,
            ready: AtomicBool::new(false),
        }
    }

    pub fn batcher(&self) -> &Arc<Batcher> {
        &self.batcher
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// True once the WAL has been replayed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Refuses work up front when not ready or over the buffer budget, so an overloaded
    /// collector does not spend CPU decoding requests it will refuse anyway.
    pub fn check_capacity(&self) -> Result<(), IngestError> {
        if !self.is_ready() {
            return Err(IngestError::Overloaded(
                "collector is replaying its write-ahead log".into(),
            ));
        }
        if self.batcher.buffered_bytes() > self.limits.max_buffer_bytes {
            return Err(IngestError::Overloaded(
                "ingest buffer is full, waiting for flushes to object storage".into(),
            ));
        }
        Ok(())
    }

    /// Accepts one export: drops invalid spans (reported through partial success), makes the
    /// rest durable, then buffers them. `raw` is the request's protobuf encoding when the
    /// caller has it, to skip re-encoding.
    pub async fn export_traces(
        &self,
        tenant: &TenantId,
        mut req: ExportTraceServiceRequest,
        raw: Option<Bytes>,
        protocol: &'static str,
    ) -> Result<Validated, IngestError> {
        self.check_capacity()?;
        let validated = validate_traces(&mut req);
        metrics::counter!("loupe_ingest_rejected_spans_total", "signal" => "traces", "reason" => "invalid")
            .increment(validated.rejected);
        if validated.accepted == 0 {
            return Ok(validated);
        }
        let payload = match raw {
            Some(raw) if validated.rejected == 0 => raw,
            _ => Bytes::from(req.encode_to_vec()),
        };
        let bytes = payload.len() as u64;
        let seq = self.wal.append(tenant, Signal::Traces, payload).await?;
        let spans = to_span_records(&req);
        self.batcher.push(tenant, Signal::Traces, seq, spans, bytes);
        metrics::counter!("loupe_ingest_spans_total", "signal" => "traces", "protocol" => protocol)
            .increment(validated.accepted);
        metrics::counter!("loupe_ingest_bytes_total", "signal" => "traces", "protocol" => protocol)
            .increment(bytes);
        Ok(validated)
    }

    /// Re-buffers WAL records that are not yet in a committed file, then turns ready.
    pub async fn replay(&self, records: Vec<Record>) -> Result<usize, IngestError> {
        let mut committed: HashMap<(TenantId, Signal), u64> = HashMap::new();
        let mut replayed = 0;
        for r in records {
            let key = (r.tenant.clone(), r.signal);
            let done = match committed.get(&key) {
                Some(s) => *s,
                None => {
                    let state = self.catalog.refresh(&r.tenant).await.map_err(|e| {
                        IngestError::Internal(format!("cannot load the catalog for replay: {e}"))
                    })?;
                    let s = state
                        .committed_seq(r.signal, self.catalog.writer())
                        .unwrap_or(0);
                    committed.insert(key, s);
                    s
                }
            };
            if r.seq <= done {
                continue;
            }
            match r.signal {
                Signal::Traces => match ExportTraceServiceRequest::decode(&r.payload[..]) {
                    Ok(req) => {
                        let spans = to_span_records(&req);
                        self.batcher.push(
                            &r.tenant,
                            r.signal,
                            r.seq,
                            spans,
                            r.payload.len() as u64,
                        );
                        replayed += 1;
                    }
                    Err(e) => {
                        tracing::error!(seq = r.seq, error = %e, "undecodable write-ahead log record skipped")
                    }
                },
                other => tracing::warn!(
                    seq = r.seq,
                    signal = other.as_str(),
                    "no pipeline for this signal yet; record kept"
                ),
            }
        }
        self.ready.store(true, Ordering::Release);
        Ok(replayed)
    }

    /// Uploads and commits every buffered batch, then trims the WAL. Returns files committed.
    pub async fn flush(&self) -> usize {
        let batches = self.batcher.take_all();
        let mut committed = 0;
        // Files of one tenant × signal must commit in WAL order (replay skips everything up
        // to the highest committed sequence), so a failure holds back the later batches.
        let mut failed: Vec<(TenantId, Signal)> = Vec::new();
        for batch in batches {
            let key = (batch.tenant.clone(), batch.signal);
            if failed.contains(&key) {
                continue;
            }
            match self.flush_batch(&batch).await {
                Ok(()) => {
                    self.batcher.committed(&batch);
                    committed += 1;
                }
                Err(e) => {
                    failed.push(key);
                    metrics::counter!("loupe_flush_failures_total").increment(1);
                    tracing::warn!(tenant = %batch.tenant, error = %e, "flush failed; will retry");
                }
            }
        }
        let bound = self.batcher.lowest_unflushed_seq().unwrap_or(u64::MAX);
        self.wal.trim_below(bound);
        metrics::gauge!("loupe_wal_bytes").set(self.wal.bytes() as f64);
        metrics::gauge!("loupe_buffered_bytes").set(self.batcher.buffered_bytes() as f64);
        committed
    }

    async fn flush_batch(&self, batch: &Arc<Batch>) -> Result<(), loupe_storage::StorageError> {
        if batch.spans.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let source = vec![WalSource {
            writer: self.catalog.writer().to_string(),
            max_seq: batch.max_seq,
        }];
        let entry = upload_spans(&self.catalog, &batch.tenant, batch.spans.clone(), source).await?;
        let rows = entry.rows;
        let bytes = entry.bytes;
        self.catalog
            .commit(&batch.tenant, vec![entry], vec![])
            .await?;
        metrics::histogram!("loupe_flush_seconds", "signal" => "traces")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(tenant = %batch.tenant, rows, bytes, "flushed span file");
        Ok(())
    }

    /// Flushes every `interval`, or sooner when a batch fills up, until `shutdown` fires;
    /// then flushes once more.
    pub async fn run_flusher(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.batcher.flush_now.notified() => {}
                _ = shutdown.changed() => {
                    self.flush().await;
                    return;
                }
            }
            self.flush().await;
        }
    }
}

//! One signal's path through the collector: a [`SignalLane`] holds the signal's batches and
//! its file [`Format`], stages decoded exports for the WAL hand-over, decodes WAL payloads on
//! replay, and flushes sealed batches (encode → upload → commit). The [`Lane`] trait erases
//! the row type, so the ingester, replay and the flush loop handle every signal alike; a new
//! signal is a `Format`, a WAL payload decoder and its edges.
//!
//! Flush order and exactly-once: batches of one tenant commit in WAL order (a failure holds
//! back that tenant's later batches), and each file records the highest WAL sequence it holds
//! ([`WalSource`]). Before committing a batch again after a failed attempt, the lane asks the
//! catalog: if it already holds this collector's sequence numbers up to the batch's highest,
//! the earlier commit did land (its answer was lost) and the batch is done — no duplicate
//! file.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use loupe_core::{Signal, TenantId};
use loupe_storage::StorageError;
use loupe_storage::catalog::{Catalog, Change, WalSource};
use loupe_storage::fresh::Chunk;
use loupe_storage::lifecycle::{Format, write_file};
use loupe_wal::OnDurable;

use crate::batcher::{BatchLimits, Batcher, Sealed};

/// Decodes a WAL payload (the export as acknowledged) into rows.
pub type PayloadDecoder<R> = fn(&[u8]) -> Result<R, String>;

/// A signal's lane, with its row type erased.
pub trait Lane: Send + Sync {
    fn signal(&self) -> Signal;
    /// Decodes a WAL payload into rows, staged for hand-over. CPU-heavy: call off the runtime.
    fn decode_wal(&self, tenant: &TenantId, payload: Bytes) -> Result<OnDurable, String>;
    /// Encodes, uploads and commits every sealed batch; returns the files committed.
    fn flush<'a>(&'a self, catalog: &'a Catalog) -> BoxFuture<'a, usize>;
    fn lowest_unflushed_seq(&self) -> Option<u64>;
    fn buffered_bytes(&self) -> u64;
    fn buffered_rows(&self) -> usize;
    /// Woken when a batch is sealed early.
    fn flush_wanted(&self) -> &tokio::sync::Notify;
}

pub struct SignalLane<F: Format> {
    format: Arc<F>,
    batcher: Arc<Batcher<F::Rows>>,
    decoder: PayloadDecoder<F::Rows>,
}

impl<F: Format> SignalLane<F> {
    /// `limits` in span rows: the row bound is scaled by the format's
    /// [`Format::ROW_SCALE`](loupe_storage::lifecycle::Format::ROW_SCALE).
    pub fn new(format: Arc<F>, limits: BatchLimits, decoder: PayloadDecoder<F::Rows>) -> Self {
        let limits = BatchLimits {
            max_rows: limits
                .max_rows
                .saturating_mul(usize::try_from(F::ROW_SCALE).unwrap_or(usize::MAX)),
            ..limits
        };
        SignalLane {
            format,
            batcher: Arc::new(Batcher::new(limits)),
            decoder,
        }
    }

    pub fn batcher(&self) -> &Arc<Batcher<F::Rows>> {
        &self.batcher
    }

    /// The hand-over of one export: run by the WAL writer, in sequence order, once durable.
    pub fn stage(&self, tenant: &TenantId, chunk: Chunk<F::Rows>) -> OnDurable {
        let (batcher, tenant, chunk) = (self.batcher.clone(), tenant.clone(), Arc::new(chunk));
        Box::new(move |seq| batcher.push(&tenant, seq, chunk))
    }

    async fn flush_batch(
        &self,
        catalog: &Catalog,
        batch: &Sealed<F::Rows>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        if batch
            .attempted
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let state = catalog.refresh(&batch.tenant, F::SIGNAL).await?;
            if state
                .committed_seq(catalog.writer())
                .is_some_and(|s| s >= batch.max_seq)
            {
                tracing::info!(tenant = %batch.tenant, signal = %F::SIGNAL, max_seq = batch.max_seq, "batch was committed by an earlier attempt");
                return Ok(());
            }
        }
        let sources = vec![WalSource {
            writer: catalog.writer().to_string(),
            max_seq: batch.max_seq,
        }];
        let entry = write_file(
            catalog,
            &self.format,
            &batch.tenant,
            batch.chunks.clone(),
            sources,
        )
        .await?;
        let (rows, bytes) = (entry.rows, entry.bytes);
        catalog
            .commit(&batch.tenant, F::SIGNAL, Change::add(vec![entry]))
            .await?;
        metrics::histogram!("loupe_flush_seconds", "signal" => F::SIGNAL.as_str())
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(tenant = %batch.tenant, signal = %F::SIGNAL, rows, bytes, "flushed a file");
        Ok(())
    }
}

impl<F: Format> Lane for SignalLane<F> {
    fn signal(&self) -> Signal {
        F::SIGNAL
    }

    fn decode_wal(&self, tenant: &TenantId, payload: Bytes) -> Result<OnDurable, String> {
        let rows = (self.decoder)(&payload)?;
        Ok(self.stage(tenant, Chunk::new(rows, payload.len() as u64)))
    }

    fn flush<'a>(&'a self, catalog: &'a Catalog) -> BoxFuture<'a, usize> {
        Box::pin(async move {
            let mut files = 0;
            let mut failed: HashSet<TenantId> = HashSet::new();
            for batch in self.batcher.take_all() {
                if failed.contains(&batch.tenant) {
                    continue;
                }
                if batch.rows > 0
                    && let Err(e) = self.flush_batch(catalog, &batch).await
                {
                    failed.insert(batch.tenant.clone());
                    metrics::counter!("loupe_flush_failures_total", "signal" => F::SIGNAL.as_str())
                        .increment(1);
                    tracing::warn!(tenant = %batch.tenant, signal = %F::SIGNAL, error = %e, "flush failed; will retry");
                    continue;
                }
                self.batcher.committed(&batch);
                files += 1;
            }
            files
        })
    }

    fn lowest_unflushed_seq(&self) -> Option<u64> {
        self.batcher.lowest_unflushed_seq()
    }

    fn buffered_bytes(&self) -> u64 {
        self.batcher.buffered_bytes()
    }

    fn buffered_rows(&self) -> usize {
        self.batcher.buffered_rows()
    }

    fn flush_wanted(&self) -> &tokio::sync::Notify {
        &self.batcher.flush_now
    }
}

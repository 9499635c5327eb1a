//! In-memory batches per tenant × signal between the WAL and a flush, and the fresh-data view
//! of them for queries.
//!
//! A batch is *open* while ingest appends to it, then *in flight* from the moment a flush
//! takes it until its file is committed to the catalog (a failed flush leaves it in flight
//! and the next flush retries it). Queries see open and in-flight batches, so acknowledged
//! data is readable at once; a span may briefly be seen both here and in a committed file,
//! and the query service de-duplicates by span id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use loupe_storage::TenantId;
use loupe_storage::fresh::FreshSpans;
use loupe_storage::model::{SpanRecord, TraceId};
use loupe_storage::store::Signal;

/// Spans of one tenant with the range of WAL sequence numbers they came from.
#[derive(Debug)]
pub struct Batch {
    pub tenant: TenantId,
    pub signal: Signal,
    pub spans: Arc<Vec<SpanRecord>>,
    pub min_seq: u64,
    pub max_seq: u64,
    /// Encoded (protobuf) size of what was appended; the memory budget counts this.
    pub bytes: u64,
}

struct Open {
    spans: Vec<SpanRecord>,
    min_seq: u64,
    max_seq: u64,
    bytes: u64,
}

#[derive(Default)]
struct State {
    open: HashMap<(TenantId, Signal), Open>,
    in_flight: Vec<Arc<Batch>>,
    buffered_bytes: u64,
}

#[derive(Default)]
pub struct Batcher {
    state: Mutex<State>,
    /// Woken when a batch grows past the early-flush threshold.
    pub flush_now: tokio::sync::Notify,
    /// Rows in one open batch that trigger a flush before the interval.
    pub max_batch_rows: usize,
}

impl Batcher {
    pub fn new(max_batch_rows: usize) -> Self {
        Batcher {
            max_batch_rows,
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(
        &self,
        tenant: &TenantId,
        signal: Signal,
        seq: u64,
        spans: Vec<SpanRecord>,
        bytes: u64,
    ) {
        let full = {
            let mut st = self.lock();
            st.buffered_bytes += bytes;
            let open = st
                .open
                .entry((tenant.clone(), signal))
                .or_insert_with(|| Open {
                    spans: Vec::new(),
                    min_seq: seq,
                    max_seq: seq,
                    bytes: 0,
                });
            open.spans.extend(spans);
            open.min_seq = open.min_seq.min(seq);
            open.max_seq = open.max_seq.max(seq);
            open.bytes += bytes;
            open.spans.len() >= self.max_batch_rows
        };
        if full {
            self.flush_now.notify_one();
        }
    }

    /// Seals every open batch and returns everything in flight (new and earlier failures).
    pub fn take_all(&self) -> Vec<Arc<Batch>> {
        let mut st = self.lock();
        let open: Vec<_> = st.open.drain().collect();
        for ((tenant, signal), o) in open {
            st.in_flight.push(Arc::new(Batch {
                tenant,
                signal,
                spans: Arc::new(o.spans),
                min_seq: o.min_seq,
                max_seq: o.max_seq,
                bytes: o.bytes,
            }));
        }
        st.in_flight.clone()
    }

    /// Forgets a batch whose file is committed.
    pub fn committed(&self, batch: &Arc<Batch>) {
        let mut st = self.lock();
        let before = st.in_flight.len();
        st.in_flight.retain(|b| !Arc::ptr_eq(b, batch));
        if st.in_flight.len() < before {
            st.buffered_bytes = st.buffered_bytes.saturating_sub(batch.bytes);
        }
    }

    /// The lowest WAL sequence number still only in memory (`None`: everything is committed).
    pub fn lowest_unflushed_seq(&self) -> Option<u64> {
        let st = self.lock();
        st.open
            .values()
            .map(|o| o.min_seq)
            .chain(st.in_flight.iter().map(|b| b.min_seq))
            .min()
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.lock().buffered_bytes
    }

    pub fn buffered_spans(&self) -> usize {
        let st = self.lock();
        st.open.values().map(|o| o.spans.len()).sum::<usize>()
            + st.in_flight.iter().map(|b| b.spans.len()).sum::<usize>()
    }

    fn visit(&self, tenant: &TenantId, f: &mut dyn FnMut(&SpanRecord)) {
        let st = self.lock();
        if let Some(o) = st.open.get(&(tenant.clone(), Signal::Traces)) {
            o.spans.iter().for_each(&mut *f);
        }
        for b in st
            .in_flight
            .iter()
            .filter(|b| b.tenant == *tenant && b.signal == Signal::Traces)
        {
            b.spans.iter().for_each(&mut *f);
        }
    }
}

impl FreshSpans for Batcher {
    fn trace_spans(&self, tenant: &TenantId, ids: &[TraceId], f: &mut dyn FnMut(&SpanRecord)) {
        self.visit(tenant, &mut |s| {
            if ids.contains(&s.trace_id) {
                f(s)
            }
        });
    }

    fn for_each_span(&self, tenant: &TenantId, f: &mut dyn FnMut(&SpanRecord)) {
        self.visit(tenant, f);
    }
}

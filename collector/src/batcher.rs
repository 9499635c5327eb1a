//! In-memory batches per tenant of one signal, between the WAL and a flush, and the
//! fresh-data view of them for queries. Generic over the signal's row type.
//!
//! Chunks (the rows of one acknowledged export) arrive from the WAL writer's hand-over, in
//! sequence order. A batch is *open* while chunks join it, then *sealed* (in flight) from
//! the moment a flush takes it, or it reaches [`BatchLimits`], until its file is committed to
//! the catalog; a failed flush leaves it in flight and the next flush retries it, ahead of
//! later batches of the same tenant. Queries snapshot a tenant's chunks (pointers only) under
//! the lock and scan them outside it; a span may briefly be seen both here and in a committed
//! file, and the query service de-duplicates by span id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use loupe_core::TenantId;
use loupe_storage::fresh::{ARRIVALS_CAPACITY, Arrived, Chunk, Fresh};
use tokio::sync::broadcast;

/// When an open batch is sealed for flushing before the interval. The byte bound keeps every
/// Arrow string column of the file far from its 2 GiB offset limit.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_rows: usize,
    /// Encoded (protobuf) bytes.
    pub max_bytes: u64,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_rows: 64 * 1024,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A sealed batch: the chunks of one tenant with the range of WAL sequence numbers they
/// came from.
#[derive(Debug)]
pub struct Sealed<R> {
    pub tenant: TenantId,
    pub chunks: Vec<Arc<Chunk<R>>>,
    pub rows: usize,
    pub min_seq: u64,
    pub max_seq: u64,
    /// Encoded size of the exports; the memory budget counts this.
    pub bytes: u64,
    /// Set once a flush tried this batch (its commit may have landed unanswered).
    pub attempted: std::sync::atomic::AtomicBool,
}

struct Open<R> {
    chunks: Vec<Arc<Chunk<R>>>,
    rows: usize,
    min_seq: u64,
    max_seq: u64,
    bytes: u64,
}

impl<R> Open<R> {
    fn seal(self, tenant: TenantId) -> Arc<Sealed<R>> {
        Arc::new(Sealed {
            tenant,
            chunks: self.chunks,
            rows: self.rows,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            bytes: self.bytes,
            attempted: Default::default(),
        })
    }
}

struct State<R> {
    open: HashMap<TenantId, Open<R>>,
    in_flight: Vec<Arc<Sealed<R>>>,
    buffered_bytes: u64,
}

pub struct Batcher<R> {
    state: Mutex<State<R>>,
    /// Woken when a batch is sealed by its limits.
    pub flush_now: tokio::sync::Notify,
    limits: BatchLimits,
    /// Every chunk as it arrives, for live tail.
    arrivals: broadcast::Sender<Arrived<R>>,
}

impl<R: loupe_storage::fresh::Rows> Batcher<R> {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            state: Mutex::new(State {
                open: HashMap::new(),
                in_flight: Vec::new(),
                buffered_bytes: 0,
            }),
            flush_now: tokio::sync::Notify::new(),
            limits,
            arrivals: broadcast::Sender::new(ARRIVALS_CAPACITY),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the chunk of WAL record `seq`. Records must arrive in sequence order.
    pub fn push(&self, tenant: &TenantId, seq: u64, chunk: Arc<Chunk<R>>) {
        if self.arrivals.receiver_count() > 0 {
            // No subscriber left is not an error: the send is only for live tails.
            let _ = self.arrivals.send(Arrived {
                tenant: tenant.clone(),
                chunk: chunk.clone(),
            });
        }
        let sealed = {
            let mut st = self.lock();
            st.buffered_bytes += chunk.bytes();
            let open = st.open.entry(tenant.clone()).or_insert_with(|| Open {
                chunks: Vec::new(),
                rows: 0,
                min_seq: seq,
                max_seq: seq,
                bytes: 0,
            });
            open.rows += chunk.len();
            open.bytes += chunk.bytes();
            open.min_seq = open.min_seq.min(seq);
            open.max_seq = open.max_seq.max(seq);
            open.chunks.push(chunk);
            let full = open.rows >= self.limits.max_rows || open.bytes >= self.limits.max_bytes;
            if full && let Some(open) = st.open.remove(tenant) {
                st.in_flight.push(open.seal(tenant.clone()));
            }
            full
        };
        if sealed {
            self.flush_now.notify_one();
        }
    }

    /// Seals every open batch and returns everything in flight (earlier failures first).
    pub fn take_all(&self) -> Vec<Arc<Sealed<R>>> {
        let mut st = self.lock();
        let open: Vec<_> = st.open.drain().collect();
        for (tenant, o) in open {
            st.in_flight.push(o.seal(tenant));
        }
        st.in_flight.clone()
    }

    /// Forgets a batch whose file is committed.
    pub fn committed(&self, batch: &Arc<Sealed<R>>) {
        let mut st = self.lock();
        let before = st.in_flight.len();
        st.in_flight.retain(|b| !Arc::ptr_eq(b, batch));
        if st.in_flight.len() < before {
            st.buffered_bytes = st.buffered_bytes.saturating_sub(batch.bytes);
        }
    }

    /// The lowest WAL sequence number still only in memory (`None`: everything handed over
    /// is committed).
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

    pub fn buffered_rows(&self) -> usize {
        let st = self.lock();
        st.open.values().map(|o| o.rows).sum::<usize>()
            + st.in_flight.iter().map(|b| b.rows).sum::<usize>()
    }
}

impl<R: loupe_storage::fresh::Rows> Fresh<R> for Batcher<R> {
    fn chunks(&self, tenant: &TenantId) -> Vec<Arc<Chunk<R>>> {
        let st = self.lock();
        let mut out: Vec<Arc<Chunk<R>>> = st
            .in_flight
            .iter()
            .filter(|b| b.tenant == *tenant)
            .flat_map(|b| b.chunks.iter().cloned())
            .collect();
        if let Some(o) = st.open.get(tenant) {
            out.extend(o.chunks.iter().cloned());
        }
        out
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arrived<R>>> {
        Some(self.arrivals.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_storage::fresh::Row;

    #[derive(Debug)]
    struct R(u8);
    impl Row for R {
        fn trace_id(&self) -> Option<[u8; 16]> {
            Some([self.0; 16])
        }
    }

    fn t(n: &str) -> TenantId {
        TenantId::new(n).unwrap()
    }

    fn chunk(ids: &[u8]) -> Arc<Chunk<Vec<R>>> {
        Arc::new(Chunk::new(ids.iter().map(|&i| R(i)).collect(), 10))
    }

    #[test]
    fn failed_flushes_hold_back_and_the_bound_follows_the_oldest_unflushed() {
        let b: Batcher<Vec<R>> = Batcher::new(BatchLimits::default());
        assert_eq!(b.lowest_unflushed_seq(), None);
        b.push(&t("a"), 3, chunk(&[1]));
        b.push(&t("b"), 4, chunk(&[2]));
        let first = b.take_all();
        assert_eq!(first.len(), 2);
        b.push(&t("a"), 7, chunk(&[3]));
        assert_eq!(b.lowest_unflushed_seq(), Some(3));
        // The flush of tenant b succeeds, a's fails: a's batch stays ahead of its newer one.
        let bb = first.iter().find(|x| x.tenant == t("b")).unwrap();
        b.committed(bb);
        let again = b.take_all();
        let a_batches: Vec<(u64, u64)> = again
            .iter()
            .filter(|x| x.tenant == t("a"))
            .map(|x| (x.min_seq, x.max_seq))
            .collect();
        assert_eq!(a_batches, vec![(3, 3), (7, 7)], "oldest first");
        assert_eq!(b.lowest_unflushed_seq(), Some(3));
        for x in &again {
            b.committed(x);
        }
        assert_eq!(b.lowest_unflushed_seq(), None);
        assert_eq!(b.buffered_bytes(), 0);
    }

    #[test]
    fn a_batch_is_sealed_at_its_limits() {
        let b: Batcher<Vec<R>> = Batcher::new(BatchLimits {
            max_rows: 3,
            max_bytes: 1 << 20,
        });
        b.push(&t("a"), 1, chunk(&[1, 2]));
        assert_eq!(b.lock().in_flight.len(), 0);
        b.push(&t("a"), 2, chunk(&[3, 4]));
        assert_eq!(b.lock().in_flight.len(), 1, "4 rows ≥ 3: sealed");
        let bytes: Batcher<Vec<R>> = Batcher::new(BatchLimits {
            max_rows: 1000,
            max_bytes: 15,
        });
        bytes.push(&t("a"), 1, chunk(&[1]));
        bytes.push(&t("a"), 2, chunk(&[1]));
        assert_eq!(bytes.lock().in_flight.len(), 1, "20 bytes ≥ 15: sealed");
    }

    #[test]
    fn fresh_snapshots_are_per_tenant_and_skip_by_trace_id() {
        let b: Batcher<Vec<R>> = Batcher::new(BatchLimits::default());
        b.push(&t("a"), 1, chunk(&[1, 2]));
        b.push(&t("b"), 2, chunk(&[9]));
        let _ = b.take_all();
        b.push(&t("a"), 3, chunk(&[5]));
        let snap = b.chunks(&t("a"));
        assert_eq!(snap.len(), 2);
        assert!(snap[0].mentions_any(&[[2; 16]]));
        assert!(!snap[1].mentions_any(&[[2; 16]]));
        assert_eq!(b.chunks(&t("b")).len(), 1);
        assert!(b.chunks(&t("c")).is_empty());
    }
}

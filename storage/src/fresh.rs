//! Acknowledged data that is not yet in a committed file, and the read hook through which
//! queries see it, for every signal.
//!
//! The collector hands each acknowledged export to its batches as one [`Chunk`] (the rows of
//! that export, with the sorted trace ids they mention), in write-ahead-log order. Chunks are
//! immutable and shared (`Arc`), so a query takes a snapshot of a tenant's chunks under the
//! batches' lock (cloning pointers only) and scans it outside the lock, off the async
//! runtime; a lookup by trace id skips every chunk whose id list lacks the id. The query crate
//! consumes [`Fresh`] without depending on the collector; a process that runs the query role
//! alone has no fresh data ([`NoFresh`]) and sees data once its flush is committed.
//!
//! Live tail uses the same hook: [`Fresh::subscribe`] hands out every chunk as it is
//! acknowledged ([`Arrived`]), through a bounded broadcast channel; a subscriber that falls
//! more than [`ARRIVALS_CAPACITY`] chunks behind is told how many it missed.

use std::sync::Arc;

use loupe_core::TenantId;

use crate::model::TraceId;

/// A stored row of some signal (a span, a log record, a data point).
pub trait Row: Send + Sync + 'static {
    /// The trace the row belongs to, if any.
    fn trace_id(&self) -> Option<TraceId>;
}

/// The rows of one export as a signal buffers them: a list of rows, or a columnar batch.
pub trait Rows: Send + Sync + 'static {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The trace ids the rows mention, in any order, repeats allowed.
    fn trace_ids(&self) -> Vec<TraceId>;
}

impl<R: Row> Rows for Vec<R> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn trace_ids(&self) -> Vec<TraceId> {
        self.iter().filter_map(Row::trace_id).collect()
    }
}

/// The rows of one acknowledged export.
#[derive(Debug)]
pub struct Chunk<R> {
    rows: R,
    trace_ids: Vec<TraceId>,
    bytes: u64,
}

impl<R: Rows> Chunk<R> {
    /// `bytes`: the export's encoded size, which the memory budget counts.
    pub fn new(rows: R, bytes: u64) -> Self {
        let mut trace_ids = rows.trace_ids();
        trace_ids.sort_unstable();
        trace_ids.dedup();
        Chunk {
            rows,
            trace_ids,
            bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl<R> Chunk<R> {
    pub fn rows(&self) -> &R {
        &self.rows
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether any row may belong to one of `ids` (exact: the chunk's sorted id list).
    pub fn mentions_any(&self, ids: &[TraceId]) -> bool {
        ids.iter()
            .any(|id| self.trace_ids.binary_search(id).is_ok())
    }
}

/// A chunk as it is acknowledged, for live tail.
#[derive(Debug)]
pub struct Arrived<R> {
    pub tenant: TenantId,
    pub chunk: Arc<Chunk<R>>,
}

impl<R> Clone for Arrived<R> {
    fn clone(&self) -> Self {
        Arrived {
            tenant: self.tenant.clone(),
            chunk: self.chunk.clone(),
        }
    }
}

/// Chunks a live-tail subscriber may fall behind before it misses some.
pub const ARRIVALS_CAPACITY: usize = 4096;

/// The fresh chunks of a tenant, for one signal.
pub trait Fresh<R>: Send + Sync {
    /// A snapshot of `tenant`'s unflushed chunks, oldest first.
    fn chunks(&self, tenant: &TenantId) -> Vec<Arc<Chunk<R>>>;

    /// Every chunk acknowledged from now on, in acknowledgement order (`None`: this process
    /// acknowledges nothing).
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arrived<R>>> {
        None
    }
}

/// No fresh data: the standalone query role.
pub struct NoFresh;

impl<R> Fresh<R> for NoFresh {
    fn chunks(&self, _: &TenantId) -> Vec<Arc<Chunk<R>>> {
        Vec::new()
    }
}

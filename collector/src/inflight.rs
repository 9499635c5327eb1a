//! The budget of request bytes in flight, across all requests and edges.
//!
//! A request reserves what it holds as it goes: its body as it is read, its decompressed
//! bytes, and an estimate of its decoded form ([`DECODED_FACTOR`] × the decompressed size)
//! while it is decoded, validated and converted; the reservation ends when its rows are in
//! the batches (which the buffer budget counts from then on). Past the budget a request is
//! refused with 503 / `UNAVAILABLE` and `Retry-After`, so N concurrent large exports cannot
//! grow memory without bound. The budget is a semaphore counted in KiB (tokio's, so
//! reservations can grow and shrink without locks).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::IngestError;

/// Decoded OTLP plus our rows hold about this many times the protobuf bytes.
pub const DECODED_FACTOR: u64 = 3;

/// Peak reservation of one request of `n` bytes: body, decompressed copy, decoded form.
pub fn peak_for(max_request_bytes: u64) -> u64 {
    max_request_bytes * (2 + DECODED_FACTOR)
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64 >> 3) as u32
}

#[derive(Debug)]
pub struct InFlight {
    sem: Arc<Semaphore>,
    max_bytes: u64,
}

impl InFlight {
    pub fn new(max_bytes: u64) -> Arc<Self> {
        Arc::new(InFlight {
            sem: Arc::new(Semaphore::new(kib(max_bytes) as usize)),
            max_bytes,
        })
    }

    /// Bytes currently reserved.
    pub fn used_bytes(&self) -> u64 {
        (kib(self.max_bytes) as u64).saturating_sub(self.sem.available_permits() as u64) * 1024
    }

    /// Reserves `bytes` now, or refuses.
    pub fn try_acquire(self: &Arc<Self>, bytes: u64) -> Result<Permit, IngestError> {
        let mut p = Permit {
            budget: self.clone(),
            held: None,
            kib: 0,
        };
        p.grow_to(bytes)?;
        Ok(p)
    }

    fn refuse(&self) -> IngestError {
        metrics::counter!("loupe_ingest_inflight_refusals_total").increment(1);
        IngestError::Overloaded(format!(
            "requests in flight hold the whole budget of {} bytes (LOUPE_MAX_INFLIGHT_BYTES); retry later",
            self.max_bytes
        ))
    }
}

/// A request's reservation; released when dropped.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<InFlight>,
    held: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl Permit {
    /// Grows the reservation to `bytes` in all, or refuses (keeping what it had).
    pub fn grow_to(&mut self, bytes: u64) -> Result<(), IngestError> {
        let want = kib(bytes);
        if want <= self.kib {
            return Ok(());
        }
        let more = self
            .budget
            .sem
            .clone()
            .try_acquire_many_owned(want - self.kib)
            .map_err(|_| self.budget.refuse())?;
        match &mut self.held {
            Some(h) => h.merge(more),
            None => self.held = Some(more),
        }
        self.kib = want;
        Ok(())
    }

    /// Shrinks the reservation to `bytes` in all.
    pub fn shrink_to(&mut self, bytes: u64) {
        let want = kib(bytes);
        if want >= self.kib {
            return;
        }
        if let Some(h) = &mut self.held {
            drop(h.split((self.kib - want) as usize));
        }
        self.kib = want;
    }

    pub fn bytes(&self) -> u64 {
        self.kib as u64 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_shrink_and_refuse_past_the_budget() {
        let budget = InFlight::new(100 * 1024);
        let mut a = budget.try_acquire(30 * 1024).unwrap();
        a.grow_to(60 * 1024).unwrap();
        let mut b = budget.try_acquire(30 * 1024).unwrap();
        let err = b.grow_to(50 * 1024).unwrap_err();
        assert!(matches!(err, IngestError::Overloaded(_)), "{err}");
        assert_eq!(b.bytes(), 30 * 1024, "a refused growth keeps what it had");
        assert!(budget.try_acquire(20 * 1024).is_err());
        a.shrink_to(10 * 1024);
        assert_eq!(budget.used_bytes(), 40 * 1024);
        let c = budget.try_acquire(50 * 1024).unwrap();
        drop((a, b, c));
        assert_eq!(budget.used_bytes(), 0);
    }
}

//! Delta temporality made cumulative: a running total per tenant and output series, kept in
//! memory. The WAL holds the cumulative values, so replay rebuilds the same samples; after a
//! restart totals start again from zero (a counter reset to PromQL). An export that fails
//! after conversion takes its deltas back ([`Deltas::undo`]), so a retry does not count them
//! twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use loupe_core::TenantId;
use loupe_storage::metrics::Labels;

/// Running totals kept before idle ones (an hour without a point) are dropped.
const MAX_DELTA_SERIES: usize = 1 << 20;

/// A delta series: tenant and output series.
type DeltaKey = (TenantId, Arc<Labels>);

/// Running totals of delta series, per tenant and output series.
#[derive(Default)]
pub struct Deltas {
    totals: Mutex<HashMap<DeltaKey, (f64, Instant)>>,
}

/// The deltas one conversion added, to take back if its export fails.
#[derive(Default)]
pub struct Applied(Vec<(DeltaKey, f64)>);

impl Deltas {
    pub(crate) fn add(&self, key: DeltaKey, delta: f64, applied: &mut Applied) -> f64 {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        if totals.len() >= MAX_DELTA_SERIES {
            totals.retain(|_, (_, at)| at.elapsed().as_secs() < 3600);
        }
        let e = totals.entry(key.clone()).or_insert((0.0, Instant::now()));
        e.0 += delta;
        e.1 = Instant::now();
        applied.0.push((key, delta));
        e.0
    }

    /// Takes back the deltas of an export that was not accepted.
    pub fn undo(&self, applied: Applied) {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (key, delta) in applied.0 {
            if let Some(e) = totals.get_mut(&key) {
                e.0 -= delta;
            }
        }
    }
}

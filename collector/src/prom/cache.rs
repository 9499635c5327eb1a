//! The active series of each tenant: label sets already seen, by a 128-bit XXH3 hash of how
//! they arrived (a remote-write series' raw label bytes; an OTLP point's resource, name and
//! attribute bytes), so a known series costs a hash lookup — no parsing, checking,
//! allocation or comparison of bytes — and every sample of it shares one `Arc<Labels>`. The
//! hash is the series' identity: two different series share one with a probability of about
//! n²/2¹²⁹ (10⁻²⁷ for a million series), far below any hardware fault. Comparing the bytes
//! as well cost a tenth of ingest: the stored key was a cache miss on every sample. It is also the per-tenant series limit:
//! a new series past the limit is refused, with the limit named, once idle series (no
//! sample for an hour) have been let go. The same series arriving in two encodings is
//! counted twice; the limit is a guard against cardinality explosions, not an exact count.
//!
//! Each entry also holds the series' newest acknowledged sample (time and value bits), so a
//! sample older than it is refused as out of order and one at its time with another value as
//! a duplicate, as Prometheus refuses them; the same sample again is taken without storing it.
//! It moves only after the WAL sync ([`SeriesCache::advance`]): a retried export whose first
//! attempt failed is never mistaken for a duplicate. After a restart the cache is empty and
//! the first sample of each series is taken as it comes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use loupe_core::TenantId;
use loupe_storage::metrics::Labels;

/// Minutes without a sample after which a series no longer counts as active.
const IDLE_MINUTES: u32 = 60;

/// Locks per tenant: the CPU pool's threads convert exports at once, and an OTLP export
/// looks its series up one point at a time; one lock per tenant made them take turns.
const SHARDS: usize = 16;

struct Entry {
    /// The series' id: a 128-bit hash of how it arrived (see the module docs).
    id: u128,
    labels: Arc<Labels>,
    seen_minute: u32,
    /// The newest acknowledged sample: time (ms) and value bits.
    last: Option<(i64, u64)>,
}

/// A series the cache knows: its labels and newest acknowledged sample.
#[derive(Debug, Clone)]
pub struct Known {
    pub labels: Arc<Labels>,
    pub last: Option<(i64, u64)>,
}

/// A series id's shard: its top four bits (the maps inside use the low 64).
fn shard_index(id: u128) -> usize {
    (id >> 124) as usize % SHARDS
}

type Fast = foldhash::fast::RandomState;
type Shard = Mutex<HashMap<u64, Entry, Fast>>;

/// One tenant's series, spread over [`SHARDS`] locks by hash.
pub struct TenantSeries {
    shards: Vec<Shard>,
    len: AtomicUsize,
}

impl TenantSeries {
    fn new() -> Self {
        TenantSeries {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: u128) -> std::sync::MutexGuard<'_, HashMap<u64, Entry, Fast>> {
        self.shards[shard_index(id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The known labels of one series id, seen at minute `now`.
    pub fn get(&self, id: u128, now: u32) -> Option<Known> {
        let mut shard = self.shard(id);
        let e = shard.get_mut(&(id as u64)).filter(|e| e.id == id)?;
        e.seen_minute = now;
        Some(Known {
            labels: e.labels.clone(),
            last: e.last,
        })
    }

    /// Drops series idle for [`IDLE_MINUTES`].
    fn sweep(&self, now: u32) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.len();
            s.retain(|_, e| now.saturating_sub(e.seen_minute) < IDLE_MINUTES);
            self.len.fetch_sub(before - s.len(), Ordering::Relaxed);
        }
    }
}

pub struct SeriesCache {
    tenants: RwLock<HashMap<TenantId, Arc<TenantSeries>, Fast>>,
    max_series: usize,
    started: Instant,
}

impl SeriesCache {
    pub fn new(max_series: usize) -> Self {
        SeriesCache {
            tenants: RwLock::new(HashMap::default()),
            max_series,
            started: Instant::now(),
        }
    }

    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The cache's clock, in minutes (for [`TenantSeries::get`]; read once per request).
    pub fn minute(&self) -> u32 {
        (self.started.elapsed().as_secs() / 60) as u32
    }

    /// A tenant's series, if it has any (hold it for a request: one lookup of the tenant).
    pub fn tenant(&self, tenant: &TenantId) -> Option<Arc<TenantSeries>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).cloned()
    }

    /// A tenant's series, made empty on first use.
    pub fn tenant_or_new(&self, tenant: &TenantId) -> Arc<TenantSeries> {
        if let Some(t) = self.tenant(tenant) {
            return t;
        }
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(TenantSeries::new()))
            .clone()
    }

    /// The known labels of each series id; `None` for a series not seen yet.
    pub fn lookup(&self, tenant: &TenantId, ids: impl Iterator<Item = u128>) -> Vec<Option<Known>> {
        let now = self.minute();
        let Some(t) = self.tenant(tenant) else {
            return ids.map(|_| None).collect();
        };
        ids.map(|id| t.get(id, now)).collect()
    }

    /// Adds new series; each `Err` is refused by the limit (its message says so).
    pub fn insert(
        &self,
        tenant: &TenantId,
        new: Vec<(u128, Arc<Labels>)>,
    ) -> Vec<Result<Arc<Labels>, String>> {
        let now = self.minute();
        let t = self.tenant_or_new(tenant);
        let mut swept = false;
        new.into_iter()
            .map(|(id, labels)| {
                if let Some(e) = t.shard(id).get(&(id as u64)).filter(|e| e.id == id) {
                    return Ok(e.labels.clone());
                }
                if t.len.load(Ordering::Relaxed) >= self.max_series && !swept {
                    t.sweep(now);
                    swept = true;
                }
                if t.len.load(Ordering::Relaxed) >= self.max_series {
                    metrics::counter!("loupe_ingest_series_limited_total").increment(1);
                    return Err(format!(
                        "series {labels} not stored: tenant {tenant} has reached its limit of {} active series (LOUPE_MAX_SERIES_PER_TENANT)",
                        self.max_series
                    ));
                }
                // Two ids sharing their low 64 bits: the newer is kept, the older looked up
                // again.
                let old = t.shard(id).insert(
                    id as u64,
                    Entry {
                        id,
                        labels: labels.clone(),
                        seen_minute: now,
                        last: None,
                    },
                );
                if old.is_none() {
                    t.len.fetch_add(1, Ordering::Relaxed);
                }
                Ok(labels)
            })
            .collect()
    }

    /// Records acknowledged samples: `(series id, time, value bits)`, the newest per series.
    /// Call only once they are durable.
    pub fn advance(&self, tenant: &TenantId, newest: &[(u128, i64, u64)]) {
        if newest.is_empty() {
            return;
        }
        let Some(t) = self.tenant(tenant) else {
            return;
        };
        // One lock per shard, not per series.
        let mut by_shard: Vec<&(u128, i64, u64)> = newest.iter().collect();
        by_shard.sort_unstable_by_key(|(id, _, _)| shard_index(*id));
        for group in by_shard.chunk_by(|a, b| shard_index(a.0) == shard_index(b.0)) {
            let mut shard = t.shard(group[0].0);
            for &&(id, time, bits) in group {
                if let Some(e) = shard.get_mut(&(id as u64)).filter(|e| e.id == id)
                    && e.last.is_none_or(|(lt, _)| time > lt)
                {
                    e.last = Some((time, bits));
                }
            }
        }
    }

    /// Active series of a tenant (for `/metrics`).
    pub fn len(&self, tenant: &TenantId) -> usize {
        self.tenant(tenant)
            .map_or(0, |t| t.len.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(n: &str) -> Arc<Labels> {
        Arc::new(Labels::new(vec![("__name__".into(), n.into())]))
    }

    #[test]
    fn known_series_are_shared_and_the_limit_refuses_new_ones() {
        let c = SeriesCache::new(2);
        let t = TenantId::new("t").unwrap();
        let u = TenantId::new("u").unwrap();
        assert!(c.lookup(&t, [1u128].into_iter())[0].is_none());
        let got = c.insert(&t, vec![(1, l("a")), (2, l("b"))]);
        assert!(got.iter().all(Result::is_ok));
        let get = |id: u128| c.tenant(&t).and_then(|s| s.get(id, 0));
        let again = get(1).unwrap();
        assert!(
            Arc::ptr_eq(&again.labels, got[0].as_ref().unwrap()),
            "one Arc per series"
        );
        assert!(again.last.is_none());
        assert!(
            get(1 | (7 << 64)).is_none(),
            "an id sharing only its low bits is a miss"
        );
        c.advance(&t, &[(1, 100, 7), (1, 50, 9)]);
        assert_eq!(
            get(1).unwrap().last,
            Some((100, 7)),
            "only newer samples move it"
        );
        let refused = c.insert(&t, vec![(3, l("c"))]);
        assert!(
            refused[0]
                .as_ref()
                .unwrap_err()
                .contains("limit of 2 active series")
        );
        assert!(
            c.insert(&u, vec![(3, l("c"))])[0].is_ok(),
            "limits are per tenant"
        );
        assert_eq!(c.len(&t), 2);
    }
}

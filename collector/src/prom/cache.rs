//! The active series of each tenant: label sets already seen, by a hash of how they
//! arrived (a remote-write series' raw label bytes; an OTLP point's resource, name and
//! attributes), so a known series costs a hash lookup — no parsing, checking or allocation —
//! and every sample of it shares one `Arc<Labels>`. It is also the per-tenant series limit:
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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use loupe_core::TenantId;
use loupe_storage::metrics::Labels;

/// Minutes without a sample after which a series no longer counts as active.
const IDLE_MINUTES: u32 = 60;

struct Entry {
    key: Box<[u8]>,
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

type Fast = foldhash::fast::RandomState;

pub struct SeriesCache {
    tenants: Mutex<HashMap<TenantId, HashMap<u64, Entry, Fast>, Fast>>,
    max_series: usize,
    started: Instant,
}

impl SeriesCache {
    pub fn new(max_series: usize) -> Self {
        SeriesCache {
            tenants: Mutex::new(HashMap::default()),
            max_series,
            started: Instant::now(),
        }
    }

    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The cache's clock, in minutes (for [`SeriesCache::get`]).
    pub fn minute(&self) -> u32 {
        (self.started.elapsed().as_secs() / 60) as u32
    }

    /// The known labels of each `(hash, key)`; `None` for a series not seen yet.
    pub fn lookup<'a>(
        &self,
        tenant: &TenantId,
        keys: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Vec<Option<Known>> {
        let now = self.minute();
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let Some(map) = tenants.get_mut(tenant) else {
            return keys.map(|_| None).collect();
        };
        keys.map(|(h, k)| {
            let e = map.get_mut(&h).filter(|e| *e.key == *k)?;
            e.seen_minute = now;
            Some(Known {
                labels: e.labels.clone(),
                last: e.last,
            })
        })
        .collect()
    }

    /// The known labels of one key (see [`SeriesCache::lookup`]), seen at minute `now`
    /// ([`SeriesCache::minute`], read once per request).
    pub fn get(&self, tenant: &TenantId, hash: u64, key: &[u8], now: u32) -> Option<Known> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let e = tenants
            .get_mut(tenant)?
            .get_mut(&hash)
            .filter(|e| *e.key == *key)?;
        e.seen_minute = now;
        Some(Known {
            labels: e.labels.clone(),
            last: e.last,
        })
    }

    /// Adds new series; each `Err` is refused by the limit (its message says so).
    pub fn insert(
        &self,
        tenant: &TenantId,
        new: Vec<(u64, Box<[u8]>, Arc<Labels>)>,
    ) -> Vec<Result<Arc<Labels>, String>> {
        let now = self.minute();
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let map = tenants.entry(tenant.clone()).or_default();
        let mut swept = false;
        new.into_iter()
            .map(|(h, key, labels)| {
                if let Some(e) = map.get(&h).filter(|e| e.key == key) {
                    return Ok(e.labels.clone());
                }
                if map.len() >= self.max_series && !swept {
                    map.retain(|_, e| now.saturating_sub(e.seen_minute) < IDLE_MINUTES);
                    swept = true;
                }
                if map.len() >= self.max_series {
                    metrics::counter!("loupe_ingest_series_limited_total").increment(1);
                    return Err(format!(
                        "series {labels} not stored: tenant {tenant} has reached its limit of {} active series (LOUPE_MAX_SERIES_PER_TENANT)",
                        self.max_series
                    ));
                }
                // A hash shared by two keys keeps the newer; the older is looked up again.
                map.insert(
                    h,
                    Entry {
                        key,
                        labels: labels.clone(),
                        seen_minute: now,
                        last: None,
                    },
                );
                Ok(labels)
            })
            .collect()
    }

    /// Records acknowledged samples: `(hash, time, value bits)`, the newest per series. Call
    /// only once they are durable.
    pub fn advance(&self, tenant: &TenantId, newest: &[(u64, i64, u64)]) {
        if newest.is_empty() {
            return;
        }
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let Some(map) = tenants.get_mut(tenant) else {
            return;
        };
        for &(h, t, bits) in newest {
            if let Some(e) = map.get_mut(&h)
                && e.last.is_none_or(|(lt, _)| t > lt)
            {
                e.last = Some((t, bits));
            }
        }
    }

    /// Active series of a tenant (for `/metrics`).
    pub fn len(&self, tenant: &TenantId) -> usize {
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).map_or(0, HashMap::len)
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
        assert!(c.lookup(&t, [(1, &b"a"[..])].into_iter())[0].is_none());
        let got = c.insert(
            &t,
            vec![
                (1, b"a".to_vec().into(), l("a")),
                (2, b"b".to_vec().into(), l("b")),
            ],
        );
        assert!(got.iter().all(Result::is_ok));
        let again = c.get(&t, 1, b"a", 0).unwrap();
        assert!(
            Arc::ptr_eq(&again.labels, got[0].as_ref().unwrap()),
            "one Arc per series"
        );
        assert!(again.last.is_none());
        assert!(
            c.get(&t, 1, b"z", 0).is_none(),
            "a hash with another key is a miss"
        );
        c.advance(&t, &[(1, 100, 7), (1, 50, 9)]);
        assert_eq!(
            c.get(&t, 1, b"a", 0).unwrap().last,
            Some((100, 7)),
            "only newer samples move it"
        );
        let refused = c.insert(&t, vec![(3, b"c".to_vec().into(), l("c"))]);
        assert!(
            refused[0]
                .as_ref()
                .unwrap_err()
                .contains("limit of 2 active series")
        );
        assert!(
            c.insert(&u, vec![(3, b"c".to_vec().into(), l("c"))])[0].is_ok(),
            "limits are per tenant"
        );
        assert_eq!(c.len(&t), 2);
    }
}

//! The lifecycle lease: with several collectors on one bucket, exactly one compacts, expires
//! and collects a tenant at a time, using nothing but create-if-absent writes (which the
//! local store and S3 both provide; the local store has no compare-and-swap).
//!
//! A lease is a sequence of objects `{tenant}/_lifecycle/lease/{epoch:020}.json`, each naming
//! an owner and an expiry (wall-clock ms). The newest epoch is the lease. To take a free or
//! expired lease, or to renew its own, a collector creates epoch + 1 with create-if-absent:
//! of two racing for the same epoch exactly one wins. A holder treats its lease as valid only
//! until `acquired + ttl - margin` by its own monotonic clock, measured from before its
//! create request, so with clocks that differ by less than the margin no two holders
//! overlap. Work that commits (compaction, retention, garbage collection) checks validity
//! before each commit; a compaction whose lease lapsed discards its output. Old epochs are
//! deleted by the holder.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use loupe_core::TenantId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::catalog::now_unix_ms;
use crate::error::StorageError;
use crate::store::Storage;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LeaseBody {
    owner: String,
    epoch: u64,
    expires_unix_ms: i64,
}

/// Proof of holding a tenant's lease, valid until a local deadline.
#[derive(Debug, Clone)]
pub struct Held {
    pub tenant: TenantId,
    pub epoch: u64,
    valid_until: Instant,
}

impl Held {
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// A lease that is always valid: for a single process that owns its store alone (tests,
    /// tools).
    pub fn exclusive(tenant: &TenantId) -> Held {
        Held {
            tenant: tenant.clone(),
            epoch: 0,
            valid_until: Instant::now() + Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// Takes and renews tenants' lifecycle leases for one owner.
#[derive(Debug, Clone)]
pub struct Leases {
    storage: Storage,
    owner: String,
    ttl: Duration,
}

fn lease_dir(tenant: &TenantId) -> Path {
    Path::from(format!("{tenant}/_lifecycle/lease"))
}

fn epoch_path(dir: &Path, epoch: u64) -> Path {
    Path::from(format!("{dir}/{epoch:020}.json"))
}

impl Leases {
    pub fn new(storage: Storage, owner: impl Into<String>, ttl: Duration) -> Self {
        Leases {
            storage,
            owner: owner.into(),
            ttl,
        }
    }

    fn margin(&self) -> Duration {
        (self.ttl / 5).min(Duration::from_secs(10))
    }

    /// Takes or renews `tenant`'s lease. `None`: someone else holds it (or won the race).
    pub async fn acquire(&self, tenant: &TenantId) -> Result<Option<Held>, StorageError> {
        let started = Instant::now();
        let dir = lease_dir(tenant);
        let store = &self.storage.store;
        let mut epochs: Vec<(u64, Path)> = store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect::<Vec<Path>>()
            .await
            .map_err(|e| StorageError::store("list", &dir, e))?
            .into_iter()
            .filter_map(|p| {
                let epoch = p.filename()?.strip_suffix(".json")?.parse().ok()?;
                Some((epoch, p))
            })
            .collect();
        epochs.sort_unstable_by_key(|(e, _)| *e);
        let current = match epochs.last() {
            None => None,
            Some((_, path)) => match store.get(path).await {
                Ok(r) => {
                    let bytes = r
                        .bytes()
                        .await
                        .map_err(|e| StorageError::store("get", path, e))?;
                    Some(serde_json::from_slice::<LeaseBody>(&bytes).map_err(|e| {
                        StorageError::Corrupt {
                            what: "lifecycle lease",
                            path: path.to_string(),
                            reason: e.to_string(),
                        }
                    })?)
                }
                // Deleted by a holder cleaning up after a newer epoch: look again next time.
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(StorageError::store("get", path, e)),
            },
        };
        let now = now_unix_ms();
        let next = match &current {
            Some(l) if l.owner != self.owner && l.expires_unix_ms > now => return Ok(None),
            Some(l) => l.epoch + 1,
            None => 1,
        };
        let body = LeaseBody {
            owner: self.owner.clone(),
            epoch: next,
            expires_unix_ms: now + self.ttl.as_millis() as i64,
        };
        let path = epoch_path(&dir, next);
        let payload =
            serde_json::to_vec(&body).map_err(|e| StorageError::Internal(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store.put_opts(&path, PutPayload::from(payload), opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => return Ok(None),
            Err(e) => return Err(StorageError::store("put", &path, e)),
        }
        if current.as_ref().is_none_or(|c| c.owner != self.owner) {
            tracing::info!(%tenant, epoch = next, owner = %self.owner, "took the lifecycle lease");
        }
        for (epoch, old) in &epochs {
            if *epoch < next.saturating_sub(1) {
                let _ = store.delete(old).await;
            }
        }
        Ok(Some(Held {
            tenant: tenant.clone(),
            epoch: next,
            valid_until: started + self.ttl.saturating_sub(self.margin()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_takeover_after_expiry() {
        let storage = Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let a = Leases::new(storage.clone(), "a", Duration::from_millis(400));
        let b = Leases::new(storage.clone(), "b", Duration::from_millis(400));
        let held = a.acquire(&tenant).await.unwrap().expect("free lease");
        assert!(held.is_valid());
        assert!(b.acquire(&tenant).await.unwrap().is_none(), "held by a");
        let renewed = a.acquire(&tenant).await.unwrap().expect("a renews");
        assert_eq!(renewed.epoch, held.epoch + 1);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(!renewed.is_valid());
        let taken = b
            .acquire(&tenant)
            .await
            .unwrap()
            .expect("b takes the expired lease");
        assert!(taken.epoch > renewed.epoch);
        assert!(a.acquire(&tenant).await.unwrap().is_none(), "now held by b");
    }

    #[tokio::test]
    async fn racing_collectors_never_both_win() {
        let storage = Storage::in_memory();
        for round in 0..20 {
            let tenant = TenantId::new(&format!("t{round}")).unwrap();
            let leases: Vec<Leases> = (0..4)
                .map(|i| Leases::new(storage.clone(), format!("c{i}"), Duration::from_secs(10)))
                .collect();
            let wins = futures::future::join_all(leases.iter().map(|l| l.acquire(&tenant)))
                .await
                .into_iter()
                .filter(|r| matches!(r, Ok(Some(_))))
                .count();
            assert_eq!(wins, 1, "round {round}: {wins} holders");
        }
    }
}

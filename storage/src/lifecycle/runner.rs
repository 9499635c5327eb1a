//! The lifecycle loop of a collector: every interval, for each tenant whose lease it holds
//! (or takes), and for each signal, compaction, retention, garbage collection and, rarely,
//! the orphan sweep. Signals plug in as [`SignalLifecycle`]s, so the loop does not know
//! which formats exist.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use loupe_core::TenantId;
use tokio::sync::watch;

use super::lease::{Held, Leases};
use super::{CompactionPolicy, Format, apply_retention, collect_garbage, compact, sweep_orphans};
use crate::catalog::Catalog;
use crate::error::StorageError;
use crate::store::Signal;

/// The per-format part of the lifecycle (compaction); the rest is generic.
pub trait SignalLifecycle: Send + Sync {
    fn signal(&self) -> Signal;
    fn compact<'a>(
        &'a self,
        catalog: &'a Catalog,
        tenant: &'a TenantId,
        policy: &'a CompactionPolicy,
        lease: &'a Held,
    ) -> BoxFuture<'a, Result<usize, StorageError>>;
}

/// Any [`Format`] as a [`SignalLifecycle`].
pub struct FormatLifecycle<F>(pub Arc<F>);

impl<F: Format> SignalLifecycle for FormatLifecycle<F> {
    fn signal(&self) -> Signal {
        F::SIGNAL
    }

    fn compact<'a>(
        &'a self,
        catalog: &'a Catalog,
        tenant: &'a TenantId,
        policy: &'a CompactionPolicy,
        lease: &'a Held,
    ) -> BoxFuture<'a, Result<usize, StorageError>> {
        Box::pin(async move {
            let policy = self.0.policy(policy);
            compact(catalog, &*self.0, tenant, &policy, lease).await
        })
    }
}

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    pub interval: Duration,
    pub retention: Duration,
    /// How long a removed file's object stays readable.
    pub gc_grace: Duration,
    /// Uploads no commit names are deleted once this old.
    pub orphan_min_age: Duration,
    /// How often the orphan sweep (a listing) runs.
    pub orphan_sweep_every: Duration,
    pub policy: CompactionPolicy,
}

impl LifecycleConfig {
    pub fn new(interval: Duration, retention: Duration, gc_grace: Duration) -> Self {
        LifecycleConfig {
            interval,
            retention,
            gc_grace,
            orphan_min_age: gc_grace.max(Duration::from_secs(3600)),
            orphan_sweep_every: Duration::from_secs(3600),
            policy: CompactionPolicy::default(),
        }
    }

    /// The lease lives a few intervals, so a holder renews it several times before it lapses
    /// and a dead holder's tenants are taken over within that time.
    pub fn lease_ttl(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(15))
    }
}

/// Runs lifecycle passes until `shutdown` fires.
pub async fn run(
    catalog: Catalog,
    leases: Leases,
    signals: Vec<Arc<dyn SignalLifecycle>>,
    cfg: LifecycleConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_sweep: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = shutdown.changed() => return,
        }
        let sweep = last_sweep.is_none_or(|t| t.elapsed() >= cfg.orphan_sweep_every);
        if sweep {
            last_sweep = Some(Instant::now());
        }
        pass(&catalog, &leases, &signals, &cfg, sweep).await;
    }
}

/// One pass over every tenant. Public for tests.
pub async fn pass(
    catalog: &Catalog,
    leases: &Leases,
    signals: &[Arc<dyn SignalLifecycle>],
    cfg: &LifecycleConfig,
    sweep: bool,
) {
    let tenants = match catalog.list_tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "lifecycle: cannot list tenants");
            return;
        }
    };
    for tenant in tenants {
        let held = match leases.acquire(&tenant).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                metrics::gauge!("loupe_lifecycle_lease_held", "tenant" => tenant.to_string())
                    .set(0.0);
                continue;
            }
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "lifecycle: cannot take the lease");
                continue;
            }
        };
        metrics::gauge!("loupe_lifecycle_lease_held", "tenant" => tenant.to_string()).set(1.0);
        for s in signals {
            tenant_signal(catalog, s.as_ref(), &tenant, cfg, &held, sweep).await;
        }
    }
}

async fn tenant_signal(
    catalog: &Catalog,
    lifecycle: &dyn SignalLifecycle,
    tenant: &TenantId,
    cfg: &LifecycleConfig,
    held: &Held,
    sweep: bool,
) {
    let signal = lifecycle.signal();
    if let Err(e) = lifecycle.compact(catalog, tenant, &cfg.policy, held).await {
        tracing::warn!(%tenant, %signal, error = %e, "compaction failed");
    }
    match apply_retention(catalog, tenant, signal, cfg.retention, held).await {
        Ok(n) if n > 0 => {
            tracing::info!(%tenant, %signal, files = n, "retention dropped expired files")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(%tenant, %signal, error = %e, "retention failed"),
    }
    if let Err(e) = collect_garbage(catalog, tenant, signal, cfg.gc_grace, held).await {
        tracing::warn!(%tenant, %signal, error = %e, "garbage collection failed");
    }
    if sweep && let Err(e) = sweep_orphans(catalog, tenant, signal, cfg.orphan_min_age, held).await
    {
        tracing::warn!(%tenant, %signal, error = %e, "orphan sweep failed");
    }
}

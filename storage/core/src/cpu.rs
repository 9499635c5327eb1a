//! The bounded pool for CPU-heavy work: decompression and decoding of requests, Parquet page
//! decoding and attribute parsing in queries. Async tasks hand such work to [`run`] and await
//! the answer, so the runtime's threads stay free to accept connections and answer
//! write-ahead-log acknowledgements. (Quickwit's `run_cpu_intensive` is the model: a rayon
//! pool the size of the machine, answering through a oneshot channel.)
//!
//! Long background work (encoding a flush, merging a compaction) uses tokio's blocking
//! threads instead, so it never queues in front of request-path work here.

use std::sync::OnceLock;

/// The work panicked; the panic was caught and logged.
#[derive(Debug, thiserror::Error)]
#[error("cpu task panicked: {0}")]
pub struct Panicked(pub String);

/// The pool, sized to the CPUs this process may use; `None` if its threads cannot be started
/// (then work runs on tokio's blocking threads instead).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("loupe-cpu-{i}"))
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the cpu pool; using blocking threads");
            })
            .ok()
    })
    .as_ref()
}

fn describe(p: Box<dyn std::any::Any + Send>) -> Panicked {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %msg, "cpu task panicked");
    Panicked(msg)
}

/// Runs `f` on the CPU pool and returns its result.
pub async fn run<F, T>(f: F) -> Result<T, Panicked>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(pool) = pool() else {
        return tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(p) => describe(p),
                Err(e) => Panicked(e.to_string()),
            });
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(describe);
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| Panicked("cpu pool dropped the task".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_off_the_runtime_and_catches_panics() {
        let name = run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.unwrap_or_default().starts_with("loupe-cpu-"));
        let err = run(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(err.0.contains("boom"));
    }
}

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

fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("loupe-cpu-{i}"))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot start the cpu pool; using rayon's global pool");
                rayon::ThreadPoolBuilder::new().build().expect("rayon pool")
            })
    })
}

/// Runs `f` on the CPU pool and returns its result.
pub async fn run<F, T>(f: F) -> Result<T, Panicked>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool().spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %msg, "cpu task panicked");
            Panicked(msg)
        });
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

//! `loupe`: the server binary. `loupe server` runs every role in one process; `loupe
//! collector` and `loupe query` run them apart on a shared object store.

mod config;
mod demo;
mod server;
mod telemetry;

use clap::Parser;

// mimalloc returns freed memory to the OS more readily than glibc's per-thread arenas under
// the ingest pattern (many short-lived allocations across runtime threads): lower peak RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's option enum (libmimalloc-sys does not export it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages for half a second before returning them to the OS. With mimalloc's 10 ms
/// default the ingest path spends ~10% of its CPU zeroing re-faulted pages (measured with
/// perf on loupe-bench: 89k → 113k spans per CPU-second over gRPC).
///
/// And no transparent huge pages: mimalloc asks for them on its arenas, and then every fresh
/// page faults in a zeroed 2 MiB huge page, which perf showed as ~18% of a search's CPU
/// (`clear_page_erms` under `do_huge_pmd_anonymous_page`) and as its latency tail (measured
/// on the quick bench's data: p95 of a search 32.6 → 11.7 ms, max 107 → 27 ms). mimalloc reads
/// its THP option before `main`, so the process opts out with `PR_SET_THP_DISABLE`, which the
/// kernel checks at every fault. `MIMALLOC_PURGE_DELAY` still overrides the delay.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 500) };
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            eprintln!("loupe: cannot disable transparent huge pages: {e}");
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = config::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loupe: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(cli.role)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loupe: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

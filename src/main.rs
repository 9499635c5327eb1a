//! `loupe`: the server binary. `loupe server` runs every role in one process; `loupe
//! collector` and `loupe query` run them apart on a shared object store.

mod config;
mod demo;
mod demo_logs;
mod demo_metrics;
mod server;
mod telemetry;

use clap::Parser;

/// glibc's allocator with one arena per core (at least two) instead of its default eight per
/// core. The collector's memory is mostly large Arrow and Parquet buffers made on one thread
/// (a decode, a flush, a merge) and freed on another; with many arenas each keeps what it
/// freed. Measured with loupe-bench (quick growth phase, peak RSS): mimalloc (which the
/// server used while ingest made many small allocations) 390–510 MiB, glibc's default 545,
/// glibc with two arenas 194–198, at the same ingest and query figures. `MALLOC_ARENA_MAX`
/// still overrides the count.
///
/// And no transparent huge pages: where the kernel gives them to every anonymous mapping,
/// each fresh page faults in a zeroed 2 MiB huge page, which perf showed as ~18% of a search's
/// CPU (`clear_page_erms` under `do_huge_pmd_anonymous_page`) and as its latency tail (p95 of
/// a search 32.6 → 11.7 ms, max 107 → 27 ms). The process opts out with `PR_SET_THP_DISABLE`,
/// which the kernel checks at every fault.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tuning parameter; called before any thread starts.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
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

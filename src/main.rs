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

fn main() -> std::process::ExitCode {
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

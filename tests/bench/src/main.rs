//! `loupe-bench`: the benchmark harness. Generates production-like traces with a fixed seed,
//! pre-encodes them as OTLP, starts the real `loupe server` process on loopback with a fresh
//! data dir, and measures ingest per server CPU-second, stored bytes, lookups, search,
//! freshness and memory, with DuckDB (over the very Parquet files Loupe wrote) and `zstd -3`
//! (of the raw OTLP) as baselines measured in the same run.
//!
//! `cargo run --release -p loupe-bench -- [--quick | --smoke] [--only <figure>...]`
//! One JSON object per figure on stdout; a readable summary on stderr.

mod agent_phase;
mod figures;
mod load;
mod loggen;
mod logs_phase;
mod metricgen;
mod metrics_phase;
mod phases;
mod pipeline;
mod real_logs;
mod searches;
mod server;
mod tracegen;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Loupe benchmark harness")]
pub struct Args {
    /// Smaller data set; finishes in a few minutes on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Tiny data set: checks that every figure is produced (used by `make test`).
    #[arg(long, conflicts_with = "quick")]
    pub smoke: bool,
    /// Only these figures (names as printed); the phases they need still run.
    #[arg(long, num_args = 1..)]
    pub only: Vec<String>,
    /// The `loupe` binary to run (default: next to this one, same profile).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Python with duckdb installed (default: the repository's .venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Keep the server's data in this (new or empty) directory instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Data sizes of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub mode: &'static str,
    /// Spans in the 1× data set (half sent over gRPC, half over HTTP).
    pub base_spans: usize,
    /// Total data at the growth measurement, in multiples of the 1× set.
    pub growth_factor: usize,
    pub lookups: usize,
    pub cold_restarts: usize,
    pub cold_lookups: usize,
    pub search_repeat: usize,
    pub ack_samples: usize,
    pub concurrency: usize,
    pub spans_per_request: usize,
    /// Log lines of the logs phase.
    pub log_lines: usize,
    /// The metrics phase: services × pods of RED metrics, node-exporter hosts, minutes of
    /// 15 s scrapes.
    pub metric_services: usize,
    pub metric_pods: usize,
    pub metric_hosts: usize,
    pub metric_minutes: i64,
}

impl Sizes {
    fn of(args: &Args) -> Sizes {
        if args.smoke {
            Sizes {
                mode: "smoke",
                base_spans: 20_000,
                growth_factor: 3,
                lookups: 40,
                cold_restarts: 2,
                cold_lookups: 10,
                search_repeat: 2,
                ack_samples: 10,
                concurrency: 8,
                spans_per_request: 1000,
                log_lines: 20_000,
                metric_services: 2,
                metric_pods: 2,
                metric_hosts: 2,
                metric_minutes: 15,
            }
        } else if args.quick {
            Sizes {
                mode: "quick",
                base_spans: 400_000,
                growth_factor: 10,
                lookups: 300,
                cold_restarts: 3,
                cold_lookups: 20,
                search_repeat: 5,
                ack_samples: 50,
                concurrency: 16,
                spans_per_request: 1000,
                log_lines: 200_000,
                metric_services: 10,
                metric_pods: 5,
                metric_hosts: 10,
                metric_minutes: 60,
            }
        } else {
            Sizes {
                mode: "full",
                base_spans: 1_000_000,
                growth_factor: 10,
                lookups: 1000,
                cold_restarts: 5,
                cold_lookups: 40,
                search_repeat: 10,
                ack_samples: 200,
                concurrency: 16,
                spans_per_request: 1000,
                log_lines: 1_000_000,
                metric_services: 10,
                metric_pods: 5,
                metric_hosts: 40,
                metric_minutes: 120,
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loupe-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let sizes = Sizes::of(&args);
    match runtime.block_on(phases::run(&args, &sizes)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loupe-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! floe-bench: floe's benchmarks. Every sub-command prints a human summary and, with
//! `--json FILE`, one JSON object with the fields of DESIGN.md's contract.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod raw;
mod report;
mod storage_bench;

/// floe's throughput and latency benchmarks.
#[derive(Debug, Parser)]
#[command(name = "floe-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append throughput of one partition log, then a CRC-checked read-back scan, each beside
    /// a same-run baseline of the raw disk (dd-like 1 MiB writes and reads).
    Storage(StorageArgs),
}

/// Arguments of `floe-bench storage`.
#[derive(Debug, clap::Args)]
pub(crate) struct StorageArgs {
    /// Directory for the log (created; must not already hold a log).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Bytes of record values to append in all.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub(crate) total_bytes: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1000)]
    pub(crate) message_size: usize,
    /// Records per batch (one append).
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_records: usize,
    /// fsync policy: `always` acknowledges an append only after fsync (group commit across
    /// producers); `never` leaves write-back to the kernel.
    #[arg(long, value_enum, default_value_t = FsyncArg::Always)]
    pub(crate) fsync: FsyncArg,
    /// Segment size in bytes (default: the log's default). Rolling a segment fsyncs it, even
    /// under `--fsync never` (sealed segments are durable by construction), so a run longer
    /// than one segment includes that write-back.
    #[arg(long)]
    pub(crate) segment_bytes: Option<u64>,
    /// Concurrent producer threads (each waits for its append's acknowledgement).
    #[arg(long, default_value_t = 8)]
    pub(crate) producers: usize,
    /// Appends in the "one fsync per single-record append" baseline of `--fsync always`.
    #[arg(long, default_value_t = 500)]
    pub(crate) baseline_appends: u64,
    /// Write the result as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

/// The fsync policy flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FsyncArg {
    /// fsync before acknowledging (group commit).
    Always,
    /// Never fsync.
    Never,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever RUST_BACKTRACE says: the command-line contract.
            eprintln!("floe-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (report, json) = match cli.command {
        Command::Storage(args) => (storage_bench::run(&args)?, args.json),
    };
    report.print_human();
    if let Some(path) = json {
        report.write_json(&path)?;
    }
    Ok(())
}

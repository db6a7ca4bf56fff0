//! floe-bench: floe's benchmarks. Every sub-command prints a human summary and, with
//! `--json FILE`, one JSON object with the fields of DESIGN.md's contract.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cluster;
mod compare;
mod load;
mod meter;
mod plot;
mod raw;
mod report;
mod storage_bench;
mod value;
mod verify;

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
    /// Produce to a topic: throughput of acknowledged records and produce-ack latency.
    Produce(LoadArgs),
    /// Read a topic from the start, verifying every record: read throughput. With `--local`
    /// (or `--fill N`) the topic is first filled, untimed.
    Consume(LoadArgs),
    /// Produce and consume at once: end-to-end latency (intended send time to consumed) and
    /// verification that every acknowledged record was read exactly once, in order.
    E2e(LoadArgs),
    /// Compare two JSON results: a table of each field and the ratio B/A.
    Compare(CompareArgs),
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

impl FsyncArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FsyncArg::Always => "always",
            FsyncArg::Never => "never",
        }
    }
}

/// The `--acks` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AcksArg {
    /// Answered once a quorum holds the batch (committed).
    All,
    /// Answered once the leader appended it.
    Leader,
}

/// The `--local-topics` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LocalTopics {
    /// A static topic table file.
    Static,
    /// Created through the Admin API.
    Admin,
}

/// The `--compression` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    /// Records as they are (the default: the padding is incompressible anyway).
    None,
    /// LZ4 per batch.
    Lz4,
}

/// Arguments of `produce`, `consume` and `e2e`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Bootstrap brokers, comma separated (client addresses).
    #[arg(
        long,
        env = "FLOE_BROKERS",
        value_delimiter = ',',
        required_unless_present = "local"
    )]
    pub(crate) brokers: Vec<String>,
    /// The cluster CA certificate (PEM) to trust.
    #[arg(long, env = "FLOE_CA_CERT", required_unless_present = "local")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Start a 3-node cluster in temporary directories for this run and stop it afterwards.
    /// `--brokers` and `--ca-cert` are then ignored.
    #[arg(long)]
    pub(crate) local: bool,
    /// The `floe` binary for `--local` (default: `floe` next to this executable).
    #[arg(long, env = "FLOE_BIN")]
    pub(crate) floe_bin: Option<PathBuf>,
    /// Keep the `--local` cluster's data and logs in this directory instead of a temporary
    /// one (it must not exist yet).
    #[arg(long, requires = "local")]
    pub(crate) local_dir: Option<PathBuf>,
    /// How a `--local` cluster gets the topic: `admin` (`Admin::create_topic` once the nodes
    /// are up) or `static` (listed in the nodes' `floe serve --topics` table).
    #[arg(long, value_enum, default_value_t = LocalTopics::Admin)]
    pub(crate) local_topics: LocalTopics,
    /// The topic (created if missing, used as it is if it exists).
    #[arg(long, default_value = "floe-bench")]
    pub(crate) topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: u32,
    /// Replicas per partition when the topic is created.
    #[arg(long, default_value_t = 3)]
    pub(crate) replicas: u16,
    /// The topic's fsync policy (a topic config on creation). floe's brokers fsync every
    /// write today, so `never` is refused by a `--local` cluster.
    #[arg(long, value_enum, default_value_t = FsyncArg::Always)]
    pub(crate) fsync: FsyncArg,
    /// Acknowledgement level of produce requests.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub(crate) acks: AcksArg,
    /// Producer tasks, each with its own client connection.
    #[arg(long, default_value_t = 1)]
    pub(crate) producers: u32,
    /// Consumer tasks, each with its own client connection; partitions are dealt out.
    #[arg(long, default_value_t = 1)]
    pub(crate) consumers: u32,
    /// Bytes per record value (at least 32: the header the consumer verifies).
    #[arg(long, default_value_t = 1000)]
    pub(crate) message_size: usize,
    /// Producer batch size in bytes (a batch is sealed when it holds this much).
    #[arg(long, default_value_t = 256 * 1024)]
    pub(crate) batch_size: usize,
    /// How long a producer batch waits for more records.
    #[arg(long, default_value_t = 2)]
    pub(crate) linger_ms: u64,
    /// Bytes of records each producer may hold unacknowledged.
    #[arg(long, default_value_t = 32 << 20)]
    pub(crate) buffer_memory: usize,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub(crate) compression: CompressionArg,
    /// Offered load in records per second over all producers (a fixed schedule; latency is
    /// measured from each record's intended send time). Default: as fast as acknowledged.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Records to measure (after the warm-up), over all producers; for `consume`, records to
    /// read (default: everything, until --idle-ms without a record).
    #[arg(long, conflicts_with = "duration")]
    pub(crate) count: Option<u64>,
    /// Seconds to measure (after the warm-up), instead of --count.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Seconds of load before measuring starts (records are sent and verified, not counted).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) warmup: f64,
    /// Keyed records over this many distinct keys (default: keyless, round robin).
    #[arg(long)]
    pub(crate) keys: Option<u32>,
    /// `consume`: produce this many records first (untimed; default with `--local`: --count
    /// or 100000).
    #[arg(long)]
    pub(crate) fill: Option<u64>,
    /// A consumer that has read nothing for this long is done (`consume` without --count),
    /// or has failed (`e2e`, after the producers finished).
    #[arg(long, default_value_t = 5000)]
    pub(crate) idle_ms: u64,
    /// Write the result as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Draw throughput over time and the latency percentile curve into this SVG file.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// Arguments of `floe-bench compare`.
#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    /// The baseline result (JSON).
    pub(crate) a: PathBuf,
    /// The result compared with it (JSON).
    pub(crate) b: PathBuf,
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
        Command::Compare(args) => {
            print!("{}", compare::run(&args.a, &args.b)?);
            return Ok(());
        }
        Command::Produce(args) => (load::run(load::Kind::Produce, &args)?, args.json),
        Command::Consume(args) => (load::run(load::Kind::Consume, &args)?, args.json),
        Command::E2e(args) => (load::run(load::Kind::E2e, &args)?, args.json),
    };
    report.print_human();
    if let Some(path) = json {
        report.write_json(&path)?;
    }
    Ok(())
}

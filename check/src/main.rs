//! The `floe-check` command line.
//!
//! ```text
//! floe-check run [--time-limit 60s] [--nemesis all|kill,pause,partition,disk|none] [--seed S]
//!                [--results DIR] [--soak [--run-length 10m]] [--floe-bin PATH] ...
//! floe-check check HISTORY.jsonl      # re-check a recorded history
//! ```
//! Exit status: 0 valid, 1 invalid (anomalies found), 2 the run itself could not be done.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use floe_check::checker;
use floe_check::history::History;
use floe_check::nemesis::{Disk, Kind};
use floe_check::run::{self, RunConfig};

/// Jepsen-style fault injection for floe: real `floe serve` processes, a nemesis, a checker.
#[derive(Debug, Parser)]
#[command(name = "floe-check", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the workload against a fresh cluster under faults and check the history.
    Run(RunArgs),
    /// Check a recorded history.jsonl again.
    Check {
        /// The history file.
        history: PathBuf,
        /// Examples per check.
        #[arg(long, default_value_t = 10)]
        examples: usize,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// How long the workload runs under faults (`90s`, `10m`, `1h`); with --soak, the total
    /// (default 4h).
    #[arg(long)]
    time_limit: Option<String>,
    /// Fault kinds: `all`, `none`, or a list of kill, pause, partition, disk, move.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// The disk faults of the `disk` nemesis: `all` or a list of truncate, flip, index.
    #[arg(long, default_value = "all")]
    disk_faults: String,
    /// Seed of the fault schedule and the workload's choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Results directory (a `<timestamp>-<seed>/` per run is created in it).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// The long profile: back-to-back runs of --run-length (seed, seed+1, ...) until the time
    /// limit; stops at the first invalid run.
    #[arg(long)]
    soak: bool,
    /// Length of each run with --soak.
    #[arg(long, default_value = "10m")]
    run_length: String,
    /// The `floe` binary (default: next to floe-check).
    #[arg(long, env = "FLOE_BIN")]
    floe_bin: Option<PathBuf>,
    /// Brokers.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Partitions of the topic (replicated on every broker).
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Producer clients.
    #[arg(long, default_value_t = 3)]
    producers: u32,
    /// Consumer clients.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Examples per check in the verdict.
    #[arg(long, default_value_t = 10)]
    examples: usize,
    /// Keep the nodes' data directories of valid runs too.
    #[arg(long)]
    keep_data: bool,
}

/// `90`, `90s`, `10m`, `2h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 90s, 10m, 1h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?} (s, m or h)")),
    };
    if secs == 0 {
        return Err("a duration must be above zero".into());
    }
    Ok(Duration::from_secs(secs))
}

fn floe_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("--floe-bin {}: no such file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("locating floe-check: {e}"))?;
    let beside = exe.with_file_name("floe");
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no floe binary at {} (build it with `cargo build -p floe-broker`, or give --floe-bin / FLOE_BIN)",
            beside.display()
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { history, examples } => match History::read_jsonl(&history) {
            Ok(h) => {
                let v = checker::check(&h, examples);
                print!("{}", run::summary(&v));
                if v.valid {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("floe-check: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run(args) => match run_cmd(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("floe-check: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_cmd(args: RunArgs) -> Result<ExitCode, String> {
    let nemesis = Kind::parse_list(&args.nemesis)?;
    let disk_faults = Disk::parse_list(&args.disk_faults)?;
    let floe = floe_binary(args.floe_bin)?;
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() % 1_000_000)
    });
    let total = match (&args.time_limit, args.soak) {
        (Some(t), _) => parse_duration(t)?,
        (None, true) => Duration::from_secs(4 * 3600),
        (None, false) => Duration::from_secs(60),
    };
    let run_length = if args.soak {
        parse_duration(&args.run_length)?.min(total)
    } else {
        total
    };
    if args.nodes == 0 || args.partitions == 0 || args.producers == 0 {
        return Err("--nodes, --partitions and --producers must be above zero".into());
    }
    let base = RunConfig {
        floe,
        results: args.results,
        seed,
        nemesis,
        disk_faults,
        time_limit: run_length,
        nodes: args.nodes,
        partitions: args.partitions,
        producers: args.producers,
        consumers: args.consumers,
        examples: args.examples,
        keep_data: args.keep_data,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async move {
        let started = Instant::now();
        let mut runs = 0u64;
        let (mut ok_total, mut unknown_total, mut longest_gap) = (0usize, 0usize, 0f64);
        loop {
            let cfg = RunConfig {
                seed: base.seed + runs,
                ..base.clone()
            };
            let outcome = run::run(&cfg).await.map_err(|e| e.to_string())?;
            runs += 1;
            print!("{}", run::summary(&outcome.verdict));
            println!("results: {}", outcome.dir.display());
            ok_total += outcome.verdict.ops.ok;
            unknown_total += outcome.verdict.ops.unknown;
            longest_gap = longest_gap.max(outcome.verdict.availability.longest_gap_s);
            if !outcome.verdict.valid {
                println!("run with seed {} is INVALID", cfg.seed);
                return Ok(ExitCode::from(1));
            }
            // Another run only if it fits (runs take about a minute more than their limit).
            if !args.soak || started.elapsed() + run_length + Duration::from_secs(60) > total {
                break;
            }
        }
        if args.soak {
            println!(
                "soak: {runs} valid runs in {:.0} s (seeds {}..={}): {ok_total} acknowledged writes, {unknown_total} unknown, longest produce stall {longest_gap:.2} s",
                started.elapsed().as_secs_f64(),
                base.seed,
                base.seed + runs - 1
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
    }
}

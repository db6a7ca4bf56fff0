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

/// What a run takes beyond its time limit (start-up, healing, the final read), allowed for
/// when a soak fits its last run into the time that remains.
const SOAK_RUN_OVERHEAD: Duration = Duration::from_secs(30);
/// A soak's shortest run: less leaves too few faults to be worth a cluster start.
const SOAK_SHORTEST_RUN: Duration = Duration::from_secs(60);

/// The time limit of a soak's next run, or `None` when the soak is over. A soak fills its
/// whole time limit: runs of `run_length`, the last one cut to what remains (a run takes
/// some seconds more than its limit), none shorter than [`SOAK_SHORTEST_RUN`] except that
/// the first run always happens.
fn soak_run_limit(
    total: Duration,
    elapsed: Duration,
    run_length: Duration,
    first: bool,
) -> Option<Duration> {
    let remaining = total.saturating_sub(elapsed);
    let limit = run_length.min(remaining.saturating_sub(SOAK_RUN_OVERHEAD));
    if limit >= SOAK_SHORTEST_RUN {
        Some(limit)
    } else if first {
        Some(
            run_length
                .max(SOAK_SHORTEST_RUN)
                .min(total.max(SOAK_SHORTEST_RUN)),
        )
    } else {
        None
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
            let time_limit = if args.soak {
                match soak_run_limit(total, started.elapsed(), run_length, runs == 0) {
                    Some(limit) => limit,
                    None => break,
                }
            } else {
                run_length
            };
            let cfg = RunConfig {
                seed: base.seed + runs,
                time_limit,
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
            if !args.soak {
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
    fn a_soak_fills_its_time_limit_with_a_shorter_last_run() {
        let m = |x: u64| Duration::from_secs(60 * x);
        let s = Duration::from_secs;
        // 1 h of 10-minute runs that take 10 m 20 s each: five full runs, then the sixth
        // is cut to fit (it used to be skipped, ending the "hour" at 52 minutes).
        let mut elapsed = Duration::ZERO;
        let mut limits = Vec::new();
        while let Some(l) = soak_run_limit(m(60), elapsed, m(10), limits.is_empty()) {
            limits.push(l);
            elapsed += l + s(20);
        }
        assert_eq!(&limits[..5], &[m(10); 5]);
        assert_eq!(limits.len(), 6);
        assert!(limits[5] >= SOAK_SHORTEST_RUN && limits[5] < m(10));
        assert!(elapsed >= m(59), "the soak covered {elapsed:?} of an hour");
        // Less than a shortest run left: over. The first run always happens.
        assert_eq!(soak_run_limit(m(60), m(59), m(10), false), None);
        assert_eq!(
            soak_run_limit(s(30), s(0), m(10), true),
            Some(SOAK_SHORTEST_RUN)
        );
    }

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

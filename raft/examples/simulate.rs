//! Runs the Raft simulator over many seeds.
//!
//! `cargo run --release -p floe-raft --example simulate -- --seeds 2000 --start-seed 1`
//! prints `N seeds passed` and exits 0, or the failing seed, the violated invariant and a short
//! trace, and exits 1.

use std::process::ExitCode;

use floe_raft::sim::{SimOptions, run_with};

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| {
        Ok::<_, String>((
            arg(&args, "--seeds", 100)?,
            arg(&args, "--start-seed", 1)?,
            arg(&args, "--safety-ticks", SimOptions::default().safety_ticks)?,
        ))
    })();
    let (seeds, start, safety_ticks) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let opts = SimOptions {
        safety_ticks,
        ..SimOptions::default()
    };
    let mut committed = 0u64;
    let mut leaders = 0usize;
    for seed in start..start + seeds {
        // A panic inside the core or the simulator is a failure of this seed too.
        let outcome = std::panic::catch_unwind(|| run_with(seed, opts));
        match outcome {
            Ok(Ok(r)) => {
                committed += r.committed_end.0;
                leaders += r.leaders;
            }
            Ok(Err(failure)) => {
                print!("{failure}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                println!("seed {seed} failed: panicked (message above)");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{seeds} seeds passed ({committed} offsets committed, {leaders} leader terms)");
    ExitCode::SUCCESS
}

//! The simulator under `cargo test`: a few hundred seeds, determinism, and the seeds that once
//! found bugs (each also has a focused regression test in `tests/regressions.rs`).

use floe_raft::sim::{SimOptions, run_seed, run_with};

#[test]
fn a_few_hundred_seeds_pass() {
    for seed in 1..=300 {
        if let Err(failure) = run_seed(seed) {
            panic!("{failure}");
        }
    }
}

#[test]
fn same_seed_same_trace_hash() {
    for seed in [3, 42, 797] {
        let a = run_seed(seed).map_err(|f| f.to_string()).unwrap();
        let b = run_seed(seed).map_err(|f| f.to_string()).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.committed_end, b.committed_end);
    }
    let a = run_seed(3).map_err(|f| f.to_string()).unwrap();
    let b = run_seed(4).map_err(|f| f.to_string()).unwrap();
    assert_ne!(a.trace_hash, b.trace_hash, "different seeds should differ");
}

#[test]
fn seeds_that_found_bugs_pass() {
    // 1: a follower behind the leader's log start was probed forever instead of snapshotted.
    // 15: a snapshot installed after a corruption report took the state machine backwards.
    // 89: a candidate that reported corruption could still win its election.
    // 397: a damaged voter refused all votes, so a healed cluster could not elect.
    // 797: a follower with a divergent entry at the leader's log start was probed forever.
    // 60775: a damaged replica's repair point inside a batch made the leader send malformed
    //        appends forever.
    // 156401: a replica cut its damaged log, an earlier fsync made the cut durable before the
    //         damage mark was, it crashed, forgot the damage, and helped elect a leader that
    //         lacked committed entries (now: the mark is durable before the log is cut).
    // 101960: a log compacted past the damage point before the cut made the cut fall before
    //         the log start.
    for seed in [1, 15, 89, 397, 797, 60775, 156401, 101960] {
        if let Err(failure) = run_seed(seed) {
            panic!("{failure}");
        }
    }
}

#[test]
fn liveness_holds_with_a_short_fault_phase() {
    let opts = SimOptions {
        safety_ticks: 50,
        liveness_ticks: 300,
    };
    for seed in 1000..1050 {
        let report = run_with(seed, opts).map_err(|f| f.to_string()).unwrap();
        assert!(report.leaders >= 1);
    }
}

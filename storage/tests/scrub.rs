//! The background scrub (`Log::scrub_step`): finds damage in sealed segments that recovery
//! does not scan, a budget at a time, resuming where it stopped and wrapping around.

mod common;

use std::sync::Arc;

use common::*;
use floe_storage::backend::{Directory, FaultDir};
use floe_storage::{CorruptionKind, Error, Log};

const SEG0: &str = "00000000000000000000.log";

fn dyn_dir(d: &FaultDir) -> Arc<dyn Directory> {
    Arc::new(d.clone())
}

/// Appends `n` batches of 1..=3 records (payload `len` bytes); returns each stored batch.
fn fill(log: &mut Log, n: u64, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut b = batch(i, (i % 3 + 1) as u32, len, i as i64);
            log.append(&mut b, 1, 0).unwrap();
            b
        })
        .collect()
}

/// Runs steps of `budget` until one wraps (bounded); returns each step's progress.
fn one_pass(log: &mut Log, budget: u64) -> Vec<floe_storage::ScrubProgress> {
    let mut steps = Vec::new();
    for _ in 0..10_000 {
        let p = log.scrub_step(budget).unwrap();
        let wrapped = p.wrapped;
        steps.push(p);
        if wrapped {
            return steps;
        }
    }
    panic!("no pass completed in 10000 steps of {budget} bytes");
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_found_once_and_never_served() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 40, 200);
    log.sync().unwrap();
    assert!(log.segment_count() > 2);
    log.close().unwrap();
    // A payload bit of the third batch (offsets [3, 6)) of the first, sealed segment.
    let pos = (stored[0].len() + stored[1].len() + 100) as u64;
    assert!(dir.flip_bit(SEG0, pos, 3));
    let mut log = open(&dyn_dir(&dir), &cfg);
    assert!(
        log.corruption().is_empty(),
        "recovery trusts sealed segments"
    );
    let steps = one_pass(&mut log, 256);
    let found: Vec<_> = steps.iter().flat_map(|s| s.found.iter().copied()).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].start,
            found[0].end,
            found[0].kind,
            found[0].segment
        ),
        (3, 6, CorruptionKind::CrcMismatch, 0)
    );
    assert_eq!(log.corruption(), found);
    assert!(matches!(
        log.read(3, 1 << 20),
        Err(Error::Corruption { .. })
    ));
    // The next pass meets it again but reports nothing new.
    let again = one_pass(&mut log, 256);
    assert!(again.iter().all(|s| s.found.is_empty()));
    assert_eq!(log.corruption(), found);
}

#[test]
fn steps_respect_the_budget_resume_and_wrap() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 60, 150);
    log.sync().unwrap();
    let biggest = stored.iter().map(Vec::len).max().unwrap() as u64;
    // One step with an unbounded budget checks every sealed byte and wraps.
    let full = log.scrub_step(u64::MAX).unwrap();
    assert!(full.wrapped && full.found.is_empty());
    let sealed = full.scanned_bytes;
    assert!(
        sealed > 0 && sealed < log.size_bytes(),
        "only sealed segments"
    );
    // Small steps: each within its budget (plus at most one batch), together exactly one
    // pass (resumed where the last stopped: nothing skipped, nothing checked twice).
    for budget in [1, 100, 700] {
        let steps = one_pass(&mut log, budget);
        assert!(
            steps.len() > 1,
            "budget {budget}: a pass takes several steps"
        );
        for s in &steps {
            assert!(
                s.scanned_bytes < budget + biggest,
                "budget {budget}: {}",
                s.scanned_bytes
            );
        }
        let total: u64 = steps.iter().map(|s| s.scanned_bytes).sum();
        assert_eq!(total, sealed, "budget {budget}");
    }
    // A zero budget checks nothing.
    assert_eq!(
        log.scrub_step(0).unwrap(),
        floe_storage::ScrubProgress::default()
    );
}

#[test]
fn a_truncation_mid_pass_does_not_confuse_the_scrub() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 60, 150);
    log.sync().unwrap();
    // Stop the scrub somewhere past the first segment.
    let first = log.scrub_step(5000).unwrap();
    assert!(!first.wrapped);
    // Cut the log back into the first segment, then write different batches over the rest:
    // segments with the same bases but other contents.
    let cut: u64 = (0..5).map(|i| i % 3 + 1).sum();
    log.truncate_suffix(cut).unwrap();
    let _ = stored;
    for i in 0..60u64 {
        let mut b = batch(1000 + i, 1, 90 + (i as usize % 5) * 40, 0);
        log.append(&mut b, 2, 0).unwrap();
    }
    log.sync().unwrap();
    for _ in 0..2 {
        let steps = one_pass(&mut log, 333);
        assert!(steps.iter().all(|s| s.found.is_empty()), "{steps:?}");
    }
    assert!(log.corruption().is_empty());
    assert!(log.verify().unwrap().is_empty());
}

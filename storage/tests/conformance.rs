//! One conformance suite, run against every backend: the real files (+mmap), memory, and the
//! fault backend with no fault armed.

mod common;

use std::sync::Arc;

use common::*;
use floe_storage::backend::{Directory, FaultDir, FileDir, MemDir};
use floe_storage::{Error, HardState, HardStateFile, LogConfig};

/// A directory plus whatever keeps it alive (a temp dir).
#[derive(Debug)]
pub struct Env {
    pub dir: Arc<dyn Directory>,
    _guard: Option<tempfile::TempDir>,
}

fn file_env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    Env {
        dir: Arc::new(FileDir::open(tmp.path().join("log")).expect("dir")),
        _guard: Some(tmp),
    }
}
fn mem_env() -> Env {
    Env {
        dir: Arc::new(MemDir::new()),
        _guard: None,
    }
}
fn fault_env() -> Env {
    Env {
        dir: Arc::new(FaultDir::new()),
        _guard: None,
    }
}

fn append_read_round_trip(env: Env) {
    let cfg = small_config();
    let mut log = open(&env.dir, &cfg);
    let mut expect = Vec::new();
    for i in 0..40u64 {
        let mut b = batch(
            i,
            (i % 4 + 1) as u32,
            50 + (i as usize * 13) % 300,
            1000 + i as i64,
        );
        let info = log.append(&mut b, 1 + i / 10, 0).unwrap();
        assert_eq!(
            info.base_offset,
            expect
                .iter()
                .map(|(_, r, _): &(u64, u32, Vec<u8>)| u64::from(*r))
                .sum::<u64>()
        );
        expect.push((info.base_offset, (i % 4 + 1) as u32, b));
    }
    assert!(log.segment_count() > 1, "small segments rolled");
    let got = read_all(&log, 0);
    assert_eq!(got.len(), expect.len());
    for ((h, bytes), (base, n, b)) in got.iter().zip(&expect) {
        assert_eq!((h.base_offset, h.record_count), (*base, *n));
        assert_eq!(bytes, b);
    }
    // Reads from the middle of a batch return the whole batch.
    let (base, n, b) = &expect[7];
    if *n > 1 {
        let r = log.read(base + 1, 1).unwrap();
        assert_eq!(r.first_offset, *base);
        assert_eq!(&r.bytes[..b.len()], &b[..]);
    }
    // A budget smaller than one batch still returns exactly one whole batch.
    let r = log.read(0, 1).unwrap();
    assert_eq!(r.batches().count(), 1);
    assert_eq!(r.bytes.len(), expect[0].2.len());
    // Reading at the end is empty; past it is an error.
    let end = log.log_end();
    assert!(log.read(end, 100).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(end + 1, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    // Headers and terms.
    assert_eq!(log.batch_header_at(expect[25].0).unwrap().term, 3);
    assert_eq!(
        log.lookup_offset(expect[25].0 + u64::from(expect[25].1) - 1)
            .unwrap(),
        expect[25].0
    );
    // Durability and reopen.
    assert!(log.durable_end() < end);
    assert_eq!(log.sync().unwrap(), end);
    drop(log);
    let log = open(&env.dir, &cfg);
    assert_eq!(log.log_end(), end);
    assert!(log.recovery_report().corruption.is_empty());
    let again = read_all(&log, 0);
    assert_eq!(again, got);
}

fn read_budget_and_limit(env: Env) {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(&env.dir, &cfg);
    for i in 0..10 {
        log.append(&mut batch(i, 1, 100 - 65, 0), 1, 0).unwrap(); // 100-byte batches
    }
    assert_eq!(log.read(0, 350).unwrap().bytes.len(), 300);
    assert_eq!(log.read(0, 400).unwrap().bytes.len(), 400);
    let r = log.read_until(2, 10_000, 5).unwrap();
    assert_eq!((r.first_offset, r.next_offset), (2, 5));
    assert!(log.read_until(5, 10_000, 5).unwrap().bytes.is_empty());
}

fn leader_and_follower_appends(env: Env) {
    let cfg = small_config();
    let mut log = open(&env.dir, &cfg);
    log.append(&mut batch(1, 3, 10, 0), 2, 0).unwrap();
    // Follower: must start at the end.
    let wrong = floe_storage::testing::stamped_batch(5, 2, 1, b"x", 0);
    assert!(matches!(
        log.append_replicated(&wrong, 0),
        Err(Error::NotAtEnd {
            expected: 3,
            got: 5
        })
    ));
    let right = floe_storage::testing::stamped_batch(3, 2, 2, b"xy", 0);
    assert_eq!(log.append_replicated(&right, 0).unwrap().next_offset, 5);
    // Terms never go down.
    assert!(matches!(
        log.append(&mut batch(2, 1, 1, 0), 1, 0),
        Err(Error::TermRegression { last: 2, got: 1 })
    ));
    let old = floe_storage::testing::stamped_batch(5, 1, 1, b"z", 0);
    assert!(matches!(
        log.append_replicated(&old, 0),
        Err(Error::TermRegression { .. })
    ));
    // Bad CRC, oversized, trailing bytes.
    let mut bad = batch(3, 1, 20, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        log.append(&mut bad, 2, 0),
        Err(Error::InvalidBatch(_))
    ));
    let mut big = batch(3, 1, 70_000, 0);
    assert!(matches!(
        log.append(&mut big, 2, 0),
        Err(Error::InvalidBatch(_))
    ));
    let mut trailing = batch(3, 1, 20, 0);
    trailing.push(0);
    assert!(matches!(
        log.append(&mut trailing, 2, 0),
        Err(Error::LengthMismatch { .. })
    ));
    assert_eq!(log.log_end(), 5);
}

fn roll_by_age_and_time_lookup(env: Env) {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: Some(1000),
        ..small_config()
    };
    let mut log = open(&env.dir, &cfg);
    for i in 0..30i64 {
        // now advances 100 ms per batch: a new segment about every 10 batches.
        log.append(
            &mut batch(i as u64, 2, 80, 10_000 + i * 10),
            1,
            (i * 100) as u64,
        )
        .unwrap();
    }
    assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
    for (ts, want) in [
        (0, Some(0)),
        (10_000, Some(0)),
        (10_001, Some(2)),
        (10_150, Some(30)),
        (10_290, Some(58)),
        (10_291, None),
    ] {
        let got = log.lookup_time(ts).unwrap().map(|h| h.base_offset);
        assert_eq!(got, want, "ts {ts}");
    }
    log.sync().unwrap();
    drop(log);
    let mut log = open(&env.dir, &cfg);
    assert_eq!(
        log.lookup_time(10_150).unwrap().map(|h| h.base_offset),
        Some(30)
    );
    // Nothing below the log start is found, though older batches remain on disk.
    log.truncate_prefix(31).unwrap();
    assert_eq!(log.lookup_time(0).unwrap().map(|h| h.base_offset), Some(30));
    log.truncate_prefix(33).unwrap();
    assert_eq!(log.lookup_time(0).unwrap().map(|h| h.base_offset), Some(32));
    assert_eq!(
        log.lookup_time(10_170).unwrap().map(|h| h.base_offset),
        Some(34)
    );
}

fn truncate_suffix_and_prefix(env: Env) {
    let cfg = small_config();
    let mut log = open(&env.dir, &cfg);
    let mut bases = Vec::new();
    for i in 0..50u64 {
        bases.push(
            log.append(&mut batch(i, 2, 150, i as i64), 1, 0)
                .unwrap()
                .base_offset,
        );
    }
    log.sync().unwrap();
    // Not a boundary.
    assert!(matches!(
        log.truncate_suffix(bases[30] + 1),
        Err(Error::NotBatchBoundary { .. })
    ));
    // Hold a read across the truncation: its bytes must stay intact (never overwritten).
    let held = log.read(bases[40], 1 << 20).unwrap();
    let held_copy = held.bytes.to_vec();
    log.truncate_suffix(bases[30]).unwrap();
    assert_eq!(log.log_end(), bases[30]);
    assert!(log.durable_end() <= bases[30]);
    for i in 0..5u64 {
        log.append(&mut batch(1000 + i, 2, 150, 0), 2, 0).unwrap();
    }
    assert_eq!(&held.bytes[..], &held_copy[..]);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 35);
    assert_eq!(all[30].0.term, 2);
    assert_eq!(all[29].0.term, 1);
    log.sync().unwrap();
    // Cut at a segment base: find one.
    // Prefix truncation.
    log.truncate_prefix(bases[20] + 1).unwrap();
    assert_eq!(log.log_start(), bases[20] + 1);
    assert!(matches!(
        log.read(bases[19], 10),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let first = log.read(bases[20] + 1, 10).unwrap();
    assert_eq!(first.first_offset, bases[20]);
    let end = log.log_end();
    drop(log);
    let mut log = open(&env.dir, &cfg);
    assert_eq!((log.log_start(), log.log_end()), (bases[20] + 1, end));
    assert_eq!(read_all(&log, bases[20] + 1).len(), 15);
    // Truncate everything down to the start, then past the end (snapshot install).
    log.truncate_suffix(log.log_start()).unwrap_err();
    log.truncate_prefix(end + 100).unwrap();
    assert_eq!((log.log_start(), log.log_end()), (end + 100, end + 100));
    assert_eq!(
        log.append(&mut batch(7, 1, 10, 0), 3, 0)
            .unwrap()
            .base_offset,
        end + 100
    );
    log.sync().unwrap();
    drop(log);
    let log = open(&env.dir, &cfg);
    assert_eq!((log.log_start(), log.log_end()), (end + 100, end + 101));
}

fn truncate_to_segment_boundaries(env: Env) {
    let cfg = small_config();
    let mut log = open(&env.dir, &cfg);
    for i in 0..40u64 {
        log.append(&mut batch(i, 1, 300, 0), 1, 0).unwrap();
    }
    log.sync().unwrap();
    let n = log.segment_count();
    assert!(n >= 3);
    // Truncating to offset 0 empties the log; appends restart at 0.
    let mut cfg_log = log;
    cfg_log.truncate_suffix(20).unwrap();
    cfg_log.truncate_suffix(0).unwrap();
    assert_eq!(cfg_log.log_end(), 0);
    assert_eq!(
        cfg_log
            .append(&mut batch(1, 1, 1, 0), 5, 0)
            .unwrap()
            .base_offset,
        0
    );
    cfg_log.sync().unwrap();
    drop(cfg_log);
    let log = open(&env.dir, &cfg);
    assert_eq!(log.log_end(), 1);
    assert_eq!(log.batch_header_at(0).unwrap().term, 5);
}

fn retention(env: Env) {
    let cfg = LogConfig {
        retention_bytes: Some(5000),
        retention_ms: Some(1_000),
        ..small_config()
    };
    let mut log = open(&env.dir, &cfg);
    for i in 0..60u64 {
        log.append(&mut batch(i, 1, 200, i as i64 * 100), 1, 0)
            .unwrap();
    }
    log.sync().unwrap();
    let before = log.segment_count();
    // Nothing may be deleted above max_offset.
    assert_eq!(log.apply_retention(0, 0).unwrap(), 0);
    let start = log.apply_retention(0, u64::MAX).unwrap();
    assert!(start > 0 && log.segment_count() < before);
    assert!(log.size_bytes() >= 5000);
    // By age: everything older than now - 1000 ms in sealed segments.
    let start2 = log.apply_retention(6_000 + 1000 + 1, u64::MAX).unwrap();
    assert!(start2 >= start);
    assert!(log.segment_count() >= 1);
    assert_eq!(log.log_end(), 60);
}

fn hard_state(env: Env) {
    let hs = HardStateFile::new(env.dir.clone(), "hardstate");
    assert_eq!(hs.load().unwrap(), None);
    for t in 1..5 {
        let s = HardState {
            term: t,
            vote: (t % 2 == 0).then_some(t),
            commit: t * 10,
        };
        hs.store(&s).unwrap();
        assert_eq!(hs.load().unwrap(), Some(s));
    }
    // Commit-only changes go to the floor, in place; the load returns the larger commit, with
    // the term and vote of the last full store.
    let last = HardState {
        term: 4,
        vote: Some(4),
        commit: 40,
    };
    for commit in [45, 46, 47] {
        hs.store_commit(commit).unwrap();
        assert_eq!(hs.load().unwrap(), Some(HardState { commit, ..last }));
    }
    // Another handle (a restart) reads the same and continues the slots' sequence.
    let again = HardStateFile::new(env.dir.clone(), "hardstate");
    assert_eq!(
        again.load().unwrap(),
        Some(HardState { commit: 47, ..last })
    );
    again.store_commit(48).unwrap();
    assert_eq!(hs.load().unwrap(), Some(HardState { commit: 48, ..last }));
    assert!(!env.dir.list().unwrap().iter().any(|n| n.ends_with(".tmp")));
}

fn verify_clean_log(env: Env) {
    let cfg = small_config();
    let mut log = open(&env.dir, &cfg);
    for i in 0..30u64 {
        log.append(&mut batch(i, 1, 100, 0), 1, 0).unwrap();
    }
    assert!(log.verify().unwrap().is_empty());
    assert!(log.corruption().is_empty());
}

fn clean_close_needs_no_scan(env: Env) {
    let cfg = LogConfig {
        checkpoint_interval_bytes: 1 << 30,
        ..small_config()
    };
    let mut log = open(&env.dir, &cfg);
    for i in 0..30u64 {
        log.append(&mut batch(i, 1, 100, 0), 1 + i / 10, 0).unwrap();
    }
    let end = log.log_end();
    log.close().unwrap();
    let log = open(&env.dir, &cfg);
    assert_eq!(log.log_end(), end);
    assert_eq!(log.recovery_report().scanned_bytes, 0);
    assert_eq!(log.term_at(end - 1).unwrap(), 3);
    assert_eq!(log.term_at(0).unwrap(), 1);
    // Without close, the active segment (no checkpoint: huge interval) is scanned.
    let mut log = log;
    log.append(&mut batch(99, 1, 100, 0), 3, 0).unwrap();
    log.sync().unwrap();
    drop(log);
    let log = open(&env.dir, &cfg);
    assert!(log.recovery_report().scanned_bytes > 0);
    assert_eq!(log.log_end(), end + 1);
}

macro_rules! conformance {
    ($($backend:ident => $env:expr),* $(,)?) => {
        $(
            mod $backend {
                use super::*;
                #[test] fn append_read_round_trip() { super::append_read_round_trip($env) }
                #[test] fn read_budget_and_limit() { super::read_budget_and_limit($env) }
                #[test] fn leader_and_follower_appends() { super::leader_and_follower_appends($env) }
                #[test] fn roll_by_age_and_time_lookup() { super::roll_by_age_and_time_lookup($env) }
                #[test] fn truncate_suffix_and_prefix() { super::truncate_suffix_and_prefix($env) }
                #[test] fn truncate_to_segment_boundaries() { super::truncate_to_segment_boundaries($env) }
                #[test] fn retention() { super::retention($env) }
                #[test] fn hard_state() { super::hard_state($env) }
                #[test] fn verify_clean_log() { super::verify_clean_log($env) }
                #[test] fn clean_close_needs_no_scan() { super::clean_close_needs_no_scan($env) }
            }
        )*
    };
}

conformance! {
    file => file_env(),
    memory => mem_env(),
    fault => fault_env(),
}

/// File backend only: reads are zero-copy slices of one mapping, and bytes a reader holds stay
/// valid and unchanged across roll (file shrink), truncation and segment deletion.
#[test]
fn file_reads_are_zero_copy_and_survive_roll_truncate_and_delete() {
    let env = file_env();
    let cfg = small_config();
    let mut log = open(&env.dir, &cfg);
    for i in 0..3u64 {
        log.append(&mut batch(i, 1, 100, 0), 1, 0).unwrap();
    }
    let a = log.read(1, 100).unwrap().bytes;
    let b = log.read(1, 100).unwrap().bytes;
    assert_eq!(
        a.as_ptr(),
        b.as_ptr(),
        "both slices point into the same mapping"
    );
    let held: Vec<_> = (0..3).map(|o| log.read(o, 10).unwrap().bytes).collect();
    let copies: Vec<Vec<u8>> = held.iter().map(|b| b.to_vec()).collect();
    log.roll().unwrap(); // shrinks the preallocated file to its data
    log.truncate_suffix(2).unwrap(); // cuts inside the now-sealed segment
    log.append(&mut batch(9, 1, 100, 0), 2, 0).unwrap();
    log.truncate_prefix(3).unwrap(); // deletes segment 0 (unlinked while mapped)
    for i in 0..40u64 {
        log.append(&mut batch(10 + i, 1, 200, 0), 2, 0).unwrap();
    }
    log.apply_retention(0, u64::MAX).unwrap();
    for (h, c) in held.iter().zip(&copies) {
        assert_eq!(&h[..], &c[..]);
    }
}

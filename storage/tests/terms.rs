//! The term history (`log.terms`): a batch's term is not covered by its CRC, so a flipped term
//! must be caught against the history on recovery, on every read path and in `verify`, and
//! must never raise `last_term()`. Also: the history across truncations and crashes.

mod common;

use std::sync::Arc;

use common::*;
use floe_storage::backend::{CrashMode, Directory, FaultDir};
use floe_storage::{
    CorruptRange, CorruptionKind, Error, Log, LogConfig, OpenOptions, TermHistoryRecovery,
};

const TERMS: &str = "log.terms";
/// Byte position of the term in a batch header.
const TERM_AT: u64 = 12;

fn dyn_dir(d: &FaultDir) -> Arc<dyn Directory> {
    Arc::new(d.clone())
}

/// Where one appended batch lives.
#[derive(Debug, Clone, Copy)]
struct Placed {
    base: u64,
    next: u64,
    term: u64,
    ts: i64,
    len: u64,
}

/// Appends one batch per term in `terms` (timestamps = index); returns where each went.
fn append_terms(log: &mut Log, terms: &[u64]) -> Vec<Placed> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| {
            let ts = 1_000 + i as i64;
            let mut b = batch(i as u64, (i % 3 + 1) as u32, 300, ts);
            let info = log.append(&mut b, term, 0).unwrap();
            Placed {
                base: info.base_offset,
                next: info.next_offset,
                term,
                ts,
                len: b.len() as u64,
            }
        })
        .collect()
}

/// The segment file and byte position of `target` (segments roll only when full here).
fn locate(dir: &FaultDir, placed: &[Placed], target: usize) -> (String, u64) {
    let mut bases: Vec<u64> = dir
        .list()
        .unwrap()
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort();
    let seg = *bases
        .iter()
        .rev()
        .find(|&&b| b <= placed[target].base)
        .unwrap();
    let pos = placed[..target]
        .iter()
        .filter(|p| p.base >= seg)
        .map(|p| p.len)
        .sum();
    (format!("{seg:020}.log"), pos)
}

fn expect_term_damage(result: Result<impl std::fmt::Debug, Error>, p: Placed, what: &str) {
    match result {
        Err(Error::Corruption { range }) => {
            assert_eq!(
                (range.start, range.end, range.kind),
                (p.base, p.next, CorruptionKind::TermMismatch),
                "{what}"
            );
        }
        other => panic!("{what}: expected a term mismatch, got {other:?}"),
    }
}

/// Every read path refuses the damaged batch, reads before it stop short of it, and the other
/// batches are served with their own terms.
fn check_detected(log: &mut Log, placed: &[Placed], target: usize) {
    let p = placed[target];
    expect_term_damage(log.read(p.base, 1 << 20), p, "read");
    expect_term_damage(log.read_until(p.base, 1 << 20, u64::MAX), p, "read_until");
    expect_term_damage(log.batch_header_at(p.base), p, "batch_header_at");
    expect_term_damage(log.term_at(p.next - 1), p, "term_at");
    expect_term_damage(log.lookup_offset(p.base), p, "lookup_offset");
    expect_term_damage(log.lookup_time(p.ts), p, "lookup_time");
    for (i, q) in placed.iter().enumerate() {
        if i == target {
            continue;
        }
        assert_eq!(log.term_at(q.base).unwrap(), q.term, "batch {i}");
        let r = log.read(q.base, 1 << 20).unwrap();
        assert!(
            r.next_offset <= p.base || r.first_offset >= p.next,
            "read at {} served the damaged batch [{}, {})",
            q.base,
            p.base,
            p.next
        );
        for b in r.batches() {
            let h = floe_protocol::batch::BatchHeader::parse(&b).unwrap();
            let want = placed.iter().find(|x| x.base == h.base_offset).unwrap();
            assert_eq!(h.term, want.term);
        }
    }
    let found = log.verify().unwrap();
    assert!(
        found
            .iter()
            .any(|r| (r.start, r.end, r.kind) == (p.base, p.next, CorruptionKind::TermMismatch)),
        "verify: {found:?}"
    );
    assert!(log.corruption().iter().any(|r| r.start == p.base));
    assert_eq!(log.last_term(), 2, "a flipped term never raises last_term");
}

/// Terms 1 then 2 over several segments; returns the log, its placement, and the config.
fn two_terms(dir: &FaultDir) -> (Log, Vec<Placed>, LogConfig) {
    let cfg = small_config();
    let mut log = open(&dyn_dir(dir), &cfg);
    let terms: Vec<u64> = (0..30).map(|i| if i < 6 { 1 } else { 2 }).collect();
    let placed = append_terms(&mut log, &terms);
    assert!(log.segment_count() >= 3);
    log.sync().unwrap();
    assert_eq!(log.term_history(), vec![(1, 0), (2, placed[6].base)]);
    (log, placed, cfg)
}

#[test]
fn flipped_term_in_sealed_segment_is_detected_and_never_served() {
    let dir = FaultDir::new();
    let (mut log, placed, cfg) = two_terms(&dir);
    // A term-2 batch in the second segment: 2 -> 3 keeps the terms monotone up to it.
    let active = locate(&dir, &placed, placed.len() - 1).0;
    let target = (0..placed.len())
        .find(|&i| placed[i].term == 2 && locate(&dir, &placed, i).0 != active)
        .unwrap();
    let (name, pos) = locate(&dir, &placed, target);
    assert!(dir.flip_bit(&name, pos + TERM_AT, 0));
    check_detected(&mut log, &placed, target);
    // After a crash: the sealed segment is trusted (not scanned) at open, but every read and
    // the scrub still check it.
    drop(log);
    let after = dir.crash(CrashMode::DropUnsynced);
    let mut log = open(&dyn_dir(&after), &cfg);
    assert_eq!(
        log.recovery_report().term_history,
        TermHistoryRecovery::Loaded
    );
    assert_eq!(log.log_end(), placed.last().unwrap().next);
    check_detected(&mut log, &placed, target);
}

#[test]
fn flipped_term_of_last_batch_is_detected_without_reopen() {
    let dir = FaultDir::new();
    let (mut log, placed, _) = two_terms(&dir);
    let target = placed.len() - 1;
    let (name, pos) = locate(&dir, &placed, target);
    // 2 -> 3: the last batch's term rises; before the term history this passed every check.
    assert!(dir.flip_bit(&name, pos + TERM_AT, 0));
    check_detected(&mut log, &placed, target);
}

#[test]
fn flipped_term_in_active_segment_is_found_by_recovery() {
    for floor in [false, true] {
        let dir = FaultDir::new();
        let (log, placed, cfg) = two_terms(&dir);
        let target = placed.len() - 1;
        let p = placed[target];
        let (name, pos) = locate(&dir, &placed, target);
        assert!(dir.flip_bit(&name, pos + TERM_AT, 0));
        drop(log);
        let after = dir.crash(CrashMode::DropUnsynced);
        let opts = OpenOptions {
            durable_floor: floor.then_some(p.next),
            ..OpenOptions::default()
        };
        let mut log = Log::open(dyn_dir(&after), cfg.clone(), opts).unwrap();
        let report = log.recovery_report().clone();
        if floor {
            // Durable data: damage, reported with its range, kept out of the log's reads.
            assert_eq!(
                report.corruption,
                vec![CorruptRange {
                    start: p.base,
                    end: p.next,
                    segment: report.corruption[0].segment,
                    position: pos,
                    kind: CorruptionKind::TermMismatch,
                }]
            );
            assert!(report.torn_tail.is_none());
            assert_eq!(log.log_end(), p.next);
            check_detected(&mut log, &placed, target);
        } else {
            // Past the durable point recovery knows of: cut as a torn tail, as for a CRC failure.
            assert!(report.corruption.is_empty());
            assert_eq!(report.torn_tail.map(|t| t.offset), Some(p.base));
            assert_eq!(log.log_end(), p.base);
            assert_eq!(log.last_term(), 2);
            assert_eq!(read_all(&log, 0).len(), target);
        }
    }
}

#[test]
fn truncation_keeps_history_in_step_through_crashes() {
    let cfg = small_config();
    for seed in 0..12u64 {
        let dir = FaultDir::new();
        let mut log = open(&dyn_dir(&dir), &cfg);
        let terms = [1, 1, 2, 2, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5];
        let placed = append_terms(&mut log, &terms);
        log.sync().unwrap();
        let starts = |t: u64| placed.iter().find(|p| p.term == t).unwrap().base;
        assert_eq!(
            log.term_history(),
            vec![(1, 0), (2, starts(2)), (3, starts(3)), (5, starts(5))]
        );
        // Cut in the middle of term 3, then exactly at the start of term 3.
        log.truncate_suffix(placed[6].base).unwrap();
        assert_eq!(
            log.term_history(),
            vec![(1, 0), (2, starts(2)), (3, starts(3))]
        );
        assert_eq!(log.last_term(), 3);
        log.truncate_suffix(starts(3)).unwrap();
        assert_eq!(log.term_history(), vec![(1, 0), (2, starts(2))]);
        assert_eq!(log.last_term(), 2);
        // Power loss right after the cut: the history and the log agree.
        drop(log);
        let dir = dir.crash(CrashMode::Torn { seed });
        let mut log = open(&dyn_dir(&dir), &cfg);
        assert!(log.recovery_report().corruption.is_empty());
        assert_eq!(log.log_end(), starts(3));
        assert_eq!(log.term_history(), vec![(1, 0), (2, starts(2))]);
        assert_eq!(log.last_term(), 2);
        // A new leader of term 4 writes where term 3 was; lose it unsynced, then write term 4
        // again: the history entry written ahead of a lost batch must not linger.
        let mut b = batch(99, 2, 100, 0);
        log.append(&mut b, 4, 0).unwrap();
        drop(log);
        let dir = dir.crash(CrashMode::DropUnsynced);
        let mut log = open(&dyn_dir(&dir), &cfg);
        assert_eq!(log.log_end(), starts(3));
        assert_eq!(log.last_term(), 2);
        assert_eq!(log.term_history(), vec![(1, 0), (2, starts(2))]);
        let info = log.append(&mut batch(98, 1, 100, 0), 2, 0).unwrap();
        log.sync().unwrap();
        assert_eq!(log.term_at(info.base_offset).unwrap(), 2);
        // Retention-style prefix cut: entries wholly below the start go, the covering one stays.
        log.truncate_prefix(starts(2) + 1).unwrap();
        assert_eq!(log.term_history(), vec![(2, starts(2))]);
        drop(log);
        let dir = dir.crash(CrashMode::Torn { seed: seed + 100 });
        let mut log = open(&dyn_dir(&dir), &cfg);
        assert!(log.recovery_report().corruption.is_empty());
        assert_eq!(log.term_history(), vec![(2, starts(2))]);
        assert_eq!((log.log_end(), log.last_term()), (info.next_offset, 2));
        for (h, _) in read_all(&log, log.log_start()) {
            assert_eq!(h.term, 2);
        }
        assert!(log.verify().unwrap().is_empty());
        // A snapshot past the end empties the log: any term may follow.
        let past = log.log_end() + 10;
        log.truncate_prefix(past).unwrap();
        assert_eq!(log.last_term(), 0);
        log.append(&mut batch(7, 1, 10, 0), 1, 0).unwrap();
        assert_eq!(log.term_history(), vec![(1, past)]);
        log.sync().unwrap();
        drop(log);
        let dir = dir.crash(CrashMode::DropUnsynced);
        let log = open(&dyn_dir(&dir), &cfg);
        assert_eq!((log.log_start(), log.last_term()), (past, 1));
        assert_eq!(log.term_at(past).unwrap(), 1);
    }
}

#[test]
fn crash_between_log_cut_and_history_rewrite_is_safe() {
    // truncate_suffix cuts the log first, then rewrites the history: a crash in between
    // leaves entries past the log end. Recovery must drop them durably, so a lower term
    // written there later is not taken for damage.
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let placed = append_terms(&mut log, &[1, 1, 3, 3, 3]);
    log.sync().unwrap();
    let stale = dir.contents(TERMS).unwrap();
    log.truncate_suffix(placed[2].base).unwrap();
    drop(log);
    dir.put_durable(TERMS, &stale); // the state before the rewrite
    let dir = dir.crash(CrashMode::DropUnsynced);
    let mut log = open(&dyn_dir(&dir), &cfg);
    assert!(log.recovery_report().corruption.is_empty());
    assert_eq!(log.term_history(), vec![(1, 0)]);
    log.append(&mut batch(5, 1, 50, 0), 2, 0).unwrap();
    log.append(&mut batch(6, 1, 50, 0), 2, 0).unwrap();
    log.sync().unwrap();
    drop(log);
    let dir = dir.crash(CrashMode::DropUnsynced);
    let mut log = Log::open(
        dyn_dir(&dir),
        cfg,
        OpenOptions {
            durable_floor: Some(placed[2].base + 2),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert!(log.recovery_report().corruption.is_empty());
    assert_eq!(log.term_history(), vec![(1, 0), (2, placed[2].base)]);
    assert_eq!(log.last_term(), 2);
    assert!(log.verify().unwrap().is_empty());
}

#[test]
fn missing_or_damaged_history_is_rebuilt_and_reported() {
    let cfg = small_config();
    for damaged in [false, true] {
        let dir = FaultDir::new();
        let mut log = open(&dyn_dir(&dir), &cfg);
        assert_eq!(
            log.recovery_report().term_history,
            TermHistoryRecovery::Created
        );
        let placed = append_terms(&mut log, &[1, 1, 2, 2, 4, 4, 4]);
        log.close().unwrap();
        if damaged {
            assert!(dir.flip_bit(TERMS, 9, 3));
        } else {
            dir.remove(TERMS).unwrap();
        }
        let log = open(&dyn_dir(&dir), &cfg);
        assert_eq!(
            log.recovery_report().term_history,
            TermHistoryRecovery::Rebuilt { damaged }
        );
        let end = placed.last().unwrap().next;
        assert_eq!(log.unverified_terms_end(), end);
        assert_eq!(
            log.term_history(),
            vec![(1, 0), (2, placed[2].base), (4, placed[4].base)]
        );
        assert_eq!(log.last_term(), 4);
        // Written back: the next open loads it and still says what was unverified.
        drop(log);
        let dir = dir.crash(CrashMode::DropUnsynced);
        let mut log = open(&dyn_dir(&dir), &cfg);
        assert_eq!(
            log.recovery_report().term_history,
            TermHistoryRecovery::Loaded
        );
        assert_eq!(log.unverified_terms_end(), end);
        // From now on a flip is caught again.
        let (name, pos) = locate(&dir, &placed, 3);
        assert!(dir.flip_bit(&name, pos + TERM_AT, 2)); // 2 -> 6
        expect_term_damage(log.term_at(placed[3].base), placed[3], "after rebuild");
        assert_eq!(log.last_term(), 4);
        // A cut below the unverified end lowers it.
        log.truncate_suffix(placed[2].base).unwrap();
        assert_eq!(log.unverified_terms_end(), placed[2].base);
    }
}

#[test]
fn a_new_term_is_durable_before_its_first_batch() {
    // Under `Never`, nothing but the history is fsynced before a roll: after a power loss the
    // history may be ahead of the batches, never behind them.
    let cfg = LogConfig {
        fsync: floe_storage::FsyncPolicy::Never,
        ..small_config()
    };
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    append_terms(&mut log, &[1, 1, 2]);
    let syncs = dir.sync_count();
    append_terms(&mut log, &[2, 2, 2]);
    assert_eq!(dir.sync_count(), syncs, "no sync per append within a term");
    append_terms(&mut log, &[3]);
    assert_eq!(dir.sync_count(), syncs + 2, "one atomic write per new term");
    let after = dir.crash(CrashMode::KeepAll);
    let log = open(&dyn_dir(&after), &cfg);
    assert_eq!(log.last_term(), 3);
    let names = dir.crash(CrashMode::DropUnsynced).list().unwrap();
    assert!(names.iter().any(|n| n == TERMS));
}

#[test]
fn failed_history_rewrite_after_a_cut_is_redone_before_the_next_append() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    append_terms(&mut log, &[1, 1, 1]);
    log.roll().unwrap();
    let cut = log.log_end();
    append_terms(&mut log, &[3, 3]);
    log.sync().unwrap();
    let stale = dir.contents(TERMS).unwrap();
    // Disk full: the cut itself needs no new bytes, the history rewrite does and fails.
    dir.set_space_limit(Some(0));
    log.truncate_suffix(cut).unwrap();
    assert_eq!(log.term_history(), vec![(1, 0)]);
    assert_eq!(
        dir.contents(TERMS).unwrap(),
        stale,
        "still the old file on disk"
    );
    // The next append must rewrite the history first: here it cannot, so no batch is written.
    let full = log.append(&mut batch(50, 1, 50, 0), 1, 0);
    assert!(matches!(full, Err(Error::NoSpace { .. })), "{full:?}");
    assert_eq!(log.log_end(), cut);
    dir.set_space_limit(None);
    // Same term as before the cut: only the stale file forces the rewrite.
    let info = log.append(&mut batch(51, 1, 50, 0), 1, 0).unwrap();
    assert_ne!(dir.contents(TERMS).unwrap(), stale);
    log.sync().unwrap();
    drop(log);
    let dir = dir.crash(CrashMode::DropUnsynced);
    let opts = OpenOptions {
        durable_floor: Some(info.next_offset),
        ..OpenOptions::default()
    };
    let mut log = Log::open(dyn_dir(&dir), cfg, opts).unwrap();
    assert!(log.recovery_report().corruption.is_empty());
    assert_eq!(log.term_history(), vec![(1, 0)]);
    assert_eq!(log.term_at(info.base_offset).unwrap(), 1);
    assert!(log.verify().unwrap().is_empty());
}

//! Crash and corruption tests through the fault backend.

mod common;

use std::sync::Arc;

use common::*;
use floe_storage::backend::{CrashMode, Directory, FaultDir};
use floe_storage::{
    CorruptionKind, Error, ErrorClass, HardState, HardStateFile, IoOp, Log, LogConfig, LogWriter,
    OpenOptions,
};

const SEG0: &str = "00000000000000000000.log";
const IDX0: &str = "00000000000000000000.index";

fn dyn_dir(d: &FaultDir) -> Arc<dyn Directory> {
    Arc::new(d.clone())
}

/// Appends `n` batches of 1..=3 records; returns the stored bytes of each.
fn fill(log: &mut Log, n: u64, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut b = batch(i, (i % 3 + 1) as u32, len, i as i64);
            log.append(&mut b, 1, 0).unwrap();
            b
        })
        .collect()
}

#[test]
fn torn_final_write_is_cut_and_durable_prefix_kept() {
    let cfg = small_config();
    for seed in 0..60u64 {
        let dir = FaultDir::new();
        let mut log = open(&dyn_dir(&dir), &cfg);
        let stored = fill(&mut log, 12, 100 + (seed as usize % 7) * 50);
        let durable = log.sync().unwrap();
        let more = fill(&mut log, 5, 333);
        let end = log.log_end();
        drop(log);
        let after = dir.crash(CrashMode::Torn { seed });
        let log = open(&dyn_dir(&after), &cfg);
        assert!(
            log.log_end() >= durable && log.log_end() <= end,
            "seed {seed}"
        );
        assert!(log.recovery_report().corruption.is_empty(), "seed {seed}");
        let got = read_all(&log, 0);
        let all: Vec<_> = stored.iter().chain(&more).collect();
        for (i, (_, bytes)) in got.iter().enumerate() {
            assert_eq!(bytes, all[i], "seed {seed} batch {i}");
        }
        // Recovery is idempotent.
        let end1 = log.log_end();
        drop(log);
        let again = open(&dyn_dir(&after.crash(CrashMode::DropUnsynced)), &cfg);
        assert_eq!(again.log_end(), end1, "seed {seed}");
        assert_eq!(read_all(&again, 0), got);
    }
}

#[test]
fn unsynced_data_is_lost_on_power_loss_but_not_on_process_crash() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    fill(&mut log, 3, 100);
    let durable = log.sync().unwrap();
    fill(&mut log, 3, 100);
    let end = log.log_end();
    drop(log);
    let killed = open(&dyn_dir(&dir.crash(CrashMode::KeepAll)), &cfg);
    assert_eq!(killed.log_end(), end);
    let lost = open(&dyn_dir(&dir.crash(CrashMode::DropUnsynced)), &cfg);
    assert_eq!(lost.log_end(), durable);
}

#[test]
fn bit_flip_in_sealed_segment_is_detected_reported_and_never_served() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 40, 200);
    log.sync().unwrap();
    assert!(log.segment_count() > 2);
    drop(log);
    // Flip a payload bit of the third batch of segment 0.
    let pos = (stored[0].len() + stored[1].len() + 100) as u64;
    assert!(dir.flip_bit(SEG0, pos, 3));
    let mut log = open(&dyn_dir(&dir), &cfg);
    // Batch 2 starts at offset 1 + 2 = 3.
    let err = log.read(3, 1 << 20).unwrap_err();
    let Error::Corruption { range } = err else {
        panic!("expected corruption, got {err:?}")
    };
    assert_eq!(
        (range.start, range.end, range.kind),
        (3, 6, CorruptionKind::CrcMismatch)
    );
    // A read that starts before it stops before it; reads after it work.
    let r = log.read(0, 1 << 20).unwrap();
    assert_eq!(r.next_offset, 3);
    assert!(log.read(6, 1 << 20).is_ok());
    // The scrub reports it and remembers it.
    let found = log.verify().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].start, found[0].end), (3, 6));
    assert_eq!(log.corruption(), found);
    assert_eq!(
        log.batch_header_at(3).unwrap_err().class(),
        ErrorClass::Rejected
    );
}

#[test]
fn damaged_header_is_skipped_to_the_next_index_entry() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 40, 100);
    log.sync().unwrap();
    drop(log);
    // Corrupt batch_len of the first batch (byte 8).
    dir.flip_bit(SEG0, 9, 7);
    let mut log = open(&dyn_dir(&dir), &cfg);
    let found = log.verify().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].start, 0);
    let resume = found[0].end;
    assert!(resume > 0);
    assert!(matches!(log.read(0, 100), Err(Error::Corruption { .. })));
    let r = log.read(resume, 1 << 20).unwrap();
    assert_eq!(r.first_offset, resume);
    let _ = stored;
}

#[test]
fn corruption_in_durable_tail_is_reported_not_truncated() {
    // No index checkpoint: recovery scans the whole (only) segment.
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        checkpoint_interval_bytes: 1 << 20,
        ..small_config()
    };
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 10, 100);
    let end = log.sync().unwrap();
    drop(log);
    // Damage the payload of batch 5 (one segment only: the active one).
    let pos: usize = stored[..5].iter().map(Vec::len).sum::<usize>() + 80;
    dir.flip_bit(SEG0, pos as u64, 0);
    // Raft says everything below `end` was durable.
    let opts = OpenOptions {
        now_ms: 0,
        durable_floor: Some(end),
    };
    let log = Log::open(dyn_dir(&dir), cfg.clone(), opts).unwrap();
    assert_eq!(log.log_end(), end, "not truncated");
    let report = log.recovery_report();
    assert_eq!(report.corruption.len(), 1);
    let range = report.corruption[0];
    assert_eq!(range.kind, CorruptionKind::CrcMismatch);
    assert!(matches!(
        log.read(range.start, 10),
        Err(Error::Corruption { .. })
    ));
    assert!(log.read(range.end, 10).is_ok());
    // Without the floor and without a checkpoint covering it, the same damage looks like a
    // torn tail: it is cut (documented limitation of FsyncPolicy without a floor).
    let log = open(&dyn_dir(&dir.crash(CrashMode::KeepAll)), &cfg);
    assert!(log.log_end() < end);
}

#[test]
fn corruption_below_the_checkpoint_is_trusted_then_caught_on_read() {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        checkpoint_interval_bytes: 512,
        ..small_config()
    };
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 10, 100);
    let end = log.sync().unwrap();
    drop(log);
    assert!(dir.contents(IDX0).is_some(), "checkpoint written");
    let pos: usize = stored[..2].iter().map(Vec::len).sum::<usize>() + 70;
    dir.flip_bit(SEG0, pos as u64, 0);
    let mut log = open(&dyn_dir(&dir), &cfg);
    assert_eq!(
        log.log_end(),
        end,
        "the checkpointed prefix is durable: never cut"
    );
    assert!(matches!(log.read(3, 10), Err(Error::Corruption { range }) if range.start == 3));
    assert_eq!(log.verify().unwrap().len(), 1);
}

#[test]
fn lost_durable_tail_below_floor_is_reported() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    fill(&mut log, 3, 100);
    let end = log.sync().unwrap();
    drop(log);
    let opts = OpenOptions {
        now_ms: 0,
        durable_floor: Some(end + 10),
    };
    let log = Log::open(dyn_dir(&dir), cfg, opts).unwrap();
    assert_eq!(log.log_end(), end);
    let c = &log.recovery_report().corruption;
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].start, c[0].end, c[0].kind),
        (end, end + 10, CorruptionKind::Missing)
    );
}

#[test]
fn missing_or_damaged_index_is_rebuilt() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    fill(&mut log, 40, 200);
    log.sync().unwrap();
    let expect = read_all(&log, 0);
    drop(log);
    dir.remove(IDX0).unwrap();
    let log = open(&dyn_dir(&dir), &cfg);
    assert_eq!(log.recovery_report().rebuilt_indexes, vec![0]);
    assert_eq!(read_all(&log, 0), expect);
    drop(log);
    assert!(dir.contents(IDX0).is_some(), "index written back");
    dir.flip_bit(IDX0, 20, 1);
    let log = open(&dyn_dir(&dir), &cfg);
    assert_eq!(log.recovery_report().rebuilt_indexes, vec![0]);
    assert_eq!(read_all(&log, 0), expect);
    assert_eq!(
        log.lookup_offset(30).unwrap(),
        expect
            .iter()
            .rev()
            .find(|(h, _)| h.base_offset <= 30)
            .unwrap()
            .0
            .base_offset
    );
}

#[test]
fn fsync_failure_is_fatal_and_never_retried() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    fill(&mut log, 3, 100);
    let durable = log.sync().unwrap();
    fill(&mut log, 3, 100);
    dir.fail_syncs(true);
    let err = log.sync().unwrap_err();
    assert!(err.is_fatal());
    assert!(matches!(err, Error::Failed(f) if f.op == IoOp::SyncData && f.os_code == Some(5)));
    assert_eq!(log.durable_end(), durable);
    // Even when the disk "recovers", the log refuses writes and syncs.
    dir.fail_syncs(false);
    assert!(matches!(
        log.append(&mut batch(1, 1, 1, 0), 1, 0),
        Err(Error::Failed(_))
    ));
    assert!(matches!(log.sync(), Err(Error::Failed(_))));
    assert!(log.failure().is_some());
    // Reads still work; a restart recovers the durable prefix.
    assert!(log.read(0, 100).is_ok());
    let syncs = dir.sync_count();
    drop(log);
    assert_eq!(dir.sync_count(), syncs, "no sync retried on drop");
    let log = open(&dyn_dir(&dir.crash(CrashMode::DropUnsynced)), &cfg);
    assert_eq!(log.log_end(), durable);
}

#[test]
fn write_eio_is_fatal() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    fill(&mut log, 2, 100);
    dir.fail_writes(true);
    let err = log.append(&mut batch(9, 1, 10, 0), 1, 0).unwrap_err();
    assert!(matches!(err, Error::Failed(f) if f.op == IoOp::Append));
    dir.fail_writes(false);
    assert!(
        log.append(&mut batch(9, 1, 10, 0), 1, 0)
            .unwrap_err()
            .is_fatal()
    );
}

#[test]
fn disk_full_is_clean_and_recoverable() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 5, 100);
    let durable = log.sync().unwrap();
    dir.set_space_limit(Some(150));
    let err = log.append(&mut batch(7, 1, 300, 0), 1, 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSpace {
                op: IoOp::Append,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(log.log_end(), durable);
    assert!(log.failure().is_none());
    let got = read_all(&log, 0);
    assert_eq!(
        got.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        stored
    );
    // A crash now keeps everything durable (the partial write is a torn tail).
    let crashed = open(&dyn_dir(&dir.crash(CrashMode::KeepAll)), &cfg);
    assert_eq!(crashed.log_end(), durable);
    drop(crashed);
    // Space frees: the same log continues, overwriting the partial bytes.
    dir.set_space_limit(None);
    let mut b = batch(7, 1, 300, 0);
    assert_eq!(log.append(&mut b, 1, 0).unwrap().base_offset, durable);
    log.sync().unwrap();
    drop(log);
    let log = open(&dyn_dir(&dir.crash(CrashMode::DropUnsynced)), &cfg);
    assert_eq!(read_all(&log, 0).last().unwrap().1, b);
}

#[test]
fn truncated_suffix_never_comes_back_after_crash() {
    let cfg = small_config();
    for seed in 0..40 {
        let dir = FaultDir::new();
        let mut log = open(&dyn_dir(&dir), &cfg);
        fill(&mut log, 30, 150);
        log.sync().unwrap();
        let cut = log.read(0, 1 << 20).unwrap().next_offset + 3 * (seed % 5);
        let cut = log.lookup_offset(cut).unwrap();
        log.truncate_suffix(cut).unwrap();
        let mut b = batch(999, 2, 120, 0);
        log.append(&mut b, 2, 0).unwrap();
        let synced = seed % 2 == 0;
        if synced {
            log.sync().unwrap();
        }
        drop(log);
        let log = open(&dyn_dir(&dir.crash(CrashMode::Torn { seed })), &cfg);
        let got = read_all(&log, 0);
        assert!(
            got.iter().all(|(h, _)| h.base_offset < cut || h.term == 2),
            "seed {seed}"
        );
        assert!(
            log.log_end() == cut || log.log_end() == cut + 2,
            "seed {seed}"
        );
        if synced {
            assert_eq!(log.log_end(), cut + 2);
        }
    }
}

#[test]
fn hard_state_damage_and_failed_store() {
    let dir = FaultDir::new();
    let hs = HardStateFile::new(dyn_dir(&dir), "hardstate");
    let s1 = HardState {
        term: 4,
        vote: Some(2),
        commit: 10,
    };
    hs.store(&s1).unwrap();
    dir.fail_syncs(true);
    let err = hs.store(&HardState { term: 5, ..s1 }).unwrap_err();
    assert!(err.is_fatal());
    let after = dir.crash(CrashMode::DropUnsynced);
    let hs2 = HardStateFile::new(dyn_dir(&after), "hardstate");
    assert_eq!(hs2.load().unwrap(), Some(s1));
    after.flip_bit("hardstate", 9, 0);
    assert!(matches!(hs2.load(), Err(Error::BadMetaFile { .. })));
}

#[test]
fn the_commit_floor_is_one_sync_in_place_and_survives_torn_writes_and_damage() {
    let dir = FaultDir::new();
    let hs = HardStateFile::new(dyn_dir(&dir), "hardstate");
    let s1 = HardState {
        term: 4,
        vote: Some(2),
        commit: 10,
    };
    hs.store(&s1).unwrap();
    let main = dir.contents("hardstate").expect("hard-state file");
    // The first floor creates its file (atomically); every later one is one in-place write
    // and one sync (no new file, no rename, no directory sync).
    hs.store_commit(20).unwrap();
    for commit in [30, 40] {
        let syncs = dir.sync_count();
        hs.store_commit(commit).unwrap();
        assert_eq!(dir.sync_count(), syncs + 1, "one sync per floor");
    }
    assert_eq!(
        dir.contents("hardstate"),
        Some(main),
        "term and vote untouched"
    );
    assert!(!dir.list().unwrap().iter().any(|n| n.ends_with(".tmp")));
    let with = |commit| Some(HardState { commit, ..s1 });
    assert_eq!(hs.load().unwrap(), with(40));
    // Power loss: what was synced survives.
    let after = dir.crash(CrashMode::DropUnsynced);
    assert_eq!(
        HardStateFile::new(dyn_dir(&after), "hardstate")
            .load()
            .unwrap(),
        with(40)
    );

    // A floor whose sync failed was never reported durable: a power loss may tear its write
    // anywhere; the previous floor is then read (never an error, never the torn bytes).
    dir.fail_syncs(true);
    assert!(hs.store_commit(50).unwrap_err().is_fatal());
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let torn = dir.crash(CrashMode::Torn { seed });
        let got = HardStateFile::new(dyn_dir(&torn), "hardstate")
            .load()
            .unwrap();
        assert!(got == with(40) || got == with(50), "seed {seed}: {got:?}");
        seen.insert(got.map(|s| s.commit));
    }
    assert!(
        seen.contains(&Some(40)),
        "some seed tears the write: {seen:?}"
    );

    // Media damage in the newest slot falls back to the older floor, in both slots to the
    // hard-state file's commit: lower commits, which only make recovery more careful.
    let damaged = after.crash(CrashMode::DropUnsynced);
    let hs2 = HardStateFile::new(dyn_dir(&damaged), "hardstate");
    // Floors 20, 30, 40 had sequence numbers 1, 2, 3: 40 is in slot 1 (at 512), 30 in slot 0.
    assert!(damaged.flip_bit("hardstate.commit", 512 + 17, 3));
    assert_eq!(hs2.load().unwrap(), with(30));
    // The next floor goes to the damaged slot, never over the newest valid one.
    hs2.store_commit(60).unwrap();
    assert_eq!(hs2.load().unwrap(), with(60));
    let again = damaged.crash(CrashMode::DropUnsynced);
    assert!(again.flip_bit("hardstate.commit", 512 + 17, 3));
    assert!(again.flip_bit("hardstate.commit", 17, 3));
    let hs3 = HardStateFile::new(dyn_dir(&again), "hardstate");
    assert_eq!(hs3.load().unwrap(), with(10));
    // A floor file with no valid slot is replaced whole.
    hs3.store_commit(70).unwrap();
    assert_eq!(hs3.load().unwrap(), with(70));
    // A full store keeps the larger commit of the two files.
    hs3.store(&HardState { term: 5, ..s1 }).unwrap();
    assert_eq!(
        hs3.load().unwrap(),
        Some(HardState {
            term: 5,
            vote: Some(2),
            commit: 70
        })
    );
}

#[test]
fn writer_group_commits_from_many_threads() {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let dir = FaultDir::new();
    let log = open(&dyn_dir(&dir), &cfg);
    let writer = Arc::new(LogWriter::spawn(log));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            std::thread::spawn(move || {
                let pending: Vec<_> = (0..50)
                    .map(|i| w.append_async(batch(t * 100 + i, 1, 50, 0), 1).unwrap())
                    .collect();
                pending
                    .into_iter()
                    .map(|p| {
                        let a = p.wait().unwrap();
                        assert!(a.durable_end >= a.info.next_offset);
                        a.info.base_offset
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..200).collect::<Vec<_>>());
    // Queued appends were grouped: fewer fsyncs than appends.
    assert!(dir.sync_count() < 200, "{} syncs", dir.sync_count());
    let reader = writer.reader();
    assert_eq!(reader.durable_end().unwrap(), 200);
    assert_eq!(reader.read(199, 10).unwrap().next_offset, 200);
    assert_eq!(reader.term_at(199).unwrap(), 1);
    assert_eq!(
        reader.lookup_time(0).unwrap().map(|h| h.base_offset),
        Some(0)
    );
    // A truncation goes through the writer, in order.
    writer
        .exec(|log| log.truncate_suffix(150))
        .unwrap()
        .unwrap();
    assert_eq!(reader.log_end().unwrap(), 150);
    // An fsync failure fails every caller of the group and the log.
    dir.fail_syncs(true);
    let err = writer.append(batch(1, 1, 10, 0), 1).unwrap_err();
    assert!(err.is_fatal());
    assert!(writer.append(batch(1, 1, 10, 0), 1).unwrap_err().is_fatal());
    drop(reader);
    let writer = Arc::try_unwrap(writer).unwrap();
    let log = writer.shutdown().unwrap();
    assert!(log.failure().is_some());
}

#[test]
fn lost_index_of_a_cut_segment_does_not_resurrect_the_cut() {
    let cfg = small_config();
    for cut_at_base in [false, true] {
        let dir = FaultDir::new();
        let mut log = open(&dyn_dir(&dir), &cfg);
        fill(&mut log, 30, 150);
        log.sync().unwrap();
        // Cut inside segment 0, or exactly at the base of segment 1.
        let seg1_base = log.read(0, 1 << 30).unwrap().next_offset;
        let cut = if cut_at_base {
            seg1_base
        } else {
            log.lookup_offset(seg1_base / 2).unwrap()
        };
        log.truncate_suffix(cut).unwrap();
        drop(log);
        // The index of the segment before the cut is lost (media damage); crash.
        dir.remove(IDX0).unwrap();
        dir.sync().unwrap();
        let log = open(&dyn_dir(&dir.crash(CrashMode::DropUnsynced)), &cfg);
        assert_eq!(log.log_end(), cut, "cut at base: {cut_at_base}");
    }
}

#[test]
fn disk_full_while_sealing_a_segment_is_retryable() {
    let cfg = small_config();
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    // Fill the first segment almost to its 4096 bytes.
    let stored = fill(&mut log, 11, 300); // 11 x 365 bytes
    assert_eq!(log.segment_count(), 1);
    let durable = log.sync().unwrap();
    // The next append must roll; the sealed index cannot be written.
    dir.set_space_limit(Some(10));
    let err = log.append(&mut batch(50, 1, 300, 0), 1, 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSpace {
                op: IoOp::WriteMeta,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.log_end(), durable);
    assert!(log.failure().is_none());
    dir.set_space_limit(None);
    let mut b = batch(50, 1, 300, 0);
    log.append(&mut b, 1, 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.sync().unwrap();
    drop(log);
    let log = open(&dyn_dir(&dir.crash(CrashMode::DropUnsynced)), &cfg);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), stored.len() + 1);
    assert_eq!(got.last().unwrap().1, b);
    assert!(log.recovery_report().rebuilt_indexes.is_empty());
}

#[test]
fn fsync_policies_sync_when_they_say() {
    let base = small_config();
    let mk = |fsync| LogConfig {
        fsync,
        segment_bytes: 1 << 20,
        ..base.clone()
    };
    // Interval: only when due by the caller's clock.
    let dir = FaultDir::new();
    let mut log = Log::open(
        dyn_dir(&dir),
        mk(floe_storage::FsyncPolicy::Interval { ms: 100 }),
        OpenOptions {
            now_ms: 1_000,
            durable_floor: None,
        },
    )
    .unwrap();
    fill(&mut log, 2, 10);
    assert_eq!(log.maybe_sync(1_050).unwrap(), 0);
    assert_eq!(log.maybe_sync(1_100).unwrap(), log.log_end());
    let syncs = dir.sync_count();
    assert_eq!(
        log.maybe_sync(1_300).unwrap(),
        log.log_end(),
        "clean: no sync"
    );
    assert_eq!(dir.sync_count(), syncs);
    // Never: maybe_sync does nothing; a roll still makes the sealed segment durable.
    let dir = FaultDir::new();
    let mut log = Log::open(
        dyn_dir(&dir),
        mk(floe_storage::FsyncPolicy::Never),
        OpenOptions::default(),
    )
    .unwrap();
    fill(&mut log, 2, 10);
    assert_eq!(log.maybe_sync(u64::MAX).unwrap(), 0);
    // The only syncs: the term history written before the first batch of term 1 (its file
    // and the directory), once per term, never per append.
    assert_eq!(dir.sync_count(), 2);
    log.roll().unwrap();
    assert_eq!(log.durable_end(), log.log_end());
    // Always: whenever dirty.
    let dir = FaultDir::new();
    let mut log = Log::open(
        dyn_dir(&dir),
        mk(floe_storage::FsyncPolicy::Always),
        OpenOptions::default(),
    )
    .unwrap();
    fill(&mut log, 2, 10);
    assert_eq!(log.maybe_sync(0).unwrap(), log.log_end());
}

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
    check::<floe_storage::LogReader>();
    check::<LogWriter>();
}

#[test]
fn segment_shorter_than_its_checkpoint_reports_lost_durable_data() {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        checkpoint_interval_bytes: 256,
        ..small_config()
    };
    let dir = FaultDir::new();
    let mut log = open(&dyn_dir(&dir), &cfg);
    let stored = fill(&mut log, 10, 100);
    let end = log.sync().unwrap();
    drop(log);
    // The file loses its last 3 batches (and the preallocated tail), durably.
    let keep: usize = stored[..7].iter().map(Vec::len).sum();
    let f = dir.open(SEG0).unwrap();
    f.set_len(keep as u64).unwrap();
    f.sync().unwrap();
    let log = open(&dyn_dir(&dir), &cfg);
    let kept_end = log.log_end();
    assert!(kept_end < end);
    let c = &log.recovery_report().corruption;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].start, c[0].end, c[0].kind),
        (kept_end, end, CorruptionKind::Missing)
    );
}

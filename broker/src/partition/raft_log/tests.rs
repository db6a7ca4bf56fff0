//! The adapter meets the same expectations as raft's `MemLog` (raft's own conformance suite,
//! through a thin wrapper) and keeps them across crashes and reopen.

use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::batch::{BatchBuilder, CompressionCodec, HEADER_LEN};
use floe_raft::log::conformance;
use floe_raft::{
    Entry, EntryKind, HardState, Log, LogError, Membership, NodeId, Offset, Snapshot, SnapshotMeta,
    Term,
};
use floe_storage::LogConfig;
use floe_storage::backend::{CrashMode, Directory, FaultDir, FileDir, MemDir};

use super::{Opened, RaftLog};

/// Small segments, so reads and truncations cross segment boundaries.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        ..LogConfig::default()
    }
}

fn open(dir: Arc<dyn Directory>) -> Opened {
    RaftLog::open(dir, small_segments(), 1_000).expect("open")
}

/// Raft's suite appends opaque payloads; this wrapper carries each as the record bytes of a
/// real batch (`floe_storage::testing::batch`) and unwraps them on read, so everything else
/// (bounds, terms, truncation, compaction, snapshots, config entries) is the adapter's own.
#[derive(Debug)]
struct Opaque {
    log: RaftLog,
    _tmp: Option<tempfile::TempDir>,
}

fn wrap(e: &Entry) -> Entry {
    match e.kind() {
        EntryKind::Data { payload, records } => {
            let n = u32::try_from(*records).expect("small test batches");
            let batch = floe_storage::testing::batch(n, payload, 0);
            Entry::data(e.first(), e.term(), Bytes::from(batch), *records)
        }
        _ => e.clone(),
    }
}

fn unwrap(e: Entry) -> Entry {
    match e.kind() {
        EntryKind::Data { payload, records } => {
            Entry::data(e.first(), e.term(), payload.slice(HEADER_LEN..), *records)
        }
        _ => e,
    }
}

impl Log for Opaque {
    fn start(&self) -> Offset {
        self.log.start()
    }
    fn snapshot_meta(&self) -> SnapshotMeta {
        self.log.snapshot_meta()
    }
    fn end(&self) -> Offset {
        self.log.end()
    }
    fn last_term(&self) -> Term {
        self.log.last_term()
    }
    fn entry_meta(&self, offset: Offset) -> Result<Option<floe_raft::EntryMeta>, LogError> {
        self.log.entry_meta(offset)
    }
    fn entries(&self, from: Offset, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        // The wrapped batches are HEADER_LEN bytes larger than the suite's payloads.
        let wanted = self.log.entries(from, usize::MAX)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in wanted.into_iter().map(unwrap) {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        let wrapped: Vec<Entry> = entries.iter().map(wrap).collect();
        self.log.append(&wrapped)
    }
    fn truncate_suffix(&mut self, at: Offset) -> Result<(), LogError> {
        self.log.truncate_suffix(at)
    }
    fn compact(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        self.log.compact(snapshot)
    }
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        self.log.install_snapshot(snapshot)
    }
    fn snapshot(&self) -> Result<Snapshot, LogError> {
        self.log.snapshot()
    }
    fn config_entries(&self) -> Result<Vec<(Offset, Membership)>, LogError> {
        self.log.config_entries()
    }
}

#[test]
fn raft_conformance_on_memdir() {
    conformance::check(|| Opaque {
        log: open(Arc::new(MemDir::new())).log,
        _tmp: None,
    });
}

#[test]
fn raft_conformance_on_filedir() {
    conformance::check(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Arc::new(FileDir::open(tmp.path()).expect("dir"));
        Opaque {
            log: open(dir).log,
            _tmp: Some(tmp),
        }
    });
}

/// A real producer batch of `n` records.
fn producer_batch(n: u32, tag: &str) -> Bytes {
    let mut b = BatchBuilder::new(CompressionCodec::None);
    for i in 0..n {
        let v = format!("{tag}-{i}");
        b.append(1_000 + i64::from(i), None, Some(v.as_bytes()), &[])
            .expect("append");
    }
    b.finish().expect("finish")
}

fn members() -> Membership {
    Membership::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(4)])
}

/// Appends [0,3) data t1, [3,4) config t1, [4,5) noop t2, [5,7) data t2.
fn fill(log: &mut RaftLog) {
    log.append(&[
        Entry::data(Offset(0), Term(1), producer_batch(3, "a"), 3),
        Entry::config(Offset(3), Term(1), members()),
    ])
    .expect("append");
    log.append(&[
        Entry::noop(Offset(4), Term(2)),
        Entry::data(Offset(5), Term(2), producer_batch(2, "b"), 2),
    ])
    .expect("append");
}

#[test]
fn entries_are_the_stored_batches() {
    let Opened { mut log, .. } = open(Arc::new(MemDir::new()));
    fill(&mut log);
    assert_eq!((log.end(), log.last_term()), (Offset(7), Term(2)));
    let all = log.entries(Offset(0), usize::MAX).expect("entries");
    let metas: Vec<_> = all
        .iter()
        .map(|e| (e.first().0, e.end().0, e.term().0))
        .collect();
    assert_eq!(metas, [(0, 3, 1), (3, 4, 1), (4, 5, 2), (5, 7, 2)]);
    assert!(matches!(all[1].kind(), EntryKind::Config(m) if *m == members()));
    assert!(matches!(all[2].kind(), EntryKind::Noop));
    // The data entry's payload is the stored batch: the producer's bytes, stamped.
    let EntryKind::Data {
        payload,
        records: 2,
    } = all[3].kind()
    else {
        panic!("data entry expected, got {:?}", all[3]);
    };
    let stored = log.storage().read(5, 1 << 20).expect("read");
    assert_eq!(payload, &stored.bytes);
    let h = floe_protocol::batch::validate_batch(payload, u32::MAX).expect("valid");
    assert_eq!((h.base_offset, h.term, h.record_count), (5, 2, 2));
    assert_eq!(
        &payload[HEADER_LEN..],
        &producer_batch(2, "b")[HEADER_LEN..],
        "records untouched"
    );
    assert_eq!(
        log.config_entries().expect("configs"),
        vec![(Offset(3), members())]
    );
}

#[test]
fn bad_data_entries_are_refused_before_anything_is_written() {
    let Opened { mut log, .. } = open(Arc::new(MemDir::new()));
    let mut corrupt = producer_batch(2, "x").to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let control = {
        let mut b = BatchBuilder::control();
        b.append_control(0, &floe_protocol::batch::ControlRecord::NoOp)
            .expect("append");
        b.finish().expect("finish")
    };
    let mut stamped_corrupt = floe_storage::testing::stamped_batch(0, 1, 2, b"xy", 0);
    let last = stamped_corrupt.len() - 1;
    stamped_corrupt[last] ^= 1;
    for (entry, what) in [
        (
            Entry::data(Offset(0), Term(1), Bytes::from(stamped_corrupt), 2),
            "stamped crc",
        ),
        (
            Entry::data(Offset(0), Term(1), Bytes::from(corrupt), 2),
            "crc",
        ),
        (
            Entry::data(Offset(0), Term(1), producer_batch(2, "x"), 3),
            "count",
        ),
        (Entry::data(Offset(0), Term(1), control, 1), "control"),
        (
            Entry::data(Offset(0), Term(1), Bytes::from_static(b"short"), 1),
            "short",
        ),
        (
            Entry::data(Offset(5), Term(1), producer_batch(1, "x"), 1),
            "gap",
        ),
    ] {
        let err = log.append(&[entry]).expect_err(what);
        assert!(matches!(err, LogError::Storage(_)), "{what}: {err:?}");
        assert_eq!(log.end(), Offset(0), "{what}: nothing written");
    }
}

#[test]
fn budget_counts_whole_entries_across_segments() {
    let Opened { mut log, .. } = open(Arc::new(MemDir::new()));
    let mut at = 0;
    for i in 0..40 {
        let b = producer_batch(2, &format!("batch{i}"));
        log.append(&[Entry::data(Offset(at), Term(1), b, 2)])
            .expect("append");
        at += 2;
    }
    assert!(
        log.storage().segment_count() > 2,
        "the test needs several segments"
    );
    let all = log.entries(Offset(0), usize::MAX).expect("all");
    assert_eq!(all.len(), 40, "one call reads across segments");
    let one = all[0].size_bytes();
    assert_eq!(log.entries(Offset(10), 1).expect("one").len(), 1);
    assert_eq!(log.entries(Offset(10), 3 * one).expect("three").len(), 3);
    assert_eq!(log.entries(Offset(80), 100).expect("at end").len(), 0);
    assert!(matches!(
        log.entries(Offset(81), 100),
        Err(LogError::Unavailable { .. })
    ));
}

#[test]
fn reopen_recovers_log_hard_state_snapshot_and_configs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = || -> Arc<dyn Directory> { Arc::new(FileDir::open(tmp.path()).expect("dir")) };
    let hs = HardState {
        term: Term(2),
        vote: Some(NodeId(3)),
        commit_end: Offset(5),
        damaged: Some((Term(1), Offset(4))),
    };
    {
        let Opened {
            mut log,
            hard_state,
            ..
        } = open(dir());
        assert_eq!(hard_state, HardState::default());
        fill(&mut log);
        log.sync().expect("sync");
        log.store_hard_state(&hs).expect("hard state");
        let meta = SnapshotMeta {
            end: Offset(4),
            term: Term(1),
            membership: members(),
        };
        log.compact(Snapshot {
            meta,
            data: Bytes::new(),
        })
        .expect("compact");
        // Dropped without close: a process crash.
    }
    let Opened {
        log, hard_state, ..
    } = open(dir());
    assert_eq!(hard_state, hs);
    assert_eq!(
        (log.start(), log.end(), log.last_term()),
        (Offset(4), Offset(7), Term(2))
    );
    assert_eq!(log.snapshot_meta().membership, members());
    assert_eq!(log.snapshot_meta().term, Term(1));
    assert!(
        log.config_entries().expect("configs").is_empty(),
        "compacted away"
    );
    let e = log.entries(Offset(4), usize::MAX).expect("entries");
    assert_eq!(e.len(), 2);
    assert!(matches!(e[0].kind(), EntryKind::Noop));
    log.close().expect("close");
}

#[test]
fn power_loss_keeps_synced_entries_and_drops_the_rest() {
    let fault = FaultDir::new();
    {
        let Opened { mut log, .. } = open(Arc::new(fault.clone()));
        fill(&mut log);
        log.sync().expect("sync");
        log.store_hard_state(&HardState {
            term: Term(2),
            vote: None,
            commit_end: Offset(7),
            damaged: None,
        })
        .expect("hs");
        log.append(&[Entry::data(
            Offset(7),
            Term(2),
            producer_batch(4, "late"),
            4,
        )])
        .expect("append");
        assert_eq!(log.end(), Offset(11));
    }
    let Opened {
        log, hard_state, ..
    } = open(Arc::new(fault.crash(CrashMode::DropUnsynced)));
    assert_eq!(log.end(), Offset(7), "the unsynced batch is gone");
    assert_eq!(hard_state.commit_end, Offset(7));
    assert_eq!(hard_state.term, Term(2));
    assert_eq!(
        log.config_entries().expect("configs"),
        vec![(Offset(3), members())]
    );
    assert_eq!(
        log.entries(Offset(0), usize::MAX).expect("entries").len(),
        4
    );
}

#[test]
fn an_installed_snapshot_survives_crashes() {
    let fault = FaultDir::new();
    {
        let Opened { mut log, .. } = open(Arc::new(fault.clone()));
        fill(&mut log);
        log.sync().expect("sync");
        let meta = SnapshotMeta {
            end: Offset(20),
            term: Term(5),
            membership: members(),
        };
        log.install_snapshot(Snapshot {
            meta,
            data: Bytes::from_static(b"s"),
        })
        .expect("install");
        assert_eq!(
            (log.start(), log.end(), log.last_term()),
            (Offset(20), Offset(20), Term(5))
        );
    }
    for mode in [CrashMode::KeepAll, CrashMode::DropUnsynced] {
        let Opened { log, .. } = open(Arc::new(fault.crash(mode)));
        assert_eq!(
            (log.start(), log.end(), log.last_term()),
            (Offset(20), Offset(20), Term(5)),
            "{mode:?}"
        );
        assert_eq!(
            log.snapshot().expect("snapshot").data,
            Bytes::from_static(b"s")
        );
    }
}

#[test]
fn open_finishes_a_compaction_a_crash_interrupted() {
    let dir: Arc<dyn Directory> = Arc::new(MemDir::new());
    {
        let Opened { mut log, .. } = open(dir.clone());
        fill(&mut log);
        log.sync().expect("sync");
    }
    // The crash came after the snapshot sidecar was written, before the log start moved.
    let snap = Snapshot {
        meta: SnapshotMeta {
            end: Offset(5),
            term: Term(2),
            membership: members(),
        },
        data: Bytes::new(),
    };
    super::sidecar::store(&dir, super::SNAPSHOT_FILE, &super::encode_snapshot(&snap))
        .expect("sidecar");
    let Opened { log, .. } = open(dir);
    assert_eq!((log.start(), log.end()), (Offset(5), Offset(7)));
    assert_eq!(log.snapshot().expect("snapshot"), snap);
}

#[test]
fn control_entries_encode_to_the_same_bytes_on_every_replica() {
    let mut a = open(Arc::new(MemDir::new())).log;
    let mut b = open(Arc::new(MemDir::new())).log;
    a.set_now_ms(5);
    b.set_now_ms(99_999);
    for log in [&mut a, &mut b] {
        log.append(&[
            Entry::noop(Offset(0), Term(1)),
            Entry::config(Offset(1), Term(1), members()),
        ])
        .expect("append");
    }
    let bytes = |l: &RaftLog| l.storage().read(0, 1 << 20).expect("read").bytes;
    assert_eq!(bytes(&a), bytes(&b));
}

#[test]
fn install_snapshot_after_compaction_and_over_a_conflicting_log() {
    for end in [5u64, 20] {
        let Opened { mut log, .. } = open(Arc::new(MemDir::new()));
        fill(&mut log);
        log.compact(Snapshot {
            meta: SnapshotMeta {
                end: Offset(3),
                term: Term(1),
                membership: Membership::default(),
            },
            data: Bytes::new(),
        })
        .expect("compact");
        // The leader's snapshot ends inside what this log holds (with another history) or
        // past it: either way the log becomes empty and restarts at `end`.
        log.install_snapshot(Snapshot {
            meta: SnapshotMeta {
                end: Offset(end),
                term: Term(9),
                membership: members(),
            },
            data: Bytes::new(),
        })
        .expect("install");
        assert_eq!(
            (log.start(), log.end(), log.last_term()),
            (Offset(end), Offset(end), Term(9)),
            "end {end}"
        );
        assert!(log.config_entries().expect("configs").is_empty());
        log.append(&[Entry::data(Offset(end), Term(9), producer_batch(1, "n"), 1)])
            .expect("append after install");
        assert_eq!(
            log.entry_meta(Offset(end)).expect("meta").map(|m| m.term),
            Some(Term(9))
        );
    }
}

#[test]
fn a_commit_only_change_is_one_sync_in_place_and_survives_a_power_loss() {
    let fault = FaultDir::new();
    let hs = HardState {
        term: Term(2),
        vote: Some(NodeId(3)),
        commit_end: Offset(5),
        damaged: None,
    };
    {
        let Opened { mut log, .. } = open(Arc::new(fault.clone()));
        fill(&mut log);
        log.sync().expect("sync");
        log.store_hard_state(&hs).expect("hard state");
        let main = fault
            .contents(super::HARD_STATE_FILE)
            .expect("hard-state file");
        // The first commit-only change creates the floor file; later ones overwrite it.
        let commit = |c| HardState {
            commit_end: Offset(c),
            ..hs
        };
        log.store_hard_state(&commit(6)).expect("commit");
        let syncs = fault.sync_count();
        log.store_hard_state(&commit(7)).expect("commit");
        assert_eq!(
            fault.sync_count(),
            syncs + 1,
            "one fdatasync: no new file, rename or directory fsync"
        );
        assert_eq!(
            fault.contents(super::HARD_STATE_FILE),
            Some(main),
            "term and vote are not rewritten"
        );
    }
    let after = fault.crash(CrashMode::DropUnsynced);
    let Opened {
        mut log,
        hard_state,
        ..
    } = open(Arc::new(after.clone()));
    assert_eq!(
        hard_state,
        HardState {
            commit_end: Offset(7),
            ..hs
        }
    );
    // A new term rewrites the hard-state file, keeping the commit.
    let next = HardState {
        term: Term(3),
        vote: None,
        commit_end: Offset(7),
        damaged: None,
    };
    log.store_hard_state(&next).expect("new term");
    let Opened { hard_state, .. } = open(Arc::new(after.crash(CrashMode::KeepAll)));
    assert_eq!(hard_state, next);
}

//! Model test: random sequences of append / read / roll / truncate_suffix / truncate_prefix /
//! sync / reopen / crash, checked against an in-memory model of the log.
//!
//! After a crash: everything the log called durable is there, nothing torn is served, offsets
//! stay dense, and what is there is exactly a prefix of what was appended. Appends use several
//! (non-decreasing) terms; every batch read, `term_at` and `last_term()` must give the term the
//! model appended, also after crashes (the term history survives them).
//! `PROPTEST_CASES` raises the case count for a longer run.

mod common;

use std::sync::Arc;

use common::*;
use floe_protocol::batch::BatchHeader;
use floe_storage::backend::{CrashMode, Directory, FaultDir, FileDir};
use floe_storage::{Error, Log, LogConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: u32,
        len: usize,
        new_term: bool,
    },
    Read {
        at: u16,
        budget: u16,
    },
    Roll,
    Sync,
    /// A Raft conflict cut; `follower`: the next appends carry the (lower) terms of a leader
    /// that never saw the cut suffix's terms.
    TruncateSuffix {
        at: u16,
        follower: bool,
    },
    TruncatePrefix {
        at: u16,
    },
    Retention,
    Reopen,
    Crash {
        seed: u64,
        drop_all: bool,
    },
    /// Append while the disk has only `budget` bytes left (fault backend only).
    AppendDiskFull {
        records: u32,
        len: usize,
        budget: u16,
    },
    /// An fsync fails: the log must fail for good; then a power loss (fault backend only).
    SyncFails {
        seed: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u32..5, 0usize..400, prop::bool::weighted(0.2))
            .prop_map(|(records, len, new_term)| Op::Append { records, len, new_term }),
        3 => (any::<u16>(), any::<u16>()).prop_map(|(at, budget)| Op::Read { at, budget }),
        1 => Just(Op::Roll),
        2 => Just(Op::Sync),
        1 => (any::<u16>(), any::<bool>())
            .prop_map(|(at, follower)| Op::TruncateSuffix { at, follower }),
        1 => any::<u16>().prop_map(|at| Op::TruncatePrefix { at }),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
        1 => (any::<u64>(), prop::bool::weighted(0.3))
            .prop_map(|(seed, drop_all)| Op::Crash { seed, drop_all }),
        1 => (1u32..5, 0usize..400, any::<u16>())
            .prop_map(|(records, len, budget)| Op::AppendDiskFull { records, len, budget: budget % 600 }),
        1 => any::<u64>().prop_map(|seed| Op::SyncFails { seed }),
    ]
}

/// The model: every batch ever appended and still in the log, with its stored bytes.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<(BatchHeader, Vec<u8>)>,
    start: u64,
    end: u64,
    term: u64,
    seq: u64,
}

impl Model {
    fn boundary(&self, at: u16) -> u64 {
        let cands: Vec<u64> = self
            .batches
            .iter()
            .map(|(h, _)| h.base_offset)
            .filter(|&b| b >= self.start)
            .chain([self.end])
            .collect();
        cands[at as usize % cands.len()]
    }

    /// Term of the last batch in the log (0 if the log is empty).
    fn last_term(&self) -> u64 {
        match self.batches.last() {
            Some((h, _)) if self.end > self.start => h.term,
            _ => 0,
        }
    }

    fn truncate_to(&mut self, end: u64) {
        self.batches.retain(|(h, _)| h.next_offset() <= end);
        self.end = end;
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 200,
        checkpoint_interval_bytes: 700,
        retention_bytes: Some(3000),
        ..small_config()
    }
}

fn check_all(log: &Log, m: &Model) {
    assert_eq!(log.log_start(), m.start);
    assert_eq!(log.log_end(), m.end);
    let got = read_all(log, m.start);
    let want: Vec<_> = m
        .batches
        .iter()
        .filter(|(h, _)| h.next_offset() > m.start)
        .cloned()
        .collect();
    assert_eq!(got.len(), want.len(), "batch count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
        let at = w.0.base_offset.max(m.start);
        assert_eq!(log.term_at(at).unwrap(), w.0.term, "term_at({at})");
    }
    assert_eq!(log.last_term(), m.last_term(), "last_term");
}

/// Where the model runs: the fault backend (real crashes), or real files, where a "crash" is
/// a process kill (the page cache survives), so nothing may be lost.
#[derive(Debug)]
enum Env {
    Fault(FaultDir),
    File(FileDir, #[allow(dead_code)] tempfile::TempDir),
}

impl Env {
    fn dir(&self) -> Arc<dyn Directory> {
        match self {
            Env::Fault(f) => Arc::new(f.clone()),
            Env::File(f, _) => Arc::new(f.clone()),
        }
    }

    fn crash(self, mode: CrashMode) -> Env {
        match self {
            Env::Fault(f) => Env::Fault(f.crash(mode)),
            file => file,
        }
    }

    fn list(&self) -> Vec<String> {
        let mut names = self.dir().list().unwrap();
        names.sort();
        names
    }
}

fn run(ops: Vec<Op>, real_files: bool) {
    let cfg = config();
    let mut fault = if real_files {
        let tmp = tempfile::tempdir().unwrap();
        Env::File(FileDir::open(tmp.path()).unwrap(), tmp)
    } else {
        Env::Fault(FaultDir::new())
    };
    let dir = |f: &Env| f.dir();
    let mut log = open(&dir(&fault), &cfg);
    let mut m = Model::default();
    for op in ops {
        if std::env::var("MODEL_DEBUG").is_ok() {
            let names = fault.list();
            eprintln!(
                "state: start {} end {} durable {} files {:?}\nop {:?}",
                log.log_start(),
                log.log_end(),
                log.durable_end(),
                names,
                op
            );
        }
        match op {
            Op::Append {
                records,
                len,
                new_term,
            } => {
                if new_term {
                    m.term += 1;
                }
                m.seq += 1;
                let mut b = batch(m.seq, records, len, m.seq as i64);
                let info = log.append(&mut b, m.term, 0).unwrap();
                assert_eq!(info.base_offset, m.end);
                let h = BatchHeader::parse(&b).unwrap();
                m.end = info.next_offset;
                m.batches.push((h, b));
            }
            Op::Read { at, budget } => {
                if m.end > m.start {
                    let off = m.start + u64::from(at) % (m.end - m.start);
                    let r = log.read(off, usize::from(budget)).unwrap();
                    let i = m
                        .batches
                        .iter()
                        .position(|(h, _)| h.next_offset() > off)
                        .unwrap();
                    assert_eq!(r.first_offset, m.batches[i].0.base_offset);
                    let n = r.batches().count();
                    assert!(n >= 1);
                    let expect: Vec<u8> = m.batches[i..i + n]
                        .iter()
                        .flat_map(|(_, b)| b.clone())
                        .collect();
                    assert_eq!(&r.bytes[..], &expect[..]);
                    assert!(n == 1 || r.bytes.len() <= usize::from(budget));
                }
            }
            Op::Roll => log.roll().unwrap(),
            Op::Sync => assert_eq!(log.sync().unwrap(), m.end),
            Op::TruncateSuffix { at, follower } => {
                let to = m.boundary(at);
                log.truncate_suffix(to).unwrap();
                m.truncate_to(to);
                if follower && m.last_term() > 0 {
                    m.term = m.last_term();
                }
            }
            Op::TruncatePrefix { at } => {
                let to = m.start + u64::from(at) % (m.end - m.start + 5);
                log.truncate_prefix(to).unwrap();
                m.start = m.start.max(to);
                if m.start > m.end {
                    m.batches.clear();
                    m.end = m.start;
                }
            }
            Op::Retention => {
                let start = log.apply_retention(0, m.end).unwrap();
                assert!(start >= m.start);
                // Retention removes whole sealed segments, keeping at least retention_bytes.
                assert!(start == m.start || log.size_bytes() >= 3000);
                m.start = start;
            }
            Op::Reopen => {
                // A process crash: the page cache survives, so nothing is lost.
                drop(log);
                fault = fault.crash(CrashMode::KeepAll);
                log = open(&dir(&fault), &cfg);
                assert!(log.recovery_report().corruption.is_empty());
            }
            Op::AppendDiskFull {
                records,
                len,
                budget,
            } => {
                m.seq += 1;
                let mut b = batch(m.seq, records, len, m.seq as i64);
                if let Env::Fault(f) = &fault {
                    f.set_space_limit(Some(u64::from(budget)));
                }
                let result = log.append(&mut b, m.term, 0);
                if let Env::Fault(f) = &fault {
                    f.set_space_limit(None);
                }
                match result {
                    Ok(info) => {
                        assert_eq!(info.base_offset, m.end);
                        m.end = info.next_offset;
                        m.batches.push((BatchHeader::parse(&b).unwrap(), b));
                    }
                    Err(Error::NoSpace { .. }) => {
                        assert!(matches!(fault, Env::Fault(_)));
                        assert!(log.failure().is_none(), "disk full is not fatal");
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            Op::SyncFails { seed } => {
                let Env::Fault(f) = &fault else { continue };
                let durable = log.durable_end();
                f.fail_syncs(true);
                let dirty = log.is_dirty();
                match log.sync() {
                    Err(Error::Failed(_)) => {
                        assert!(dirty);
                        assert_eq!(
                            log.durable_end(),
                            durable,
                            "a failed sync vouches for nothing"
                        );
                        let refused = log.append(&mut batch(0, 1, 1, 0), m.term, 0);
                        assert!(matches!(refused, Err(Error::Failed(_))));
                        assert!(matches!(
                            log.truncate_suffix(m.end),
                            Ok(()) | Err(Error::Failed(_))
                        ));
                    }
                    // Nothing left to fsync (data already synced, e.g. by a roll that then
                    // ran out of space): no I/O, so nothing could fail.
                    Ok(durable) => assert_eq!(durable, m.end),
                    Err(e) => panic!("unexpected {e:?}"),
                }
                // Crash and recover as a broker would after a fatal error.
                drop(log);
                fault = fault.crash(CrashMode::Torn { seed });
                log = open(&dir(&fault), &cfg);
                assert!(log.recovery_report().corruption.is_empty());
                let end = log.log_end();
                assert!(
                    end >= durable && end <= m.end,
                    "{durable} <= {end} <= {}",
                    m.end
                );
                m.truncate_to(end);
                // The term the leader uses never goes down (Raft keeps it in its hard state).
                assert_eq!(log.last_term(), m.last_term(), "last_term after a crash");
            }
            Op::Crash { seed, drop_all } => {
                let durable = log.durable_end();
                drop(log);
                let mode = if drop_all {
                    CrashMode::DropUnsynced
                } else {
                    CrashMode::Torn { seed }
                };
                let exact = matches!(fault, Env::File(..));
                fault = fault.crash(mode);
                log = open(&dir(&fault), &cfg);
                let report = log.recovery_report();
                if std::env::var("MODEL_DEBUG").is_ok() {
                    let names = fault.list();
                    eprintln!(
                        "after crash: {report:?} files {names:?} batches {:?}",
                        read_all(&log, log.log_start())
                            .iter()
                            .map(|(h, _)| (h.base_offset, h.record_count, h.max_timestamp))
                            .collect::<Vec<_>>()
                    );
                }
                assert!(report.corruption.is_empty(), "{report:?}");
                let end = log.log_end();
                assert!(end >= durable, "durable {durable} lost: end {end}");
                assert!(end <= m.end, "end {end} past model end {}", m.end);
                assert!(!exact || end == m.end, "a process kill loses nothing");
                assert!(
                    end == m.start.max(end)
                        && (end == m.end
                            || m.batches.iter().any(|(h, _)| h.base_offset == end)
                            || end == m.start),
                    "end {end} is not a batch boundary"
                );
                m.truncate_to(end);
                // The term the leader uses never goes down (Raft keeps it in its hard state).
                assert_eq!(log.last_term(), m.last_term(), "last_term after a crash");
            }
        }
        assert_eq!(log.log_end(), m.end);
        assert_eq!(log.log_start(), m.start);
        assert_eq!(log.last_term(), m.last_term());
        assert!(log.durable_end() <= m.end);
    }
    check_all(&log, &m);
    assert!(log.verify().unwrap().is_empty());
    // A last power loss, then the log must still be a valid prefix.
    let durable = log.durable_end();
    drop(log);
    let fault = fault.crash(CrashMode::DropUnsynced);
    let log = open(&dir(&fault), &cfg);
    assert!(log.log_end() >= durable);
    m.truncate_to(log.log_end());
    check_all(&log, &m);
    // And writes continue after recovery.
    let mut log = log;
    let info = log.append(&mut batch(1, 1, 10, 0), log.last_term(), 0);
    assert!(info.is_ok() || matches!(info, Err(Error::TermRegression { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, false);
    }

    #[test]
    fn log_on_real_files_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, true);
    }
}

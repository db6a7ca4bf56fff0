//! One conformance suite for every [`Log`] implementation (in the spirit of openraft's
//! `testing/log/suite.rs`). A storage adapter runs it from its own tests:
//!
//! ```
//! floe_raft::log::conformance::check(floe_raft::MemLog::new);
//! ```

use bytes::Bytes;

use super::{Log, Snapshot, SnapshotMeta, find_conflict_by_term, term_at};
use crate::entry::{Entry, EntryKind};
use crate::membership::Membership;
use crate::types::{NodeId, Offset, Term};

/// Runs every check on fresh logs from `new_log`; panics with a message on the first failure.
pub fn check<L: Log>(mut new_log: impl FnMut() -> L) {
    empty_log(&mut new_log());
    append_and_read(&mut new_log());
    byte_budget(&mut new_log());
    truncate(&mut new_log());
    compact_and_snapshot(&mut new_log());
    install_snapshot(&mut new_log());
    config_entries(&mut new_log());
}

fn data(first: u64, term: u64, records: u64) -> Entry {
    Entry::data(
        Offset(first),
        Term(term),
        Bytes::from(vec![b'r'; 10]),
        records,
    )
}

/// Entries of terms 1,1,2 covering 3, 2 and 4 offsets: [0,3) [3,5) [5,9).
fn fill<L: Log>(log: &mut L) {
    log.append(&[data(0, 1, 3), data(3, 1, 2)]).expect("append");
    log.append(&[data(5, 2, 4)]).expect("append");
}

fn empty_log<L: Log>(log: &mut L) {
    assert_eq!(log.start(), Offset(0), "a new log starts at 0");
    assert_eq!(log.end(), Offset(0), "a new log ends at 0");
    assert_eq!(log.last_term(), Term(0), "a new log's last term is 0");
    assert_eq!(term_at(log, Offset(0)).expect("term"), Some(Term(0)));
    assert!(log.entries(Offset(0), 100).expect("entries").is_empty());
}

fn append_and_read<L: Log>(log: &mut L) {
    fill(log);
    assert_eq!((log.end(), log.last_term()), (Offset(9), Term(2)));
    let meta = log
        .entry_meta(Offset(4))
        .expect("meta")
        .expect("offset 4 is held");
    assert_eq!(
        (meta.first, meta.end, meta.term),
        (Offset(3), Offset(5), Term(1))
    );
    assert_eq!(
        log.entry_meta(Offset(9)).expect("meta"),
        None,
        "past the end"
    );
    let all = log.entries(Offset(0), usize::MAX).expect("entries");
    assert_eq!(
        all,
        vec![data(0, 1, 3), data(3, 1, 2), data(5, 2, 4)],
        "entries come back as written"
    );
    assert_eq!(
        log.entries(Offset(3), usize::MAX).expect("entries").len(),
        2
    );
    assert_eq!(term_at(log, Offset(5)).expect("term"), Some(Term(1)));
    assert_eq!(term_at(log, Offset(9)).expect("term"), Some(Term(2)));
    assert_eq!(
        find_conflict_by_term(log, Offset(9), Term(1)).expect("search"),
        (Offset(5), Term(1))
    );
}

fn byte_budget<L: Log>(log: &mut L) {
    fill(log);
    let one = log.entries(Offset(0), 1).expect("entries");
    assert_eq!(one.len(), 1, "at least one entry, even over budget");
    let two = log
        .entries(Offset(0), 2 * one[0].size_bytes())
        .expect("entries");
    assert_eq!(two.len(), 2, "whole entries within the budget");
}

fn truncate<L: Log>(log: &mut L) {
    fill(log);
    log.truncate_suffix(Offset(3)).expect("truncate");
    assert_eq!((log.end(), log.last_term()), (Offset(3), Term(1)));
    log.append(&[data(3, 3, 1)]).expect("append after truncate");
    assert_eq!(term_at(log, Offset(4)).expect("term"), Some(Term(3)));
}

fn compact_and_snapshot<L: Log>(log: &mut L) {
    fill(log);
    let membership = Membership::new([NodeId(1)], []);
    let meta = SnapshotMeta {
        end: Offset(5),
        term: Term(1),
        membership,
    };
    let snap = Snapshot {
        meta: meta.clone(),
        data: Bytes::from_static(b"state"),
    };
    log.compact(snap.clone()).expect("compact");
    assert_eq!((log.start(), log.end()), (Offset(5), Offset(9)));
    assert_eq!(log.snapshot_meta(), meta);
    assert_eq!(log.snapshot().expect("snapshot"), snap);
    assert_eq!(
        term_at(log, Offset(5)).expect("term"),
        Some(Term(1)),
        "term at start"
    );
    assert_eq!(term_at(log, Offset(3)).expect("term"), None, "compacted");
    assert_eq!(
        log.entries(Offset(5), usize::MAX).expect("entries"),
        vec![data(5, 2, 4)]
    );
}

fn install_snapshot<L: Log>(log: &mut L) {
    fill(log);
    let meta = SnapshotMeta {
        end: Offset(20),
        term: Term(4),
        membership: Membership::default(),
    };
    log.install_snapshot(Snapshot {
        meta,
        data: Bytes::new(),
    })
    .expect("install");
    assert_eq!(
        (log.start(), log.end(), log.last_term()),
        (Offset(20), Offset(20), Term(4))
    );
    log.append(&[data(20, 4, 1)]).expect("append after install");
    assert_eq!(log.end(), Offset(21));
}

fn config_entries<L: Log>(log: &mut L) {
    let m = Membership::new([NodeId(1), NodeId(2)], [NodeId(3)]);
    log.append(&[
        data(0, 1, 2),
        Entry::config(Offset(2), Term(1), m.clone()),
        Entry::noop(Offset(3), Term(1)),
    ])
    .expect("append");
    assert_eq!(
        log.config_entries().expect("configs"),
        vec![(Offset(2), m.clone())]
    );
    let e = log.entries(Offset(2), usize::MAX).expect("entries");
    assert!(matches!(e[0].kind(), EntryKind::Config(c) if *c == m));
    assert!(matches!(e[1].kind(), EntryKind::Noop));
}

//! One focused test per bug the simulator found (seeds in `tests/simulation.rs`).

use bytes::Bytes;
use floe_raft::message::{
    Append, AppendResponse, Body, HeartbeatResponse, InstallSnapshot, VoteResponse,
};
use floe_raft::{
    Config, Entry, HardState, Log, MemLog, Membership, Message, NodeId, Offset, Raft, Role,
    SnapshotMeta, Term,
};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);

fn node(id: NodeId, cfg: impl FnOnce(&mut Config)) -> Raft<MemLog> {
    let mut c = Config::new(id);
    cfg(&mut c);
    Raft::new(
        c,
        MemLog::new(),
        HardState::default(),
        Membership::new([N1, N2, N3], []),
    )
    .unwrap()
}

fn msg(from: NodeId, to: NodeId, term: u64, body: Body) -> Message {
    Message {
        from,
        to,
        term: Term(term),
        body,
    }
}

fn drain(r: &mut Raft<MemLog>) -> Vec<Message> {
    while let Some(p) = r.poll_persist() {
        r.log_mut().sync();
        r.handle_persisted(p.id).unwrap();
    }
    std::iter::from_fn(|| r.poll_message()).collect()
}

/// n1 leads term 1 with `records` more offsets committed by n2, applied and compacted.
fn compacted_leader(cfg: impl FnOnce(&mut Config)) -> Raft<MemLog> {
    let mut r = node(N1, cfg);
    while drain(&mut r).is_empty() {
        r.handle_tick().unwrap();
    }
    let grant = |pre| {
        Body::VoteResponse(VoteResponse {
            pre_vote: pre,
            granted: true,
        })
    };
    r.handle_message(msg(N2, N1, 1, grant(true))).unwrap();
    drain(&mut r);
    r.handle_message(msg(N2, N1, 1, grant(false))).unwrap();
    drain(&mut r);
    r.propose(Bytes::from_static(b"x"), 3).unwrap();
    drain(&mut r);
    let ok = Body::AppendResponse(AppendResponse::Success {
        match_end: Offset(4),
    });
    r.handle_message(msg(N2, N1, 1, ok)).unwrap();
    assert_eq!(r.commit_end(), Offset(4));
    r.handle_applied(Offset(4));
    r.compact(Offset(4), Bytes::new()).unwrap();
    drain(&mut r);
    r
}

fn is_snapshot_to(out: &[Message], to: NodeId) -> bool {
    out.iter()
        .any(|m| m.to == to && matches!(m.body, Body::InstallSnapshot(_)))
}

/// Seed 1: a rejection whose hint is before the leader's log start was answered with another
/// append at the log start, forever, instead of a snapshot.
#[test]
fn hint_before_log_start_sends_a_snapshot() {
    let mut r = compacted_leader(|_| {});
    // n3 is still being probed at 0 (its first append is unanswered).
    let reject = AppendResponse::Reject {
        rejected_prev_end: Offset(0),
        hint_end: Offset(0),
        hint_term: Term(0),
    };
    r.handle_message(msg(N3, N1, 1, Body::AppendResponse(reject)))
        .unwrap();
    let out = drain(&mut r);
    assert!(is_snapshot_to(&out, N3), "{out:?}");
}

/// Seed 797: a follower whose entry at the leader's log start has another term was probed at
/// the log start forever.
#[test]
fn divergent_entry_at_log_start_sends_a_snapshot() {
    let mut r = compacted_leader(|_| {});
    // n3's entry ending at the log start (4) has a lower term than the leader's snapshot.
    let reject = AppendResponse::Reject {
        rejected_prev_end: Offset(0),
        hint_end: Offset(4),
        hint_term: Term(0),
    };
    r.handle_message(msg(N3, N1, 1, Body::AppendResponse(reject)))
        .unwrap();
    let out = drain(&mut r);
    assert!(is_snapshot_to(&out, N3), "{out:?}");
}

/// Seed 15: a snapshot older than what the replica had
/// applied (it had cut its log after corruption) took the state machine backwards.
#[test]
fn an_old_snapshot_does_not_rewind_the_state_machine() {
    let mut f = node(N2, |_| {});
    let entries = vec![Entry::data(Offset(0), Term(1), Bytes::from_static(b"a"), 6)];
    let append = Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(6),
    };
    f.handle_message(msg(N1, N2, 1, Body::Append(append)))
        .unwrap();
    drain(&mut f);
    assert_eq!(f.poll_committed(1 << 20).unwrap().len(), 1);
    f.handle_applied(Offset(6));
    f.report_corruption(Offset(3)).unwrap();
    drain(&mut f); // the damage mark is durable: the log is cut
    let meta = SnapshotMeta {
        end: Offset(6),
        term: Term(1),
        membership: f.membership().clone(),
    };
    let snap = InstallSnapshot {
        meta,
        data: Bytes::new(),
    };
    f.handle_message(msg(N1, N2, 1, Body::InstallSnapshot(snap)))
        .unwrap();
    drain(&mut f);
    assert_eq!(
        f.poll_snapshot().unwrap(),
        None,
        "applied 6 already: nothing to restore"
    );
    assert_eq!(f.log().start(), Offset(6));
}

/// Seed 89: a candidate that reported corruption could still win its election.
#[test]
fn a_candidate_that_finds_corruption_stops_campaigning() {
    let mut c = node(N1, |cfg| cfg.pre_vote = false);
    let entries = vec![Entry::data(Offset(0), Term(1), Bytes::from_static(b"a"), 2)];
    let append = Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(0),
    };
    c.handle_message(msg(N2, N1, 1, Body::Append(append)))
        .unwrap();
    drain(&mut c);
    while c.role() != Role::Candidate {
        c.handle_tick().unwrap();
    }
    drain(&mut c);
    c.report_corruption(Offset(0)).unwrap();
    let term = c.term().0;
    let grant = Body::VoteResponse(VoteResponse {
        pre_vote: false,
        granted: true,
    });
    c.handle_message(msg(N2, N1, term, grant)).unwrap();
    assert_eq!(c.role(), Role::Follower);
}

/// Seed 1 (first failure): when every append in a full pipeline was lost, nothing more was
/// ever sent; a heartbeat answer now frees a slot so the gap is found.
#[test]
fn a_full_pipeline_of_lost_appends_recovers_on_heartbeat() {
    let mut r = compacted_leader(|c| c.max_inflight_msgs = 1);
    let ok = Body::AppendResponse(AppendResponse::Success {
        match_end: Offset(4),
    });
    r.handle_message(msg(N2, N1, 1, ok)).unwrap();
    drain(&mut r);
    r.propose(Bytes::from_static(b"y"), 1).unwrap();
    let first = drain(&mut r);
    assert!(
        first
            .iter()
            .any(|m| m.to == N2 && matches!(m.body, Body::Append(_)))
    );
    r.propose(Bytes::from_static(b"z"), 1).unwrap();
    assert!(!drain(&mut r).iter().any(|m| m.to == N2), "window full");
    // The append was lost. A heartbeat answer arrives:
    let hb = Body::HeartbeatResponse(HeartbeatResponse {
        read_ctx: 0,
        repair_from: None,
    });
    r.handle_message(msg(N2, N1, 1, hb)).unwrap();
    let out = drain(&mut r);
    assert!(
        out.iter()
            .any(|m| m.to == N2 && matches!(m.body, Body::Append(_))),
        "{out:?}"
    );
}

/// Not a simulator find: a malformed append (a gap between entries) is dropped, not appended.
#[test]
fn a_malformed_append_is_dropped() {
    let mut f = node(N2, |_| {});
    let entries = vec![
        Entry::data(Offset(0), Term(1), Bytes::from_static(b"a"), 2),
        Entry::data(Offset(5), Term(1), Bytes::from_static(b"b"), 1),
    ];
    let append = Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(0),
    };
    f.handle_message(msg(N1, N2, 1, Body::Append(append)))
        .unwrap();
    assert!(drain(&mut f).is_empty());
    assert_eq!(f.log().end(), Offset(0));
}

/// Seed 60775 (long run): a damaged replica asked for a resend from its own log end, which was
/// inside one of the leader's batches; the leader sent `prev_end` 5 with entries from 4 (a
/// malformed append, dropped), forever.
#[test]
fn a_repair_request_inside_a_batch_resends_from_the_batch_start() {
    let mut r = compacted_leader(|_| {});
    // The leader's log: noop [0,1), batch [1,4) (compacted below 4), then a batch [4,7).
    r.propose(Bytes::from_static(b"w"), 3).unwrap();
    drain(&mut r);
    let hb = HeartbeatResponse {
        read_ctx: 0,
        repair_from: Some(Offset(5)),
    };
    r.handle_message(msg(N2, N1, 1, Body::HeartbeatResponse(hb)))
        .unwrap();
    let out = drain(&mut r);
    let append = out.iter().find_map(|m| match &m.body {
        Body::Append(a) if m.to == N2 => Some(a.clone()),
        _ => None,
    });
    let a = append.expect("an append to n2");
    assert_eq!(a.prev_end, Offset(4));
    assert_eq!(a.entries.first().map(|e| e.first()), Some(Offset(4)));
}

/// Seed 101960: the log was compacted past the damage point while the cut waited for the
/// damage mark to be durable; the cut then fell before the log start (a panic in the log).
#[test]
fn a_cut_after_compaction_lands_on_the_log_start() {
    let mut f = node(N2, |_| {});
    let entries = vec![
        Entry::data(Offset(0), Term(1), Bytes::from_static(b"a"), 2),
        Entry::data(Offset(2), Term(1), Bytes::from_static(b"b"), 2),
        Entry::data(Offset(4), Term(1), Bytes::from_static(b"c"), 2),
    ];
    let append = Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(6),
    };
    f.handle_message(msg(N1, N2, 1, Body::Append(append)))
        .unwrap();
    drain(&mut f);
    while !f.poll_committed(1 << 20).unwrap().is_empty() {}
    f.handle_applied(Offset(6));
    f.report_corruption(Offset(1)).unwrap();
    f.compact(Offset(4), Bytes::new()).unwrap();
    drain(&mut f);
    assert_eq!((f.log().start(), f.log().end()), (Offset(4), Offset(4)));
}

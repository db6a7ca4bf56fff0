//! Exact-output tests (openraft `engine/tests` style): the exact messages and persistence
//! requests an input produces.

use bytes::Bytes;
use floe_raft::message::{
    Append, AppendResponse, Body, Heartbeat, HeartbeatResponse, VoteRequest, VoteResponse,
};
use floe_raft::{
    ChangeError, ConfChange, Config, Entry, HardState, MemLog, Membership, Message, NodeId, Offset,
    PersistId, PersistRequest, ProposeError, Raft, ReadyRead, Role, Term,
};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);

fn members() -> Membership {
    Membership::new([N1, N2, N3], [])
}

fn node(id: NodeId, cfg: impl FnOnce(&mut Config)) -> Raft<MemLog> {
    let mut c = Config::new(id);
    cfg(&mut c);
    Raft::new(c, MemLog::new(), HardState::default(), members()).unwrap()
}

fn messages(r: &mut Raft<MemLog>) -> Vec<Message> {
    std::iter::from_fn(|| r.poll_message()).collect()
}

fn persists(r: &mut Raft<MemLog>) -> Vec<PersistRequest> {
    std::iter::from_fn(|| r.poll_persist()).collect()
}

fn msg(from: NodeId, to: NodeId, term: u64, body: Body) -> Message {
    Message {
        from,
        to,
        term: Term(term),
        body,
    }
}

fn tick_until_messages(r: &mut Raft<MemLog>) -> Vec<Message> {
    for _ in 0..100 {
        r.handle_tick().unwrap();
        let out = messages(r);
        if !out.is_empty() {
            return out;
        }
    }
    panic!("no messages after 100 ticks");
}

/// n1 as leader of term 1 with durable noop at offset 0; all output drained.
fn leader() -> Raft<MemLog> {
    let mut r = node(N1, |_| {});
    tick_until_messages(&mut r);
    let grant = |pre| {
        Body::VoteResponse(VoteResponse {
            pre_vote: pre,
            granted: true,
        })
    };
    r.handle_message(msg(N2, N1, 1, grant(true))).unwrap();
    let id = persists(&mut r)[0].id;
    r.handle_persisted(id).unwrap();
    r.handle_message(msg(N2, N1, 1, grant(false))).unwrap();
    for p in persists(&mut r) {
        r.handle_persisted(p.id).unwrap();
    }
    messages(&mut r);
    assert_eq!(r.role(), Role::Leader);
    r
}

fn ack(r: &mut Raft<MemLog>, from: NodeId, match_end: u64) {
    let body = Body::AppendResponse(AppendResponse::Success {
        match_end: Offset(match_end),
    });
    r.handle_message(msg(from, N1, r.term().0, body)).unwrap();
}

#[test]
fn election_pre_votes_then_persists_the_vote_before_asking() {
    let mut r = node(N1, |_| {});
    let pre = VoteRequest {
        pre_vote: true,
        last_end: Offset(0),
        last_term: Term(0),
        transfer: false,
    };
    assert_eq!(
        tick_until_messages(&mut r),
        vec![
            msg(N1, N2, 1, Body::VoteRequest(pre)),
            msg(N1, N3, 1, Body::VoteRequest(pre)),
        ]
    );
    assert_eq!(
        persists(&mut r),
        vec![],
        "a pre-vote changes no durable state"
    );
    assert_eq!((r.role(), r.term()), (Role::PreCandidate, Term(0)));

    let granted = Body::VoteResponse(VoteResponse {
        pre_vote: true,
        granted: true,
    });
    r.handle_message(msg(N2, N1, 1, granted)).unwrap();
    assert_eq!(r.role(), Role::Candidate);
    let hs = HardState {
        term: Term(1),
        vote: Some(N1),
        commit_end: Offset(0),
        damaged: None,
    };
    assert_eq!(
        persists(&mut r),
        vec![PersistRequest {
            id: PersistId(1),
            hard_state: Some(hs),
            log_end: Offset(0)
        }]
    );
    assert_eq!(
        messages(&mut r),
        vec![],
        "vote requests wait for the vote to be durable"
    );
    r.handle_persisted(PersistId(1)).unwrap();
    let req = VoteRequest {
        pre_vote: false,
        ..pre
    };
    assert_eq!(
        messages(&mut r),
        vec![
            msg(N1, N2, 1, Body::VoteRequest(req)),
            msg(N1, N3, 1, Body::VoteRequest(req))
        ]
    );

    let granted = Body::VoteResponse(VoteResponse {
        pre_vote: false,
        granted: true,
    });
    r.handle_message(msg(N3, N1, 1, granted)).unwrap();
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(
        persists(&mut r),
        vec![PersistRequest {
            id: PersistId(2),
            hard_state: None,
            log_end: Offset(1)
        }]
    );
    let append = |to| {
        msg(
            N1,
            to,
            1,
            Body::Append(Append {
                prev_end: Offset(0),
                prev_term: Term(0),
                entries: vec![Entry::noop(Offset(0), Term(1))],
                commit_end: Offset(0),
            }),
        )
    };
    assert_eq!(
        messages(&mut r),
        vec![append(N2), append(N3)],
        "appends need no local fsync"
    );
}

#[test]
fn a_follower_acknowledges_only_what_is_durable() {
    let mut f = node(N2, |_| {});
    let entries = vec![
        Entry::noop(Offset(0), Term(1)),
        Entry::data(Offset(1), Term(1), Bytes::from_static(b"abc"), 3),
    ];
    let body = Body::Append(Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(1),
    });
    f.handle_message(msg(N1, N2, 1, body)).unwrap();
    let hs = HardState {
        term: Term(1),
        vote: None,
        commit_end: Offset(1),
        damaged: None,
    };
    assert_eq!(
        persists(&mut f),
        vec![PersistRequest {
            id: PersistId(1),
            hard_state: Some(hs),
            log_end: Offset(4)
        }]
    );
    assert_eq!(messages(&mut f), vec![]);
    f.handle_persisted(PersistId(1)).unwrap();
    let ok = Body::AppendResponse(AppendResponse::Success {
        match_end: Offset(4),
    });
    assert_eq!(messages(&mut f), vec![msg(N2, N1, 1, ok)]);
    assert_eq!(f.commit_end(), Offset(1));
}

#[test]
fn a_conflicting_follower_answers_with_a_term_hint() {
    let mut f = node(N2, |_| {});
    let entries = vec![
        Entry::data(Offset(0), Term(1), Bytes::from_static(b"a"), 2),
        Entry::data(Offset(2), Term(2), Bytes::from_static(b"b"), 2),
        Entry::data(Offset(4), Term(2), Bytes::from_static(b"c"), 1),
    ];
    let body = Body::Append(Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(0),
    });
    f.handle_message(msg(N1, N2, 2, body)).unwrap();
    for p in persists(&mut f) {
        f.handle_persisted(p.id).unwrap();
    }
    messages(&mut f);
    // A term-3 leader whose entry ending at 5 is from term 3: back off past all of term 2.
    let body = Body::Append(Append {
        prev_end: Offset(5),
        prev_term: Term(3),
        entries: vec![],
        commit_end: Offset(0),
    });
    f.handle_message(msg(N3, N2, 3, body)).unwrap();
    let reject = AppendResponse::Reject {
        rejected_prev_end: Offset(5),
        hint_end: Offset(5),
        hint_term: Term(2),
    };
    assert_eq!(
        messages(&mut f),
        vec![msg(N2, N3, 3, Body::AppendResponse(reject))]
    );
    let body = Body::Append(Append {
        prev_end: Offset(5),
        prev_term: Term(1),
        entries: vec![],
        commit_end: Offset(0),
    });
    f.handle_message(msg(N3, N2, 3, body)).unwrap();
    let reject = AppendResponse::Reject {
        rejected_prev_end: Offset(5),
        hint_end: Offset(2),
        hint_term: Term(1),
    };
    assert_eq!(
        messages(&mut f),
        vec![msg(N2, N3, 3, Body::AppendResponse(reject))]
    );
}

#[test]
fn a_granted_vote_is_durable_before_it_is_sent() {
    let mut f = node(N2, |_| {});
    let req = VoteRequest {
        pre_vote: false,
        last_end: Offset(0),
        last_term: Term(0),
        transfer: false,
    };
    f.handle_message(msg(N1, N2, 5, Body::VoteRequest(req)))
        .unwrap();
    let hs = HardState {
        term: Term(5),
        vote: Some(N1),
        commit_end: Offset(0),
        damaged: None,
    };
    assert_eq!(persists(&mut f)[0].hard_state, Some(hs));
    assert_eq!(messages(&mut f), vec![]);
    f.handle_persisted(PersistId(1)).unwrap();
    let granted = Body::VoteResponse(VoteResponse {
        pre_vote: false,
        granted: true,
    });
    assert_eq!(messages(&mut f), vec![msg(N2, N1, 5, granted)]);
}

#[test]
fn pipelining_stops_at_the_in_flight_limit() {
    let mut r = node(N1, |c| c.max_inflight_msgs = 2);
    // Become leader as in `leader()`, but with the small window.
    tick_until_messages(&mut r);
    let grant = |pre| {
        Body::VoteResponse(VoteResponse {
            pre_vote: pre,
            granted: true,
        })
    };
    r.handle_message(msg(N2, N1, 1, grant(true))).unwrap();
    r.handle_persisted(PersistId(1)).unwrap();
    r.handle_message(msg(N2, N1, 1, grant(false))).unwrap();
    messages(&mut r);
    ack(&mut r, N2, 1);
    messages(&mut r);
    for _ in 0..5 {
        r.propose(Bytes::from_static(b"x"), 2).unwrap();
    }
    let to_n2 = messages(&mut r).into_iter().filter(|m| m.to == N2).count();
    assert_eq!(to_n2, 2);
    assert_eq!(r.in_flight(N2).map(|(n, _)| n), Some(2));
    ack(&mut r, N2, 3);
    let more: Vec<Message> = messages(&mut r)
        .into_iter()
        .filter(|m| m.to == N2)
        .collect();
    assert_eq!(more.len(), 1, "one acknowledged, one more may go");
}

#[test]
fn commit_counts_only_entries_of_the_leaders_term() {
    let mut r = leader();
    assert_eq!(r.commit_end(), Offset(0));
    ack(&mut r, N2, 1);
    assert_eq!(r.commit_end(), Offset(1));
    let meta = r.propose(Bytes::from_static(b"abcd"), 4).unwrap();
    assert_eq!((meta.first, meta.end), (Offset(1), Offset(5)));
    for p in persists(&mut r) {
        r.handle_persisted(p.id).unwrap();
    }
    ack(&mut r, N3, 5);
    assert_eq!(r.commit_end(), Offset(5));
}

#[test]
fn check_quorum_steps_a_lonely_leader_down() {
    let mut r = leader();
    for _ in 0..25 {
        r.handle_tick().unwrap();
    }
    assert_eq!(r.role(), Role::Follower);
    assert!(matches!(
        r.propose(Bytes::new(), 1),
        Err(ProposeError::NotLeader { .. })
    ));
}

#[test]
fn read_index_needs_a_quorum_heartbeat_round() {
    let mut r = leader();
    ack(&mut r, N2, 1);
    messages(&mut r);
    r.read_index(7).unwrap();
    let beats = messages(&mut r);
    assert_eq!(
        beats,
        vec![
            msg(
                N1,
                N2,
                1,
                Body::Heartbeat(Heartbeat {
                    commit_end: Offset(1),
                    read_ctx: 1
                })
            ),
            msg(
                N1,
                N3,
                1,
                Body::Heartbeat(Heartbeat {
                    commit_end: Offset(0),
                    read_ctx: 1
                })
            ),
        ]
    );
    r.handle_applied(Offset(1));
    assert_eq!(r.poll_read(), None);
    let resp = Body::HeartbeatResponse(HeartbeatResponse {
        read_ctx: 1,
        repair_from: None,
    });
    r.handle_message(msg(N3, N1, 1, resp)).unwrap();
    assert_eq!(
        r.poll_read(),
        Some(ReadyRead {
            ctx: 7,
            index: Offset(1)
        })
    );
}

#[test]
fn unconfirmed_reads_fail_when_leadership_is_lost() {
    let mut r = leader();
    ack(&mut r, N2, 1);
    r.read_index(9).unwrap();
    for _ in 0..25 {
        r.handle_tick().unwrap();
    }
    assert_eq!(r.role(), Role::Follower);
    assert_eq!(r.poll_failed_read(), Some(9));
    assert_eq!(r.poll_read(), None);
}

#[test]
fn transfer_sends_timeout_now_to_a_caught_up_target() {
    let mut r = leader();
    ack(&mut r, N2, 1);
    messages(&mut r);
    r.transfer_leadership(N2).unwrap();
    assert_eq!(messages(&mut r), vec![msg(N1, N2, 1, Body::TimeoutNow)]);
    assert!(matches!(
        r.propose(Bytes::new(), 1),
        Err(ProposeError::TransferInProgress { to: N2 })
    ));
}

#[test]
fn membership_changes_wait_for_a_commit_in_term_and_go_one_at_a_time() {
    let mut r = leader();
    let add = ConfChange::AddLearner(NodeId(4));
    assert!(matches!(
        r.change_membership(add),
        Err(ChangeError::TermNotCommitted)
    ));
    ack(&mut r, N2, 1);
    let meta = r.change_membership(add).unwrap();
    assert_eq!(meta.first, Offset(1));
    assert!(r.membership().learners().contains(&NodeId(4)));
    let promote = ConfChange::Promote(NodeId(4));
    assert!(matches!(
        r.change_membership(promote),
        Err(ChangeError::InProgress { at: Offset(1) })
    ));
    for p in persists(&mut r) {
        r.handle_persisted(p.id).unwrap();
    }
    ack(&mut r, N2, 2);
    assert!(matches!(
        r.change_membership(promote),
        Err(ChangeError::NotCaughtUp { .. })
    ));
}

#[test]
fn a_removed_leader_hands_over_and_steps_down_once_committed() {
    let mut r = leader();
    ack(&mut r, N2, 1);
    ack(&mut r, N3, 1);
    r.change_membership(ConfChange::Remove(N1)).unwrap();
    for p in persists(&mut r) {
        r.handle_persisted(p.id).unwrap();
    }
    messages(&mut r);
    ack(&mut r, N2, 2);
    assert_eq!(
        r.role(),
        Role::Leader,
        "needs a majority of the new voters {{2, 3}}"
    );
    ack(&mut r, N3, 2);
    assert_eq!(r.role(), Role::Follower);
    let out = messages(&mut r);
    assert!(out.iter().any(|m| m.body == Body::TimeoutNow), "{out:?}");
}

#[test]
fn a_follower_behind_the_log_start_gets_a_snapshot() {
    let mut r = leader();
    ack(&mut r, N2, 1);
    r.propose(Bytes::from_static(b"x"), 3).unwrap();
    for p in persists(&mut r) {
        r.handle_persisted(p.id).unwrap();
    }
    ack(&mut r, N2, 4);
    r.handle_applied(Offset(4));
    r.compact(Offset(4), Bytes::from_static(b"state")).unwrap();
    messages(&mut r);
    // n3 never answered the first append; its heartbeat answer prompts a resend from 0,
    // which is before the log start now.
    let resp = Body::HeartbeatResponse(HeartbeatResponse {
        read_ctx: 0,
        repair_from: None,
    });
    r.handle_message(msg(N3, N1, 1, resp)).unwrap();
    let out = messages(&mut r);
    assert!(
        matches!(&out[..], [Message { to: N3, body: Body::InstallSnapshot(s), .. }] if s.meta.end == Offset(4)),
        "{out:?}"
    );
}

#[test]
fn a_corrupt_replica_does_not_campaign_until_repaired() {
    let mut f = node(N2, |_| {});
    let entries = vec![Entry::data(Offset(0), Term(1), Bytes::from_static(b"a"), 4)];
    let body = Body::Append(Append {
        prev_end: Offset(0),
        prev_term: Term(0),
        entries,
        commit_end: Offset(4),
    });
    f.handle_message(msg(N1, N2, 1, body)).unwrap();
    f.handle_persisted(PersistId(1)).unwrap();
    persists(&mut f);
    messages(&mut f);
    f.report_corruption(Offset(2)).unwrap();
    assert!(f.is_corrupt());
    assert_eq!(
        f.commit_end(),
        Offset(0),
        "nothing damaged counts as committed"
    );
    // First the damage mark (pre-damage position: term 1, end 4) must be durable...
    let hs = HardState {
        term: Term(1),
        vote: None,
        commit_end: Offset(0),
        damaged: Some((Term(1), Offset(4))),
    };
    assert_eq!(
        persists(&mut f),
        vec![PersistRequest {
            id: PersistId(2),
            hard_state: Some(hs),
            log_end: Offset(4)
        }]
    );
    assert_eq!(
        f.log().all_entries().len(),
        1,
        "not cut before the mark is durable"
    );
    // ...then the log is cut at the damaged batch.
    f.handle_persisted(PersistId(2)).unwrap();
    assert_eq!(
        f.log().all_entries().len(),
        0,
        "the damaged batch is dropped"
    );
    assert_eq!(persists(&mut f)[0].log_end, Offset(0));
    for _ in 0..100 {
        f.handle_tick().unwrap();
    }
    assert_eq!(f.role(), Role::Follower);
    assert!(
        messages(&mut f)
            .iter()
            .all(|m| !matches!(m.body, Body::VoteRequest(_)))
    );
    // A candidate with less than the replica held before the damage gets no vote.
    let req = VoteRequest {
        pre_vote: true,
        last_end: Offset(1),
        last_term: Term(1),
        transfer: false,
    };
    f.handle_message(msg(N3, N2, 2, Body::VoteRequest(req)))
        .unwrap();
    let refused = Body::VoteResponse(VoteResponse {
        pre_vote: true,
        granted: false,
    });
    assert_eq!(messages(&mut f), vec![msg(N2, N3, 1, refused)]);
}

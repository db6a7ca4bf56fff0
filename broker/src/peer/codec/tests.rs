//! Every Raft message survives Message → peer frame bytes → Message; hostile frames are
//! typed errors.

use bytes::{Bytes, BytesMut};
use floe_protocol::FrameLimits;
use floe_protocol::peer::{PeerFrame, PeerHello, PeerRequest, decode_peer_frame};
use floe_raft::message::{
    Append, AppendResponse, Body, Heartbeat, HeartbeatResponse, InstallSnapshot, VoteRequest,
    VoteResponse,
};
use floe_raft::{Entry, Membership, Message, NodeId, Offset, SnapshotMeta, Term};

use super::{PeerCodecError, from_request, to_request};

fn data(first: u64, term: u64, records: u32) -> Entry {
    let b = floe_storage::testing::stamped_batch(first, term, records, b"payload", 7);
    Entry::data(
        Offset(first),
        Term(term),
        Bytes::from(b),
        u64::from(records),
    )
}

fn m(body: Body) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(5),
        body,
    }
}

fn through_the_wire(group: u64, msg: &Message) -> Vec<(u64, Message)> {
    let mut buf = BytesMut::new();
    to_request(group, msg).encode_frame(0, &mut buf);
    let flat = buf.freeze();
    let (_, frame, used) = decode_peer_frame(&flat, FrameLimits::default()).expect("decode");
    assert_eq!(used, flat.len());
    let PeerFrame::Request(req) = frame else {
        panic!("a request frame expected");
    };
    from_request(req).expect("raft message")
}

fn all_kinds() -> Vec<Message> {
    let members = Membership::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(9)]);
    vec![
        m(Body::VoteRequest(VoteRequest {
            pre_vote: true,
            last_end: Offset(40),
            last_term: Term(4),
            transfer: false,
        })),
        m(Body::VoteRequest(VoteRequest {
            pre_vote: false,
            last_end: Offset(0),
            last_term: Term(0),
            transfer: true,
        })),
        m(Body::VoteResponse(VoteResponse {
            pre_vote: false,
            granted: true,
        })),
        m(Body::Append(Append {
            prev_end: Offset(10),
            prev_term: Term(3),
            entries: vec![
                data(10, 4, 3),
                Entry::noop(Offset(13), Term(5)),
                Entry::config(Offset(14), Term(5), members.clone()),
                data(15, 5, 1),
            ],
            commit_end: Offset(9),
        })),
        m(Body::Append(Append {
            prev_end: Offset(10),
            prev_term: Term(3),
            entries: vec![data(10, 4, 2)],
            commit_end: Offset(10),
        })),
        m(Body::Append(Append {
            prev_end: Offset(0),
            prev_term: Term(0),
            entries: Vec::new(),
            commit_end: Offset(0),
        })),
        m(Body::AppendResponse(AppendResponse::Success {
            match_end: Offset(16),
        })),
        m(Body::AppendResponse(AppendResponse::Reject {
            rejected_prev_end: Offset(16),
            hint_end: Offset(12),
            hint_term: Term(2),
        })),
        m(Body::Heartbeat(Heartbeat {
            commit_end: Offset(7),
            read_ctx: 3,
        })),
        m(Body::HeartbeatResponse(HeartbeatResponse {
            read_ctx: 3,
            repair_from: Some(Offset(5)),
        })),
        m(Body::HeartbeatResponse(HeartbeatResponse {
            read_ctx: 0,
            repair_from: None,
        })),
        m(Body::TimeoutNow),
        m(Body::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                end: Offset(100),
                term: Term(4),
                membership: members.clone(),
            },
            data: Bytes::new(),
        })),
        m(Body::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                end: Offset(100),
                term: Term(4),
                membership: members,
            },
            data: Bytes::from_static(b"state"),
        })),
    ]
}

#[test]
fn every_message_kind_round_trips() {
    for msg in all_kinds() {
        assert_eq!(
            through_the_wire(77, &msg),
            vec![(77, msg.clone())],
            "{msg:?}"
        );
    }
}

#[test]
fn a_coalesced_heartbeat_yields_one_message_per_group() {
    let hb = m(Body::Heartbeat(Heartbeat {
        commit_end: Offset(7),
        read_ctx: 0,
    }));
    let PeerRequest::Heartbeat(mut one) = to_request(1, &hb) else {
        panic!("heartbeat expected");
    };
    let mut second = one.entries[0].clone();
    second.group_id = 2;
    second.term = 9;
    one.entries.push(second);
    let out = from_request(PeerRequest::Heartbeat(one)).expect("messages");
    assert_eq!(out.len(), 2);
    assert_eq!((out[1].0, out[1].1.term), (2, Term(9)));
}

fn append_with(batches: Bytes, prev_end: u64) -> PeerRequest {
    let msg = m(Body::Append(Append {
        prev_end: Offset(prev_end),
        prev_term: Term(1),
        entries: Vec::new(),
        commit_end: Offset(0),
    }));
    let PeerRequest::AppendEntries(mut a) = to_request(1, &msg) else {
        panic!("append expected");
    };
    a.batches = batches;
    PeerRequest::AppendEntries(a)
}

#[test]
fn malformed_appends_are_typed_errors() {
    let good = Bytes::from(floe_storage::testing::stamped_batch(10, 1, 2, b"xy", 0));
    // Cut short.
    let cut = good.slice(..good.len() - 1);
    assert!(matches!(
        from_request(append_with(cut, 10)),
        Err(PeerCodecError::BadBatches { at: 0 })
    ));
    // Garbage after a good batch.
    let mut trailing = good.to_vec();
    trailing.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(
        from_request(append_with(Bytes::from(trailing), 10)),
        Err(PeerCodecError::BadBatches { .. })
    ));
    // Not starting at prev_end.
    assert!(matches!(
        from_request(append_with(good.clone(), 11)),
        Err(PeerCodecError::NotContiguous {
            expected: 11,
            got: 10
        })
    ));
    // A gap between batches.
    let mut gap = good.to_vec();
    gap.extend_from_slice(&floe_storage::testing::stamped_batch(13, 1, 1, b"z", 0));
    assert!(matches!(
        from_request(append_with(Bytes::from(gap), 10)),
        Err(PeerCodecError::NotContiguous {
            expected: 12,
            got: 13
        })
    ));
    // A control batch that is not a control record.
    let mut control = floe_storage::testing::stamped_batch(10, 1, 1, b"zz", 0);
    control[floe_protocol::batch::header::ATTRIBUTES_AT] |= 1 << 5;
    floe_protocol::batch::seal_crc(&mut control);
    assert!(matches!(
        from_request(append_with(Bytes::from(control), 10)),
        Err(PeerCodecError::BadControl(_))
    ));
}

#[test]
fn non_raft_and_chunked_requests_are_refused() {
    let hello = PeerRequest::Hello(PeerHello {
        cluster_id: "c".into(),
        node_id: 1,
        apis: Vec::new(),
    });
    assert!(matches!(
        from_request(hello),
        Err(PeerCodecError::NotRaft(_))
    ));
    let snap = m(Body::InstallSnapshot(InstallSnapshot {
        meta: SnapshotMeta::default(),
        data: Bytes::from_static(b"s"),
    }));
    let PeerRequest::InstallSnapshot(mut s) = to_request(1, &snap) else {
        panic!("snapshot expected");
    };
    s.done = false;
    assert!(matches!(
        from_request(PeerRequest::InstallSnapshot(s)),
        Err(PeerCodecError::ChunkedSnapshot { .. })
    ));
}

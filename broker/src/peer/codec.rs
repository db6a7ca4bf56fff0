//! floe-raft [`Message`] ↔ floe-protocol [`PeerRequest`].
//!
//! Every message of one group maps to one peer request; a heartbeat (or its answer) becomes a
//! coalesced heartbeat with one entry, and a coalesced heartbeat from the wire yields one
//! message per entry. Appends carry their entries as whole stored batches back to back: data
//! entries are the batches as the leader stores them, no-op and configuration entries are
//! encoded as the same control batches the partition log stores, so a follower appends the
//! very bytes the leader has. Snapshots travel in one chunk.

use bytes::{Bytes, BytesMut};
use floe_protocol::batch::{BatchHeader, ControlRecord, HEADER_LEN, RaftConfig};
use floe_protocol::peer::{
    AppendEntries, AppendEntriesResponse, CoalescedHeartbeat, CoalescedHeartbeatResponse,
    HeartbeatEntry, HeartbeatResponseEntry, InstallSnapshot, PeerMembership, PeerRequest,
    SnapshotKind, TimeoutNow, VoteRequest, VoteResponse,
};
use floe_raft::message::{self, Append, AppendResponse, Body};
use floe_raft::{Entry, EntryKind, Membership, Message, NodeId, Offset, SnapshotMeta, Term};

use crate::partition::raft_log::{control_batch, to_entry};

/// Why a peer frame does not map to Raft messages.
#[derive(Debug, thiserror::Error)]
pub enum PeerCodecError {
    /// The request is not Raft traffic (a handshake or a forwarded client request).
    #[error("peer request {0:?} is not a Raft message")]
    NotRaft(floe_protocol::peer::PeerApiKey),
    /// The batches of an append are malformed (cut short, or a length out of bounds).
    #[error("append batches malformed at byte {at}")]
    BadBatches {
        /// Byte position in the batches.
        at: usize,
    },
    /// The batches of an append are not contiguous from `prev_end`.
    #[error("append batch at {got} does not follow {expected}")]
    NotContiguous {
        /// Where the batch should start.
        expected: u64,
        /// Where it starts.
        got: u64,
    },
    /// A control batch of an append does not decode.
    #[error("append carries a bad control batch")]
    BadControl(#[source] crate::partition::RaftLogError),
    /// Snapshots in several chunks are not supported yet.
    #[error("chunked snapshots are not supported (chunk at {chunk_offset}, done: {done})")]
    ChunkedSnapshot {
        /// The chunk's offset.
        chunk_offset: u64,
        /// Whether it is the last chunk.
        done: bool,
    },
}

/// Encodes a control entry as its stored control batch, stamped.
fn control_bytes(e: &Entry, rec: &ControlRecord) -> Bytes {
    // A one-record control batch always builds; `control_batch` cannot fail for it.
    let mut b = control_batch(rec).unwrap_or_default();
    if b.len() >= HEADER_LEN {
        floe_protocol::batch::stamp(&mut b, e.first().0, e.term().0);
    }
    Bytes::from(b)
}

fn entry_bytes(e: &Entry) -> Bytes {
    match e.kind() {
        EntryKind::Data { payload, .. } => payload.clone(),
        EntryKind::Noop => control_bytes(e, &ControlRecord::NoOp),
        EntryKind::Config(m) => control_bytes(
            e,
            &ControlRecord::RaftConfig(RaftConfig {
                voters: m.voters().iter().map(|n| n.0).collect(),
                learners: m.learners().iter().map(|n| n.0).collect(),
                outgoing_voters: Vec::new(),
            }),
        ),
    }
}

fn membership(m: &Membership) -> PeerMembership {
    PeerMembership {
        voters: m.voters().iter().map(|n| n.0).collect(),
        learners: m.learners().iter().map(|n| n.0).collect(),
    }
}

/// The peer request carrying `msg` of group `group_id`.
pub fn to_request(group_id: u64, msg: &Message) -> PeerRequest {
    let (from, to, term) = (msg.from.0, msg.to.0, msg.term.0);
    match &msg.body {
        Body::VoteRequest(r) => PeerRequest::Vote(VoteRequest {
            group_id,
            from,
            to,
            term,
            last_end: r.last_end.0,
            last_term: r.last_term.0,
            pre_vote: r.pre_vote,
            leadership_transfer: r.transfer,
        }),
        Body::VoteResponse(r) => PeerRequest::VoteResponse(VoteResponse {
            group_id,
            from,
            to,
            term,
            granted: r.granted,
            pre_vote: r.pre_vote,
        }),
        Body::Append(a) => {
            let parts: Vec<Bytes> = a.entries.iter().map(entry_bytes).collect();
            let batches = match parts.as_slice() {
                [one] => one.clone(),
                _ => {
                    let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                    for p in &parts {
                        buf.extend_from_slice(p);
                    }
                    buf.freeze()
                }
            };
            PeerRequest::AppendEntries(AppendEntries {
                group_id,
                from,
                to,
                term,
                prev_end: a.prev_end.0,
                prev_term: a.prev_term.0,
                commit_end: a.commit_end.0,
                batches,
            })
        }
        Body::AppendResponse(r) => {
            let (success, match_end, rejected_prev_end, hint_end, hint_term) = match *r {
                AppendResponse::Success { match_end } => (true, match_end.0, 0, 0, 0),
                AppendResponse::Reject {
                    rejected_prev_end,
                    hint_end,
                    hint_term,
                } => (false, 0, rejected_prev_end.0, hint_end.0, hint_term.0),
            };
            PeerRequest::AppendEntriesResponse(AppendEntriesResponse {
                group_id,
                from,
                to,
                term,
                success,
                match_end,
                rejected_prev_end,
                hint_end,
                hint_term,
            })
        }
        Body::Heartbeat(h) => PeerRequest::Heartbeat(CoalescedHeartbeat {
            from,
            to,
            entries: vec![HeartbeatEntry {
                group_id,
                term,
                commit_end: h.commit_end.0,
                read_ctx: h.read_ctx,
                // A per-group heartbeat from the core never quiesces; the multi-raft host's
                // coalesced beats set it.
                quiesce: false,
            }],
        }),
        Body::HeartbeatResponse(r) => PeerRequest::HeartbeatResponse(CoalescedHeartbeatResponse {
            from,
            to,
            entries: vec![HeartbeatResponseEntry {
                group_id,
                term,
                read_ctx: r.read_ctx,
                repair_from: r.repair_from.map(|o| o.0),
            }],
        }),
        Body::TimeoutNow => PeerRequest::TimeoutNow(TimeoutNow {
            group_id,
            from,
            to,
            term,
        }),
        Body::InstallSnapshot(s) => PeerRequest::InstallSnapshot(InstallSnapshot {
            group_id,
            from,
            to,
            term,
            kind: if s.data.is_empty() {
                SnapshotKind::LogStart
            } else {
                SnapshotKind::StateMachine
            },
            end: s.meta.end.0,
            snapshot_term: s.meta.term.0,
            membership: membership(&s.meta.membership),
            chunk_offset: 0,
            data: s.data.clone(),
            done: true,
        }),
    }
}

fn msg(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

/// Splits an append's batches into entries, checking bounds and contiguity from `prev_end`.
fn entries_of(batches: &Bytes, prev_end: u64) -> Result<Vec<Entry>, PeerCodecError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut expected = prev_end;
    while pos < batches.len() {
        let rest = &batches[pos..];
        let h = BatchHeader::parse(rest).map_err(|_| PeerCodecError::BadBatches { at: pos })?;
        let len = h.batch_len as usize;
        if len < HEADER_LEN || len > rest.len() || h.record_count == 0 {
            return Err(PeerCodecError::BadBatches { at: pos });
        }
        if h.base_offset != expected {
            return Err(PeerCodecError::NotContiguous {
                expected,
                got: h.base_offset,
            });
        }
        let entry = to_entry(batches.slice(pos..pos + len)).map_err(PeerCodecError::BadControl)?;
        expected = entry.end().0;
        out.push(entry);
        pos += len;
    }
    Ok(out)
}

/// The Raft messages a peer request carries, each with its group id.
pub fn from_request(req: PeerRequest) -> Result<Vec<(u64, Message)>, PeerCodecError> {
    let one = |group: u64, m: Message| Ok(vec![(group, m)]);
    match req {
        PeerRequest::Vote(r) => one(
            r.group_id,
            msg(
                r.from,
                r.to,
                r.term,
                Body::VoteRequest(message::VoteRequest {
                    pre_vote: r.pre_vote,
                    last_end: Offset(r.last_end),
                    last_term: Term(r.last_term),
                    transfer: r.leadership_transfer,
                }),
            ),
        ),
        PeerRequest::VoteResponse(r) => one(
            r.group_id,
            msg(
                r.from,
                r.to,
                r.term,
                Body::VoteResponse(message::VoteResponse {
                    pre_vote: r.pre_vote,
                    granted: r.granted,
                }),
            ),
        ),
        PeerRequest::AppendEntries(a) => {
            let entries = entries_of(&a.batches, a.prev_end)?;
            one(
                a.group_id,
                msg(
                    a.from,
                    a.to,
                    a.term,
                    Body::Append(Append {
                        prev_end: Offset(a.prev_end),
                        prev_term: Term(a.prev_term),
                        entries,
                        commit_end: Offset(a.commit_end),
                    }),
                ),
            )
        }
        PeerRequest::AppendEntriesResponse(r) => {
            let body = if r.success {
                AppendResponse::Success {
                    match_end: Offset(r.match_end),
                }
            } else {
                AppendResponse::Reject {
                    rejected_prev_end: Offset(r.rejected_prev_end),
                    hint_end: Offset(r.hint_end),
                    hint_term: Term(r.hint_term),
                }
            };
            one(
                r.group_id,
                msg(r.from, r.to, r.term, Body::AppendResponse(body)),
            )
        }
        PeerRequest::Heartbeat(h) => Ok(h
            .entries
            .into_iter()
            .map(|e| {
                let body = Body::Heartbeat(message::Heartbeat {
                    commit_end: Offset(e.commit_end),
                    read_ctx: e.read_ctx,
                });
                (e.group_id, msg(h.from, h.to, e.term, body))
            })
            .collect()),
        PeerRequest::HeartbeatResponse(h) => Ok(h
            .entries
            .into_iter()
            .map(|e| {
                let body = Body::HeartbeatResponse(message::HeartbeatResponse {
                    read_ctx: e.read_ctx,
                    repair_from: e.repair_from.map(Offset),
                });
                (e.group_id, msg(h.from, h.to, e.term, body))
            })
            .collect()),
        PeerRequest::TimeoutNow(t) => one(t.group_id, msg(t.from, t.to, t.term, Body::TimeoutNow)),
        PeerRequest::InstallSnapshot(s) => {
            if s.chunk_offset != 0 || !s.done {
                return Err(PeerCodecError::ChunkedSnapshot {
                    chunk_offset: s.chunk_offset,
                    done: s.done,
                });
            }
            let meta = SnapshotMeta {
                end: Offset(s.end),
                term: Term(s.snapshot_term),
                membership: Membership::new(
                    s.membership.voters.into_iter().map(NodeId),
                    s.membership.learners.into_iter().map(NodeId),
                ),
            };
            one(
                s.group_id,
                msg(
                    s.from,
                    s.to,
                    s.term,
                    Body::InstallSnapshot(message::InstallSnapshot { meta, data: s.data }),
                ),
            )
        }
        other => Err(PeerCodecError::NotRaft(other.api_key())),
    }
}

#[cfg(test)]
mod tests;

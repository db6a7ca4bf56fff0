//! Raft messages between peers, and controller forwarding.

use crate::error::ErrorCode;
use crate::wire::wire_struct;
use bytes::Bytes;

wire_struct! {
    /// Log replication for one group. The entries are whole record batches, back to back,
    /// stamped with their base offsets and terms; an entry covers `[base_offset, last_offset]`
    /// and `prev_log_index` is the last offset before the first batch.
    pub struct AppendEntries {
        /// Raft group (partition or controller) id.
        pub group_id: u64,
        /// Sender (leader) node id.
        pub from: u64,
        /// Receiver node id.
        pub to: u64,
        /// Leader's term.
        pub term: u64,
        /// Index (offset) of the entry just before the first batch.
        pub prev_log_index: u64,
        /// Term of that entry.
        pub prev_log_term: u64,
        /// Leader's commit index.
        pub leader_commit: u64,
        /// Batches, back to back (zero copy: slices of the received frame); empty for a probe.
        pub batches: Bytes,
    }
}

wire_struct! {
    /// Answer to [`AppendEntries`]. On rejection the conflict hints let the leader skip back
    /// a whole term at a time.
    pub struct AppendEntriesResponse {
        /// Raft group id.
        pub group_id: u64,
        /// Responder node id.
        pub from: u64,
        /// Leader node id.
        pub to: u64,
        /// Responder's current term.
        pub term: u64,
        /// Whether the entries were accepted.
        pub success: bool,
        /// On success: the last index now matching the leader's log.
        pub match_index: u64,
        /// On rejection: the responder's last log index.
        pub last_log_index: u64,
        /// On rejection: first index of the conflicting term in the responder's log.
        pub conflict_index: Option<u64>,
        /// On rejection: the conflicting term.
        pub conflict_term: Option<u64>,
    }
}

wire_struct! {
    /// A pre-vote (`pre_vote = true`, term not incremented on the candidate) or vote request.
    pub struct VoteRequest {
        /// Raft group id.
        pub group_id: u64,
        /// Candidate node id.
        pub from: u64,
        /// Receiver node id.
        pub to: u64,
        /// The term being campaigned for.
        pub term: u64,
        /// Candidate's last log index.
        pub last_log_index: u64,
        /// Candidate's last log term.
        pub last_log_term: u64,
        /// Pre-vote phase.
        pub pre_vote: bool,
        /// Sent because of a leadership transfer (voters ignore their leader lease).
        pub leadership_transfer: bool,
    }
}

wire_struct! {
    /// Answer to [`VoteRequest`].
    pub struct VoteResponse {
        /// Raft group id.
        pub group_id: u64,
        /// Voter node id.
        pub from: u64,
        /// Candidate node id.
        pub to: u64,
        /// The term of the request (pre-vote) or the voter's term.
        pub term: u64,
        /// Whether the vote is granted.
        pub granted: bool,
        /// Answer to a pre-vote.
        pub pre_vote: bool,
    }
}

wire_struct! {
    /// One group's part of a coalesced heartbeat.
    pub struct HeartbeatEntry {
        /// Raft group id.
        pub group_id: u64,
        /// Leader's term.
        pub term: u64,
        /// Leader's commit index, capped at what the follower is known to hold.
        pub commit: u64,
    }
}

wire_struct! {
    /// Heartbeats for every group led by `from` with a replica on `to`: one message per node
    /// pair per tick.
    pub struct CoalescedHeartbeat {
        /// Leader node id.
        pub from: u64,
        /// Follower node id.
        pub to: u64,
        /// One entry per group.
        pub entries: Vec<HeartbeatEntry>,
    }
}

wire_struct! {
    /// One group's answer in a coalesced heartbeat response.
    pub struct HeartbeatResponseEntry {
        /// Raft group id.
        pub group_id: u64,
        /// Follower's term (higher than the leader's means: step down).
        pub term: u64,
        /// Follower's last log index.
        pub last_log_index: u64,
    }
}

wire_struct! {
    /// Answers to a [`CoalescedHeartbeat`].
    pub struct CoalescedHeartbeatResponse {
        /// Follower node id.
        pub from: u64,
        /// Leader node id.
        pub to: u64,
        /// One entry per group.
        pub entries: Vec<HeartbeatResponseEntry>,
    }
}

wire_struct! {
    /// Leadership transfer: the leader tells an up-to-date follower to campaign at once.
    pub struct TimeoutNow {
        /// Raft group id.
        pub group_id: u64,
        /// Leader node id.
        pub from: u64,
        /// Target node id.
        pub to: u64,
        /// Leader's term.
        pub term: u64,
    }
}

/// What a snapshot transfer carries. Wire: `u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SnapshotKind {
    /// 0: a state-machine snapshot (the controller, user state machines).
    #[default]
    StateMachine = 0,
    /// 1: partition-log catch-up: the follower discards its log and restarts it at
    /// `last_included_index + 1` (the leader's log start); `data` is empty.
    LogStart = 1,
}

impl crate::wire::Wire for SnapshotKind {
    const MIN_LEN: usize = 1;
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode<S: crate::wire::Sink + ?Sized>(&self, out: &mut S) {
        out.put(&[*self as u8]);
    }
    fn decode(r: &mut crate::wire::Reader<'_>) -> Result<Self, crate::wire::DecodeError> {
        let at = r.position();
        match u8::decode(r)? {
            0 => Ok(SnapshotKind::StateMachine),
            1 => Ok(SnapshotKind::LogStart),
            t => Err(crate::wire::DecodeError {
                offset: at,
                kind: crate::wire::DecodeErrorKind::InvalidTag(u64::from(t)),
            }),
        }
    }
}

#[cfg(test)]
impl crate::wire::testing::Arb for SnapshotKind {
    fn arb() -> proptest::strategy::BoxedStrategy<Self> {
        use proptest::strategy::Strategy;
        proptest::sample::select(vec![SnapshotKind::StateMachine, SnapshotKind::LogStart]).boxed()
    }
}

wire_struct! {
    /// One chunk of a snapshot (or a log-start catch-up notice). Chunks are sent in order;
    /// `chunk_offset` is the byte position of `data` in the snapshot.
    pub struct InstallSnapshot {
        /// Raft group id.
        pub group_id: u64,
        /// Leader node id.
        pub from: u64,
        /// Follower node id.
        pub to: u64,
        /// Leader's term.
        pub term: u64,
        /// What is being installed.
        pub kind: SnapshotKind,
        /// Last log index the snapshot covers.
        pub last_included_index: u64,
        /// Term of that index.
        pub last_included_term: u64,
        /// Byte offset of `data` within the snapshot.
        pub chunk_offset: u64,
        /// Snapshot bytes.
        pub data: Bytes,
        /// Last chunk.
        pub done: bool,
    }
}

wire_struct! {
    /// Answer to a snapshot chunk.
    pub struct InstallSnapshotResponse {
        /// Raft group id.
        pub group_id: u64,
        /// Follower node id.
        pub from: u64,
        /// Leader node id.
        pub to: u64,
        /// Follower's term.
        pub term: u64,
        /// Snapshot this answers.
        pub last_included_index: u64,
        /// Next byte offset the follower expects (resend from here on a gap).
        pub next_chunk_offset: u64,
        /// Error (`StorageError`, `StaleEpoch`, ...), `None` on success.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// A client request forwarded to the controller leader by the broker that received it.
    pub struct ForwardRequest {
        /// Node that received the client request.
        pub origin_node: u64,
        /// Authenticated principal of the client, if any.
        pub principal: Option<String>,
        /// The complete client request frame (envelope + body), as received.
        pub frame: Bytes,
    }
}

wire_struct! {
    /// The controller's answer to a [`ForwardRequest`].
    pub struct ForwardResponse {
        /// Forwarding error (`NotController` with `leader`, ...); `None` if `frame` is valid.
        pub error: ErrorCode,
        /// Controller leader, when `error` is `NotController`.
        pub leader: Option<u64>,
        /// The complete client response frame to relay.
        pub frame: Bytes,
    }
}

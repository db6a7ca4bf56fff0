//! Raft messages between peers, and controller forwarding.

use crate::error::ErrorCode;
use crate::wire::wire_struct;
use bytes::Bytes;

wire_struct! {
    /// Log replication for one group. Positions are *ends* (exclusive offsets): the entry
    /// before the first batch ends at `prev_end`, so the first batch's base offset is
    /// `prev_end` (0 for an empty log). The batches are whole record batches, back to back,
    /// stamped with their base offsets and terms; control batches carry Raft no-op and
    /// configuration entries.
    pub struct AppendEntries {
        /// Raft group (partition or controller) id.
        pub group_id: u64,
        /// Sender (leader) node id.
        pub from: u64,
        /// Receiver node id.
        pub to: u64,
        /// Leader's term.
        pub term: u64,
        /// End of the entry just before the first batch.
        pub prev_end: u64,
        /// Term of that entry (0 when `prev_end` is 0).
        pub prev_term: u64,
        /// Leader's commit end (high watermark).
        pub commit_end: u64,
        /// Batches, back to back (zero copy: slices of the received frame); empty for a probe.
        pub batches: Bytes,
    }
}

wire_struct! {
    /// Answer to [`AppendEntries`] (and to a completed snapshot). On success only `match_end`
    /// is meaningful; on rejection the other three, which let the leader skip back a whole
    /// term at a time.
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
        /// On success: end of the responder's durable prefix matching the leader's log.
        pub match_end: u64,
        /// On rejection: the `prev_end` that did not match.
        pub rejected_prev_end: u64,
        /// On rejection: the largest entry boundary at or before `rejected_prev_end` where the
        /// responder's term is at most the leader's `prev_term`.
        pub hint_end: u64,
        /// On rejection: the responder's term at `hint_end`.
        pub hint_term: u64,
    }
}

wire_struct! {
    /// A pre-vote (`pre_vote = true`: nobody's term or vote changes) or vote request.
    pub struct VoteRequest {
        /// Raft group id.
        pub group_id: u64,
        /// Candidate node id.
        pub from: u64,
        /// Receiver node id.
        pub to: u64,
        /// The term being campaigned for.
        pub term: u64,
        /// End of the candidate's log.
        pub last_end: u64,
        /// Term of the candidate's last entry.
        pub last_term: u64,
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
        /// Leader's commit end, capped at what the follower is known to hold.
        pub commit_end: u64,
        /// ReadIndex round this heartbeat confirms (0: none); echoed in the response.
        pub read_ctx: u64,
        /// The group is idle: the follower stops ticking it (no election timer) until the
        /// next message for the group arrives. Lets thousands of idle groups cost nothing.
        pub quiesce: bool,
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
        /// Echo of the heartbeat's `read_ctx`.
        pub read_ctx: u64,
        /// Set by a replica that lost a range to corruption: resend from this offset.
        pub repair_from: Option<u64>,
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
    /// 1: partition-log catch-up: the follower discards its log and restarts it at `end`
    /// (the leader's log start); `data` is empty.
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
    /// Raft group membership (voters and learners, node ids).
    pub struct PeerMembership {
        /// Voting members.
        pub voters: Vec<u64>,
        /// Non-voting members.
        pub learners: Vec<u64>,
    }
}

wire_struct! {
    /// One chunk of a snapshot (or a log-start catch-up notice). Chunks are sent in order;
    /// `chunk_offset` is the byte position of `data` in the snapshot's state bytes.
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
        /// The snapshot covers every offset before `end`; the follower's log restarts at `end`.
        pub end: u64,
        /// Term of the entry ending at `end` (0 if `end` is 0).
        pub snapshot_term: u64,
        /// Membership as of `end`.
        pub membership: PeerMembership,
        /// Byte offset of `data` within the snapshot.
        pub chunk_offset: u64,
        /// Snapshot bytes (empty for `LogStart`).
        pub data: Bytes,
        /// Last chunk.
        pub done: bool,
    }
}

wire_struct! {
    /// Transfer-level answer to a snapshot chunk (the Raft-level answer to a completed
    /// snapshot is an [`AppendEntriesResponse`]).
    pub struct InstallSnapshotResponse {
        /// Raft group id.
        pub group_id: u64,
        /// Follower node id.
        pub from: u64,
        /// Leader node id.
        pub to: u64,
        /// Follower's term.
        pub term: u64,
        /// `end` of the snapshot this answers.
        pub end: u64,
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

wire_struct! {
    /// A broker's call to the controller leader: propose one controller command (the
    /// broker's own registration, heartbeat or producer-id request, or a topic change a client
    /// asked it for) and answer once it is committed and applied.
    pub struct ControllerCallRequest {
        /// Node that makes the call.
        pub origin_node: u64,
        /// The controller command payload (the broker's versioned command encoding).
        pub command: Bytes,
    }
}

wire_struct! {
    /// The controller leader's answer to a [`ControllerCallRequest`].
    pub struct ControllerCallResponse {
        /// `NotController` (with `leader`) off the leader, `RequestTimedOut` when the command's
        /// outcome is unknown; else the command's own outcome (`None`, `TopicAlreadyExists`,
        /// `InvalidReplicationFactor`, ...).
        pub error: ErrorCode,
        /// Controller leader, when `error` is `NotController`.
        pub leader: Option<u64>,
        /// Why the command failed, for people.
        pub message: Option<String>,
        /// The command's result value: the registration epoch, the created topic's id, or the
        /// first id of a producer-id block (0 otherwise).
        pub value: u64,
        /// The size of a producer-id block (0 otherwise).
        pub count: u32,
        /// The metadata version once the command applied.
        pub version: u64,
    }
}

wire_struct! {
    /// A broker's read of the controller's metadata: answered at once if the state's version
    /// is above `known_version`, else when it rises or after `max_wait_ms`.
    pub struct ControllerFetchRequest {
        /// Node that makes the call.
        pub origin_node: u64,
        /// The version the caller holds (0: none).
        pub known_version: u64,
        /// Longest the controller holds the call before answering with no state.
        pub max_wait_ms: u32,
    }
}

wire_struct! {
    /// The controller leader's answer to a [`ControllerFetchRequest`].
    pub struct ControllerFetchResponse {
        /// `NotController` (with `leader`) off the leader.
        pub error: ErrorCode,
        /// Controller leader, when `error` is `NotController`.
        pub leader: Option<u64>,
        /// The state's version.
        pub version: u64,
        /// The whole state (the controller's checksummed snapshot encoding); empty when the
        /// version is not above the caller's.
        pub state: Bytes,
    }
}

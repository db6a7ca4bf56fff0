//! Messages between the replicas of one group. Plain data: the broker encodes them on the wire.

use bytes::Bytes;

use crate::entry::Entry;
use crate::log::SnapshotMeta;
use crate::types::{NodeId, Offset, Term};

/// A message from one replica to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: Body,
}

/// The kinds of message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Asks for a (pre-)vote.
    VoteRequest(VoteRequest),
    /// Answers a (pre-)vote request.
    VoteResponse(VoteResponse),
    /// Appends entries after `prev_end` (the leader's AppendEntries).
    Append(Append),
    /// Answers an append or a snapshot.
    AppendResponse(AppendResponse),
    /// Leader liveness, commit and ReadIndex confirmation.
    Heartbeat(Heartbeat),
    /// Answers a heartbeat.
    HeartbeatResponse(HeartbeatResponse),
    /// Tells the receiver to campaign now (leadership transfer).
    TimeoutNow,
    /// Replaces the receiver's log with a snapshot / log start (catch-up).
    InstallSnapshot(InstallSnapshot),
}

/// A (pre-)vote request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// A pre-vote does not change anyone's term or vote.
    pub pre_vote: bool,
    /// End of the candidate's log.
    pub last_end: Offset,
    /// Term of the candidate's last entry.
    pub last_term: Term,
    /// Set when campaigning on a leadership transfer: voters ignore their leader lease.
    pub transfer: bool,
}

/// A (pre-)vote answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    /// Answers a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// AppendEntries: `entries` follow the entry ending at `prev_end` with term `prev_term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    /// Where the first new entry starts.
    pub prev_end: Offset,
    /// Term of the entry ending at `prev_end` (`Term(0)` at offset 0).
    pub prev_term: Term,
    /// The entries, contiguous from `prev_end`.
    pub entries: Vec<Entry>,
    /// The leader's commit end (high watermark).
    pub commit_end: Offset,
}

/// The answer to an append or snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResponse {
    /// The follower's durable log matches the leader's up to `match_end`.
    Success {
        /// End of the matching, durable prefix.
        match_end: Offset,
    },
    /// The follower's log does not hold `prev_term` at `rejected_prev_end`.
    Reject {
        /// The `prev_end` that was rejected.
        rejected_prev_end: Offset,
        /// Conflict hint: the largest entry boundary at or before `rejected_prev_end` where
        /// the follower's term is at most the leader's `prev_term`...
        hint_end: Offset,
        /// ...and the follower's term there.
        hint_term: Term,
    },
}

/// A heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Commit end, capped at what the follower is known to hold.
    pub commit_end: Offset,
    /// ReadIndex round this heartbeat confirms (0: none).
    pub read_ctx: u64,
}

/// The answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// Echo of the heartbeat's `read_ctx`.
    pub read_ctx: u64,
    /// Set by a replica that lost a range to corruption: resend from here.
    pub repair_from: Option<Offset>,
}

/// A snapshot (or just a new log start) for a follower that is behind the leader's log start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    /// Position, term and membership at the snapshot point.
    pub meta: SnapshotMeta,
    /// Application state (empty for a plain partition log).
    pub data: Bytes,
}

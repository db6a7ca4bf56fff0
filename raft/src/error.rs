//! Errors of the core's inputs.

use crate::log::LogError;
use crate::membership::ConfChangeError;
use crate::types::{NodeId, Offset};

/// A fatal failure while handling an input: stop this group and restart it from storage.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// The log's storage failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A leader asked to truncate committed entries: a safety violation (a bug or lost data).
    #[error("asked to truncate at {at}, below commit end {commit_end}")]
    TruncateCommitted {
        /// Where the truncation was asked.
        at: Offset,
        /// The local commit end.
        commit_end: Offset,
    },
}

/// Why a proposal was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Leadership is being transferred.
    #[error("leadership transfer to {to} in progress")]
    TransferInProgress {
        /// The transfer target.
        to: NodeId,
    },
    /// A batch occupies at least one offset.
    #[error("a record batch must hold at least one record")]
    EmptyBatch,
    /// The group failed (see [`RaftError`]).
    #[error(transparent)]
    Fatal(#[from] RaftError),
}

/// Why a leadership transfer was not started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader transfers leadership.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The target is not a voter.
    #[error("{node} is not a voter")]
    NotVoter {
        /// The target.
        node: NodeId,
    },
    /// The leader is the target.
    #[error("already the leader")]
    ToSelf,
}

/// Why a membership change was not started.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Only the leader changes membership.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The leader has not committed an entry of its own term yet (the single-server fix).
    #[error("the leader has not committed an entry of its term yet")]
    TermNotCommitted,
    /// A configuration entry is not committed yet.
    #[error("a membership change at {at} is not committed yet")]
    InProgress {
        /// Offset of the pending configuration entry.
        at: Offset,
    },
    /// Leadership is being transferred.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// A learner must hold the committed log before it can vote.
    #[error("{node} has {match_end}, needs {commit_end} to be promoted")]
    NotCaughtUp {
        /// The learner.
        node: NodeId,
        /// What it holds.
        match_end: Offset,
        /// What it needs.
        commit_end: Offset,
    },
    /// The change does not apply to the current membership.
    #[error(transparent)]
    Invalid(#[from] ConfChangeError),
    /// The group failed (see [`RaftError`]).
    #[error(transparent)]
    Fatal(#[from] RaftError),
}

/// Why a linearizable read was not started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// Only the leader serves ReadIndex.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
}

/// Why a compaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Only applied entries may be compacted.
    #[error("cannot compact to {up_to}: applied only to {applied_end}")]
    NotApplied {
        /// Asked.
        up_to: Offset,
        /// Applied end.
        applied_end: Offset,
    },
    /// Compaction must stop at an entry boundary inside the log.
    #[error("{up_to} is not an entry boundary in the log")]
    NotBoundary {
        /// Asked.
        up_to: Offset,
    },
    /// The group failed (see [`RaftError`]).
    #[error(transparent)]
    Fatal(#[from] RaftError),
}

/// Why a [`crate::Config`] was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Heartbeats must come more often than election timeouts.
    #[error(
        "heartbeat_ticks ({heartbeat_ticks}) must be at least 1 and below election_ticks ({election_ticks})"
    )]
    Timing {
        /// Configured heartbeat interval.
        heartbeat_ticks: u32,
        /// Configured election timeout.
        election_ticks: u32,
    },
    /// Flow control must allow at least one message and one byte in flight.
    #[error("max_inflight_msgs and max_inflight_bytes must be positive")]
    FlowControl,
}

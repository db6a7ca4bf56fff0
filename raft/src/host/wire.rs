//! What hosts send each other: per-group Raft messages plus coalesced heartbeats.

use crate::message::Message;
use crate::types::{NodeId, Offset, Term};

/// Identifies a Raft group (a partition, or the controller).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

/// A Raft message of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMessage {
    /// The group.
    pub group: GroupId,
    /// The message.
    pub message: Message,
}

/// One group's heartbeat inside a coalesced node heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beat {
    /// The group.
    pub group: GroupId,
    /// The leader's term.
    pub term: Term,
    /// Commit end for this follower.
    pub commit_end: Offset,
    /// ReadIndex round this heartbeat confirms (0: none).
    pub read_ctx: u64,
    /// The group is idle: stop ticking it until something happens.
    pub quiesce: bool,
}

/// One group's heartbeat answer inside a coalesced node heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeatResponse {
    /// The group.
    pub group: GroupId,
    /// The follower's term.
    pub term: Term,
    /// Echo of the beat's `read_ctx`.
    pub read_ctx: u64,
    /// Set by a damaged replica: resend from here.
    pub repair_from: Option<Offset>,
}

/// Everything one node sends another in one go: at most one per peer per poll round, and at
/// least one per peer per heartbeat interval (the node-level heartbeat, possibly empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transmit {
    /// Sender node.
    pub from: NodeId,
    /// Receiver node.
    pub to: NodeId,
    /// Per-group messages other than heartbeats.
    pub messages: Vec<GroupMessage>,
    /// Coalesced heartbeats of the groups `from` leads.
    pub beats: Vec<Beat>,
    /// Coalesced heartbeat answers.
    pub beat_responses: Vec<BeatResponse>,
}

impl Transmit {
    /// Whether it carries nothing but the node-level heartbeat.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.beats.is_empty() && self.beat_responses.is_empty()
    }
}

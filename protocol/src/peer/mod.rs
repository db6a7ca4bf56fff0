//! The peer ↔ peer protocol (QUIC ALPN [`PEER_ALPN`] = `floe-peer/1`, mutual TLS).
//!
//! One QUIC connection per node pair carries the Raft traffic of every group both nodes host.
//! Ids are plain `u64`s (group id, node id, term, log index = record offset); the broker maps
//! them to and from the Raft crate's types.
//!
//! Streams: after [`PeerHello`] (a unary call on the first bidirectional stream), the sender
//! of Raft messages uses long-lived unidirectional streams, each carrying a sequence of
//! request-kind frames with correlation id 0 and no response (responses such as
//! [`AppendEntriesResponse`] are messages of their own). Messages of one Raft group must stay on
//! one stream to keep their order; a sender may spread groups over several streams (for
//! example by `group_id % n`) so one slow partition never blocks another. Snapshot chunks use
//! a stream of their own. [`ForwardRequest`], [`ControllerCallRequest`] and
//! [`ControllerFetchRequest`] are unary calls: one bidirectional stream, one request frame, one
//! response frame.

mod raft;

pub use raft::*;

use crate::frame::{api_keys, message_enum, protocol_frames};
use crate::wire::wire_struct;

/// QUIC ALPN identifier of the peer protocol.
pub const PEER_ALPN: &[u8] = b"floe-peer/1";

api_keys! {
    /// Peer api keys (a numbering separate from the client protocol's).
    pub enum PeerApiKey {
        /// Peer handshake.
        Hello = 0,
        /// Raft append entries (log replication) for one group.
        AppendEntries = 1,
        /// Answer to append entries.
        AppendEntriesResponse = 2,
        /// Pre-vote or vote request.
        Vote = 3,
        /// Answer to a (pre-)vote.
        VoteResponse = 4,
        /// Coalesced heartbeats for many groups.
        Heartbeat = 5,
        /// Coalesced heartbeat answers.
        HeartbeatResponse = 6,
        /// Leadership transfer: start an election now.
        TimeoutNow = 7,
        /// A chunk of a snapshot or of log-start catch-up data.
        InstallSnapshot = 8,
        /// Answer to a snapshot chunk.
        InstallSnapshotResponse = 9,
        /// A client request forwarded to the controller leader.
        Forward = 10,
        /// A broker's proposal of a controller command to the controller leader.
        ControllerCall = 11,
        /// A broker's (long-poll) read of the controller's metadata state.
        ControllerFetch = 12,
    }
}

wire_struct! {
    /// First frame on a peer connection: who is calling and what it speaks.
    pub struct PeerHello {
        /// Cluster id; a mismatch is `ClusterIdMismatch`.
        pub cluster_id: String,
        /// The caller's node id (must match its certificate).
        pub node_id: u64,
        /// Peer apis and versions the caller speaks.
        pub apis: Vec<crate::client::ApiVersionRange>,
    }
}

wire_struct! {
    /// Answer to [`PeerHello`].
    pub struct PeerHelloResponse {
        /// Error.
        pub error: crate::error::ErrorCode,
        /// The answering node's id.
        pub node_id: u64,
        /// Peer apis and versions the answering node speaks.
        pub apis: Vec<crate::client::ApiVersionRange>,
    }
}

message_enum! {
    /// A peer request / one-way message body.
    pub enum PeerRequest: PeerApiKey, Request {
        Hello(PeerHello),
        AppendEntries(AppendEntries),
        AppendEntriesResponse(AppendEntriesResponse),
        Vote(VoteRequest),
        VoteResponse(VoteResponse),
        Heartbeat(CoalescedHeartbeat),
        HeartbeatResponse(CoalescedHeartbeatResponse),
        TimeoutNow(TimeoutNow),
        InstallSnapshot(InstallSnapshot),
        InstallSnapshotResponse(InstallSnapshotResponse),
        Forward(ForwardRequest),
        ControllerCall(ControllerCallRequest),
        ControllerFetch(ControllerFetchRequest),
    }
}

message_enum! {
    /// A peer response body (to the unary calls `Hello`, `Forward`, `ControllerCall` and
    /// `ControllerFetch`).
    pub enum PeerResponse: PeerApiKey, Response {
        Hello(PeerHelloResponse),
        Forward(ForwardResponse),
        ControllerCall(ControllerCallResponse),
        ControllerFetch(ControllerFetchResponse),
    }
}

protocol_frames! {
    /// One decoded peer-protocol frame.
    pub enum PeerFrame: PeerApiKey {
        Request(PeerRequest),
        Response(PeerResponse),
    }
    decode = decode_peer_frame;
}

#[cfg(test)]
mod tests;

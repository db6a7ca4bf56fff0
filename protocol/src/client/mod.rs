//! The client ↔ broker protocol (QUIC ALPN [`ALPN`] = `floe/1`).
//!
//! Every unary call is one bidirectional QUIC stream opened by the client: one request frame,
//! one response frame, then both sides finish the stream. A subscription is a long-lived
//! bidirectional stream: the client sends [`SubscribeRequest`], the broker answers
//! [`SubscribeResponse`] and then sends [`SubscribeEvent`] push frames; the client may send
//! [`SubscribeCredit`] requests (no response) on the same stream. The first call on a new
//! connection should be [`ApiVersionsRequest`] (the handshake).
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use floe_protocol::client::{decode_client_frame, ClientFrame, MetadataRequest, Request};
//! use floe_protocol::FrameLimits;
//!
//! let req = Request::from(MetadataRequest { topics: Some(vec!["orders".into()]) });
//! let mut buf = BytesMut::new();
//! req.encode_frame(42, &mut buf);
//! let (header, frame, used) = decode_client_frame(&buf.freeze(), FrameLimits::default()).unwrap();
//! // envelope, Some tag, vec count, string length, "orders"
//! assert_eq!((header.correlation_id, used), (42, 16 + 1 + 4 + 4 + 6));
//! assert_eq!(frame, ClientFrame::Request(req));
//! ```

mod admin;
mod fetch;
mod groups;
mod handshake;
mod produce;

pub use admin::*;
pub use fetch::*;
pub use groups::*;
pub use handshake::*;
pub use produce::*;

use crate::frame::{api_keys, message_enum, protocol_frames};

/// QUIC ALPN identifier of the client protocol.
pub const ALPN: &[u8] = b"floe/1";

api_keys! {
    /// Client api keys. Numbers are stable; retired numbers are never reused.
    pub enum ApiKey {
        /// Handshake and version negotiation.
        ApiVersions = 0,
        /// Brokers, topics, partitions, leaders, replicas.
        Metadata = 1,
        /// Create topics.
        CreateTopics = 2,
        /// Delete topics.
        DeleteTopics = 3,
        /// List topic names.
        ListTopics = 4,
        /// Describe topics (partitions and configs).
        DescribeTopics = 5,
        /// Append batches.
        Produce = 6,
        /// Read committed batches.
        Fetch = 7,
        /// Open a server-push subscription (request, response, then pushes).
        Subscribe = 8,
        /// Grant a subscription more byte credit (request only, no response).
        SubscribeCredit = 9,
        /// Earliest, latest or by-timestamp offsets.
        ListOffsets = 10,
        /// Allocate (or bump the epoch of) an idempotent producer id.
        InitProducerId = 11,
        /// Join a consumer group.
        JoinGroup = 12,
        /// Distribute or receive group assignments.
        SyncGroup = 13,
        /// Keep a group membership alive.
        Heartbeat = 14,
        /// Leave a consumer group.
        LeaveGroup = 15,
        /// Commit consumed offsets.
        OffsetCommit = 16,
        /// Fetch committed offsets.
        OffsetFetch = 17,
        /// List consumer groups.
        ListGroups = 18,
        /// Describe consumer groups.
        DescribeGroups = 19,
        /// Cluster id, controller and brokers.
        DescribeCluster = 20,
        /// Move a partition: set its replica set.
        AlterPartitionReplicas = 21,
    }
}

message_enum! {
    /// A client request body.
    pub enum Request: ApiKey, Request {
        ApiVersions(ApiVersionsRequest),
        Metadata(MetadataRequest),
        CreateTopics(CreateTopicsRequest),
        DeleteTopics(DeleteTopicsRequest),
        ListTopics(ListTopicsRequest),
        DescribeTopics(DescribeTopicsRequest),
        Produce(ProduceRequest),
        Fetch(FetchRequest),
        Subscribe(SubscribeRequest),
        SubscribeCredit(SubscribeCredit),
        ListOffsets(ListOffsetsRequest),
        InitProducerId(InitProducerIdRequest),
        JoinGroup(JoinGroupRequest),
        SyncGroup(SyncGroupRequest),
        Heartbeat(HeartbeatRequest),
        LeaveGroup(LeaveGroupRequest),
        OffsetCommit(OffsetCommitRequest),
        OffsetFetch(OffsetFetchRequest),
        ListGroups(ListGroupsRequest),
        DescribeGroups(DescribeGroupsRequest),
        DescribeCluster(DescribeClusterRequest),
        AlterPartitionReplicas(AlterPartitionReplicasRequest),
    }
}

message_enum! {
    /// A broker response body.
    pub enum Response: ApiKey, Response {
        ApiVersions(ApiVersionsResponse),
        Metadata(MetadataResponse),
        CreateTopics(CreateTopicsResponse),
        DeleteTopics(DeleteTopicsResponse),
        ListTopics(ListTopicsResponse),
        DescribeTopics(DescribeTopicsResponse),
        Produce(ProduceResponse),
        Fetch(FetchResponse),
        Subscribe(SubscribeResponse),
        ListOffsets(ListOffsetsResponse),
        InitProducerId(InitProducerIdResponse),
        JoinGroup(JoinGroupResponse),
        SyncGroup(SyncGroupResponse),
        Heartbeat(HeartbeatResponse),
        LeaveGroup(LeaveGroupResponse),
        OffsetCommit(OffsetCommitResponse),
        OffsetFetch(OffsetFetchResponse),
        ListGroups(ListGroupsResponse),
        DescribeGroups(DescribeGroupsResponse),
        DescribeCluster(DescribeClusterResponse),
        AlterPartitionReplicas(AlterPartitionReplicasResponse),
    }
}

message_enum! {
    /// A broker-initiated push body (on a subscription stream).
    pub enum Push: ApiKey, Push {
        Subscribe(SubscribeEvent),
    }
}

protocol_frames! {
    /// One decoded client-protocol frame.
    pub enum ClientFrame: ApiKey {
        Request(Request),
        Response(Response),
        Push(Push),
    }
    decode = decode_client_frame;
}

#[cfg(test)]
mod tests;

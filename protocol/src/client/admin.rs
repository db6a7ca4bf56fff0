//! Topic administration: create, delete, list, describe.

use super::PartitionMetadata;
use crate::error::ErrorCode;
use crate::wire::wire_struct;

wire_struct! {
    /// A configuration key and value.
    pub struct ConfigEntry {
        /// Key, for example `retention.ms`.
        pub name: String,
        /// Value as text.
        pub value: String,
    }
}

wire_struct! {
    /// One topic to create.
    pub struct CreatableTopic {
        /// Topic name.
        pub name: String,
        /// Partition count.
        pub partitions: u32,
        /// Replicas per partition.
        pub replication_factor: u16,
        /// Topic configuration overrides.
        pub configs: Vec<ConfigEntry>,
    }
}

wire_struct! {
    /// Create topics (sent to any broker; forwarded to the controller).
    pub struct CreateTopicsRequest {
        /// Topics to create.
        pub topics: Vec<CreatableTopic>,
        /// How long to wait for the topics to be created, ms.
        pub timeout_ms: u32,
        /// Only validate; create nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// Result for one topic of a create or delete.
    pub struct TopicResult {
        /// Topic name.
        pub name: String,
        /// Error.
        pub error: ErrorCode,
        /// Human-readable detail.
        pub message: Option<String>,
    }
}

wire_struct! {
    /// Create-topics response.
    pub struct CreateTopicsResponse {
        /// One result per requested topic.
        pub results: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Delete topics.
    pub struct DeleteTopicsRequest {
        /// Topic names.
        pub names: Vec<String>,
        /// Timeout, ms.
        pub timeout_ms: u32,
    }
}

wire_struct! {
    /// Delete-topics response.
    pub struct DeleteTopicsResponse {
        /// One result per requested topic.
        pub results: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Set one partition's replicas (sent to any broker; the controller records it, then the
    /// partition's Raft group moves to the new set online: new replicas join as learners and
    /// catch up before voting, removed ones leave last). Answered once the controller applied
    /// it, not once the move is complete.
    pub struct AlterPartitionReplicasRequest {
        /// Topic name.
        pub topic: String,
        /// Partition index.
        pub partition: u32,
        /// The target replicas (node ids): distinct, registered, live; the first becomes the
        /// preferred leader.
        pub replicas: Vec<u64>,
        /// How long to wait for the controller, ms.
        pub timeout_ms: u32,
    }
}

wire_struct! {
    /// Alter-partition-replicas response.
    pub struct AlterPartitionReplicasResponse {
        /// Error (`InvalidReplicationFactor`: empty or too many replicas; `InvalidRequest`:
        /// a broker named twice; `BrokerNotAvailable`: unknown or fenced broker;
        /// `UnknownTopicOrPartition`).
        pub error: ErrorCode,
        /// Human-readable detail.
        pub message: Option<String>,
    }
}

wire_struct! {
    /// List topics.
    pub struct ListTopicsRequest {
        /// Include internal topics.
        pub include_internal: bool,
    }
}

wire_struct! {
    /// One listed topic.
    pub struct TopicListing {
        /// Topic name.
        pub name: String,
        /// Partition count.
        pub partitions: u32,
        /// Replication factor.
        pub replication_factor: u16,
        /// Internal topic.
        pub internal: bool,
    }
}

wire_struct! {
    /// List-topics response.
    pub struct ListTopicsResponse {
        /// Error.
        pub error: ErrorCode,
        /// Topics.
        pub topics: Vec<TopicListing>,
    }
}

wire_struct! {
    /// Describe topics.
    pub struct DescribeTopicsRequest {
        /// Topic names.
        pub names: Vec<String>,
    }
}

wire_struct! {
    /// One described topic.
    pub struct TopicDescription {
        /// Error for this topic.
        pub error: ErrorCode,
        /// Topic name.
        pub name: String,
        /// Internal topic.
        pub internal: bool,
        /// Partitions.
        pub partitions: Vec<PartitionMetadata>,
        /// Effective configuration.
        pub configs: Vec<ConfigEntry>,
    }
}

wire_struct! {
    /// Describe-topics response.
    pub struct DescribeTopicsResponse {
        /// One description per requested topic.
        pub topics: Vec<TopicDescription>,
    }
}

//! Consumer groups: membership, assignment and committed offsets.

use crate::error::ErrorCode;
use crate::wire::wire_struct;
use bytes::Bytes;

wire_struct! {
    /// An assignment protocol a member supports, with its opaque metadata.
    pub struct GroupProtocol {
        /// Protocol name (for example `range`).
        pub name: String,
        /// Opaque protocol metadata (for example subscribed topics).
        pub metadata: Bytes,
    }
}

wire_struct! {
    /// Join (or rejoin) a group.
    pub struct JoinGroupRequest {
        /// Group id.
        pub group_id: String,
        /// Member id; empty on the first join.
        pub member_id: String,
        /// Member is removed if no heartbeat arrives within this, ms.
        pub session_timeout_ms: u32,
        /// Longest a rebalance waits for members to rejoin, ms.
        pub rebalance_timeout_ms: u32,
        /// Protocol type (for example `consumer`).
        pub protocol_type: String,
        /// Supported assignment protocols, preferred first.
        pub protocols: Vec<GroupProtocol>,
    }
}

wire_struct! {
    /// A group member as seen by the leader.
    pub struct JoinGroupMember {
        /// Member id.
        pub member_id: String,
        /// The member's metadata for the chosen protocol.
        pub metadata: Bytes,
    }
}

wire_struct! {
    /// Join result. The group leader receives the member list and computes the assignment.
    pub struct JoinGroupResponse {
        /// Error.
        pub error: ErrorCode,
        /// Generation of the group.
        pub generation_id: i32,
        /// Chosen protocol.
        pub protocol_name: Option<String>,
        /// Member id of the group leader.
        pub leader_id: String,
        /// This member's id.
        pub member_id: String,
        /// All members (only sent to the leader; empty for others).
        pub members: Vec<JoinGroupMember>,
    }
}

wire_struct! {
    /// One member's assignment.
    pub struct SyncGroupAssignment {
        /// Member id.
        pub member_id: String,
        /// Opaque assignment.
        pub assignment: Bytes,
    }
}

wire_struct! {
    /// Send (leader) or receive (everyone) assignments.
    pub struct SyncGroupRequest {
        /// Group id.
        pub group_id: String,
        /// Generation.
        pub generation_id: i32,
        /// Member id.
        pub member_id: String,
        /// Assignments (leader only; empty for others).
        pub assignments: Vec<SyncGroupAssignment>,
    }
}

wire_struct! {
    /// This member's assignment.
    pub struct SyncGroupResponse {
        /// Error.
        pub error: ErrorCode,
        /// Opaque assignment.
        pub assignment: Bytes,
    }
}

wire_struct! {
    /// Keep membership alive.
    pub struct HeartbeatRequest {
        /// Group id.
        pub group_id: String,
        /// Generation.
        pub generation_id: i32,
        /// Member id.
        pub member_id: String,
    }
}

wire_struct! {
    /// Heartbeat result (`RebalanceInProgress` means: rejoin).
    pub struct HeartbeatResponse {
        /// Error.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// Leave a group.
    pub struct LeaveGroupRequest {
        /// Group id.
        pub group_id: String,
        /// Member id.
        pub member_id: String,
    }
}

wire_struct! {
    /// Leave result.
    pub struct LeaveGroupResponse {
        /// Error.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// One partition's offset to commit.
    pub struct OffsetCommitPartition {
        /// Partition index.
        pub partition: u32,
        /// Next offset to consume.
        pub offset: u64,
        /// Opaque client metadata.
        pub metadata: Option<String>,
    }
}

wire_struct! {
    /// Offsets of one topic to commit.
    pub struct OffsetCommitTopic {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<OffsetCommitPartition>,
    }
}

wire_struct! {
    /// Commit offsets durably (sent to the group coordinator).
    pub struct OffsetCommitRequest {
        /// Group id.
        pub group_id: String,
        /// Generation, or -1 for a simple (non-member) commit.
        pub generation_id: i32,
        /// Member id, or empty.
        pub member_id: String,
        /// Topics.
        pub topics: Vec<OffsetCommitTopic>,
    }
}

wire_struct! {
    /// Result for one partition.
    pub struct PartitionError {
        /// Partition index.
        pub partition: u32,
        /// Error.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// Results for one topic.
    pub struct TopicPartitionErrors {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<PartitionError>,
    }
}

wire_struct! {
    /// Offset-commit response.
    pub struct OffsetCommitResponse {
        /// Topics.
        pub topics: Vec<TopicPartitionErrors>,
    }
}

wire_struct! {
    /// Partitions of one topic whose committed offsets are wanted.
    pub struct OffsetFetchTopic {
        /// Topic name.
        pub name: String,
        /// Partition indexes.
        pub partitions: Vec<u32>,
    }
}

wire_struct! {
    /// Fetch committed offsets.
    pub struct OffsetFetchRequest {
        /// Group id.
        pub group_id: String,
        /// Topics, or `None` for every partition the group committed.
        pub topics: Option<Vec<OffsetFetchTopic>>,
    }
}

wire_struct! {
    /// One committed offset.
    pub struct OffsetFetchPartition {
        /// Partition index.
        pub partition: u32,
        /// Error.
        pub error: ErrorCode,
        /// Committed offset, `None` if nothing was committed.
        pub offset: Option<u64>,
        /// Metadata committed with it.
        pub metadata: Option<String>,
    }
}

wire_struct! {
    /// Committed offsets of one topic.
    pub struct OffsetFetchTopicResult {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<OffsetFetchPartition>,
    }
}

wire_struct! {
    /// Offset-fetch response.
    pub struct OffsetFetchResponse {
        /// Group-level error.
        pub error: ErrorCode,
        /// Topics.
        pub topics: Vec<OffsetFetchTopicResult>,
    }
}

wire_struct! {
    /// List groups.
    pub struct ListGroupsRequest {
        /// Only groups in these states (empty = all).
        pub states: Vec<String>,
    }
}

wire_struct! {
    /// One listed group.
    pub struct GroupListing {
        /// Group id.
        pub group_id: String,
        /// Protocol type.
        pub protocol_type: String,
        /// State (`Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead`).
        pub state: String,
    }
}

wire_struct! {
    /// List-groups response.
    pub struct ListGroupsResponse {
        /// Error.
        pub error: ErrorCode,
        /// Groups.
        pub groups: Vec<GroupListing>,
    }
}

wire_struct! {
    /// Describe groups.
    pub struct DescribeGroupsRequest {
        /// Group ids.
        pub group_ids: Vec<String>,
    }
}

wire_struct! {
    /// A member of a described group.
    pub struct GroupMemberDescription {
        /// Member id.
        pub member_id: String,
        /// Client id.
        pub client_id: String,
        /// Client host.
        pub client_host: String,
        /// Protocol metadata.
        pub metadata: Bytes,
        /// Current assignment.
        pub assignment: Bytes,
    }
}

wire_struct! {
    /// One described group.
    pub struct GroupDescription {
        /// Error.
        pub error: ErrorCode,
        /// Group id.
        pub group_id: String,
        /// State.
        pub state: String,
        /// Protocol type.
        pub protocol_type: String,
        /// Chosen protocol.
        pub protocol: String,
        /// Members.
        pub members: Vec<GroupMemberDescription>,
    }
}

wire_struct! {
    /// Describe-groups response.
    pub struct DescribeGroupsResponse {
        /// Groups.
        pub groups: Vec<GroupDescription>,
    }
}

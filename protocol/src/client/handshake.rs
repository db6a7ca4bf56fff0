//! Handshake / api-versions negotiation and cluster description.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

wire_struct! {
    /// One api and the versions a peer speaks.
    pub struct ApiVersionRange {
        /// Api key.
        pub api_key: u16,
        /// Lowest supported version.
        pub min_version: u16,
        /// Highest supported version.
        pub max_version: u16,
    }
}

/// The version ranges this crate speaks for `apis`, as a handshake advertises them.
///
/// ```
/// use floe_protocol::client::{ApiKey, api_version_ranges};
/// let ranges = api_version_ranges(&[ApiKey::ApiVersions, ApiKey::Produce]);
/// assert_eq!(ranges[1].api_key, ApiKey::Produce as u16);
/// assert!(ranges[1].min_version <= ranges[1].max_version);
/// ```
pub fn api_version_ranges(apis: &[super::ApiKey]) -> Vec<ApiVersionRange> {
    apis.iter()
        .map(|k| {
            let (min_version, max_version) = k.versions();
            ApiVersionRange {
                api_key: *k as u16,
                min_version,
                max_version,
            }
        })
        .collect()
}

wire_struct! {
    /// Handshake request: who the client is and which apis/versions it speaks. Both sides then
    /// use, per api, the highest version in the intersection of the two ranges.
    pub struct ApiVersionsRequest {
        /// Client software name, for logs.
        pub client_name: String,
        /// Client software version, for logs.
        pub client_version: String,
        /// Optional client id used in quotas and logs.
        pub client_id: Option<String>,
        /// Apis and versions the client speaks.
        pub apis: Vec<ApiVersionRange>,
    }
}

wire_struct! {
    /// Handshake response.
    pub struct ApiVersionsResponse {
        /// `None`, or why the handshake failed.
        pub error: ErrorCode,
        /// The cluster's id.
        pub cluster_id: String,
        /// This broker's node id.
        pub node_id: u64,
        /// Apis and versions the broker speaks.
        pub apis: Vec<ApiVersionRange>,
        /// Largest frame the broker accepts, length prefix included.
        pub max_frame_len: u32,
        /// Largest batch the broker accepts.
        pub max_batch_len: u32,
    }
}

wire_struct! {
    /// A broker's address.
    pub struct BrokerInfo {
        /// Node id.
        pub node_id: u64,
        /// Host name or IP for clients.
        pub host: String,
        /// UDP port of the client QUIC listener.
        pub port: u16,
        /// Rack / zone, if configured.
        pub rack: Option<String>,
    }
}

wire_struct! {
    /// Describe the cluster. Empty body.
    pub struct DescribeClusterRequest {}
}

wire_struct! {
    /// The cluster's id, controller leader and brokers.
    pub struct DescribeClusterResponse {
        /// Error.
        pub error: ErrorCode,
        /// Cluster id.
        pub cluster_id: String,
        /// Current controller leader, if known.
        pub controller_id: Option<u64>,
        /// Registered brokers.
        pub brokers: Vec<BrokerInfo>,
    }
}

wire_struct! {
    /// Metadata for some or all topics.
    pub struct MetadataRequest {
        /// Topics to describe; `None` = all topics.
        pub topics: Option<Vec<String>>,
    }
}

wire_struct! {
    /// One partition's placement.
    pub struct PartitionMetadata {
        /// Error for this partition.
        pub error: ErrorCode,
        /// Partition index.
        pub partition: u32,
        /// Leader node, if one is elected.
        pub leader: Option<u64>,
        /// Raft term of the current leader.
        pub leader_term: u64,
        /// All replicas (node ids).
        pub replicas: Vec<u64>,
        /// In-sync replicas.
        pub in_sync: Vec<u64>,
    }
}

wire_struct! {
    /// One topic's metadata.
    pub struct TopicMetadata {
        /// Error for this topic (for example `UnknownTopicOrPartition`).
        pub error: ErrorCode,
        /// Topic name.
        pub name: String,
        /// Internal topic (for example consumer offsets).
        pub internal: bool,
        /// Partitions.
        pub partitions: Vec<PartitionMetadata>,
    }
}

wire_struct! {
    /// Metadata response.
    pub struct MetadataResponse {
        /// Brokers of the cluster.
        pub brokers: Vec<BrokerInfo>,
        /// Cluster id.
        pub cluster_id: String,
        /// Controller leader, if known.
        pub controller_id: Option<u64>,
        /// Requested topics.
        pub topics: Vec<TopicMetadata>,
    }
}

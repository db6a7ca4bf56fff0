//! The read side as floe-protocol response types.
//!
//! The controller knows placement (replicas, preferred leader), not which replica leads a
//! partition's Raft group right now: callers pass what they know of live leaders.

use floe_protocol::ErrorCode;
use floe_protocol::client::{
    BrokerInfo, ConfigEntry, DescribeClusterResponse, MetadataResponse, PartitionMetadata,
    TopicDescription, TopicListing, TopicMetadata,
};

use super::state::{ControllerState, split_addr};
use super::types::TopicRecord;

/// A partition group's current leader, as the node hosting it knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLeader {
    /// Leader node.
    pub node: u64,
    /// Its Raft term.
    pub term: u64,
}

impl ControllerState {
    /// Unfenced brokers as clients see them (client address split into host and port).
    pub fn broker_infos(&self) -> Vec<BrokerInfo> {
        self.brokers()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let (host, port) = split_addr(&b.client_addr)?;
                Some(BrokerInfo {
                    node_id: b.id.0,
                    host: host.to_string(),
                    port,
                    rack: b.rack.clone(),
                })
            })
            .collect()
    }

    /// `DescribeCluster`'s answer.
    pub fn describe_cluster(
        &self,
        cluster_id: &str,
        controller_id: Option<u64>,
    ) -> DescribeClusterResponse {
        DescribeClusterResponse {
            error: ErrorCode::None,
            cluster_id: cluster_id.to_string(),
            controller_id,
            brokers: self.broker_infos(),
        }
    }

    fn partition_metadata(
        &self,
        t: &TopicRecord,
        leader_of: &dyn Fn(&str, u32) -> Option<LiveLeader>,
    ) -> Vec<PartitionMetadata> {
        t.partitions
            .iter()
            .enumerate()
            .map(|(i, pa)| {
                let i = i as u32;
                let live = leader_of(&t.name, i);
                PartitionMetadata {
                    error: match live {
                        Some(_) => ErrorCode::None,
                        None => ErrorCode::LeaderNotAvailable,
                    },
                    partition: i,
                    leader: live.map(|l| l.node),
                    leader_term: live.map_or(0, |l| l.term),
                    replicas: pa.replicas.iter().map(|n| n.0).collect(),
                    in_sync: pa
                        .replicas
                        .iter()
                        .filter(|n| self.broker(**n).is_some_and(|b| !b.fenced))
                        .map(|n| n.0)
                        .collect(),
                }
            })
            .collect()
    }

    /// `Metadata`'s answer for `topics` (`None`: all). Leaders come from `leader_of`
    /// (`LeaderNotAvailable` where it knows none); `in_sync` lists the unfenced replicas.
    pub fn metadata(
        &self,
        cluster_id: &str,
        controller_id: Option<u64>,
        topics: Option<&[String]>,
        leader_of: &dyn Fn(&str, u32) -> Option<LiveLeader>,
    ) -> MetadataResponse {
        let one = |name: &str| match self.topic(name) {
            Some(t) => TopicMetadata {
                error: ErrorCode::None,
                name: t.name.clone(),
                internal: false,
                partitions: self.partition_metadata(t, leader_of),
            },
            None => TopicMetadata {
                error: ErrorCode::UnknownTopicOrPartition,
                name: name.to_string(),
                internal: false,
                partitions: Vec::new(),
            },
        };
        let topics = match topics {
            Some(names) => names.iter().map(|n| one(n)).collect(),
            None => self.topics().map(|t| one(&t.name)).collect(),
        };
        MetadataResponse {
            brokers: self.broker_infos(),
            cluster_id: cluster_id.to_string(),
            controller_id,
            topics,
        }
    }

    /// A topic's settings as `ConfigEntry`s.
    pub fn config_entries(&self, name: &str) -> Option<Vec<ConfigEntry>> {
        let t = self.topic(name)?;
        Some(
            t.config
                .entries()
                .into_iter()
                .map(|(k, v)| ConfigEntry {
                    name: k.to_string(),
                    value: v,
                })
                .collect(),
        )
    }

    /// `DescribeTopics`' entry for one topic.
    pub fn describe_topic(
        &self,
        name: &str,
        leader_of: &dyn Fn(&str, u32) -> Option<LiveLeader>,
    ) -> TopicDescription {
        match self.topic(name) {
            Some(t) => TopicDescription {
                error: ErrorCode::None,
                name: t.name.clone(),
                internal: false,
                partitions: self.partition_metadata(t, leader_of),
                configs: self.config_entries(name).unwrap_or_default(),
            },
            None => TopicDescription {
                error: ErrorCode::UnknownTopicOrPartition,
                name: name.to_string(),
                internal: false,
                partitions: Vec::new(),
                configs: Vec::new(),
            },
        }
    }

    /// `ListTopics`' entries.
    pub fn topic_listings(&self) -> Vec<TopicListing> {
        self.topics()
            .map(|t| TopicListing {
                name: t.name.clone(),
                partitions: t.partitions.len() as u32,
                replication_factor: t.replication_factor,
                internal: false,
            })
            .collect()
    }
}

//! What applying a command yields.

use floe_protocol::ErrorCode;
use floe_raft::NodeId;
use thiserror::Error;

use super::command::CommandDecodeError;
use super::types::{ProducerIdBlock, TopicId};

/// A command's effect when it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The broker is registered with this epoch.
    BrokerRegistered {
        /// Its registration epoch.
        epoch: u64,
    },
    /// The heartbeat was recorded (and the broker unfenced).
    HeartbeatRecorded,
    /// The broker is fenced.
    BrokerFenced,
    /// The topic exists with this id.
    TopicCreated {
        /// Its id.
        id: TopicId,
    },
    /// The topic is gone.
    TopicDeleted,
    /// The settings changed.
    TopicConfigAltered,
    /// A block of producer ids now belongs to the broker.
    ProducerIdsAllocated(ProducerIdBlock),
    /// The replica moved.
    PartitionReassigned,
    /// The producer id's epoch is now this.
    ProducerEpochBumped {
        /// The new epoch.
        epoch: u16,
    },
}

/// Why a command did not apply (the state is unchanged). Every replica computes the same one.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ControllerError {
    /// The payload is not a command.
    #[error("malformed command: {0}")]
    Malformed(#[from] CommandDecodeError),
    /// A topic of that name exists.
    #[error("topic already exists")]
    TopicAlreadyExists,
    /// No topic of that name.
    #[error("unknown topic")]
    UnknownTopic,
    /// No such partition in the topic.
    #[error("unknown partition {partition}")]
    UnknownPartition {
        /// The index asked for.
        partition: u32,
    },
    /// Name empty, too long, or with characters outside `[A-Za-z0-9._-]`.
    #[error("invalid topic name")]
    InvalidTopicName,
    /// Partition count 0 or above the limit.
    #[error("invalid partition count {count}")]
    InvalidPartitions {
        /// The count asked for.
        count: u32,
    },
    /// Replication factor 0 or above the limit.
    #[error("invalid replication factor {factor}")]
    InvalidReplicationFactor {
        /// The factor asked for.
        factor: u16,
    },
    /// Fewer unfenced brokers than the replication factor.
    #[error("{needed} brokers needed, {have} available")]
    NotEnoughBrokers {
        /// Replication factor.
        needed: u16,
        /// Unfenced brokers.
        have: u32,
    },
    /// Unknown key or invalid value.
    #[error("invalid config {key}")]
    InvalidConfig {
        /// The key.
        key: String,
    },
    /// An address is not `host:port` or is too long, or the rack is too long.
    #[error("invalid broker address or rack")]
    InvalidAddress,
    /// Too many brokers, topics or partitions in the cluster.
    #[error("cluster limit reached")]
    LimitReached,
    /// The broker is not registered.
    #[error("unknown broker {broker:?}")]
    UnknownBroker {
        /// The node.
        broker: NodeId,
    },
    /// The broker's registration epoch is not the one named.
    #[error("stale epoch {given} for broker {broker:?} (current {current})")]
    StaleBrokerEpoch {
        /// The node.
        broker: NodeId,
        /// Its current epoch.
        current: u64,
        /// The epoch in the command.
        given: u64,
    },
    /// The broker is fenced and cannot take replicas.
    #[error("broker {broker:?} is fenced")]
    BrokerFenced {
        /// The node.
        broker: NodeId,
    },
    /// `from` is not a replica of the partition.
    #[error("broker {broker:?} is not a replica")]
    NotAReplica {
        /// The node.
        broker: NodeId,
    },
    /// `to` already is a replica of the partition.
    #[error("broker {broker:?} already is a replica")]
    AlreadyAReplica {
        /// The node.
        broker: NodeId,
    },
    /// A replica set that is empty or larger than the replication factor limit.
    #[error("invalid replica count {count}")]
    InvalidReplicaCount {
        /// The number of replicas given.
        count: u32,
    },
    /// A broker named twice in a replica set.
    #[error("broker {broker:?} named twice")]
    DuplicateReplica {
        /// The node.
        broker: NodeId,
    },
    /// Producer-id block size 0 or above the limit.
    #[error("invalid producer id block size {count}")]
    InvalidProducerIdCount {
        /// The size asked for.
        count: u32,
    },
    /// The producer-id space is used up.
    #[error("producer ids exhausted")]
    ProducerIdsExhausted,
    /// The producer id was never handed out.
    #[error("unknown producer id {producer_id}")]
    UnknownProducerId {
        /// The id.
        producer_id: u64,
    },
    /// The epoch given is not the producer id's current one: another instance re-initialised
    /// the id since (or the caller invented an epoch).
    #[error("producer {producer_id} fenced: epoch {given}, current {current}")]
    ProducerFenced {
        /// The id.
        producer_id: u64,
        /// Its current epoch.
        current: u16,
        /// The epoch in the command.
        given: u16,
    },
    /// The id's epoch reached the largest the protocol carries: the producer takes a new id.
    #[error("producer {producer_id} used up its epochs")]
    ProducerEpochExhausted {
        /// The id.
        producer_id: u64,
    },
}

impl ControllerError {
    /// The protocol error code a client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControllerError::Malformed(_) => ErrorCode::InvalidRequest,
            ControllerError::TopicAlreadyExists => ErrorCode::TopicAlreadyExists,
            ControllerError::UnknownTopic | ControllerError::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            ControllerError::InvalidTopicName => ErrorCode::InvalidTopicName,
            ControllerError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
            ControllerError::InvalidReplicationFactor { .. }
            | ControllerError::NotEnoughBrokers { .. }
            | ControllerError::InvalidReplicaCount { .. } => ErrorCode::InvalidReplicationFactor,
            ControllerError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            ControllerError::UnknownBroker { .. } | ControllerError::BrokerFenced { .. } => {
                ErrorCode::BrokerNotAvailable
            }
            ControllerError::StaleBrokerEpoch { .. } => ErrorCode::StaleEpoch,
            ControllerError::InvalidAddress
            | ControllerError::LimitReached
            | ControllerError::NotAReplica { .. }
            | ControllerError::AlreadyAReplica { .. }
            | ControllerError::DuplicateReplica { .. }
            | ControllerError::InvalidProducerIdCount { .. } => ErrorCode::InvalidRequest,
            ControllerError::ProducerIdsExhausted
            | ControllerError::ProducerEpochExhausted { .. } => ErrorCode::UnknownServerError,
            ControllerError::UnknownProducerId { .. } => ErrorCode::UnknownProducerId,
            ControllerError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
        }
    }
}

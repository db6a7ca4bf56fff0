//! The controller's metadata state machine: sans-IO, pure, deterministic.
//!
//! The controller group (a floe-raft group on the first voters) replicates a log of
//! [`Command`]s; every voter feeds the committed ones to a [`ControllerState`] through
//! [`floe_raft::Applier`] and so holds the same cluster metadata: brokers (addresses, rack,
//! registration epoch, fencing, last heartbeat), topics (id, partitions, replication factor,
//! [`TopicConfig`]), partition → replicas and preferred leader, producer-id blocks, and a
//! [`ControllerState::version`] raised by every command that applies.
//!
//! - [`command`]: the commands and their payload encoding (versioned, bounded, typed errors).
//! - Applying yields `Result<`[`Applied`]`, `[`ControllerError`]`>`; a failed command changes
//!   nothing, a malformed payload is [`ControllerError::Malformed`], never a panic.
//! - [`placement`]: replicas of a new topic go round-robin over unfenced brokers (distinct per
//!   partition, replica and preferred-leader counts within the topic differing by at most
//!   one); [`ControllerState::rebalance_plan`] evens replica counts after brokers join.
//! - [`snapshot`]: a versioned, checksummed encoding of the whole state.
//! - The read side: accessors on [`ControllerState`] and conversions to floe-protocol's
//!   `Metadata`, `DescribeCluster`, `DescribeTopics` and `ListTopics` answers.
//!
//! ```
//! use floe_broker::controller::{Applied, Command, ControllerState};
//! use floe_raft::{NodeId, Offset, StateMachine};
//!
//! let mut state = ControllerState::new();
//! for id in 1..=3 {
//!     let register = Command::RegisterBroker {
//!         broker: NodeId(id),
//!         client_addr: format!("10.0.0.{id}:9092"),
//!         peer_addr: format!("10.0.0.{id}:9093"),
//!         rack: None,
//!         term: 1,
//!         tick: 0,
//!     };
//!     state.apply(Offset(0), &register.encode()).unwrap();
//! }
//! let create = Command::CreateTopic {
//!     name: "orders".into(),
//!     partitions: 6,
//!     replication_factor: 3,
//!     configs: vec![("fsync".into(), "100ms".into())],
//! };
//! assert!(matches!(state.apply(Offset(0), &create.encode()), Ok(Applied::TopicCreated { .. })));
//! let orders = state.topic("orders").unwrap();
//! assert!(orders.partitions.iter().all(|p| p.replicas.len() == 3));
//! assert_eq!(state.version(), 4);
//! ```

pub mod command;
pub mod config;
mod error;
pub mod placement;
pub mod snapshot;
mod state;
mod types;
mod view;

#[cfg(test)]
mod replicated_tests;
#[cfg(test)]
mod tests;

pub use command::{Command, CommandDecodeError};
pub use config::TopicConfig;
pub use error::{Applied, ControllerError};
pub use placement::BrokerLoad;
pub use snapshot::SnapshotError;
pub use state::{
    ControllerState, MAX_ADDR_LEN, MAX_BROKERS, MAX_PARTITIONS_PER_TOPIC, MAX_PARTITIONS_TOTAL,
    MAX_PRODUCER_EPOCH, MAX_PRODUCER_ID_BLOCK, MAX_REPLICATION_FACTOR, MAX_TOPIC_NAME_LEN,
    MAX_TOPICS,
};
pub use types::{
    BrokerRecord, HeartbeatStamp, PartitionAssignment, ProducerIdBlock, Reassignment, TopicId,
    TopicRecord,
};
pub use view::LiveLeader;

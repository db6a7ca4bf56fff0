//! The records the controller keeps: brokers, topics, partition assignments.

use floe_raft::NodeId;

use super::config::TopicConfig;

/// A topic's cluster-unique id, assigned by the controller (never reused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId(pub u64);

/// When a broker last heartbeat, as the proposer stamped it (the controller reads no clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatStamp {
    /// The controller's Raft term when the heartbeat was proposed.
    pub term: u64,
    /// The controller leader's tick count when the heartbeat was proposed.
    pub tick: u64,
}

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRecord {
    /// Node id.
    pub id: NodeId,
    /// `host:port` clients connect to.
    pub client_addr: String,
    /// `host:port` peers connect to.
    pub peer_addr: String,
    /// Rack, if configured.
    pub rack: Option<String>,
    /// Registration epoch: the metadata version at which this registration was applied.
    /// Heartbeats and fencing name it, so a stale incarnation cannot act for a new one.
    pub epoch: u64,
    /// Fenced brokers receive no new replicas and are left out of cluster descriptions.
    pub fenced: bool,
    /// The last heartbeat (or the registration).
    pub last_heartbeat: HeartbeatStamp,
}

/// One partition's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// Replica nodes, distinct; the preferred leader is one of them.
    pub replicas: Vec<NodeId>,
    /// The replica that should lead when it is available.
    pub preferred_leader: NodeId,
    /// How many reassignments changed `replicas` since the topic was created. 0 means
    /// `replicas` is the partition's founding set, the Raft group's bootstrap membership;
    /// a replica placed after a move joins the existing group as a learner instead.
    pub moves: u64,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRecord {
    /// Name.
    pub name: String,
    /// Id.
    pub id: TopicId,
    /// Replicas per partition.
    pub replication_factor: u16,
    /// Partition `i` is `partitions[i]`.
    pub partitions: Vec<PartitionAssignment>,
    /// Per-topic configuration.
    pub config: TopicConfig,
}

/// A block of producer ids `[first, first + count)` handed to one broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdBlock {
    /// The broker it was handed to.
    pub broker: NodeId,
    /// First id.
    pub first: u64,
    /// Number of ids.
    pub count: u32,
}

/// One proposed replica move (see [`super::ControllerState::rebalance_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The replica to remove.
    pub from: NodeId,
    /// The broker to add in its place.
    pub to: NodeId,
}

impl Reassignment {
    /// The command that carries this move out.
    pub fn to_command(&self) -> super::Command {
        super::Command::ReassignPartition {
            topic: self.topic.clone(),
            partition: self.partition,
            from: self.from,
            to: self.to,
        }
    }
}

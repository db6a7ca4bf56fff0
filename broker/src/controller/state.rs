//! [`ControllerState`]: the metadata and the commands that change it.

use std::collections::BTreeMap;

use bytes::Bytes;
use floe_raft::{NodeId, Offset, StateMachine};

use super::command::Command;
use super::config::TopicConfig;
use super::error::{Applied, ControllerError};
use super::placement::{self, BrokerLoad};
use super::snapshot;
use super::types::{
    BrokerRecord, HeartbeatStamp, ProducerIdBlock, Reassignment, TopicId, TopicRecord,
};

/// Most brokers a cluster may register.
pub const MAX_BROKERS: usize = 4096;
/// Most topics.
pub const MAX_TOPICS: usize = 100_000;
/// Most partitions of one topic.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 100_000;
/// Most partitions in the cluster.
pub const MAX_PARTITIONS_TOTAL: u64 = 1_000_000;
/// Largest replication factor.
pub const MAX_REPLICATION_FACTOR: u16 = 16;
/// Largest producer-id block.
pub const MAX_PRODUCER_ID_BLOCK: u32 = 1_000_000;
/// Longest topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The largest producer epoch (the protocol's epoch is an `i16`).
pub const MAX_PRODUCER_EPOCH: u16 = i16::MAX as u16;
/// Longest address or rack string.
pub const MAX_ADDR_LEN: usize = 255;

/// The cluster metadata the controller group replicates. Pure and deterministic: commands
/// carry everything (including heartbeat term and tick); nothing reads a clock.
///
/// Every command that applies raises [`ControllerState::version`] by one; a command that fails
/// changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerState {
    pub(super) version: u64,
    pub(super) next_topic_id: u64,
    pub(super) next_producer_id: u64,
    pub(super) brokers: BTreeMap<NodeId, BrokerRecord>,
    pub(super) topics: BTreeMap<String, TopicRecord>,
    pub(super) producer_blocks: BTreeMap<NodeId, ProducerIdBlock>,
    /// Epochs above 0 of producer ids that were re-initialised (an id handed out and not
    /// here is at epoch 0).
    pub(super) producer_epochs: BTreeMap<u64, u16>,
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Splits `host:port` (`[v6]:port` too) into host and port.
pub(super) fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

fn valid_addr(addr: &str) -> bool {
    addr.len() <= MAX_ADDR_LEN && split_addr(addr).is_some()
}

impl ControllerState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The metadata version: raised by one by every command that applies.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Registered brokers, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.values()
    }

    /// One broker.
    pub fn broker(&self, id: NodeId) -> Option<&BrokerRecord> {
        self.brokers.get(&id)
    }

    /// Unfenced brokers, sorted by id: where new replicas may go.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    /// Topics, by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicRecord> {
        self.topics.values()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.topics.get(name)
    }

    /// One topic's configuration.
    pub fn topic_config(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name).map(|t| &t.config)
    }

    /// The last producer-id block handed to `broker`.
    pub fn producer_id_block(&self, broker: NodeId) -> Option<ProducerIdBlock> {
        self.producer_blocks.get(&broker).copied()
    }

    /// The next producer id to hand out (every id below it has been handed out once).
    pub fn next_producer_id(&self) -> u64 {
        self.next_producer_id
    }

    /// The current epoch of `producer_id` (`None`: never handed out).
    pub fn producer_epoch(&self, producer_id: u64) -> Option<u16> {
        (producer_id < self.next_producer_id)
            .then(|| self.producer_epochs.get(&producer_id).copied().unwrap_or(0))
    }

    /// Replica and preferred-leader counts of the unfenced brokers.
    pub fn broker_loads(&self) -> BTreeMap<NodeId, BrokerLoad> {
        placement::loads(&self.live_brokers(), self.topics.values())
    }

    /// Replica moves that even out replica counts over the unfenced brokers (for example
    /// after brokers were added). Propose each as [`Reassignment::to_command`]; applied in
    /// order to this state they leave per-broker replica counts differing by at most one.
    pub fn rebalance_plan(&self) -> Vec<Reassignment> {
        placement::rebalance(&self.live_brokers(), self.topics.values())
    }

    /// Applies a decoded command.
    pub fn apply_command(&mut self, command: &Command) -> Result<Applied, ControllerError> {
        let applied = match command {
            Command::RegisterBroker {
                broker,
                client_addr,
                peer_addr,
                rack,
                term,
                tick,
            } => self.register(*broker, client_addr, peer_addr, rack, *term, *tick)?,
            Command::BrokerHeartbeat {
                broker,
                epoch,
                term,
                tick,
            } => {
                let b = self.broker_at_epoch(*broker, *epoch)?;
                b.fenced = false;
                b.last_heartbeat = HeartbeatStamp {
                    term: *term,
                    tick: *tick,
                };
                Applied::HeartbeatRecorded
            }
            Command::FenceBroker { broker, epoch } => {
                self.broker_at_epoch(*broker, *epoch)?.fenced = true;
                Applied::BrokerFenced
            }
            Command::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => self.create_topic(name, *partitions, *replication_factor, configs)?,
            Command::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or(ControllerError::UnknownTopic)?;
                Applied::TopicDeleted
            }
            Command::AlterTopicConfig { name, configs } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or(ControllerError::UnknownTopic)?;
                topic.config = configured(topic.config, configs)?;
                Applied::TopicConfigAltered
            }
            Command::AllocateProducerIds { broker, count } => {
                self.allocate_producer_ids(*broker, *count)?
            }
            Command::ReassignPartition {
                topic,
                partition,
                from,
                to,
            } => self.reassign(topic, *partition, *from, *to)?,
            Command::AlterPartitionReplicas {
                topic,
                partition,
                replicas,
            } => self.alter_replicas(topic, *partition, replicas)?,
            Command::BumpProducerEpoch { producer_id, epoch } => {
                self.bump_producer_epoch(*producer_id, *epoch)?
            }
        };
        self.version += 1;
        Ok(applied)
    }

    fn bump_producer_epoch(
        &mut self,
        producer_id: u64,
        given: u16,
    ) -> Result<Applied, ControllerError> {
        let current = self
            .producer_epoch(producer_id)
            .ok_or(ControllerError::UnknownProducerId { producer_id })?;
        if given != current {
            return Err(ControllerError::ProducerFenced {
                producer_id,
                current,
                given,
            });
        }
        if current >= MAX_PRODUCER_EPOCH {
            return Err(ControllerError::ProducerEpochExhausted { producer_id });
        }
        self.producer_epochs.insert(producer_id, current + 1);
        Ok(Applied::ProducerEpochBumped { epoch: current + 1 })
    }

    fn register(
        &mut self,
        broker: NodeId,
        client_addr: &str,
        peer_addr: &str,
        rack: &Option<String>,
        term: u64,
        tick: u64,
    ) -> Result<Applied, ControllerError> {
        let rack_ok = rack.as_ref().is_none_or(|r| r.len() <= MAX_ADDR_LEN);
        if !valid_addr(client_addr) || !valid_addr(peer_addr) || !rack_ok {
            return Err(ControllerError::InvalidAddress);
        }
        if !self.brokers.contains_key(&broker) && self.brokers.len() >= MAX_BROKERS {
            return Err(ControllerError::LimitReached);
        }
        let epoch = self.version + 1;
        self.brokers.insert(
            broker,
            BrokerRecord {
                id: broker,
                client_addr: client_addr.to_string(),
                peer_addr: peer_addr.to_string(),
                rack: rack.clone(),
                epoch,
                fenced: false,
                last_heartbeat: HeartbeatStamp { term, tick },
            },
        );
        Ok(Applied::BrokerRegistered { epoch })
    }

    fn broker_at_epoch(
        &mut self,
        broker: NodeId,
        epoch: u64,
    ) -> Result<&mut BrokerRecord, ControllerError> {
        let b = self
            .brokers
            .get_mut(&broker)
            .ok_or(ControllerError::UnknownBroker { broker })?;
        if b.epoch != epoch {
            return Err(ControllerError::StaleBrokerEpoch {
                broker,
                current: b.epoch,
                given: epoch,
            });
        }
        Ok(b)
    }

    fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        rf: u16,
        configs: &[(String, String)],
    ) -> Result<Applied, ControllerError> {
        if !valid_topic_name(name) {
            return Err(ControllerError::InvalidTopicName);
        }
        if self.topics.contains_key(name) {
            return Err(ControllerError::TopicAlreadyExists);
        }
        if partitions == 0 || partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(ControllerError::InvalidPartitions { count: partitions });
        }
        if rf == 0 || rf > MAX_REPLICATION_FACTOR {
            return Err(ControllerError::InvalidReplicationFactor { factor: rf });
        }
        let config = configured(TopicConfig::default(), configs)?;
        let live = self.live_brokers();
        if live.len() < usize::from(rf) {
            return Err(ControllerError::NotEnoughBrokers {
                needed: rf,
                have: live.len() as u32,
            });
        }
        let existing: u64 = self
            .topics
            .values()
            .map(|t| t.partitions.len() as u64)
            .sum();
        if self.topics.len() >= MAX_TOPICS
            || existing + u64::from(partitions) > MAX_PARTITIONS_TOTAL
        {
            return Err(ControllerError::LimitReached);
        }
        let load = placement::loads(&live, self.topics.values());
        let id = TopicId(self.next_topic_id);
        self.next_topic_id += 1;
        self.topics.insert(
            name.to_string(),
            TopicRecord {
                name: name.to_string(),
                id,
                replication_factor: rf,
                partitions: placement::place(&live, &load, partitions, rf),
                config,
            },
        );
        Ok(Applied::TopicCreated { id })
    }

    fn allocate_producer_ids(
        &mut self,
        broker: NodeId,
        count: u32,
    ) -> Result<Applied, ControllerError> {
        let b = self
            .brokers
            .get(&broker)
            .ok_or(ControllerError::UnknownBroker { broker })?;
        if b.fenced {
            return Err(ControllerError::BrokerFenced { broker });
        }
        if count == 0 || count > MAX_PRODUCER_ID_BLOCK {
            return Err(ControllerError::InvalidProducerIdCount { count });
        }
        let first = self.next_producer_id;
        self.next_producer_id = first
            .checked_add(u64::from(count))
            .ok_or(ControllerError::ProducerIdsExhausted)?;
        let block = ProducerIdBlock {
            broker,
            first,
            count,
        };
        self.producer_blocks.insert(broker, block);
        Ok(Applied::ProducerIdsAllocated(block))
    }

    fn reassign(
        &mut self,
        topic: &str,
        partition: u32,
        from: NodeId,
        to: NodeId,
    ) -> Result<Applied, ControllerError> {
        let fenced = self.brokers.get(&to).map(|b| b.fenced);
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ControllerError::UnknownTopic)?;
        let pa = t
            .partitions
            .get_mut(partition as usize)
            .ok_or(ControllerError::UnknownPartition { partition })?;
        let at = pa
            .replicas
            .iter()
            .position(|&b| b == from)
            .ok_or(ControllerError::NotAReplica { broker: from })?;
        if pa.replicas.contains(&to) {
            return Err(ControllerError::AlreadyAReplica { broker: to });
        }
        match fenced {
            None => return Err(ControllerError::UnknownBroker { broker: to }),
            Some(true) => return Err(ControllerError::BrokerFenced { broker: to }),
            Some(false) => {}
        }
        pa.replicas[at] = to;
        if pa.preferred_leader == from {
            pa.preferred_leader = to;
        }
        pa.moves += 1;
        Ok(Applied::PartitionReassigned)
    }

    fn alter_replicas(
        &mut self,
        topic: &str,
        partition: u32,
        replicas: &[NodeId],
    ) -> Result<Applied, ControllerError> {
        let count = replicas.len();
        if count == 0 || count > usize::from(MAX_REPLICATION_FACTOR) {
            return Err(ControllerError::InvalidReplicaCount {
                count: u32::try_from(count).unwrap_or(u32::MAX),
            });
        }
        if let Some((_, &dup)) = replicas
            .iter()
            .enumerate()
            .find(|(i, r)| replicas[..*i].contains(r))
        {
            return Err(ControllerError::DuplicateReplica { broker: dup });
        }
        for &r in replicas {
            match self.brokers.get(&r).map(|b| b.fenced) {
                None => return Err(ControllerError::UnknownBroker { broker: r }),
                Some(true) => return Err(ControllerError::BrokerFenced { broker: r }),
                Some(false) => {}
            }
        }
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ControllerError::UnknownTopic)?;
        let pa = t
            .partitions
            .get_mut(partition as usize)
            .ok_or(ControllerError::UnknownPartition { partition })?;
        if pa.replicas == replicas {
            // Nothing to move: not a reassignment (the founding set stays the founding set).
            return Ok(Applied::PartitionReassigned);
        }
        pa.replicas = replicas.to_vec();
        pa.preferred_leader = replicas[0];
        pa.moves += 1;
        Ok(Applied::PartitionReassigned)
    }

    /// The state in a snapshot (see [`super::snapshot`] for the format), or why not.
    pub fn from_snapshot(data: &Bytes) -> Result<Self, snapshot::SnapshotError> {
        snapshot::decode(data)
    }
}

/// `base` with `configs` set, or the first bad key.
fn configured(
    base: TopicConfig,
    configs: &[(String, String)],
) -> Result<TopicConfig, ControllerError> {
    let mut config = base;
    for (key, value) in configs {
        config
            .set(key, value)
            .map_err(|()| ControllerError::InvalidConfig { key: key.clone() })?;
    }
    Ok(config)
}

impl StateMachine for ControllerState {
    type Output = Result<Applied, ControllerError>;

    /// Decodes and applies one command; a malformed payload is an error, never a panic.
    fn apply(&mut self, _first: Offset, command: &Bytes) -> Self::Output {
        let command = Command::decode(command)?;
        self.apply_command(&command)
    }

    fn snapshot(&self) -> Bytes {
        snapshot::encode(self)
    }

    /// Replaces the state with the snapshot's. A snapshot that does not decode (wrong
    /// checksum, version or shape) leaves the state as it was; every replica given the same
    /// bytes does the same. Use [`ControllerState::from_snapshot`] to see the error.
    fn restore(&mut self, snapshot: &Bytes) {
        if let Ok(state) = snapshot::decode(snapshot) {
            *self = state;
        }
    }
}

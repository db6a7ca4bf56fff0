//! Controller commands and their encoding in a Raft entry payload.
//!
//! ```text
//! payload = version:u8 (= 1) | tag:u8 | fields...
//! ```
//!
//! Fields use floe-protocol's [`Wire`] encodings (little-endian integers; `String` = `u32`
//! length + UTF-8; `Option` = `u8` 0/1 + value; `Vec` = `u32` count + elements). Node ids are
//! `u64`. Every length and count is checked against the bytes left before anything is
//! allocated, and every byte must be used.
//!
//! | tag | command              | fields                                                     |
//! |-----|----------------------|------------------------------------------------------------|
//! | 1   | `RegisterBroker`     | broker, client_addr, peer_addr, rack: `Option<String>`, term, tick |
//! | 2   | `BrokerHeartbeat`    | broker, epoch, term, tick                                  |
//! | 3   | `FenceBroker`        | broker, epoch                                              |
//! | 4   | `CreateTopic`        | name, partitions:u32, replication_factor:u16, configs: Vec<(String, String)> |
//! | 5   | `DeleteTopic`        | name                                                       |
//! | 6   | `AlterTopicConfig`   | name, configs: Vec<(String, String)>                       |
//! | 7   | `AllocateProducerIds`| broker, count:u32                                          |
//! | 8   | `ReassignPartition`  | topic, partition:u32, from, to                             |
//! | 9   | `AlterPartitionReplicas` | topic, partition:u32, replicas: `Vec<u64>`             |
//! | 10  | `BumpProducerEpoch`  | producer_id:u64, epoch:u16                                 |

use bytes::Bytes;
use floe_protocol::wire::{DecodeError, Reader, Wire};
use floe_raft::NodeId;
use thiserror::Error;

/// The payload format version this code writes and reads.
pub const COMMAND_VERSION: u8 = 1;

/// A change to the cluster metadata, proposed to the controller group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A broker (re)joins; it gets a new registration epoch and is unfenced.
    RegisterBroker {
        /// Node id.
        broker: NodeId,
        /// `host:port` for clients.
        client_addr: String,
        /// `host:port` for peers.
        peer_addr: String,
        /// Rack.
        rack: Option<String>,
        /// Proposer's term, recorded as the first heartbeat.
        term: u64,
        /// Proposer's tick, recorded as the first heartbeat.
        tick: u64,
    },
    /// A broker is alive; unfences it.
    BrokerHeartbeat {
        /// Node id.
        broker: NodeId,
        /// Registration epoch the broker holds.
        epoch: u64,
        /// Proposer's term.
        term: u64,
        /// Proposer's tick.
        tick: u64,
    },
    /// The controller stops placing replicas on a broker (missed heartbeats, shutdown).
    FenceBroker {
        /// Node id.
        broker: NodeId,
        /// Registration epoch being fenced.
        epoch: u64,
    },
    /// Creates a topic and places its replicas.
    CreateTopic {
        /// Name.
        name: String,
        /// Partition count.
        partitions: u32,
        /// Replicas per partition.
        replication_factor: u16,
        /// `key = value` settings (see [`super::TopicConfig`]).
        configs: Vec<(String, String)>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Changes some of a topic's settings (all or none).
    AlterTopicConfig {
        /// Name.
        name: String,
        /// `key = value` settings.
        configs: Vec<(String, String)>,
    },
    /// Hands a broker a block of producer ids.
    AllocateProducerIds {
        /// The broker asking.
        broker: NodeId,
        /// How many ids (1 ..= [`super::MAX_PRODUCER_ID_BLOCK`]).
        count: u32,
    },
    /// Replaces replica `from` of a partition with `to` (the preferred leader follows).
    ReassignPartition {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The replica removed.
        from: NodeId,
        /// The broker added.
        to: NodeId,
    },
    /// Sets a partition's whole replica set (the first replica becomes the preferred leader).
    /// The partition's Raft membership then follows it: see `node::worker`.
    AlterPartitionReplicas {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The target replicas: distinct, registered and unfenced brokers,
        /// 1 ..= [`super::MAX_REPLICATION_FACTOR`] of them.
        replicas: Vec<NodeId>,
    },
    /// A producer re-initialises an id it holds (after a restart): its epoch goes up by one
    /// if `epoch` is the current one; an older epoch is fenced.
    BumpProducerEpoch {
        /// The producer id (handed out before).
        producer_id: u64,
        /// The epoch the producer holds.
        epoch: u16,
    },
}

/// Why a payload is not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CommandDecodeError {
    /// The payload is empty.
    #[error("empty command payload")]
    Empty,
    /// A version this code does not read.
    #[error("unsupported command version {0}")]
    UnsupportedVersion(u8),
    /// An unknown command tag.
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    /// A field is malformed (truncated, oversized, bad UTF-8, trailing bytes).
    #[error("malformed command: {0}")]
    Malformed(#[from] DecodeError),
}

fn put<T: Wire>(out: &mut Vec<u8>, v: &T) {
    v.encode(out);
}

fn put_node(out: &mut Vec<u8>, n: NodeId) {
    n.0.encode(out);
}

fn put_pairs(out: &mut Vec<u8>, pairs: &[(String, String)]) {
    (pairs.len() as u32).encode(out);
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

fn node(r: &mut Reader<'_>) -> Result<NodeId, DecodeError> {
    u64::decode(r).map(NodeId)
}

fn nodes(r: &mut Reader<'_>) -> Result<Vec<NodeId>, DecodeError> {
    let n = r.count(8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(node(r)?);
    }
    Ok(out)
}

fn pairs(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, DecodeError> {
    // Each pair is at least two empty strings: 8 bytes.
    let n = r.count(8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((String::decode(r)?, String::decode(r)?));
    }
    Ok(out)
}

impl Command {
    /// The Raft entry payload for this command.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![COMMAND_VERSION, self.tag()];
        match self {
            Command::RegisterBroker {
                broker,
                client_addr,
                peer_addr,
                rack,
                term,
                tick,
            } => {
                put_node(&mut out, *broker);
                put(&mut out, client_addr);
                put(&mut out, peer_addr);
                put(&mut out, rack);
                put(&mut out, term);
                put(&mut out, tick);
            }
            Command::BrokerHeartbeat {
                broker,
                epoch,
                term,
                tick,
            } => {
                put_node(&mut out, *broker);
                put(&mut out, epoch);
                put(&mut out, term);
                put(&mut out, tick);
            }
            Command::FenceBroker { broker, epoch } => {
                put_node(&mut out, *broker);
                put(&mut out, epoch);
            }
            Command::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                put(&mut out, name);
                put(&mut out, partitions);
                put(&mut out, replication_factor);
                put_pairs(&mut out, configs);
            }
            Command::DeleteTopic { name } => put(&mut out, name),
            Command::AlterTopicConfig { name, configs } => {
                put(&mut out, name);
                put_pairs(&mut out, configs);
            }
            Command::AllocateProducerIds { broker, count } => {
                put_node(&mut out, *broker);
                put(&mut out, count);
            }
            Command::ReassignPartition {
                topic,
                partition,
                from,
                to,
            } => {
                put(&mut out, topic);
                put(&mut out, partition);
                put_node(&mut out, *from);
                put_node(&mut out, *to);
            }
            Command::AlterPartitionReplicas {
                topic,
                partition,
                replicas,
            } => {
                put(&mut out, topic);
                put(&mut out, partition);
                (replicas.len() as u32).encode(&mut out);
                for r in replicas {
                    put_node(&mut out, *r);
                }
            }
            Command::BumpProducerEpoch { producer_id, epoch } => {
                put(&mut out, producer_id);
                put(&mut out, epoch);
            }
        }
        Bytes::from(out)
    }

    fn tag(&self) -> u8 {
        match self {
            Command::RegisterBroker { .. } => 1,
            Command::BrokerHeartbeat { .. } => 2,
            Command::FenceBroker { .. } => 3,
            Command::CreateTopic { .. } => 4,
            Command::DeleteTopic { .. } => 5,
            Command::AlterTopicConfig { .. } => 6,
            Command::AllocateProducerIds { .. } => 7,
            Command::ReassignPartition { .. } => 8,
            Command::AlterPartitionReplicas { .. } => 9,
            Command::BumpProducerEpoch { .. } => 10,
        }
    }

    /// Reads a payload written by [`Command::encode`].
    pub fn decode(payload: &Bytes) -> Result<Command, CommandDecodeError> {
        let (&version, rest) = payload.split_first().ok_or(CommandDecodeError::Empty)?;
        if version != COMMAND_VERSION {
            return Err(CommandDecodeError::UnsupportedVersion(version));
        }
        let &tag = rest.first().ok_or(CommandDecodeError::Empty)?;
        let mut r = Reader::new(payload, 2, payload.len());
        let r = &mut r;
        let cmd = match tag {
            1 => Command::RegisterBroker {
                broker: node(r)?,
                client_addr: String::decode(r)?,
                peer_addr: String::decode(r)?,
                rack: Option::<String>::decode(r)?,
                term: u64::decode(r)?,
                tick: u64::decode(r)?,
            },
            2 => Command::BrokerHeartbeat {
                broker: node(r)?,
                epoch: u64::decode(r)?,
                term: u64::decode(r)?,
                tick: u64::decode(r)?,
            },
            3 => Command::FenceBroker {
                broker: node(r)?,
                epoch: u64::decode(r)?,
            },
            4 => Command::CreateTopic {
                name: String::decode(r)?,
                partitions: u32::decode(r)?,
                replication_factor: u16::decode(r)?,
                configs: pairs(r)?,
            },
            5 => Command::DeleteTopic {
                name: String::decode(r)?,
            },
            6 => Command::AlterTopicConfig {
                name: String::decode(r)?,
                configs: pairs(r)?,
            },
            7 => Command::AllocateProducerIds {
                broker: node(r)?,
                count: u32::decode(r)?,
            },
            8 => Command::ReassignPartition {
                topic: String::decode(r)?,
                partition: u32::decode(r)?,
                from: node(r)?,
                to: node(r)?,
            },
            9 => Command::AlterPartitionReplicas {
                topic: String::decode(r)?,
                partition: u32::decode(r)?,
                replicas: nodes(r)?,
            },
            10 => Command::BumpProducerEpoch {
                producer_id: u64::decode(r)?,
                epoch: u16::decode(r)?,
            },
            t => return Err(CommandDecodeError::UnknownTag(t)),
        };
        r.finish()?;
        Ok(cmd)
    }
}

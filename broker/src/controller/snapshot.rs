//! The snapshot format of [`ControllerState`].
//!
//! ```text
//! snapshot = magic "FLCS" | format:u16 (= 3; 1 and 2 are read too) | body | crc32:u32 (of everything before it)
//! body     = version:u64 | next_topic_id:u64 | next_producer_id:u64
//!          | brokers: Vec<broker> | topics: Vec<topic> | producer_blocks: Vec<block>
//!          | producer_epochs: Vec<epoch>                       (format 3 only)
//! broker   = id:u64 | client_addr | peer_addr | rack: Option<String> | epoch:u64
//!          | fenced:bool | heartbeat_term:u64 | heartbeat_tick:u64
//! topic    = name | id:u64 | replication_factor:u16 | config | partitions: Vec<partition>
//! config   = retention_bytes: Option<u64> | retention_ms: Option<u64>
//!          | fsync:u8 (0 always, 1 interval, 2 never) | fsync_ms:u64 | segment_bytes:u64
//!          | max_batch_bytes:u32
//! partition= replicas: Vec<u64> | preferred_leader:u64 | moves:u64 (formats 2, 3; 0 in format 1)
//! block    = broker:u64 | first:u64 | count:u32
//! epoch    = producer_id:u64 | epoch:u16
//! ```
//!
//! Formats 1 and 2 (no producer epochs) are still read: every id is then at epoch 0.
//!
//! Encodings are floe-protocol's [`Wire`] ones (little-endian). Brokers are sorted by id,
//! topics by name, blocks by broker, each strictly; decoding checks that, that replicas are
//! distinct and hold the preferred leader, and that configs are within limits, so
//! `decode(encode(s)) == s` and nothing else decodes.

use std::collections::BTreeMap;

use bytes::Bytes;
use floe_protocol::wire::{DecodeError, Reader, Wire};
use floe_raft::NodeId;
use floe_storage::FsyncPolicy;
use thiserror::Error;

use super::config::TopicConfig;
use super::state::{ControllerState, MAX_PRODUCER_EPOCH};
use super::types::{
    BrokerRecord, HeartbeatStamp, PartitionAssignment, ProducerIdBlock, TopicId, TopicRecord,
};

/// First bytes of a controller snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"FLCS";
/// The format version written.
pub const SNAPSHOT_FORMAT: u16 = 3;
/// The older format still read (no per-partition move count: every partition reads as
/// never moved, which format 1's code never did).
const SNAPSHOT_FORMAT_V1: u16 = 1;
const HEADER_LEN: usize = 6;
const TRAILER_LEN: usize = 4;

/// Why bytes are not a controller snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Shorter than header and checksum.
    #[error("snapshot too short ({len} bytes)")]
    TooShort {
        /// Length.
        len: usize,
    },
    /// Not a controller snapshot.
    #[error("bad snapshot magic")]
    BadMagic,
    /// A format this code does not read.
    #[error("unsupported snapshot format {0}")]
    UnsupportedFormat(u16),
    /// The checksum does not match.
    #[error("snapshot checksum {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A field is malformed.
    #[error("malformed snapshot: {0}")]
    Malformed(#[from] DecodeError),
    /// The fields decode but break an invariant.
    #[error("inconsistent snapshot: {what}")]
    Inconsistent {
        /// Which invariant.
        what: &'static str,
    },
}

fn put<T: Wire>(out: &mut Vec<u8>, v: &T) {
    v.encode(out);
}

/// Encodes the whole state.
pub(super) fn encode(s: &ControllerState) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    put(&mut out, &SNAPSHOT_FORMAT);
    put(&mut out, &s.version);
    put(&mut out, &s.next_topic_id);
    put(&mut out, &s.next_producer_id);
    put(&mut out, &(s.brokers.len() as u32));
    for b in s.brokers.values() {
        put(&mut out, &b.id.0);
        put(&mut out, &b.client_addr);
        put(&mut out, &b.peer_addr);
        put(&mut out, &b.rack);
        put(&mut out, &b.epoch);
        put(&mut out, &b.fenced);
        put(&mut out, &b.last_heartbeat.term);
        put(&mut out, &b.last_heartbeat.tick);
    }
    put(&mut out, &(s.topics.len() as u32));
    for t in s.topics.values() {
        put(&mut out, &t.name);
        put(&mut out, &t.id.0);
        put(&mut out, &t.replication_factor);
        encode_config(&mut out, &t.config);
        put(&mut out, &(t.partitions.len() as u32));
        for p in &t.partitions {
            let replicas: Vec<u64> = p.replicas.iter().map(|n| n.0).collect();
            put(&mut out, &replicas);
            put(&mut out, &p.preferred_leader.0);
            put(&mut out, &p.moves);
        }
    }
    put(&mut out, &(s.producer_blocks.len() as u32));
    for b in s.producer_blocks.values() {
        put(&mut out, &b.broker.0);
        put(&mut out, &b.first);
        put(&mut out, &b.count);
    }
    put(&mut out, &(s.producer_epochs.len() as u32));
    for (id, epoch) in &s.producer_epochs {
        put(&mut out, id);
        put(&mut out, epoch);
    }
    let crc = crc32fast::hash(&out);
    put(&mut out, &crc);
    Bytes::from(out)
}

fn encode_config(out: &mut Vec<u8>, c: &TopicConfig) {
    put(out, &c.retention_bytes);
    put(out, &c.retention_ms);
    let (tag, ms) = match c.fsync {
        FsyncPolicy::Always => (0u8, 0u64),
        FsyncPolicy::Interval { ms } => (1, ms),
        FsyncPolicy::Never => (2, 0),
    };
    put(out, &tag);
    put(out, &ms);
    put(out, &c.segment_bytes);
    put(out, &c.max_batch_bytes);
}

fn inconsistent(what: &'static str) -> SnapshotError {
    SnapshotError::Inconsistent { what }
}

/// Decodes and checks a snapshot.
pub(super) fn decode(data: &Bytes) -> Result<ControllerState, SnapshotError> {
    let len = data.len();
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(SnapshotError::TooShort { len });
    }
    if data[..4] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let format = u16::from_le_bytes([data[4], data[5]]);
    if !(SNAPSHOT_FORMAT_V1..=SNAPSHOT_FORMAT).contains(&format) {
        return Err(SnapshotError::UnsupportedFormat(format));
    }
    let body_end = len - TRAILER_LEN;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&data[body_end..]);
    let stored = u32::from_le_bytes(crc);
    let computed = crc32fast::hash(&data[..body_end]);
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    let mut r = Reader::new(data, HEADER_LEN, body_end);
    let state = decode_body(&mut r, format)?;
    r.finish()?;
    Ok(state)
}

fn decode_body(r: &mut Reader<'_>, format: u16) -> Result<ControllerState, SnapshotError> {
    let mut s = ControllerState {
        version: u64::decode(r)?,
        next_topic_id: u64::decode(r)?,
        next_producer_id: u64::decode(r)?,
        ..ControllerState::default()
    };
    // A broker is at least 8 + 4 + 4 + 1 + 8 + 1 + 8 + 8 bytes.
    let n = r.count(42)?;
    for _ in 0..n {
        let b = decode_broker(r)?;
        if s.brokers.last_key_value().is_some_and(|(k, _)| *k >= b.id) {
            return Err(inconsistent("brokers not sorted"));
        }
        s.brokers.insert(b.id, b);
    }
    // A topic is at least 4 + 8 + 2 + config (1 + 1 + 1 + 8 + 8 + 4) + 4 bytes.
    let n = r.count(41)?;
    for _ in 0..n {
        let t = decode_topic(r, format)?;
        if s.topics
            .last_key_value()
            .is_some_and(|(k, _)| k.as_str() >= t.name.as_str())
        {
            return Err(inconsistent("topics not sorted"));
        }
        s.topics.insert(t.name.clone(), t);
    }
    let n = r.count(20)?;
    let mut blocks = BTreeMap::new();
    for _ in 0..n {
        let block = ProducerIdBlock {
            broker: NodeId(u64::decode(r)?),
            first: u64::decode(r)?,
            count: u32::decode(r)?,
        };
        if blocks
            .last_key_value()
            .is_some_and(|(k, _)| *k >= block.broker)
        {
            return Err(inconsistent("producer blocks not sorted"));
        }
        blocks.insert(block.broker, block);
    }
    s.producer_blocks = blocks;
    if format >= 3 {
        let n = r.count(10)?;
        for _ in 0..n {
            let id = u64::decode(r)?;
            let epoch = u16::decode(r)?;
            if s.producer_epochs
                .last_key_value()
                .is_some_and(|(k, _)| *k >= id)
            {
                return Err(inconsistent("producer epochs not sorted"));
            }
            if id >= s.next_producer_id || !(1..=MAX_PRODUCER_EPOCH).contains(&epoch) {
                return Err(inconsistent("producer epoch"));
            }
            s.producer_epochs.insert(id, epoch);
        }
    }
    Ok(s)
}

fn decode_broker(r: &mut Reader<'_>) -> Result<BrokerRecord, SnapshotError> {
    Ok(BrokerRecord {
        id: NodeId(u64::decode(r)?),
        client_addr: String::decode(r)?,
        peer_addr: String::decode(r)?,
        rack: Option::<String>::decode(r)?,
        epoch: u64::decode(r)?,
        fenced: bool::decode(r)?,
        last_heartbeat: HeartbeatStamp {
            term: u64::decode(r)?,
            tick: u64::decode(r)?,
        },
    })
}

fn decode_topic(r: &mut Reader<'_>, format: u16) -> Result<TopicRecord, SnapshotError> {
    let name = String::decode(r)?;
    let id = TopicId(u64::decode(r)?);
    let replication_factor = u16::decode(r)?;
    let config = decode_config(r)?;
    // A partition is at least an empty replica list and a leader: 12 bytes (and the move
    // count: 20 in format 2).
    let n = r.count(if format == SNAPSHOT_FORMAT_V1 { 12 } else { 20 })?;
    let mut partitions = Vec::with_capacity(n);
    for _ in 0..n {
        let replicas: Vec<NodeId> = Vec::<u64>::decode(r)?.into_iter().map(NodeId).collect();
        let preferred_leader = NodeId(u64::decode(r)?);
        let moves = if format == SNAPSHOT_FORMAT_V1 {
            0
        } else {
            u64::decode(r)?
        };
        let distinct = replicas
            .iter()
            .enumerate()
            .all(|(i, a)| !replicas[..i].contains(a));
        if !distinct || !replicas.contains(&preferred_leader) {
            return Err(inconsistent("partition replicas"));
        }
        partitions.push(PartitionAssignment {
            replicas,
            preferred_leader,
            moves,
        });
    }
    Ok(TopicRecord {
        name,
        id,
        replication_factor,
        partitions,
        config,
    })
}

fn decode_config(r: &mut Reader<'_>) -> Result<TopicConfig, SnapshotError> {
    let retention_bytes = Option::<u64>::decode(r)?;
    let retention_ms = Option::<u64>::decode(r)?;
    let tag = u8::decode(r)?;
    let ms = u64::decode(r)?;
    let fsync = match (tag, ms) {
        (0, 0) => FsyncPolicy::Always,
        (1, ms) => FsyncPolicy::Interval { ms },
        (2, 0) => FsyncPolicy::Never,
        _ => return Err(inconsistent("fsync policy")),
    };
    let config = TopicConfig {
        retention_bytes,
        retention_ms,
        fsync,
        segment_bytes: u64::decode(r)?,
        max_batch_bytes: u32::decode(r)?,
    };
    if !config.is_valid() {
        return Err(inconsistent("topic config"));
    }
    Ok(config)
}

//! Control records: the typed payload of control batches (attributes bit 5).
//!
//! The broker stores Raft control entries (a leader's no-op, configuration changes) as control
//! batches in the partition log, so they take offsets like any record but are never handed to
//! consumers as data. Each control record is an ordinary record whose key and value are:
//!
//! ```text
//! key   := version u8 (= 0) | type u16 LE
//! value := per type:
//!   0 NoOp        empty
//!   1 RaftConfig  voters | learners | outgoing_voters, each: count u32 LE, then count × u64 LE
//! ```
//! `outgoing_voters` is non-empty only during a joint-consensus transition.

use super::records::{NewRecord, Record};
use thiserror::Error;

/// Version byte at the start of a control record key.
pub const CONTROL_KEY_VERSION: u8 = 0;

/// Why a control record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ControlError {
    /// The key is missing, the wrong length, or has an unknown version.
    #[error("malformed control record key")]
    BadKey,
    /// The control type is not known to this version.
    #[error("unknown control record type {0}")]
    UnknownType(u16),
    /// The value does not match the type's layout.
    #[error("malformed control record value")]
    BadValue,
}

/// Raft group membership carried by a [`ControlRecord::RaftConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct RaftConfig {
    /// Voting members (node ids).
    pub voters: Vec<u64>,
    /// Non-voting members receiving the log.
    pub learners: Vec<u64>,
    /// Voters of the outgoing configuration during joint consensus; empty otherwise.
    pub outgoing_voters: Vec<u64>,
}

/// A typed control record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlRecord {
    /// An empty entry (a new leader's first entry of its term).
    NoOp,
    /// A Raft membership configuration.
    RaftConfig(RaftConfig),
}

impl ControlRecord {
    /// The type number stored in the key.
    pub fn type_id(&self) -> u16 {
        match self {
            ControlRecord::NoOp => 0,
            ControlRecord::RaftConfig(_) => 1,
        }
    }

    /// The record key: version byte and type.
    pub fn key(&self) -> [u8; 3] {
        let t = self.type_id().to_le_bytes();
        [CONTROL_KEY_VERSION, t[0], t[1]]
    }

    /// The encoded record value.
    pub fn value(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let ControlRecord::RaftConfig(c) = self {
            for list in [&c.voters, &c.learners, &c.outgoing_voters] {
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for id in list {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads a control record from a record of a control batch.
    pub fn decode(record: &Record<'_>) -> Result<Self, ControlError> {
        let key = record.key.ok_or(ControlError::BadKey)?;
        let [version, lo, hi] = <[u8; 3]>::try_from(key).map_err(|_| ControlError::BadKey)?;
        if version != CONTROL_KEY_VERSION {
            return Err(ControlError::BadKey);
        }
        let value = record.value.unwrap_or(&[]);
        match u16::from_le_bytes([lo, hi]) {
            0 if value.is_empty() => Ok(ControlRecord::NoOp),
            0 => Err(ControlError::BadValue),
            1 => {
                let mut rest = value;
                let voters = read_ids(&mut rest)?;
                let learners = read_ids(&mut rest)?;
                let outgoing_voters = read_ids(&mut rest)?;
                if !rest.is_empty() {
                    return Err(ControlError::BadValue);
                }
                Ok(ControlRecord::RaftConfig(RaftConfig {
                    voters,
                    learners,
                    outgoing_voters,
                }))
            }
            t => Err(ControlError::UnknownType(t)),
        }
    }

    /// Calls `f` with this control record as a [`NewRecord`] with `timestamp`.
    pub fn with_record<R>(&self, timestamp: i64, f: impl FnOnce(&NewRecord<'_>) -> R) -> R {
        let key = self.key();
        let value = self.value();
        f(&NewRecord {
            timestamp,
            key: Some(&key),
            value: Some(&value),
            headers: &[],
        })
    }
}

fn read_ids(rest: &mut &[u8]) -> Result<Vec<u64>, ControlError> {
    let (count, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(ControlError::BadValue)?;
    let count = u32::from_le_bytes(*count) as usize;
    // Bound the count by the bytes present before allocating.
    if count > tail.len() / 8 {
        return Err(ControlError::BadValue);
    }
    let (ids, tail) = tail.split_at(count * 8);
    *rest = tail;
    Ok(ids
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

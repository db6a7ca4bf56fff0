//! floe-raft: a sans-IO Raft core and a multi-raft host.
//!
//! - [`Raft`] is one replica of one group. Feed it ticks, messages and proposals; drain what
//!   it asks for with the `poll_*` methods (see [`engine`] for the order). No I/O, no clock,
//!   no OS randomness: the same inputs give the same outputs.
//! - Raft's index space is the record offset space: an [`Entry`] is a record batch covering
//!   `[first, end)`; positions are exclusive ends, and [`Raft::commit_end`] is the high
//!   watermark.
//! - The [`Log`] trait is the storage seam; [`MemLog`] is an in-memory implementation with a
//!   crash model.
//! - [`sim`] is a deterministic simulator that checks Raft's safety properties under faults.
//! - [`host::Host`] runs many groups per node with coalesced heartbeats and quiescence.
//!
//! A one-replica group, driven by hand:
//!
//! ```
//! use bytes::Bytes;
//! use floe_raft::{Config, HardState, MemLog, Membership, NodeId, Offset, Raft, Role};
//!
//! let id = NodeId(1);
//! let mut raft = Raft::new(Config::new(id), MemLog::new(), HardState::default(),
//!                          Membership::new([id], []))?;
//! while raft.role() != Role::Leader {
//!     raft.handle_tick()?;
//! }
//! // A batch of 3 records occupies offsets 1..4 (the leader's no-op took offset 0).
//! let meta = raft.propose(Bytes::from_static(b"abc"), 3)?;
//! assert_eq!((meta.first, meta.end), (Offset(1), Offset(4)));
//! // Persist first (here: pretend to fsync), then send, then apply.
//! while let Some(req) = raft.poll_persist() {
//!     raft.log_mut().sync();
//!     raft.handle_persisted(req.id)?;
//! }
//! while let Some(_msg) = raft.poll_message() { /* no peers */ }
//! let committed = raft.poll_committed(1 << 20)?;
//! assert_eq!(committed.last().map(|e| e.end()), Some(Offset(4)));
//! raft.handle_applied(Offset(4));
//! assert_eq!(raft.commit_end(), Offset(4)); // the high watermark
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod entry;
pub mod error;
pub mod host;
pub mod log;
pub mod membership;
pub mod message;
pub mod rng;
pub mod sim;
pub mod state_machine;
pub mod types;

pub use config::Config;
pub use engine::{HardState, PersistId, PersistRequest, Raft, ReadyRead, Role};
pub use entry::{Entry, EntryKind, EntryMeta};
pub use error::{
    ChangeError, CompactError, ConfigError, ProposeError, RaftError, ReadError, TransferError,
};
pub use log::{Log, LogError, MemLog, Snapshot, SnapshotMeta};
pub use membership::{ConfChange, ConfChangeError, Membership};
pub use message::Message;
pub use state_machine::{Applier, StateMachine};
pub use types::{NodeId, Offset, Term};

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
pub use error::{ChangeError, CompactError, ProposeError, RaftError, ReadError, TransferError};
pub use log::{Log, LogError, MemLog, Snapshot, SnapshotMeta};
pub use membership::{ConfChange, ConfChangeError, Membership};
pub use message::Message;
pub use state_machine::{Applier, StateMachine};
pub use types::{NodeId, Offset, Term};

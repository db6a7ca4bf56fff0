//! Partition replicas: one Raft group per partition whose Raft log is the partition log.
//!
//! - [`raft_log`]: the adapter that makes a floe-storage [`floe_storage::Log`] a
//!   [`floe_raft::Log`] (data entries are the stored batches; no-ops and configurations are
//!   control batches), with the hard state and snapshot metadata beside the segments.
//! - [`Replica`]: one replica, driven sans-IO (tick, message, produce in; messages and produce
//!   answers out), persisting in the order the Raft core demands and answering `acks=all` at
//!   commit and `acks=leader` at the local durable append. Consumers read below the high
//!   watermark only.

mod error;
pub mod raft_log;
mod replica;
mod sidecar;

pub use error::{CompactError, FetchError, ProduceError, ReplicaError};
pub use raft_log::{Opened, RaftLog, RaftLogError};
pub use replica::{Acks, ProduceAck, Produced, Replica, ReplicaConfig};
pub use sidecar::SidecarError;

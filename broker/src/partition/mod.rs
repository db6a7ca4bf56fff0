//! Partition replicas: one Raft group per partition whose Raft log is the partition log.
//!
//! - [`raft_log`]: the adapter that makes a floe-storage [`floe_storage::Log`] a
//!   [`floe_raft::Log`] (data entries are the stored batches; no-ops and configurations are
//!   control batches), with the hard state and snapshot metadata beside the segments.

pub mod raft_log;
mod sidecar;

pub use raft_log::{Opened, RaftLog, RaftLogError};
pub use sidecar::SidecarError;

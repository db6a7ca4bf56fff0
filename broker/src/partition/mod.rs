//! Partition replicas: one Raft group per partition whose Raft log is the partition log.
//!
//! - [`raft_log`]: the adapter that makes a floe-storage [`floe_storage::Log`] a
//!   [`floe_raft::Log`] (data entries are the stored batches; no-ops and configurations are
//!   control batches), with the hard state and snapshot metadata beside the segments.
//! - [`Replica`]: one replica, driven sans-IO (tick, message, produce in; messages and produce
//!   answers out), persisting in the order the Raft core demands and answering `acks=all` at
//!   commit and `acks=leader` at the local durable append. Consumers read below the high
//!   watermark only.
//! - Idempotent producers: per producer id, the epoch and the last [`PRODUCER_WINDOW`]
//!   batches' sequences and offsets, folded from the committed batch headers on every replica
//!   (rebuilt by a header scan at open); the leader answers a retried batch with its original
//!   offsets ([`Produced::duplicate`]) and refuses gaps and fenced epochs with typed errors.
//!
//! ```
//! use std::sync::Arc;
//! use floe_broker::partition::{Acks, Replica, ReplicaConfig};
//! use floe_protocol::batch::{BatchBuilder, CompressionCodec};
//! use floe_raft::{Config, Membership, NodeId};
//! use floe_storage::{LogConfig, backend::MemDir};
//!
//! // A single-voter group: it elects itself after an election timeout.
//! let log = LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() };
//! let cfg = ReplicaConfig::new(Config::new(NodeId(1)), log);
//! let members = Membership::new([NodeId(1)], []);
//! let mut replica = Replica::open(Arc::new(MemDir::new()), cfg, members, 0)?;
//! for now_ms in (0..).step_by(10).take(100) {
//!     if replica.is_leader() {
//!         break;
//!     }
//!     replica.tick(now_ms)?;
//!     replica.process()?;
//! }
//! let mut batch = BatchBuilder::new(CompressionCodec::None);
//! batch.append(0, None, Some(b"hello"), &[]).unwrap();
//! replica.produce(7, batch.finish().unwrap(), Acks::All).unwrap();
//! replica.process()?; // one fsync for everything fed since the last call
//! let ack = replica.poll_ack().expect("committed");
//! let produced = ack.result.unwrap();
//! assert_eq!(ack.token, 7);
//! let read = replica.read_committed(produced.base_offset, 1 << 20).unwrap();
//! assert_eq!(read.next_offset, produced.next_offset);
//! # Ok::<(), floe_broker::partition::ReplicaError>(())
//! ```

mod error;
mod producers;
pub mod raft_log;
mod replica;
mod sidecar;

pub use error::{CompactError, FetchError, ProduceError, ReplicaError};
pub use producers::PRODUCER_WINDOW;
pub use raft_log::{Opened, RaftLog, RaftLogError};
pub use replica::{Acks, MoveStep, ProduceAck, Produced, Replica, ReplicaConfig};
pub use sidecar::{SidecarError, bootstrap_membership};

//! floe-broker: the floe server and the `floe` command line.
//!
//! - [`config`]: the configuration of `floe serve` (flags > `FLOE_*` environment > TOML file >
//!   defaults), with typed errors naming the bad setting and where it came from.
//! - [`partition`]: a partition replica. [`partition::RaftLog`] makes a floe-storage log the
//!   floe-raft log (the Raft log *is* the partition log); [`partition::Replica`] drives the
//!   Raft core sans-IO (ticks, messages, produces in; messages and produce answers out),
//!   persisting in the order the core demands, answering `acks=all` at commit and
//!   `acks=leader` at the local durable append, and serving consumers below the high
//!   watermark only.
//! - [`peer`]: Raft messages as floe-protocol peer frames, and the QUIC transport between
//!   nodes (one connection per node pair, one lane per group).
//! - [`log_inspect`]: the operator's offline tools for a partition directory (a read-only
//!   scan that checks every batch's length and CRC and reports torn tails, damage and offset
//!   gaps); [`certs`]: the cluster CA and node certificates (`floe cert init|issue`).
//!
//! - [`node`]: a broker node hosting many partition replicas (one owner thread each), the
//!   peer routing between them and the client service; topics come from a static table
//!   until the controller is connected.
//!
//! - [`telemetry`]: the metric names the node records through the `metrics` facade (no-ops
//!   without a recorder) and the Prometheus exporter `floe serve` installs; every metric is
//!   listed in `broker/METRICS.md`.
//!
//! The `floe` binary adds `floe dev` (a local cluster of child processes) and the client
//! verbs (`topic`, `produce`, `consume`, `cluster status`) on top of floe-client.
//!
//! Still to come (the broker issue): the controller group wired into the node.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod certs;
pub mod config;
pub mod controller;
pub mod log_inspect;
pub mod node;
pub mod partition;
pub mod peer;
pub mod telemetry;

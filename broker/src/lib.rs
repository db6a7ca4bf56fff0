//! floe-broker: the floe server and the `floe` command line.
//!
//! Today it holds the operator's offline tools for a partition directory
//! ([`log_inspect`]): a read-only scan that checks every batch's length and CRC and reports
//! torn tails, damage and offset gaps; and the cluster CA and node certificates
//! ([`certs`], behind `floe cert init|issue`). The server (controller, partitions as Raft groups
//! over QUIC) builds on floe-storage, floe-raft and floe-protocol in the broker issue.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod certs;
pub mod config;
pub mod log_inspect;
pub mod partition;
pub mod peer;

//! floe-client: the Rust client for floe.
//!
//! Today this crate holds the pieces of the producer that need no network: the
//! [`partitioner`] that maps a record to a partition. The QUIC connection, `Producer`,
//! `Consumer` and `Admin` build on it (see the project's client issue).
//!
//! ```
//! use floe_client::partitioner::{Partitioner, PartitionerError};
//! let mut p = Partitioner::key_hash();
//! // The same key always lands on the same partition.
//! let a = p.partition(Some(b"user-42"), 12)?;
//! assert_eq!(a, p.partition(Some(b"user-42"), 12)?);
//! assert!(a < 12);
//! # Ok::<(), PartitionerError>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod partitioner;

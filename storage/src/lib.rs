//! floe-storage: the partition log.
//!
//! A partition log is a directory of segments (`<base-offset:020>.log`), each with a sparse
//! offset + time index (`<base-offset:020>.index`), a meta file holding the logical log start,
//! a term history (`log.terms`: where each Raft term starts; a batch's term is not covered by
//! its CRC, so every term the log serves is checked against it), and optionally the Raft
//! hard-state file. Batches are stored exactly as the protocol defines
//! them (`floe_protocol::batch`); the storage reads only their headers and checks their CRCs.
//!
//! # Tour
//! - [`Log::open`] recovers a directory and returns a [`Log`] with a [`RecoveryReport`].
//! - Writes: [`Log::append`] (leader: validate, stamp offset and term) and
//!   [`Log::append_replicated`] (follower: must start at the log end), then [`Log::sync`] once
//!   for the whole group (group commit), or [`Log::maybe_sync`] per [`FsyncPolicy`].
//!   [`LogWriter`] does the grouping for many threads.
//! - Reads: [`Log::read`] / [`Log::read_until`] return whole CRC-checked batches as zero-copy
//!   `Bytes`; [`Log::batch_header_at`], [`Log::lookup_time`]. [`Log::last_term`] and every
//!   term read come from (or are checked against) the term history ([`Log::term_history`]).
//! - Truncation: [`Log::truncate_suffix`] (Raft conflicts), [`Log::truncate_prefix`],
//!   [`Log::apply_retention`]; [`Log::verify`] scrubs everything, [`Log::scrub_step`] a budget at a time.
//! - Failure: an fsync or write error fails the log ([`Error::Failed`]) for good; a full
//!   disk is [`Error::NoSpace`] and harms nothing. Damaged data is [`Error::Corruption`] and
//!   never served.
//! - I/O goes through [`backend::Directory`]: real files with mmap reads, memory, or the
//!   fault-injecting test backend.
//!
//! ```
//! use std::sync::Arc;
//! use floe_storage::{Log, LogConfig, OpenOptions, backend::MemDir};
//! let mut log = Log::open(Arc::new(MemDir::new()), LogConfig::default(), OpenOptions::default())?;
//! for _ in 0..3 {
//!     log.append(&mut floe_storage::testing::batch(2, b"records", 1_000), 1, 0)?;
//! }
//! assert_eq!(log.sync()?, 6);
//! let read = log.read(0, 1 << 20)?;
//! assert_eq!(read.batches().count(), 3);
//! log.truncate_suffix(4)?;
//! assert_eq!(log.log_end(), 4);
//! # Ok::<(), floe_storage::Error>(())
//! ```
//!
//! # Group commit
//!
//! Appends only write to the page cache; durability comes from one sync for many appends.
//! Answer producers (or acknowledge to the Raft leader) only for offsets below the durable end
//! that the sync returns. To keep readers running during the fsync, split it in three:
//!
//! ```
//! use std::sync::{Arc, RwLock};
//! use floe_storage::{Log, LogConfig, OpenOptions, backend::MemDir};
//! let log = Log::open(Arc::new(MemDir::new()), LogConfig::default(), OpenOptions::default())?;
//! let log = RwLock::new(log);
//! let ticket = {
//!     let mut w = log.write().unwrap();
//!     for _ in 0..100 {
//!         w.append(&mut floe_storage::testing::batch(1, b"r", 0), 1, 0)?;
//!     }
//!     w.begin_sync()? // captures the file handle and the target end
//! };
//! let outcome = ticket.run(); // the fsync, with no lock held: readers proceed
//! let durable = log.write().unwrap().complete_sync(ticket, outcome)?;
//! assert_eq!(durable, 100);
//! # Ok::<(), floe_storage::Error>(())
//! ```
//!
//! [`LogWriter`] packages exactly this on a thread of its own.
#![warn(missing_docs)]

pub mod backend;
mod config;
mod error;
mod format;
mod hard_state;
mod log;
mod recovery;
mod scrub;
mod segment;
mod terms;
pub mod testing;
mod writer;

pub use config::{FsyncPolicy, LogConfig, OpenOptions};
pub use error::{CorruptRange, CorruptionKind, Error, ErrorClass, Failure, IoOp, Result};
pub use hard_state::{HardState, HardStateFile};
pub use log::{AppendInfo, Log, ReadBatches, SyncTicket};
pub use recovery::{RecoveryReport, TermHistoryRecovery, TornTail};
pub use scrub::ScrubProgress;
pub use writer::{Appended, Clock, LogReader, LogWriter, PendingAppend, system_now_ms};

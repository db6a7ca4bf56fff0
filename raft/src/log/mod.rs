//! The log the core replicates, as a trait the broker backs with floe-storage.

pub mod conformance;
mod memory;

pub use memory::MemLog;

use bytes::Bytes;

use crate::entry::{Entry, EntryMeta};
use crate::membership::Membership;
use crate::types::{Offset, Term};

/// Position, term and membership of a snapshot (the state just before the log start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The snapshot covers all offsets before `end`; the log starts at `end`.
    pub end: Offset,
    /// Term of the entry ending at `end` (`Term(0)` if `end == 0`).
    pub term: Term,
    /// Membership as of `end`.
    pub membership: Membership,
}

/// A snapshot: its metadata and the application's state (empty for a plain partition log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Where it is.
    pub meta: SnapshotMeta,
    /// The state machine's bytes.
    pub data: Bytes,
}

/// A failure of the log's storage. Any of these stops the group (the caller restarts it).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The offset is not held (compacted away, or past the end).
    #[error("offset {offset} is not in the log")]
    Unavailable {
        /// The offset asked for.
        offset: Offset,
    },
    /// The storage failed.
    #[error("log storage failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A Raft log of entries covering contiguous offset ranges.
///
/// # To ensure correctness
/// - No holes: entries are contiguous; `append` is only called with `entries[0].first() ==
///   self.end()` and each entry starting where the previous ends.
/// - Writes are visible to reads at once, but may be volatile: the core asks for durability
///   through [`crate::PersistRequest`]s and counts entries as durable only after the caller has
///   fsynced them (everything written before the request) and called
///   [`crate::Raft::handle_persisted`].
/// - `truncate_suffix(at)` is only called at an entry boundary above the commit end.
/// - Compaction (`compact`) only removes a prefix that is committed and applied.
/// - Entries are returned exactly as appended (same bounds, term and payload).
pub trait Log {
    /// The first offset held (the snapshot end; 0 if never compacted).
    fn start(&self) -> Offset;
    /// The snapshot metadata at `start()`.
    fn snapshot_meta(&self) -> SnapshotMeta;
    /// One past the last offset: where the next entry goes.
    fn end(&self) -> Offset;
    /// Term of the last entry (or of the snapshot if the log is empty).
    fn last_term(&self) -> Term;
    /// Bounds and term of the entry holding `offset`, or `None` if not held.
    fn entry_meta(&self, offset: Offset) -> Result<Option<EntryMeta>, LogError>;
    /// Whole entries from `from` (an entry boundary), at least one if any, stopping once
    /// `max_bytes` would be exceeded.
    fn entries(&self, from: Offset, max_bytes: usize) -> Result<Vec<Entry>, LogError>;
    /// Appends entries at `end()`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError>;
    /// Removes all entries at and after `at` (an entry boundary).
    fn truncate_suffix(&mut self, at: Offset) -> Result<(), LogError>;
    /// Discards entries before `snapshot.meta.end` (an entry boundary within the log) and keeps
    /// the snapshot as the log's start.
    fn compact(&mut self, snapshot: Snapshot) -> Result<(), LogError>;
    /// Replaces the whole log with `snapshot`: it becomes empty and starts at its end.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogError>;
    /// The snapshot at `start()` (its data may be empty).
    fn snapshot(&self) -> Result<Snapshot, LogError>;

    /// The configuration entries held, in order. The default scans the whole log; a storage
    /// adapter should answer from an index of control batches.
    fn config_entries(&self) -> Result<Vec<(Offset, Membership)>, LogError> {
        let mut out = Vec::new();
        let mut at = self.start();
        while at < self.end() {
            let batch = self.entries(at, 1 << 20)?;
            let Some(last) = batch.last() else { break };
            at = last.end();
            for e in batch {
                if let crate::entry::EntryKind::Config(m) = e.kind() {
                    out.push((e.first(), m.clone()));
                }
            }
        }
        Ok(out)
    }
}

/// Term of the entry ending at `end` (the snapshot term at the log start; `None` outside
/// `start()..=end()`). A position inside an entry reports that entry's term: callers only
/// compare terms at the leader's entry boundaries.
pub fn term_at<L: Log + ?Sized>(log: &L, end: Offset) -> Result<Option<Term>, LogError> {
    if end == log.start() {
        return Ok(Some(log.snapshot_meta().term));
    }
    if end < log.start() || end > log.end() {
        return Ok(None);
    }
    Ok(log.entry_meta(Offset(end.0 - 1))?.map(|m| m.term))
}

/// The largest entry boundary `p <= end` (and `p >= start`) whose term is at most `term`, and
/// that term: the fast back-off search on both sides of a rejected append.
pub fn find_conflict_by_term<L: Log + ?Sized>(
    log: &L,
    end: Offset,
    term: Term,
) -> Result<(Offset, Term), LogError> {
    let mut p = end.min(log.end());
    loop {
        if p <= log.start() {
            let meta = log.snapshot_meta();
            return Ok((meta.end, meta.term));
        }
        let Some(meta) = log.entry_meta(Offset(p.0 - 1))? else {
            return Err(LogError::Unavailable {
                offset: Offset(p.0 - 1),
            });
        };
        if meta.end == p && meta.term <= term {
            return Ok((p, meta.term));
        }
        p = meta.first;
    }
}

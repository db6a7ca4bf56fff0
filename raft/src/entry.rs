//! Log entries: one record batch (or one control entry) covering a range of offsets.

use bytes::Bytes;

use crate::membership::Membership;
use crate::types::{Offset, Term};

/// Bytes counted per entry on top of its payload, for flow control budgets.
pub const ENTRY_OVERHEAD_BYTES: usize = 32;

/// What an entry carries. The payload is opaque to the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A record batch of `records` records, occupying `records` offsets.
    Data {
        /// The batch bytes, opaque to Raft.
        payload: Bytes,
        /// How many records (and so offsets) the batch holds; at least 1.
        records: u64,
    },
    /// The entry a new leader appends to commit its term. Occupies 1 offset.
    Noop,
    /// A membership change. Occupies 1 offset.
    Config(Membership),
}

/// One log entry covering offsets `first..end()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    first: Offset,
    term: Term,
    kind: EntryKind,
}

impl Entry {
    /// A data entry (a record batch) of `records >= 1` records starting at `first`.
    ///
    /// # Panics
    /// If `records == 0`: a batch occupies at least one offset.
    pub fn data(first: Offset, term: Term, payload: Bytes, records: u64) -> Self {
        assert!(records > 0, "a record batch covers at least one offset");
        Entry {
            first,
            term,
            kind: EntryKind::Data { payload, records },
        }
    }

    /// A no-op entry (1 offset).
    pub fn noop(first: Offset, term: Term) -> Self {
        Entry {
            first,
            term,
            kind: EntryKind::Noop,
        }
    }

    /// A configuration entry (1 offset).
    pub fn config(first: Offset, term: Term, membership: Membership) -> Self {
        Entry {
            first,
            term,
            kind: EntryKind::Config(membership),
        }
    }

    /// The first offset the entry covers.
    pub fn first(&self) -> Offset {
        self.first
    }

    /// The last offset the entry covers (inclusive).
    pub fn last(&self) -> Offset {
        Offset(self.end().0 - 1)
    }

    /// One past the last offset: where the next entry starts.
    pub fn end(&self) -> Offset {
        self.first.plus(self.len())
    }

    /// How many offsets the entry covers (>= 1).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        match &self.kind {
            EntryKind::Data { records, .. } => *records,
            EntryKind::Noop | EntryKind::Config(_) => 1,
        }
    }

    /// The term of the leader that created the entry.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The entry's kind and payload.
    pub fn kind(&self) -> &EntryKind {
        &self.kind
    }

    /// The bytes this entry counts against flow-control budgets.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.kind {
            EntryKind::Data { payload, .. } => payload.len(),
            EntryKind::Noop => 0,
            EntryKind::Config(m) => 8 * (m.voters().len() + m.learners().len()),
        };
        payload + ENTRY_OVERHEAD_BYTES
    }

    /// The metadata of this entry (bounds and term).
    pub fn meta(&self) -> EntryMeta {
        EntryMeta {
            first: self.first,
            end: self.end(),
            term: self.term,
        }
    }
}

/// Bounds and term of an entry, without the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// First offset covered.
    pub first: Offset,
    /// One past the last offset covered.
    pub end: Offset,
    /// The entry's term.
    pub term: Term,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_five_records_covers_five_offsets() {
        let e = Entry::data(Offset(10), Term(2), Bytes::from_static(b"x"), 5);
        assert_eq!(
            (e.first(), e.last(), e.end(), e.len()),
            (Offset(10), Offset(14), Offset(15), 5)
        );
        let n = Entry::noop(Offset(15), Term(2));
        assert_eq!(n.end(), Offset(16));
    }
}

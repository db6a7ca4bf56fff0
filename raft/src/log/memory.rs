//! An in-memory [`Log`] with a durable image, for tests and the simulator.

use super::{Log, LogError, Snapshot, SnapshotMeta};
use crate::entry::{Entry, EntryMeta};
use crate::types::{Offset, Term};

/// An in-memory log. It keeps a *live* image (what reads see) and a *durable* image (what
/// survives [`MemLog::crash`]); [`MemLog::sync`] makes the live image durable, as fsync would.
#[derive(Clone, Debug, Default)]
pub struct MemLog {
    live: Image,
    durable: Image,
    /// Lowest live index changed since the last sync (`None`: in sync); `Some(0)` also after a
    /// snapshot change, which forces a full copy.
    dirty_from: Option<usize>,
    snapshot_dirty: bool,
}

#[derive(Clone, Debug, Default)]
struct Image {
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl MemLog {
    /// An empty log starting at offset 0.
    pub fn new() -> Self {
        MemLog::default()
    }

    /// Makes everything written so far durable (fsync).
    pub fn sync(&mut self) {
        if self.snapshot_dirty {
            self.durable = self.live.clone_shallow();
        } else if let Some(from) = self.dirty_from {
            self.durable.entries.truncate(from);
            self.durable
                .entries
                .extend_from_slice(&self.live.entries[from..]);
        }
        self.dirty_from = None;
        self.snapshot_dirty = false;
    }

    /// Loses everything not synced (a crash): the live image becomes the durable one.
    pub fn crash(&mut self) {
        self.live = self.durable.clone_shallow();
        self.dirty_from = None;
        self.snapshot_dirty = false;
    }

    fn mark_dirty(&mut self, from: usize) {
        self.dirty_from = Some(self.dirty_from.map_or(from, |d| d.min(from)));
    }

    /// All entries held (live image).
    pub fn all_entries(&self) -> &[Entry] {
        &self.live.entries
    }

    fn index_of(&self, offset: Offset) -> Option<usize> {
        let entries = &self.live.entries;
        if offset < self.start() || offset >= self.end() {
            return None;
        }
        let i = entries.partition_point(|e| e.end() <= offset);
        (i < entries.len()).then_some(i)
    }
}

impl Image {
    fn clone_shallow(&self) -> Image {
        // Entries hold `Bytes`, so a clone copies pointers, not payloads.
        Image {
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

impl Log for MemLog {
    fn start(&self) -> Offset {
        self.live.snapshot.meta.end
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        self.live.snapshot.meta.clone()
    }

    fn end(&self) -> Offset {
        self.live.entries.last().map_or(self.start(), Entry::end)
    }

    fn last_term(&self) -> Term {
        self.live
            .entries
            .last()
            .map_or(self.live.snapshot.meta.term, Entry::term)
    }

    fn entry_meta(&self, offset: Offset) -> Result<Option<EntryMeta>, LogError> {
        Ok(self.index_of(offset).map(|i| self.live.entries[i].meta()))
    }

    fn entries(&self, from: Offset, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        if from == self.end() {
            return Ok(Vec::new());
        }
        let Some(i) = self.index_of(from) else {
            return Err(LogError::Unavailable { offset: from });
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &self.live.entries[i..] {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        self.mark_dirty(self.live.entries.len());
        for e in entries {
            assert_eq!(e.first(), self.end(), "append must be contiguous");
            self.live.entries.push(e.clone());
        }
        Ok(())
    }

    fn truncate_suffix(&mut self, at: Offset) -> Result<(), LogError> {
        let i = self.live.entries.partition_point(|e| e.first() < at);
        assert!(
            i == self.live.entries.len() || self.live.entries[i].first() == at,
            "boundary"
        );
        self.live.entries.truncate(i);
        self.mark_dirty(i);
        Ok(())
    }

    fn compact(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        let end = snapshot.meta.end;
        let i = self.live.entries.partition_point(|e| e.end() <= end);
        self.live.entries.drain(..i);
        self.live.snapshot = snapshot;
        self.snapshot_dirty = true;
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        self.live.entries.clear();
        self.live.snapshot = snapshot;
        self.snapshot_dirty = true;
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot, LogError> {
        Ok(self.live.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{find_conflict_by_term, term_at};
    use bytes::Bytes;

    fn log_with(terms_lens: &[(u64, u64)]) -> MemLog {
        let mut log = MemLog::new();
        for &(t, n) in terms_lens {
            let e = Entry::data(log.end(), Term(t), Bytes::from_static(b"ab"), n);
            log.append(&[e]).unwrap();
        }
        log
    }

    #[test]
    fn positions_are_offset_ranges() {
        let log = log_with(&[(1, 3), (1, 2), (2, 4)]);
        assert_eq!(log.end(), Offset(9));
        assert_eq!(term_at(&log, Offset(0)).unwrap(), Some(Term(0)));
        assert_eq!(term_at(&log, Offset(5)).unwrap(), Some(Term(1)));
        assert_eq!(term_at(&log, Offset(9)).unwrap(), Some(Term(2)));
        assert_eq!(term_at(&log, Offset(10)).unwrap(), None);
        assert_eq!(log.entries(Offset(3), 0).unwrap().len(), 1);
        assert_eq!(log.entries(Offset(3), 1000).unwrap().len(), 2);
        assert!(log.entries(Offset(4), 1000).is_ok());
    }

    #[test]
    fn conflict_search_backs_off_by_term() {
        let log = log_with(&[(1, 3), (1, 2), (2, 4), (3, 1)]);
        assert_eq!(
            find_conflict_by_term(&log, Offset(10), Term(2)).unwrap(),
            (Offset(9), Term(2))
        );
        assert_eq!(
            find_conflict_by_term(&log, Offset(10), Term(1)).unwrap(),
            (Offset(5), Term(1))
        );
        assert_eq!(
            find_conflict_by_term(&log, Offset(7), Term(1)).unwrap(),
            (Offset(5), Term(1))
        );
        assert_eq!(
            find_conflict_by_term(&log, Offset(10), Term(0)).unwrap(),
            (Offset(0), Term(0))
        );
    }

    #[test]
    fn crash_loses_unsynced_writes() {
        let mut log = log_with(&[(1, 3)]);
        log.sync();
        log.append(&[Entry::noop(Offset(3), Term(2))]).unwrap();
        log.crash();
        assert_eq!(log.end(), Offset(3));
    }
}

#[cfg(test)]
mod conformance_tests {
    #[test]
    fn mem_log_passes_the_conformance_suite() {
        crate::log::conformance::check(super::MemLog::new);
    }
}

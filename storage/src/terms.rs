//! The term history (`log.terms`): where each Raft term starts in the log.
//!
//! The batch CRC does not cover a batch's `term` (the leader stamps it after the producer
//! sealed the CRC), so the term stored in a batch header cannot be trusted on its own. The
//! history is the checksummed record of every term change, written durably before the first
//! batch of a new term; every batch the log serves must carry the term the history gives for
//! its offsets. Layout and rules: `storage/FORMAT.md` ("Term history").

use floe_protocol::batch::BatchHeader;

/// Name of the term history file.
pub(crate) const TERMS_NAME: &str = "log.terms";

const TERMS_MAGIC: [u8; 4] = *b"FLTM";
const TERMS_VERSION: u8 = 1;
const TM_UNVERIFIED_AT: usize = 8;
const TM_COUNT_AT: usize = TM_UNVERIFIED_AT + 8;
const TM_ENTRIES_AT: usize = TM_COUNT_AT + 8;
const TM_ENTRY_LEN: usize = 16;
const TM_CRC_LEN: usize = 4;
const _: () = assert!(TM_ENTRIES_AT == 24);

/// Most entries a history may hold (one per election that reached this log).
pub(crate) const MAX_TERM_ENTRIES: usize = 1 << 20;

/// One term change: batches from `start` on (until the next entry) carry `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TermEntry {
    pub(crate) term: u64,
    pub(crate) start: u64,
}

/// The ordered term history. Invariants (checked at decode): at most [`MAX_TERM_ENTRIES`]
/// entries, strictly increasing in both `term` and `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TermHistory {
    pub(crate) entries: Vec<TermEntry>,
    /// Offsets below this had their terms rebuilt from the batch headers themselves (the file
    /// was missing or damaged): a term flip that happened before the rebuild is undetectable
    /// there. 0 when every term was recorded at append time.
    pub(crate) unverified_end: u64,
}

impl TermHistory {
    /// The term of `offset`: that of the last entry starting at or below it.
    pub(crate) fn term_at(&self, offset: u64) -> Option<u64> {
        let i = self.entries.partition_point(|e| e.start <= offset);
        Some(self.entries.get(i.checked_sub(1)?)?.term)
    }

    /// The last term recorded.
    pub(crate) fn last_term(&self) -> Option<u64> {
        self.entries.last().map(|e| e.term)
    }

    /// Records that a batch of `term` is appended at `base` (the log end): entries at or past
    /// `base` describe nothing and go; a new entry is added if the term changes. The caller
    /// has checked that `term` does not decrease (or that the log is empty and cleared it).
    pub(crate) fn start_term(&mut self, term: u64, base: u64) {
        self.entries.retain(|e| e.start < base);
        if self.last_term() != Some(term) {
            debug_assert!(self.last_term().is_none_or(|t| t < term));
            self.entries.push(TermEntry { term, start: base });
        }
    }

    /// Drops every entry at or after `offset` (a suffix cut). Returns whether anything changed.
    pub(crate) fn truncate_from(&mut self, offset: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start < offset);
        self.unverified_end = self.unverified_end.min(offset);
        before != self.entries.len()
    }

    /// Drops the entries wholly below `offset` (a prefix cut), keeping the one covering it.
    /// Returns whether anything changed.
    pub(crate) fn trim_below(&mut self, offset: u64) -> bool {
        let covering = self.entries.partition_point(|e| e.start <= offset);
        let drop = covering.saturating_sub(1);
        self.entries.drain(..drop);
        drop > 0
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = TM_ENTRIES_AT + self.entries.len() * TM_ENTRY_LEN + TM_CRC_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&TERMS_MAGIC);
        out.extend_from_slice(&[TERMS_VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.unverified_end.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for e in &self.entries {
            out.extend_from_slice(&e.term.to_le_bytes());
            out.extend_from_slice(&e.start.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Decodes a history file; any inconsistency is an error (the caller rebuilds).
    pub(crate) fn decode(buf: &[u8]) -> Result<TermHistory, &'static str> {
        if buf.len() < TM_ENTRIES_AT + TM_CRC_LEN {
            return Err("too short");
        }
        let body = buf.len() - TM_CRC_LEN;
        if crc32fast::hash(&buf[..body]) != u32_at(buf, body) {
            return Err("checksum mismatch");
        }
        if buf[..4] != TERMS_MAGIC || buf[4] != TERMS_VERSION {
            return Err("bad magic or version");
        }
        let count = u32_at(buf, TM_COUNT_AT) as usize;
        if count > MAX_TERM_ENTRIES || body != TM_ENTRIES_AT + count * TM_ENTRY_LEN {
            return Err("bad entry count");
        }
        let entries: Vec<TermEntry> = buf[TM_ENTRIES_AT..body]
            .chunks_exact(TM_ENTRY_LEN)
            .map(|c| TermEntry {
                term: u64_at(c, 0),
                start: u64_at(c, 8),
            })
            .collect();
        if entries
            .windows(2)
            .any(|w| w[0].term >= w[1].term || w[0].start >= w[1].start)
        {
            return Err("entries out of order");
        }
        Ok(TermHistory {
            entries,
            unverified_end: u64_at(buf, TM_UNVERIFIED_AT),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// How a batch header's term is checked: against the history, for batches that reach the
/// readable log (`>= log_start`); `history: None` checks nothing (only while recovery
/// rebuilds a missing history).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TermCheck<'a> {
    pub(crate) history: Option<&'a TermHistory>,
    pub(crate) log_start: u64,
}

impl TermCheck<'_> {
    /// No check.
    pub(crate) const OFF: TermCheck<'static> = TermCheck {
        history: None,
        log_start: 0,
    };

    /// Whether `h`'s term is the one the history gives for all of its readable offsets.
    /// Batches wholly below the log start are never served and not checked.
    pub(crate) fn accepts(&self, h: &BatchHeader) -> bool {
        let Some(history) = self.history else {
            return true;
        };
        if h.next_offset() <= self.log_start {
            return true;
        }
        let first = h.base_offset.max(self.log_start);
        history.term_at(first) == Some(h.term) && history.term_at(h.last_offset()) == Some(h.term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(entries: &[(u64, u64)]) -> TermHistory {
        TermHistory {
            entries: entries
                .iter()
                .map(|&(term, start)| TermEntry { term, start })
                .collect(),
            unverified_end: 0,
        }
    }

    #[test]
    fn roundtrip_and_damage() {
        let h = TermHistory {
            unverified_end: 7,
            ..hist(&[(1, 0), (3, 10), (9, 40)])
        };
        let buf = h.encode();
        assert_eq!(TermHistory::decode(&buf), Ok(h));
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(TermHistory::decode(&b).is_err(), "bit {i}");
        }
        assert!(TermHistory::decode(&buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn term_at_start_truncate_trim() {
        let mut h = hist(&[(1, 0), (3, 10)]);
        assert_eq!(
            (h.term_at(0), h.term_at(9), h.term_at(10), h.term_at(99)),
            (Some(1), Some(1), Some(3), Some(3))
        );
        h.start_term(3, 20);
        assert_eq!(h, hist(&[(1, 0), (3, 10)]));
        h.start_term(4, 20);
        assert_eq!(h, hist(&[(1, 0), (3, 10), (4, 20)]));
        // An entry with no batch yet (failed append) is replaced.
        h.start_term(5, 20);
        assert_eq!(h, hist(&[(1, 0), (3, 10), (5, 20)]));
        assert!(h.truncate_from(10));
        assert!(!h.truncate_from(10));
        assert_eq!(h, hist(&[(1, 0)]));
        let mut h = hist(&[(1, 0), (3, 10), (4, 20)]);
        assert!(!h.trim_below(5));
        assert!(h.trim_below(10));
        assert_eq!(h, hist(&[(3, 10), (4, 20)]));
        assert!(h.trim_below(100));
        assert_eq!(h, hist(&[(4, 20)]));
    }
}

//! One segment: a file of back-to-back batches plus its in-memory sparse index.

use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::batch::{BatchHeader, HEADER_LEN, MAX_BATCH_LEN, compute_crc};

use crate::backend::BackendFile;
use crate::error::{CorruptRange, CorruptionKind, Error, IoOp, Result};
use crate::format::{IndexEntry, IndexFile, log_name};
use crate::terms::TermCheck;

/// A segment of the log. `sealed` segments are complete, durable and immutable.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base: u64,
    pub(crate) file: Arc<dyn BackendFile>,
    /// Logical end in bytes: batches occupy `[0, data_len)`.
    pub(crate) data_len: u64,
    /// Offset after the last batch (or after the last damaged range).
    pub(crate) next_offset: u64,
    /// Bytes known durable.
    pub(crate) synced_len: u64,
    /// `data_len` of the last index checkpoint written for this segment.
    pub(crate) checkpointed_len: u64,
    pub(crate) entries: Vec<IndexEntry>,
    pub(crate) bytes_since_entry: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) last_term: u64,
    pub(crate) sealed: bool,
    pub(crate) created_ms: u64,
    /// Known damaged ranges: never served.
    pub(crate) corrupt: Vec<CorruptRange>,
}

/// Result of checking the bytes at one position.
#[derive(Debug)]
pub(crate) enum Step {
    /// A valid batch of `header.batch_len` bytes.
    Batch(BatchHeader),
    /// End of data: end of the limit or an all-zero header (preallocated tail).
    End,
    /// Damaged or torn. `header` is set when the header itself is sane (length within the
    /// limit, expected base offset), so the damage can be skipped.
    Bad {
        kind: CorruptionKind,
        header: Option<BatchHeader>,
    },
}

fn read_err(base: u64, e: std::io::Error) -> Error {
    crate::error::io_err(IoOp::Read, &log_name(base), e)
}

impl Segment {
    pub(crate) fn new(base: u64, file: Arc<dyn BackendFile>, now_ms: u64) -> Self {
        Segment {
            base,
            file,
            data_len: 0,
            next_offset: base,
            synced_len: 0,
            checkpointed_len: 0,
            entries: Vec::new(),
            bytes_since_entry: 0,
            max_timestamp: i64::MIN,
            last_term: 0,
            sealed: false,
            created_ms: now_ms,
            corrupt: Vec::new(),
        }
    }

    /// Starts from a decoded index: everything it describes is trusted.
    pub(crate) fn from_index(ix: IndexFile, file: Arc<dyn BackendFile>, now_ms: u64) -> Self {
        let bytes_since_entry = ix
            .entries
            .last()
            .map_or(ix.data_len, |e| ix.data_len - u64::from(e.position));
        Segment {
            base: ix.base,
            file,
            data_len: ix.data_len,
            next_offset: ix.next_offset,
            synced_len: ix.data_len,
            checkpointed_len: ix.data_len,
            entries: ix.entries,
            bytes_since_entry,
            max_timestamp: ix.max_timestamp,
            last_term: ix.last_term,
            sealed: ix.sealed,
            created_ms: now_ms,
            corrupt: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data_len == 0 && self.next_offset == self.base
    }

    /// The index describing `[0, len)`; `len` must be `data_len` or a batch boundary known to
    /// the caller (the durable length of the active segment).
    pub(crate) fn index_file(&self, sealed: bool, len: u64, next_offset: u64) -> IndexFile {
        IndexFile {
            base: self.base,
            sealed,
            entries: self
                .entries
                .iter()
                .copied()
                .filter(|e| u64::from(e.position) < len)
                .collect(),
            data_len: len,
            next_offset,
            max_timestamp: self.max_timestamp,
            last_term: self.last_term,
        }
    }

    /// Records a batch written (or found) at `pos == data_len`.
    pub(crate) fn push(&mut self, h: &BatchHeader, pos: u64, index_interval: u64) {
        debug_assert_eq!(pos, self.data_len);
        debug_assert_eq!(h.base_offset, self.next_offset);
        if self.entries.is_empty() || self.bytes_since_entry >= index_interval {
            self.entries.push(IndexEntry {
                relative_offset: (h.base_offset - self.base) as u32,
                position: pos as u32,
                max_ts_before: self.max_timestamp,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += u64::from(h.batch_len);
        self.data_len = pos + u64::from(h.batch_len);
        self.next_offset = h.next_offset();
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.last_term = self.last_term.max(h.term);
    }

    /// Whether a batch starting at `base_offset` can be indexed (relative offsets are `u32`).
    pub(crate) fn offset_fits(&self, base_offset: u64) -> bool {
        base_offset - self.base <= u64::from(u32::MAX)
    }

    /// Checks the batch at `pos`, expected to start at `expected` offset, without reading past
    /// `limit` bytes, its term against the term history (`terms`) and not below `last_term`.
    pub(crate) fn check_at(
        &self,
        pos: u64,
        limit: u64,
        expected: u64,
        last_term: u64,
        terms: TermCheck<'_>,
    ) -> Result<Step> {
        if pos >= limit {
            return Ok(Step::End);
        }
        let avail = limit - pos;
        let head_len = avail.min(HEADER_LEN as u64) as usize;
        let head = self
            .file
            .read_bytes(pos, head_len)
            .map_err(|e| read_err(self.base, e))?;
        if head.iter().all(|&b| b == 0) {
            return Ok(Step::End);
        }
        let bad = |kind| Ok(Step::Bad { kind, header: None });
        let Ok(h) = BatchHeader::parse(&head) else {
            return bad(CorruptionKind::BadHeader);
        };
        if h.validate(MAX_BATCH_LEN).is_err() || u64::from(h.batch_len) > avail {
            return bad(CorruptionKind::BadHeader);
        }
        if h.base_offset != expected || !self.offset_fits(h.base_offset) {
            return bad(CorruptionKind::OffsetMismatch);
        }
        let batch = self
            .file
            .read_bytes(pos, h.batch_len as usize)
            .map_err(|e| read_err(self.base, e))?;
        if compute_crc(&batch) != h.crc {
            return Ok(Step::Bad {
                kind: CorruptionKind::CrcMismatch,
                header: Some(h),
            });
        }
        if !terms.accepts(&h) {
            return Ok(Step::Bad {
                kind: CorruptionKind::TermMismatch,
                header: Some(h),
            });
        }
        if h.term < last_term {
            return Ok(Step::Bad {
                kind: CorruptionKind::TermRegression,
                header: Some(h),
            });
        }
        Ok(Step::Batch(h))
    }

    pub(crate) fn corruption_at(&self, offset: u64) -> Option<CorruptRange> {
        self.corrupt.iter().copied().find(|r| r.contains(offset))
    }

    /// Marks `[start, end)` at `position` as damaged (merging duplicates).
    pub(crate) fn mark_corrupt(
        &mut self,
        start: u64,
        end: u64,
        position: u64,
        kind: CorruptionKind,
    ) -> CorruptRange {
        let range = CorruptRange {
            start,
            end: end.max(start + 1),
            segment: self.base,
            position,
            kind,
        };
        if !self.corrupt.iter().any(|r| r.start == range.start) {
            self.corrupt.push(range);
            self.corrupt.sort_by_key(|r| r.start);
        }
        range
    }

    fn corrupt_err(&self, start: u64, end: u64, position: u64, kind: CorruptionKind) -> Error {
        Error::Corruption {
            range: CorruptRange {
                start,
                end: end.max(start + 1),
                segment: self.base,
                position,
                kind,
            },
        }
    }

    /// Reads and sanity-checks the header at `pos` (no CRC, no term check).
    pub(crate) fn header_at(&self, pos: u64, expected: u64) -> Result<BatchHeader> {
        let damaged = |kind| self.corrupt_err(expected, self.next_offset, pos, kind);
        if pos + HEADER_LEN as u64 > self.data_len {
            return Err(damaged(CorruptionKind::BadHeader));
        }
        let head = self
            .file
            .read_bytes(pos, HEADER_LEN)
            .map_err(|e| read_err(self.base, e))?;
        let h = BatchHeader::parse(&head).map_err(|_| damaged(CorruptionKind::BadHeader))?;
        if h.validate(MAX_BATCH_LEN).is_err() || pos + u64::from(h.batch_len) > self.data_len {
            return Err(damaged(CorruptionKind::BadHeader));
        }
        if h.base_offset != expected {
            return Err(damaged(CorruptionKind::OffsetMismatch));
        }
        Ok(h)
    }

    /// The error for a batch whose term the history contradicts, if it does.
    fn check_term(&self, pos: u64, h: &BatchHeader, terms: TermCheck<'_>) -> Result<()> {
        if terms.accepts(h) {
            return Ok(());
        }
        let kind = CorruptionKind::TermMismatch;
        Err(self.corrupt_err(h.base_offset, h.next_offset(), pos, kind))
    }

    /// Finds the batch containing `offset` (which must be in `[base, next_offset)`): its
    /// position and header, whose term is checked against `terms` (batches walked over on the
    /// way only need sane headers). Uses the sparse index, then walks headers.
    pub(crate) fn locate(&self, offset: u64, terms: TermCheck<'_>) -> Result<(u64, BatchHeader)> {
        if let Some(range) = self.corruption_at(offset) {
            return Err(Error::Corruption { range });
        }
        let i = self
            .entries
            .partition_point(|e| self.base + u64::from(e.relative_offset) <= offset);
        let (mut pos, mut off) = match i {
            0 => (0, self.base),
            _ => {
                let e = self.entries[i - 1];
                (
                    u64::from(e.position),
                    self.base + u64::from(e.relative_offset),
                )
            }
        };
        loop {
            let h = self.header_at(pos, off)?;
            if h.next_offset() > offset {
                self.check_term(pos, &h, terms)?;
                return Ok((pos, h));
            }
            pos += u64::from(h.batch_len);
            off = h.next_offset();
        }
    }

    /// Position of the batch boundary at `offset` in `[base, next_offset]`, or why there is none.
    pub(crate) fn boundary(&self, offset: u64) -> Result<u64> {
        if offset == self.next_offset {
            return Ok(self.data_len);
        }
        if let Some(r) = self.corrupt.iter().find(|r| r.start == offset) {
            return Ok(r.position);
        }
        // Only the position matters here: a cut may land on a batch with a damaged term.
        let (pos, h) = self.locate(offset, TermCheck::OFF)?;
        if h.base_offset != offset {
            return Err(Error::NotBatchBoundary {
                offset,
                batch_start: h.base_offset,
                batch_end: h.next_offset(),
            });
        }
        Ok(pos)
    }

    /// Whole CRC- and term-checked batches from the one containing `offset`, up to
    /// `max_bytes` (at least one batch) and not past offset `limit`. `None` if no batch ends
    /// at or before `limit`.
    pub(crate) fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        limit: u64,
        terms: TermCheck<'_>,
    ) -> Result<Option<(Bytes, u64, u64)>> {
        let (start, first) = self.locate(offset, terms)?;
        let mut pos = start;
        let mut off = first.base_offset;
        let mut total = 0u64;
        while pos < self.data_len && off < limit {
            if let Some(range) = self.corruption_at(off) {
                if total == 0 {
                    return Err(Error::Corruption { range });
                }
                break;
            }
            let h = match self.header_at(pos, off) {
                Ok(h) => h,
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            };
            let len = u64::from(h.batch_len);
            if (total > 0 && total + len > max_bytes as u64) || h.next_offset() > limit {
                break;
            }
            if let Err(e) = self.check_term(pos, &h, terms) {
                if total == 0 {
                    return Err(e);
                }
                break;
            }
            let batch = self
                .file
                .read_bytes(pos, len as usize)
                .map_err(|e| read_err(self.base, e))?;
            if compute_crc(&batch) != h.crc {
                if total == 0 {
                    return Err(self.corrupt_err(
                        off,
                        h.next_offset(),
                        pos,
                        CorruptionKind::CrcMismatch,
                    ));
                }
                break;
            }
            total += len;
            pos += len;
            off = h.next_offset();
        }
        if total == 0 {
            return Ok(None);
        }
        let bytes = self
            .file
            .read_bytes(start, total as usize)
            .map_err(|e| read_err(self.base, e))?;
        Ok(Some((bytes, first.base_offset, off)))
    }

    /// The first batch of the segment whose `max_timestamp >= ts`, found through the time
    /// column of the index and a short walk.
    pub(crate) fn find_time(
        &self,
        ts: i64,
        from: u64,
        terms: TermCheck<'_>,
    ) -> Result<Option<BatchHeader>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        // Entries' max_ts_before is non-decreasing: start at the last entry all of whose
        // predecessors are older than `ts`...
        let i = self.entries.partition_point(|e| e.max_ts_before < ts);
        let (mut pos, mut off) = match i {
            0 => (0, self.base),
            _ => {
                let e = self.entries[i - 1];
                (
                    u64::from(e.position),
                    self.base + u64::from(e.relative_offset),
                )
            }
        };
        // ...or at the batch containing `from` (the log start), whichever comes later.
        if from > off && from < self.next_offset {
            let (p, h) = self.locate(from, TermCheck::OFF)?;
            if p > pos {
                (pos, off) = (p, h.base_offset);
            }
        }
        while pos < self.data_len {
            if let Some(range) = self.corruption_at(off) {
                // The damaged batch's timestamp cannot be trusted: report it.
                return Err(Error::Corruption { range });
            }
            let h = self.header_at(pos, off)?;
            if h.max_timestamp >= ts {
                self.check_term(pos, &h, terms)?;
                return Ok(Some(h));
            }
            pos += u64::from(h.batch_len);
            off = h.next_offset();
        }
        Ok(None)
    }

    /// Recomputes the derived fields (max timestamp, last term, bytes since the last entry)
    /// after `data_len` moved back, by walking from the last index entry.
    pub(crate) fn recompute_tail(&mut self) -> Result<()> {
        let (mut pos, mut off, mut max_ts) = match self.entries.last() {
            Some(e) => (
                u64::from(e.position),
                self.base + u64::from(e.relative_offset),
                e.max_ts_before,
            ),
            None => (0, self.base, i64::MIN),
        };
        let start = pos;
        let mut last_term = 0;
        while pos < self.data_len {
            if self.corruption_at(off).is_some() {
                break;
            }
            let h = self.header_at(pos, off)?;
            max_ts = max_ts.max(h.max_timestamp);
            last_term = last_term.max(h.term);
            pos += u64::from(h.batch_len);
            off = h.next_offset();
        }
        self.max_timestamp = max_ts;
        if last_term > 0 || self.data_len == 0 {
            self.last_term = last_term;
        }
        self.bytes_since_entry = self.data_len - start;
        Ok(())
    }
}

//! Scrubbing: re-checking stored batches (headers, offsets, terms, CRCs) to find media damage
//! that recovery does not look for. Recovery scans only the active segment's tail and trusts
//! sealed segments by their index, so damage there stays hidden until something reads it.
//! [`Log::verify`] checks everything at once (after an unclean stop); [`Log::scrub_step`]
//! checks the sealed segments a budget at a time (a background scrub), continuing where the
//! last step stopped and starting over after the last sealed segment. Damage found either way
//! is remembered ([`Log::corruption`]) and never served.

use crate::error::{CorruptRange, CorruptionKind, Result};
use crate::log::Log;
use crate::segment::{Segment, Step};
use crate::terms::TermCheck;
use floe_protocol::batch::HEADER_LEN;

/// What one [`Log::scrub_step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubProgress {
    /// Bytes checked (whole batches; at most one batch more than the budget).
    pub scanned_bytes: u64,
    /// Damaged ranges found in this step that were not known before.
    pub found: Vec<CorruptRange>,
    /// The step reached the end of the last sealed segment: a full pass is complete and the
    /// next step starts over at the oldest sealed segment.
    pub wrapped: bool,
}

/// Where a scan stands inside one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// Byte position of the next batch to check.
    pub(crate) pos: u64,
    /// The offset that batch must start at.
    pub(crate) off: u64,
    /// The term of the batch before it (terms never go down).
    pub(crate) term: u64,
}

impl Position {
    /// The first batch of `seg`.
    pub(crate) fn start_of(seg: &Segment) -> Position {
        Position {
            pos: 0,
            off: seg.base,
            term: 0,
        }
    }
}

/// Where the background scrub continues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScrubCursor {
    /// Continue in the first sealed segment whose base is at least this (`None`: the oldest).
    segment: Option<u64>,
    /// The position inside the segment whose base is `segment` (`None`: its start).
    at: Option<Position>,
    /// The log's truncation generation and start when `at` was taken: a truncation can
    /// replace a segment by another with the same base, so a position is only trusted while
    /// they are unchanged (otherwise the segment is checked again from its start).
    generation: u64,
    log_start: u64,
}

/// Checks the batch at `at` in `seg` and moves `at` past it (or past the damage: to the next
/// index entry, or to the segment's data end when there is none). Returns the bytes examined
/// and the damaged range met, if any, with whether it was not known before.
pub(crate) fn check_batch(
    seg: &mut Segment,
    at: &mut Position,
    terms: TermCheck<'_>,
) -> Result<(u64, Option<(CorruptRange, bool)>)> {
    let mark = |seg: &mut Segment, start: u64, end: u64, pos: u64, kind| {
        let new = !seg.corrupt.iter().any(|r| r.start == start);
        (seg.mark_corrupt(start, end, pos, kind), new)
    };
    match seg.check_at(at.pos, seg.data_len, at.off, at.term, terms)? {
        Step::Batch(h) => {
            at.term = h.term;
            at.pos += u64::from(h.batch_len);
            at.off = h.next_offset();
            Ok((u64::from(h.batch_len), None))
        }
        Step::Bad {
            kind,
            header: Some(h),
        } => {
            let found = mark(seg, at.off, h.next_offset(), at.pos, kind);
            at.pos += u64::from(h.batch_len);
            at.off = h.next_offset();
            Ok((u64::from(h.batch_len), Some(found)))
        }
        other => {
            // An unskippable header, or zeros/EOF before the data end.
            let kind = match other {
                Step::Bad { kind, .. } => kind,
                _ => CorruptionKind::Missing,
            };
            // Resume at the next index entry past the damage, if any.
            let next = seg
                .entries
                .iter()
                .find(|e| u64::from(e.position) > at.pos)
                .copied();
            let (end, resume) = match next {
                Some(e) => (
                    seg.base + u64::from(e.relative_offset),
                    Some(u64::from(e.position)),
                ),
                None => (seg.next_offset, None),
            };
            let found = mark(seg, at.off, end, at.pos, kind);
            match resume {
                Some(p) => {
                    at.pos = p;
                    at.off = end;
                }
                None => at.pos = seg.data_len,
            }
            Ok((HEADER_LEN as u64, Some(found)))
        }
    }
}

impl Log {
    /// Checks about `budget` bytes of the *sealed* segments (every batch's header, offset,
    /// term and CRC), continuing where the previous step stopped, oldest segment first, and
    /// starting over once the newest sealed segment is done ([`ScrubProgress::wrapped`]; one
    /// step never goes past that point). Whole batches only: a step checks at most one batch
    /// more than `budget` (at least one when `budget > 0`); `budget == 0` checks nothing.
    /// Damage found is marked like [`Log::verify`] does: remembered ([`Log::corruption`]) and
    /// never served. The active segment is left to recovery, which scans its tail at open.
    ///
    /// ```
    /// # use floe_storage::{Log, LogConfig, OpenOptions, backend::MemDir};
    /// # use std::sync::Arc;
    /// let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
    /// let mut log = Log::open(Arc::new(MemDir::new()), config, OpenOptions::default())?;
    /// for _ in 0..40 {
    ///     log.append(&mut floe_storage::testing::batch(1, &[7; 200], 1_000), 1, 0)?;
    /// }
    /// let step = log.scrub_step(1 << 20)?;
    /// assert!(step.wrapped && step.found.is_empty() && step.scanned_bytes > 0);
    /// # Ok::<(), floe_storage::Error>(())
    /// ```
    pub fn scrub_step(&mut self, budget: u64) -> Result<ScrubProgress> {
        let mut progress = ScrubProgress::default();
        if (self.scrub.generation, self.scrub.log_start) != (self.generation, self.log_start) {
            self.scrub.generation = self.generation;
            self.scrub.log_start = self.log_start;
            self.scrub.at = None;
        }
        let terms = TermCheck {
            history: Some(&self.terms),
            log_start: self.log_start,
        };
        while progress.scanned_bytes < budget {
            let from = self.scrub.segment;
            let next = self
                .segments
                .iter()
                .position(|s| s.sealed && from.is_none_or(|b| s.base >= b));
            let Some(idx) = next else {
                // Past the newest sealed segment (or there is none): the pass is complete.
                progress.wrapped = from.is_some();
                self.scrub.segment = None;
                self.scrub.at = None;
                break;
            };
            let seg = &mut self.segments[idx];
            if from != Some(seg.base) {
                self.scrub.segment = Some(seg.base);
                self.scrub.at = None;
            }
            let at = self.scrub.at.get_or_insert_with(|| Position::start_of(seg));
            while at.pos < seg.data_len && progress.scanned_bytes < budget {
                let (examined, found) = check_batch(seg, at, terms)?;
                progress.scanned_bytes += examined;
                if let Some((range, true)) = found {
                    progress.found.push(range);
                }
            }
            if at.pos >= seg.data_len {
                // This segment is done: continue with the next sealed one (bases are unique
                // and increasing, so "above this base" is exactly the later segments).
                self.scrub.segment = Some(seg.base + 1);
                self.scrub.at = None;
            }
        }
        Ok(progress)
    }
}

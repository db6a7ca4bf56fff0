//! The partition log: segments, append, read, sync, truncation, retention.

use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::batch::{BatchHeader, stamp, validate_batch};

use crate::backend::{BackendFile, Directory, write_atomic};
use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{CorruptRange, Error, Failure, IoOp, Result, failure, io_err, is_no_space};
use crate::format::{META_NAME, encode_meta, index_name, log_name};
use crate::recovery::RecoveryReport;
use crate::segment::Segment;
use crate::terms::{TERMS_NAME, TermCheck, TermHistory};

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Base offset assigned to (or carried by) the batch.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// The log end after the append (`last_offset + 1`).
    pub next_offset: u64,
    /// The term stored in the batch.
    pub term: u64,
}

/// Whole batches read from one segment, as one zero-copy buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatches {
    /// One or more complete, CRC-checked batches, back to back.
    pub bytes: Bytes,
    /// Base offset of the first batch (may be below the offset asked for: the whole
    /// containing batch is returned).
    pub first_offset: u64,
    /// Offset after the last batch: where the next read continues.
    pub next_offset: u64,
}

impl ReadBatches {
    /// Splits `bytes` into its batches (headers were checked when read).
    pub fn batches(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut rest = self.bytes.clone();
        std::iter::from_fn(move || {
            let h = BatchHeader::parse(&rest).ok()?;
            let len = (h.batch_len as usize).min(rest.len());
            Some(rest.split_to(len))
        })
    }
}

/// A sync captured by [`Log::begin_sync`], run by [`SyncTicket::run`] without holding the log,
/// and applied by [`Log::complete_sync`]. This lets a writer release a lock around the fsync so
/// readers are not blocked by it.
#[derive(Debug)]
pub struct SyncTicket {
    file: Option<Arc<dyn BackendFile>>,
    dir: Option<Arc<dyn Directory>>,
    segment: Option<u64>,
    target_len: u64,
    target_end: u64,
    generation: u64,
    dir_epoch: u64,
}

impl SyncTicket {
    /// Performs the fsyncs (segment data, then the directory if it changed). Never retry a
    /// failed ticket: hand the result to [`Log::complete_sync`], which fails the log.
    pub fn run(&self) -> Result<(), Failure> {
        if let Some(file) = &self.file {
            file.sync().map_err(|e| failure(IoOp::SyncData, &e))?;
        }
        if let Some(dir) = &self.dir {
            dir.sync().map_err(|e| failure(IoOp::SyncDir, &e))?;
        }
        Ok(())
    }

    /// The log end this sync makes durable.
    pub fn target_end(&self) -> u64 {
        self.target_end
    }
}

/// One partition log. See the crate docs for a tour and `storage/FORMAT.md` for the layout.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: Arc<dyn Directory>,
    pub(crate) config: LogConfig,
    /// Sorted by base; contiguous (`segments[i].next_offset == segments[i + 1].base`); every
    /// segment but the last is sealed.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start: u64,
    pub(crate) durable_end: u64,
    pub(crate) failed: Option<Failure>,
    /// Bumped by `truncate_suffix`, so a sync captured before it does not vouch for new data.
    pub(crate) generation: u64,
    pub(crate) dir_epoch: u64,
    pub(crate) dir_synced_epoch: u64,
    pub(crate) last_sync_ms: u64,
    pub(crate) report: RecoveryReport,
    /// Where each term starts (`log.terms`): every batch served must agree with it.
    pub(crate) terms: TermHistory,
    /// The on-disk history still holds entries past a cut (its rewrite failed without failing
    /// the log): the next append rewrites it before writing a batch.
    pub(crate) terms_dirty: bool,
    /// Where the background scrub ([`Log::scrub_step`]) continues.
    pub(crate) scrub: crate::scrub::ScrubCursor,
}

impl Log {
    // ----------------------------------------------------------------------------- getters

    /// First offset that can be read (moved by `truncate_prefix` and retention).
    pub fn log_start(&self) -> u64 {
        self.log_start
    }

    /// Next offset to be assigned: one past the last batch.
    pub fn log_end(&self) -> u64 {
        self.segments
            .last()
            .map_or(self.log_start, |s| s.next_offset.max(self.log_start))
    }

    /// Everything below this offset is fsynced.
    pub fn durable_end(&self) -> u64 {
        self.durable_end.min(self.log_end())
    }

    /// Term of the last batch (0 if the log holds none). It comes from the checksummed term
    /// history, never from a batch header (whose term the batch CRC does not cover), so a
    /// damaged term cannot raise it.
    pub fn last_term(&self) -> u64 {
        let end = self.log_end();
        if end <= self.log_start {
            return 0;
        }
        self.terms.term_at(end - 1).unwrap_or(0)
    }

    /// The term history: `(term, first offset)` of every term that starts in the log (the
    /// first entry may start below the log start: it covers it), in order.
    pub fn term_history(&self) -> Vec<(u64, u64)> {
        self.terms
            .entries
            .iter()
            .map(|e| (e.term, e.start))
            .collect()
    }

    /// Offsets below this had their terms rebuilt from the batch headers themselves, because
    /// the term history file was missing or damaged at some open (see
    /// [`RecoveryReport::term_history`]): a term damaged before that rebuild is not
    /// detectable there. 0 when every term was recorded as it was appended.
    pub fn unverified_terms_end(&self) -> u64 {
        self.terms.unverified_end
    }

    pub(crate) fn term_check(&self) -> TermCheck<'_> {
        TermCheck {
            history: Some(&self.terms),
            log_start: self.log_start,
        }
    }

    /// Why the log refuses writes, if it does.
    pub fn failure(&self) -> Option<Failure> {
        self.failed
    }

    /// What recovery found when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Every damaged range known (from recovery and `verify`). Never served.
    pub fn corruption(&self) -> Vec<CorruptRange> {
        self.segments
            .iter()
            .flat_map(|s| s.corrupt.iter().copied())
            .collect()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total bytes of batches held.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.data_len).sum()
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Whether appended data awaits a sync.
    pub fn is_dirty(&self) -> bool {
        self.durable_end() < self.log_end() || self.dir_epoch > self.dir_synced_epoch
    }

    // ----------------------------------------------------------------------------- reads

    fn segment_for(&self, offset: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.base <= offset);
        let seg = self.segments.get(i.checked_sub(1)?)?;
        (offset < seg.next_offset).then_some(seg)
    }

    fn check_readable(&self, offset: u64) -> Result<()> {
        let (start, end) = (self.log_start, self.log_end());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { offset, start, end });
        }
        Ok(())
    }

    /// Reads whole batches from `offset` up to `max_bytes`, straight from the segment (zero
    /// copy on the file backend). Always returns at least one whole batch when one exists at
    /// `offset`, even if it is larger than `max_bytes`; never a partial batch. Every batch is
    /// CRC-checked; a damaged one is never returned: if the first batch is damaged the read
    /// fails with [`Error::Corruption`], otherwise the read stops before it. Reading at the log
    /// end returns an empty result. One read never spans two segments.
    ///
    /// ```
    /// # use floe_storage::{Log, LogConfig, OpenOptions, backend::MemDir};
    /// # use std::sync::Arc;
    /// # let mut log = Log::open(Arc::new(MemDir::new()), LogConfig::default(), OpenOptions::default()).unwrap();
    /// # let mut batch = floe_storage::testing::batch(3, b"abc", 1_000);
    /// log.append(&mut batch, 1, 0).unwrap();
    /// let read = log.read(1, 1 << 20).unwrap(); // offset 1 is inside the first batch
    /// assert_eq!((read.first_offset, read.next_offset), (0, 3));
    /// assert_eq!(read.bytes.len(), batch.len());
    /// ```
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches> {
        self.read_until(offset, max_bytes, u64::MAX)
    }

    /// Like [`Log::read`], but returns only batches that end at or below `limit` (for example
    /// the high watermark, so consumers never see uncommitted batches).
    pub fn read_until(&self, offset: u64, max_bytes: usize, limit: u64) -> Result<ReadBatches> {
        self.check_readable(offset)?;
        let empty = ReadBatches {
            bytes: Bytes::new(),
            first_offset: offset,
            next_offset: offset,
        };
        let Some(seg) = self.segment_for(offset) else {
            return Ok(empty);
        };
        match seg.read(offset, max_bytes, limit, self.term_check())? {
            Some((bytes, first_offset, next_offset)) => Ok(ReadBatches {
                bytes,
                first_offset,
                next_offset,
            }),
            None => Ok(empty),
        }
    }

    /// The header of the batch containing `offset` (for example its term, for Raft's log
    /// matching check). The header is sanity-checked and its term checked against the term
    /// history ([`Error::Corruption`] if they disagree); the CRC is not (use `read` for that).
    pub fn batch_header_at(&self, offset: u64) -> Result<BatchHeader> {
        self.check_readable(offset)?;
        let seg = self.segment_for(offset).ok_or(Error::OffsetOutOfRange {
            offset,
            start: self.log_start,
            end: self.log_end(),
        })?;
        Ok(seg.locate(offset, self.term_check())?.1)
    }

    /// Term of the entry (batch) containing `offset`: Raft's `term(index)`.
    pub fn term_at(&self, offset: u64) -> Result<u64> {
        Ok(self.batch_header_at(offset)?.term)
    }

    /// Base offset of the batch containing `offset` (index lookup and a short scan).
    pub fn lookup_offset(&self, offset: u64) -> Result<u64> {
        Ok(self.batch_header_at(offset)?.base_offset)
    }

    /// The first batch whose `max_timestamp >= ts` (via the time index), or `None` if every
    /// batch is older.
    pub fn lookup_time(&self, ts: i64) -> Result<Option<BatchHeader>> {
        for seg in &self.segments {
            if seg.next_offset <= self.log_start {
                continue;
            }
            if let Some(h) = seg.find_time(ts, self.log_start, self.term_check())? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    // ----------------------------------------------------------------------------- appends

    pub(crate) fn check_writable(&self) -> Result<()> {
        match self.failed {
            Some(f) => Err(Error::Failed(f)),
            None => Ok(()),
        }
    }

    /// Enters the failed state (fsyncgate) and returns the error to report.
    pub(crate) fn fail(&mut self, op: IoOp, e: &std::io::Error) -> Error {
        let f = failure(op, e);
        self.failed.get_or_insert(f);
        Error::Failed(self.failed.unwrap_or(f))
    }

    /// Leader append: validates `batch` (header, configured size limit, CRC), stamps it in
    /// place with base offset = log end and `term` (the CRC does not cover them), and appends
    /// it. Not durable until a sync (see [`FsyncPolicy`]).
    ///
    /// ```
    /// # use floe_storage::{Log, LogConfig, OpenOptions, backend::MemDir};
    /// # use std::sync::Arc;
    /// let mut log = Log::open(Arc::new(MemDir::new()), LogConfig::default(), OpenOptions::default())?;
    /// let mut batch = floe_storage::testing::batch(5, b"payload", 1_000); // 5 records
    /// let info = log.append(&mut batch, 7, 0)?;
    /// assert_eq!((info.base_offset, info.next_offset, info.term), (0, 5, 7));
    /// assert_eq!(log.durable_end(), 0);
    /// assert_eq!(log.sync()?, 5); // group commit: one sync for everything appended so far
    /// # Ok::<(), floe_storage::Error>(())
    /// ```
    pub fn append(&mut self, batch: &mut [u8], term: u64, now_ms: u64) -> Result<AppendInfo> {
        self.check_writable()?;
        let mut h = self.validate(batch)?;
        if term < self.last_term() {
            return Err(Error::TermRegression {
                last: self.last_term(),
                got: term,
            });
        }
        let base = self.log_end();
        self.record_term(term, base)?;
        stamp(batch, base, term);
        h.base_offset = base;
        h.term = term;
        self.write_batch(batch, &h, now_ms)
    }

    /// Follower append of a batch the leader already stamped. It must start exactly at the log
    /// end ([`Error::NotAtEnd`] otherwise: truncate or fetch first) and must not lower the term.
    pub fn append_replicated(&mut self, batch: &[u8], now_ms: u64) -> Result<AppendInfo> {
        self.check_writable()?;
        let h = self.validate(batch)?;
        let end = self.log_end();
        if h.base_offset != end {
            return Err(Error::NotAtEnd {
                expected: end,
                got: h.base_offset,
            });
        }
        if h.term < self.last_term() {
            return Err(Error::TermRegression {
                last: self.last_term(),
                got: h.term,
            });
        }
        self.record_term(h.term, end)?;
        self.write_batch(batch, &h, now_ms)
    }

    /// Makes the term history say that `term` holds from `base` (the log end) before a batch
    /// is written there: a new term is written durably (temp, fsync, rename, fsync dir) before
    /// its first batch, so the history is never behind the batches it describes. Once per
    /// term change, never per append.
    fn record_term(&mut self, term: u64, base: u64) -> Result<()> {
        let mut next = if self.log_end() <= self.log_start {
            // An empty log (cut to its start, or a snapshot installed past it): the history
            // describes no batch; start afresh so terms stay increasing.
            TermHistory::default()
        } else {
            self.terms.clone()
        };
        next.start_term(term, base);
        if next == self.terms && !self.terms_dirty {
            return Ok(());
        }
        self.write_terms(next)
    }

    /// Replaces the term history file atomically (directory synced). Memory follows only on
    /// success; an fsync failure fails the log.
    pub(crate) fn write_terms(&mut self, next: TermHistory) -> Result<()> {
        match write_atomic(&*self.dir, TERMS_NAME, &next.encode(), true) {
            Ok(()) => {
                self.terms = next;
                self.terms_dirty = false;
                self.dir_synced_epoch = self.dir_epoch;
                Ok(())
            }
            Err((op @ (IoOp::SyncData | IoOp::SyncDir), e)) => Err(self.fail(op, &e)),
            Err((op, e)) if is_no_space(&e) => Err(Error::NoSpace { op, source: e }),
            Err((op, e)) => Err(io_err(op, TERMS_NAME, e)),
        }
    }

    /// After a cut of the log (already durable), updates the term history to `next`. If the
    /// rewrite fails without failing the log, memory moves anyway and the file is marked
    /// dirty: stale entries past the log end are harmless (recovery drops them) as long as
    /// the next append rewrites the file first, which `record_term` does.
    fn update_terms_after_cut(&mut self, next: TermHistory) -> Result<()> {
        match self.write_terms(next.clone()) {
            Ok(()) => Ok(()),
            Err(e @ Error::Failed(_)) => {
                self.terms = next;
                Err(e)
            }
            Err(_) => {
                self.terms = next;
                self.terms_dirty = true;
                Ok(())
            }
        }
    }

    fn validate(&self, batch: &[u8]) -> Result<BatchHeader> {
        let h = validate_batch(batch, self.config.max_batch_bytes)?;
        if h.batch_len as usize != batch.len() {
            return Err(Error::LengthMismatch {
                batch_len: h.batch_len,
                buf_len: batch.len(),
            });
        }
        Ok(h)
    }

    fn write_batch(&mut self, batch: &[u8], h: &BatchHeader, now_ms: u64) -> Result<AppendInfo> {
        let len = batch.len() as u64;
        let must_roll = self.segments.last().is_some_and(|s| {
            !s.sealed
                && !s.is_empty()
                && (s.data_len + len > self.config.segment_bytes
                    || !s.offset_fits(h.base_offset)
                    || self
                        .config
                        .segment_ms
                        .is_some_and(|ms| now_ms.saturating_sub(s.created_ms) >= ms))
        });
        if must_roll {
            self.seal_active()?;
        }
        self.ensure_active(len, now_ms)?;
        let interval = u64::from(self.config.index_interval_bytes);
        let seg = self.segments.last_mut().expect("ensure_active made one");
        let pos = seg.data_len;
        if let Err(e) = seg.file.write_at(pos, batch) {
            if is_no_space(&e) {
                // The bytes past data_len are not part of the log; the next append overwrites
                // them and recovery cuts them off as a torn tail.
                return Err(Error::NoSpace {
                    op: IoOp::Append,
                    source: e,
                });
            }
            return Err(self.fail(IoOp::Append, &e));
        }
        seg.push(h, pos, interval);
        Ok(AppendInfo {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            next_offset: h.next_offset(),
            term: h.term,
        })
    }

    /// Makes sure the last segment is an unsealed one, creating `<log end>.log` if needed.
    fn ensure_active(&mut self, batch_len: u64, now_ms: u64) -> Result<()> {
        if self.segments.last().is_some_and(|s| !s.sealed) {
            return Ok(());
        }
        let base = self.log_end();
        let name = log_name(base);
        let _ = self.dir.remove(&index_name(base));
        let file = self
            .dir
            .create(&name)
            .map_err(|e| io_err(IoOp::Create, &name, e))?;
        self.dir_epoch += 1;
        if self.config.preallocate {
            let capacity = self.config.segment_bytes.max(batch_len);
            if let Err(e) = file.set_len(capacity) {
                let _ = self.dir.remove(&name);
                return Err(io_err(IoOp::SetLen, &name, e));
            }
        }
        self.segments.push(Segment::new(base, file, now_ms));
        Ok(())
    }

    /// Seals the active segment if it holds data: shrink the preallocated tail, fsync, write
    /// its sealed index. The next append starts a new segment.
    pub fn roll(&mut self) -> Result<()> {
        self.check_writable()?;
        self.seal_active()
    }

    fn seal_active(&mut self) -> Result<()> {
        let Some(seg) = self.segments.last_mut() else {
            return Ok(());
        };
        if seg.sealed || seg.is_empty() {
            return Ok(());
        }
        let name = log_name(seg.base);
        // Safe for readers: `data_len` is the highest position ever written in the active
        // segment (a cut always seals), so no served byte lies past it.
        seg.file
            .set_len(seg.data_len)
            .map_err(|e| io_err(IoOp::SetLen, &name, e))?;
        if let Err(e) = seg.file.sync() {
            return Err(self.fail(IoOp::SyncData, &e));
        }
        let seg = self.segments.last_mut().expect("checked above");
        seg.synced_len = seg.data_len;
        let index = seg.index_file(true, seg.data_len, seg.next_offset).encode();
        let next = seg.next_offset;
        if let Err((op, e)) = write_atomic(&*self.dir, &index_name(seg.base), &index, false) {
            if op == IoOp::SyncData {
                return Err(self.fail(op, &e));
            }
            return Err(io_err(op, &index_name(seg.base), e));
        }
        // The segment's own directory entry (and the index's) must be durable before the
        // segment counts as durable.
        if let Err(e) = self.dir.sync() {
            return Err(self.fail(IoOp::SyncDir, &e));
        }
        self.dir_synced_epoch = self.dir_epoch;
        let seg = self.segments.last_mut().expect("checked above");
        seg.sealed = true;
        seg.checkpointed_len = seg.data_len;
        self.durable_end = self.durable_end.max(next);
        Ok(())
    }

    // ----------------------------------------------------------------------------- sync

    /// Captures what a sync now would make durable. See [`SyncTicket`].
    pub fn begin_sync(&self) -> Result<SyncTicket> {
        self.check_writable()?;
        let active = self.segments.last().filter(|s| !s.sealed);
        let file = active
            .filter(|s| s.synced_len < s.data_len)
            .map(|s| s.file.clone());
        let dir = (self.dir_epoch > self.dir_synced_epoch).then(|| self.dir.clone());
        Ok(SyncTicket {
            file,
            dir,
            segment: active.map(|s| s.base),
            target_len: active.map_or(0, |s| s.data_len),
            target_end: self.log_end(),
            generation: self.generation,
            dir_epoch: self.dir_epoch,
        })
    }

    /// Applies a ticket's outcome: on success the durable end advances (and the active
    /// segment's index checkpoint is rewritten when due); on failure the log fails for good.
    /// Returns the durable end.
    pub fn complete_sync(
        &mut self,
        ticket: SyncTicket,
        outcome: Result<(), Failure>,
    ) -> Result<u64> {
        if let Err(f) = outcome {
            self.failed.get_or_insert(f);
            return Err(Error::Failed(self.failed.unwrap_or(f)));
        }
        self.check_writable()?;
        if ticket.dir.is_some() {
            self.dir_synced_epoch = self.dir_synced_epoch.max(ticket.dir_epoch);
        }
        if ticket.generation == self.generation {
            if let Some(seg) = self
                .segments
                .last_mut()
                .filter(|s| Some(s.base) == ticket.segment)
            {
                seg.synced_len = seg.synced_len.max(ticket.target_len.min(seg.data_len));
            }
            self.durable_end = self.durable_end.max(ticket.target_end);
        }
        self.durable_end = self.durable_end.min(self.log_end());
        if ticket.file.is_some() {
            self.maybe_checkpoint()?;
        }
        Ok(self.durable_end())
    }

    /// Fsyncs the active segment (and the directory if it changed): the group-commit point.
    /// Returns the durable end. An error is fatal: the log refuses further writes.
    pub fn sync(&mut self) -> Result<u64> {
        let ticket = self.begin_sync()?;
        let outcome = ticket.run();
        self.complete_sync(ticket, outcome)
    }

    /// Syncs if the policy says so at `now_ms` (`Always`: whenever dirty; `Interval`: when
    /// due; `Never`: not). Returns the durable end.
    pub fn maybe_sync(&mut self, now_ms: u64) -> Result<u64> {
        self.check_writable()?;
        let due = match self.config.fsync {
            FsyncPolicy::Always => self.is_dirty(),
            FsyncPolicy::Interval { ms } => {
                self.is_dirty() && now_ms.saturating_sub(self.last_sync_ms) >= ms
            }
            FsyncPolicy::Never => false,
        };
        if due {
            self.last_sync_ms = now_ms;
            self.sync()?;
        }
        Ok(self.durable_end())
    }

    /// Clean shutdown: syncs (whatever the policy) and writes the active segment's index
    /// checkpoint, so the next open scans nothing. Dropping a `Log` without `close` is a crash
    /// as far as the disk is concerned (under `Always`, nothing acknowledged is lost).
    pub fn close(mut self) -> Result<()> {
        self.sync()?;
        self.checkpoint(0)
    }

    /// Writes the active segment's index checkpoint if enough became durable since the last.
    fn maybe_checkpoint(&mut self) -> Result<()> {
        self.checkpoint(self.config.checkpoint_interval_bytes)
    }

    /// Writes the active segment's index checkpoint if at least `interval` bytes became
    /// durable since the last one.
    fn checkpoint(&mut self, interval: u64) -> Result<()> {
        let Some(seg) = self.segments.last().filter(|s| !s.sealed) else {
            return Ok(());
        };
        if seg.synced_len < seg.checkpointed_len + interval
            || seg.synced_len == seg.checkpointed_len
            || seg.synced_len != seg.data_len
        {
            return Ok(());
        }
        let ix = seg
            .index_file(false, seg.synced_len, seg.next_offset)
            .encode();
        let name = index_name(seg.base);
        match write_atomic(&*self.dir, &name, &ix, false) {
            Ok(()) => {
                let seg = self.segments.last_mut().expect("checked above");
                seg.checkpointed_len = seg.synced_len;
                self.dir_epoch += 1;
                Ok(())
            }
            Err((IoOp::SyncData, e)) => Err(self.fail(IoOp::SyncData, &e)),
            // A missing checkpoint only lengthens the next recovery scan.
            Err(_) => Ok(()),
        }
    }

    // ----------------------------------------------------------------------------- truncation

    /// Removes a segment's files: the log first, then its index, so a crash between the two
    /// leaves an orphan index (deleted at recovery), never a log without its index (which
    /// recovery would rebuild by scanning, possibly past a cut).
    fn remove_segment_files(&self, base: u64) -> std::io::Result<()> {
        for name in [log_name(base), index_name(base)] {
            match self.dir.remove(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes every batch at or after `offset`, which must be a batch boundary in
    /// `[log_start, log_end]`. For Raft conflict resolution.
    ///
    /// Invariant the caller keeps: only uncommitted entries are truncated, so no consumer holds
    /// them. Bytes already handed out stay valid anyway: the cut segment is sealed at the cut
    /// and never overwritten or shrunk while open; new batches go to a new segment. Durable
    /// when it returns (the directory is synced after removing later segments, and the cut
    /// segment's sealed index is written), so a crash never brings back truncated batches once
    /// later appends were synced.
    pub fn truncate_suffix(&mut self, offset: u64) -> Result<()> {
        self.check_writable()?;
        let end = self.log_end();
        if offset == end {
            return Ok(());
        }
        if offset < self.log_start || offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                start: self.log_start,
                end,
            });
        }
        let out_of_range = Error::OffsetOutOfRange {
            offset,
            start: self.log_start,
            end,
        };
        let Some(idx) = self
            .segments
            .partition_point(|s| s.base <= offset)
            .checked_sub(1)
        else {
            return Err(out_of_range);
        };
        let seg = &self.segments[idx];
        let cut_whole = seg.base == offset;
        let cut_pos = if cut_whole { 0 } else { seg.boundary(offset)? };
        // 0. What stays of the cut segment must be durable before it is sealed.
        if !cut_whole
            && seg.synced_len < cut_pos
            && let Err(e) = seg.file.sync()
        {
            return Err(self.fail(IoOp::SyncData, &e));
        }
        // 1. Remove later segments, newest first, then make the removals durable.
        let first_removed = if cut_whole { idx } else { idx + 1 };
        let removed: Vec<Segment> = self.segments.drain(first_removed..).collect();
        for s in removed.iter().rev() {
            if let Err(e) = self.remove_segment_files(s.base) {
                return Err(self.fail(IoOp::Remove, &e));
            }
        }
        if !removed.is_empty() {
            if let Err(e) = self.dir.sync() {
                return Err(self.fail(IoOp::SyncDir, &e));
            }
            self.dir_synced_epoch = self.dir_epoch;
        }
        let now_ms = removed.first().map_or(0, |s| s.created_ms);
        drop(removed); // readers keep their mappings alive through their `Bytes`
        self.generation += 1;
        self.durable_end = self.durable_end.min(offset);
        if cut_whole {
            // Start the next segment at the cut (see step 3 below), durably.
            self.ensure_active(0, now_ms)?;
            if let Err(e) = self.dir.sync() {
                return Err(self.fail(IoOp::SyncDir, &e));
            }
            self.dir_synced_epoch = self.dir_epoch;
            // Everything below the cut lies in sealed (durable) segments.
            self.durable_end = offset;
            return self.cut_terms(offset);
        }
        // 2. Seal the cut segment at the cut.
        let seg = &mut self.segments[idx];
        seg.data_len = cut_pos;
        seg.next_offset = offset;
        seg.synced_len = cut_pos;
        seg.entries.retain(|e| u64::from(e.position) < cut_pos);
        seg.corrupt.retain(|r| r.start < offset);
        for r in &mut seg.corrupt {
            r.end = r.end.min(offset);
        }
        seg.sealed = true;
        // A walk failure here (damage before the cut) only leaves the derived max timestamp
        // and term approximate; the cut itself is exact.
        let _ = seg.recompute_tail();
        let ix = seg.index_file(true, cut_pos, offset).encode();
        let name = index_name(seg.base);
        seg.checkpointed_len = cut_pos;
        // 3. Start the next segment at the cut right away, so the cut segment is never the
        //    last one: recovery bounds it by the next base even if its index were lost, and the
        //    stale bytes past the cut (kept for readers) can never come back.
        //    If this fails (disk full), the cut still holds in memory; on disk the old index
        //    stays, which at worst brings back the not-yet-acknowledged suffix after a crash,
        //    exactly as a crash before this call would; the next append retries the creation.
        self.ensure_active(0, self.segments[idx].created_ms)?;
        // 4. Write the cut segment's sealed index; its directory sync also covers step 3.
        if let Err((op, e)) = write_atomic(&*self.dir, &name, &ix, true) {
            return Err(self.fail(op, &e));
        }
        self.dir_synced_epoch = self.dir_epoch;
        // Everything below the cut is durable: earlier segments are sealed and the cut segment
        // was synced in step 0.
        self.durable_end = offset;
        // 5. Only now drop the history's entries at or past the cut: a crash before this
        //    leaves entries past the log end, which recovery drops.
        self.cut_terms(offset)
    }

    fn cut_terms(&mut self, offset: u64) -> Result<()> {
        let mut next = self.terms.clone();
        if !next.truncate_from(offset) {
            return Ok(());
        }
        self.update_terms_after_cut(next)
    }

    /// Moves the log start to `offset` and deletes every segment entirely below it. If
    /// `offset` is past the log end (Raft installed a snapshot), the log becomes empty and
    /// continues at `offset`. The new start is written to the meta file first (durably), so a
    /// crash never brings the prefix back.
    pub fn truncate_prefix(&mut self, offset: u64) -> Result<()> {
        self.check_writable()?;
        if offset <= self.log_start {
            return Ok(());
        }
        if let Err((op, e)) = write_atomic(&*self.dir, META_NAME, &encode_meta(offset), true) {
            if matches!(op, IoOp::SyncData | IoOp::SyncDir) {
                return Err(self.fail(op, &e));
            }
            return Err(io_err(op, META_NAME, e));
        }
        self.log_start = offset;
        self.dir_synced_epoch = self.dir_epoch;
        let keep = self.segments.iter().position(|s| {
            s.next_offset > offset || (s.next_offset == offset && !s.sealed && s.base == offset)
        });
        let removed: Vec<Segment> = match keep {
            Some(k) => self.segments.drain(..k).collect(),
            None => self.segments.drain(..).collect(),
        };
        let mut first_err = None;
        for s in removed.iter().rev() {
            // Recovery deletes leftovers below the log start; report, stay usable.
            if let Err(e) = self.remove_segment_files(s.base) {
                first_err.get_or_insert(io_err(IoOp::Remove, &log_name(s.base), e));
            }
        }
        if removed.iter().any(|s| !s.sealed) {
            self.dir_epoch += 1;
        }
        self.durable_end = self.durable_end.max(self.log_start.min(self.log_end()));
        if self.segments.is_empty() {
            self.durable_end = self.log_start;
        }
        // After the meta file: a crash in between leaves extra entries below the start,
        // which are harmless (recovery trims them).
        let mut next = self.terms.clone();
        if next.trim_below(offset) {
            self.update_terms_after_cut(next)?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies retention: deletes the oldest *sealed* segments that end at or below
    /// `max_offset` (never the active one), while the log is larger than
    /// `retention_bytes` or their newest batch is older than `retention_ms` at `now_ms`.
    /// Returns the log start afterwards.
    pub fn apply_retention(&mut self, now_ms: u64, max_offset: u64) -> Result<u64> {
        self.check_writable()?;
        if let Some(start) = self.retention_point(now_ms, max_offset) {
            self.truncate_prefix(start)?;
        }
        Ok(self.log_start)
    }

    /// Where [`Log::apply_retention`] would move the log start (`None`: nowhere), without
    /// changing anything. A replicated log discards through its consensus layer instead (the
    /// broker gives this point to Raft's compaction, which then calls `truncate_prefix`).
    pub fn retention_point(&self, now_ms: u64, max_offset: u64) -> Option<u64> {
        self.retention_point_with(
            self.config.retention_bytes,
            self.config.retention_ms,
            now_ms,
            max_offset,
        )
    }

    /// [`Log::retention_point`] under the given limits instead of the log's own (`None`:
    /// no limit): retention is a per-topic setting that may change while the log is open,
    /// and it never affects how the log is written, so the owner passes the current limits.
    pub fn retention_point_with(
        &self,
        retention_bytes: Option<u64>,
        retention_ms: Option<u64>,
        now_ms: u64,
        max_offset: u64,
    ) -> Option<u64> {
        let mut total = self.size_bytes();
        let mut new_start = None;
        for seg in &self.segments {
            if !seg.sealed || seg.next_offset > max_offset {
                break;
            }
            let by_size = retention_bytes.is_some_and(|r| total.saturating_sub(seg.data_len) >= r);
            let by_age = retention_ms.is_some_and(|r| seg.max_timestamp < now_ms as i64 - r as i64);
            if !(by_size || by_age) {
                break;
            }
            total -= seg.data_len;
            new_start = Some(seg.next_offset);
        }
        new_start
    }

    // ----------------------------------------------------------------------------- scrub

    /// Scans every batch of every segment (headers, offsets, terms, CRCs) and returns the
    /// damaged ranges. They are also remembered ([`Log::corruption`]) and never served.
    pub fn verify(&mut self) -> Result<Vec<CorruptRange>> {
        let mut found = Vec::new();
        let terms = TermCheck {
            history: Some(&self.terms),
            log_start: self.log_start,
        };
        for seg in &mut self.segments {
            let mut at = crate::scrub::Position::start_of(seg);
            while at.pos < seg.data_len {
                if let (_, Some((range, _new))) = crate::scrub::check_batch(seg, &mut at, terms)? {
                    found.push(range);
                }
            }
        }
        Ok(found)
    }
}

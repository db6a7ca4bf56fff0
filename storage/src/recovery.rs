//! `Log::open`: recovery of a log directory. The algorithm is described step by step in
//! `storage/FORMAT.md` ("Recovery").

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::backend::{Directory, read_all, write_atomic};
use crate::config::{LogConfig, OpenOptions};
use crate::error::{CorruptRange, CorruptionKind, Error, IoOp, Result, io_err};
use crate::format::{FileKind, IndexFile, META_NAME, classify, decode_meta, index_name, log_name};
use crate::log::Log;
use crate::segment::{Segment, Step};
use crate::terms::{TERMS_NAME, TermCheck, TermHistory};

/// A torn tail cut off at recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Segment base offset.
    pub segment: u64,
    /// Byte position where the log now ends.
    pub position: u64,
    /// Offset where the log now ends.
    pub offset: u64,
    /// Non-durable bytes dropped (file length past the end, preallocated zeros included).
    pub bytes_dropped: u64,
}

/// What recovery did with the term history file (`log.terms`, see FORMAT.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TermHistoryRecovery {
    /// A valid history was found; every batch's term was checked against it.
    #[default]
    Loaded,
    /// No history and no batch: a new log (the first append writes it).
    Created,
    /// The history was missing (a log written before it existed, or a lost file) or damaged
    /// (`damaged`), and was rebuilt from the batch headers and written back. The terms of the
    /// batches present then could not be cross-checked: a term damaged before this open is
    /// taken as written. [`crate::Log::unverified_terms_end`] says up to which offset.
    Rebuilt {
        /// The file existed but failed its checks (checksum, layout, order).
        damaged: bool,
    },
}

/// What `Log::open` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the recovered log.
    pub segments: usize,
    /// Segments whose index was missing or damaged and was rebuilt by scanning.
    pub rebuilt_indexes: Vec<u64>,
    /// Bytes scanned (CRC-checked) during recovery.
    pub scanned_bytes: u64,
    /// The torn tail cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Damaged ranges in data that was durable. Ranges inside the log are never served; a
    /// range at or past the recovered log end (durable data lost from the tail, known through
    /// `durable_floor`) means this replica lost acknowledged entries and must be repaired from
    /// a peer before it counts toward a quorum for them.
    pub corruption: Vec<CorruptRange>,
    /// Files deleted: temp files, orphan indexes, segments below the log start.
    pub removed_files: Vec<String>,
    /// The meta file (log start) was damaged; the log start fell back to the first segment.
    pub bad_meta: bool,
    /// What became of the term history.
    pub term_history: TermHistoryRecovery,
}

struct Open<'a> {
    dir: &'a dyn Directory,
    config: &'a LogConfig,
    opts: OpenOptions,
    report: RecoveryReport,
    /// The term history read from disk (`None`: missing or damaged; not checked then).
    terms: Option<TermHistory>,
    /// The log start from the meta file: batches below it are not term-checked.
    meta_start: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir` and recovers it: see FORMAT.md. The returned log's
    /// [`Log::recovery_report`] says what was found.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use floe_storage::{Log, LogConfig, OpenOptions, backend::FileDir};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let dir = Arc::new(FileDir::open(tmp.path()).unwrap());
    /// let mut log = Log::open(dir.clone(), LogConfig::default(), OpenOptions::default())?;
    /// log.append(&mut floe_storage::testing::batch(2, b"x", 5), 1, 0)?;
    /// log.sync()?;
    /// drop(log);
    /// let log = Log::open(dir, LogConfig::default(), OpenOptions::default())?;
    /// assert_eq!(log.log_end(), 2);
    /// assert!(log.recovery_report().corruption.is_empty());
    /// # Ok::<(), floe_storage::Error>(())
    /// ```
    pub fn open(dir: Arc<dyn Directory>, config: LogConfig, opts: OpenOptions) -> Result<Log> {
        config.validate()?;
        let mut o = Open {
            dir: &*dir,
            config: &config,
            opts,
            report: RecoveryReport::default(),
            terms: None,
            meta_start: 0,
        };
        let (log_start, segments) = o.run()?;
        let report = o.report;
        let loaded = o.terms;
        let mut log = Log {
            dir: dir.clone(),
            config,
            segments,
            log_start,
            durable_end: 0,
            failed: None,
            generation: 0,
            dir_epoch: 0,
            dir_synced_epoch: 0,
            last_sync_ms: opts.now_ms,
            report,
            terms: TermHistory::default(),
            terms_dirty: false,
            scrub: crate::scrub::ScrubCursor::default(),
        };
        log.durable_end = log.log_end();
        log.report.segments = log.segments.len();
        log.recover_terms(loaded)?;
        Ok(log)
    }

    /// Step 7 of recovery: makes the term history match the recovered log (entries past the
    /// end or wholly below the start go), or rebuilds a missing or damaged one from the
    /// batches; a changed history is written back before the log is used.
    fn recover_terms(&mut self, loaded: Option<TermHistory>) -> Result<()> {
        let (start, end) = (self.log_start, self.log_end());
        let next = match loaded {
            Some(mut h) => {
                let cut = h.truncate_from(end);
                let trimmed = h.trim_below(start);
                if !(cut || trimmed) {
                    self.terms = h;
                    return Ok(());
                }
                h
            }
            None if end <= start
                && !matches!(
                    self.report.term_history,
                    TermHistoryRecovery::Rebuilt { .. }
                ) =>
            {
                self.report.term_history = TermHistoryRecovery::Created;
                return Ok(());
            }
            None => {
                let damaged = matches!(
                    self.report.term_history,
                    TermHistoryRecovery::Rebuilt { damaged: true }
                );
                self.report.term_history = TermHistoryRecovery::Rebuilt { damaged };
                let mut h = self.terms_from_batches();
                h.unverified_end = end;
                h
            }
        };
        self.write_terms(next)
    }

    /// Rebuilds the term history from the batch headers (no cross-check is possible): an entry
    /// wherever the term rises. Damaged ranges are skipped; a lower term is not recorded (the
    /// history then flags that batch as damaged on every read).
    fn terms_from_batches(&self) -> TermHistory {
        let mut h = TermHistory::default();
        for seg in &self.segments {
            let (mut pos, mut off) = (0u64, seg.base);
            while off < seg.next_offset && pos < seg.data_len {
                if let Some(r) = seg.corruption_at(off) {
                    if r.end >= seg.next_offset {
                        break;
                    }
                    match seg.locate(r.end, TermCheck::OFF) {
                        Ok((p, b)) => (pos, off) = (p, b.base_offset),
                        Err(_) => break,
                    }
                    continue;
                }
                let Ok(b) = seg.header_at(pos, off) else {
                    break;
                };
                if b.next_offset() > self.log_start && h.last_term().is_none_or(|t| b.term > t) {
                    h.start_term(b.term, b.base_offset);
                }
                pos += u64::from(b.batch_len);
                off = b.next_offset();
            }
        }
        h
    }
}

fn list_err(e: std::io::Error) -> Error {
    io_err(IoOp::List, "", e)
}

impl Open<'_> {
    fn remove(&mut self, name: &str) -> Result<()> {
        match self.dir.remove(name) {
            Ok(()) => {
                self.report.removed_files.push(name.to_owned());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(IoOp::Remove, name, e)),
        }
    }

    fn run(&mut self) -> Result<(u64, Vec<Segment>)> {
        let names = self.dir.list().map_err(list_err)?;
        let mut bases = BTreeSet::new();
        let mut indexes = BTreeSet::new();
        let mut has_meta = false;
        for name in &names {
            match classify(name) {
                FileKind::Segment(b) => {
                    bases.insert(b);
                }
                FileKind::Index(b) => {
                    indexes.insert(b);
                }
                FileKind::Temp => self.remove(name)?,
                FileKind::Meta => has_meta = true,
                FileKind::Other => {}
            }
        }
        for b in indexes.difference(&bases).copied().collect::<Vec<_>>() {
            self.remove(&index_name(b))?;
        }
        let meta_start = if has_meta { self.read_meta()? } else { None };
        if names.iter().any(|n| n == TERMS_NAME) {
            self.read_terms()?;
        }
        let bases: Vec<u64> = bases.into_iter().collect();
        let mut log_start = meta_start.unwrap_or(bases.first().copied().unwrap_or(0));
        self.meta_start = log_start;
        // Segments entirely below the start (the next one begins at or below it) go.
        let mut first = 0;
        while first + 1 < bases.len() && bases[first + 1] <= log_start {
            self.remove(&log_name(bases[first]))?;
            self.remove(&index_name(bases[first]))?;
            first += 1;
        }
        let mut segments: Vec<Segment> = Vec::new();
        for i in first..bases.len() {
            let bound = bases.get(i + 1).copied();
            segments.push(self.load(bases[i], bound)?);
        }
        // The first kept segment may still lie entirely below the start.
        if let Some(s) = segments.first()
            && (s.next_offset <= log_start && segments.len() > 1 || s.next_offset < log_start)
        {
            let s = segments.remove(0);
            self.remove(&index_name(s.base))?;
            self.remove(&log_name(s.base))?;
        }
        if let Some(s) = segments.first()
            && s.base > log_start
        {
            // Segments between the start and the first file are gone.
            self.report.corruption.push(CorruptRange {
                start: log_start,
                end: s.base,
                segment: s.base,
                position: 0,
                kind: CorruptionKind::Missing,
            });
            log_start = s.base;
        }
        Ok((log_start, segments))
    }

    fn read_meta(&mut self) -> Result<Option<u64>> {
        let file = self
            .dir
            .open(META_NAME)
            .map_err(|e| io_err(IoOp::Open, META_NAME, e))?;
        let buf = read_all(&*file).map_err(|e| io_err(IoOp::Read, META_NAME, e))?;
        match decode_meta(&buf) {
            Ok(start) => Ok(Some(start)),
            Err(_) => {
                self.report.bad_meta = true;
                Ok(None)
            }
        }
    }

    fn read_terms(&mut self) -> Result<()> {
        let file = self
            .dir
            .open(TERMS_NAME)
            .map_err(|e| io_err(IoOp::Open, TERMS_NAME, e))?;
        let buf = read_all(&*file).map_err(|e| io_err(IoOp::Read, TERMS_NAME, e))?;
        match TermHistory::decode(&buf) {
            Ok(h) => self.terms = Some(h),
            Err(_) => self.report.term_history = TermHistoryRecovery::Rebuilt { damaged: true },
        }
        Ok(())
    }

    fn read_index(&self, base: u64) -> Option<IndexFile> {
        let name = index_name(base);
        let file = self.dir.open(&name).ok()?;
        let buf = read_all(&*file).ok()?;
        IndexFile::decode(&buf, base, &name).ok()
    }

    /// Loads one segment. `bound` is the next segment's base (`None` for the last segment).
    fn load(&mut self, base: u64, bound: Option<u64>) -> Result<Segment> {
        let name = log_name(base);
        let file = self
            .dir
            .open(&name)
            .map_err(|e| io_err(IoOp::Open, &name, e))?;
        let file_len = file.len().map_err(|e| io_err(IoOp::Read, &name, e))?;
        let had_index = self.dir.open(&index_name(base)).is_ok();
        let mut index = self.read_index(base);
        // A valid index describing more data than the file holds: the file lost durable
        // data. Rebuild by scanning, and treat what the index promised as durable, so the
        // loss is reported instead of passing for a torn tail.
        let mut promised = 0;
        if let Some(ix) = index.as_ref().filter(|ix| ix.data_len > file_len) {
            promised = ix.next_offset;
            index = None;
        }
        let trusted = index
            .as_ref()
            .is_some_and(|ix| ix.sealed && bound.is_none_or(|b| ix.next_offset == b));
        let mut seg = match index {
            Some(ix) if trusted || !ix.sealed => {
                Segment::from_index(ix, file.clone(), self.opts.now_ms)
            }
            _ => {
                if had_index || bound.is_some() {
                    self.report.rebuilt_indexes.push(base);
                }
                Segment::new(base, file.clone(), self.opts.now_ms)
            }
        };
        let interval = u64::from(self.config.index_interval_bytes);
        let is_last = bound.is_none();
        if !trusted {
            seg.sealed = false;
            let clean = self.scan(&mut seg, file_len, bound, interval, promised)?;
            if let Some(b) = bound {
                if seg.next_offset < b {
                    let at = seg.data_len;
                    let r = seg.mark_corrupt(seg.next_offset, b, at, CorruptionKind::Missing);
                    self.report.corruption.push(r);
                    seg.next_offset = b;
                }
                seg.sealed = true;
                seg.synced_len = seg.data_len;
                if clean && seg.corrupt.is_empty() {
                    // Repair: a sealed segment gets its index back.
                    let ix = seg.index_file(true, seg.data_len, seg.next_offset).encode();
                    write_atomic(self.dir, &index_name(base), &ix, false)
                        .map_err(|(op, e)| io_err(op, &index_name(base), e))?;
                    seg.checkpointed_len = seg.data_len;
                }
            }
        }
        // No mapping of this log exists yet: now it is safe to cut the last file to its data,
        // so torn or stale bytes past the end can never be mistaken for batches later. A
        // trusted sealed segment that is not last keeps its bytes past `data_len` (a cut's
        // tail): the next segment's base bounds it (S3), and a previous `Log` of this
        // directory in the same process may still have them mapped.
        if file_len > seg.data_len && (is_last || !trusted) {
            file.set_len(seg.data_len)
                .map_err(|e| io_err(IoOp::SetLen, &name, e))?;
            if is_last && !seg.sealed && self.config.preallocate {
                file.set_len(self.config.segment_bytes.max(seg.data_len))
                    .map_err(|e| io_err(IoOp::SetLen, &name, e))?;
            }
            file.sync().map_err(|e| io_err(IoOp::SyncData, &name, e))?;
        }
        seg.synced_len = seg.data_len;
        Ok(seg)
    }

    /// Scans `seg` from its current end. Returns whether the scan ended cleanly (no damage).
    fn scan(
        &mut self,
        seg: &mut Segment,
        file_len: u64,
        bound: Option<u64>,
        interval: u64,
        promised: u64,
    ) -> Result<bool> {
        let floor = self.opts.durable_floor.unwrap_or(0).max(promised);
        let start_pos = seg.data_len;
        let history = self.terms.clone();
        let terms = TermCheck {
            history: history.as_ref(),
            log_start: self.meta_start,
        };
        let mut clean = true;
        loop {
            if bound.is_some_and(|b| seg.next_offset >= b) {
                break;
            }
            let pos = seg.data_len;
            let step = seg.check_at(pos, file_len, seg.next_offset, seg.last_term, terms)?;
            match step {
                Step::Batch(h) if bound.is_none_or(|b| h.next_offset() <= b) => {
                    seg.push(&h, pos, interval);
                }
                Step::End if bound.is_none() && seg.next_offset >= floor => break,
                step => {
                    let (kind, header) = match step {
                        Step::Bad { kind, header } => (kind, header),
                        Step::Batch(_) => (CorruptionKind::OffsetMismatch, None),
                        Step::End => (CorruptionKind::Missing, None),
                    };
                    let durable = bound.is_some() || seg.next_offset < floor;
                    if !durable {
                        // A torn tail past the durable point: cut it off.
                        self.report.torn_tail = Some(crate::recovery::TornTail {
                            segment: seg.base,
                            position: pos,
                            offset: seg.next_offset,
                            bytes_dropped: file_len - pos,
                        });
                        break;
                    }
                    clean = false;
                    let skippable = header.filter(|h| bound.is_none_or(|b| h.next_offset() <= b));
                    if let Some(h) = skippable {
                        let r = seg.mark_corrupt(h.base_offset, h.next_offset(), pos, kind);
                        self.report.corruption.push(r);
                        // A damaged batch's term is not trusted: it must not raise the
                        // segment's last term (the next batches are checked against it).
                        let mut h = h;
                        h.term = seg.last_term;
                        seg.push(&h, pos, interval);
                        continue;
                    }
                    match bound {
                        // A sealed segment: the caller records [next_offset, bound) as damaged.
                        Some(_) => break,
                        // The last segment: durable data lost from the tail. The log ends here;
                        // the range is reported so Raft repairs it from a peer.
                        None => {
                            self.report.corruption.push(CorruptRange {
                                start: seg.next_offset,
                                end: floor.max(seg.next_offset + 1),
                                segment: seg.base,
                                position: pos,
                                kind,
                            });
                            break;
                        }
                    }
                }
            }
        }
        self.report.scanned_bytes += seg.data_len - start_pos;
        Ok(clean)
    }
}

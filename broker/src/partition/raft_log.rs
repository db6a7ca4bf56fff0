//! The storage ↔ Raft adapter: [`RaftLog`] implements [`floe_raft::Log`] over a
//! [`floe_storage::Log`], so the Raft log *is* the partition log (one copy on disk).
//!
//! - A data entry is one stored record batch: its range is the batch's
//!   `[base_offset, next_offset)`, its term the header's term, its payload the batch bytes as
//!   stored (zero-copy from the segment; base offset and term stamped).
//! - A no-op or configuration entry is a one-record control batch
//!   ([`BatchBuilder::control`] + [`ControlRecord`], timestamp 0 so that every replica encodes
//!   it to the same bytes), decoded back on read.
//! - Term at an offset comes from [`floe_storage::Log::batch_header_at`], truncation from
//!   `truncate_suffix`, the log start from `log_start`.
//! - The Raft hard state lives in `raft.hardstate` ([`HardStateFile`]; a change of the commit
//!   alone goes to its in-place commit floor `raft.hardstate.commit`); the damage mark, which
//!   that file has no field for, in the sidecar `raft.damaged`; the snapshot at the log start
//!   (term, membership, state bytes) in the sidecar `raft.snapshot`.
//!
//! # Crash order
//! - `compact` / `install_snapshot` write `raft.snapshot` before moving the storage log start,
//!   and [`RaftLog::open`] finishes a move a crash interrupted.
//! - Appends are volatile until [`RaftLog::sync`]; the driver syncs before reporting a
//!   [`floe_raft::PersistRequest`] done.

use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::batch::{
    BatchBuilder, BatchError, BatchHeader, BatchLimits, BatchView, ControlError, ControlRecord,
    HeaderError, RaftConfig,
};
use floe_raft::{
    Entry, EntryKind, EntryMeta, HardState, Log, LogError, Membership, NodeId, Offset, Snapshot,
    SnapshotMeta, Term,
};
use floe_storage::backend::Directory;
use floe_storage::{HardStateFile, LogConfig, OpenOptions, ReadBatches};

use super::sidecar::{self, Reader, SidecarError};

/// The hard-state file's name in the partition directory.
pub const HARD_STATE_FILE: &str = "raft.hardstate";
/// The snapshot-metadata sidecar's name.
pub const SNAPSHOT_FILE: &str = "raft.snapshot";
/// The damage-mark sidecar's name.
pub const DAMAGED_FILE: &str = "raft.damaged";
/// The clean-shutdown marker's name: written (durably) by a clean [`RaftLog::close`] as its
/// last step, removed (durably) by [`RaftLog::open`] before anything else is written, so an
/// open that does not find it knows the last stop was a crash or a kill.
pub const CLEAN_FILE: &str = "raft.clean";

/// Why the adapter failed. Wrapped in [`LogError::Storage`] when it crosses into the core.
#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    /// The storage log failed.
    #[error(transparent)]
    Storage(#[from] floe_storage::Error),
    /// A sidecar file failed.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// An entry to append does not start at the log end.
    #[error("entry at {got} does not start at the log end {expected}")]
    NotAtEnd {
        /// The log end.
        expected: u64,
        /// The entry's first offset.
        got: u64,
    },
    /// A data entry's payload is not a valid batch.
    #[error("data entry at {offset} is not a valid batch")]
    BadPayload {
        /// The entry's first offset.
        offset: u64,
        /// Why.
        #[source]
        source: HeaderError,
    },
    /// A data entry's payload is a control batch (only the core writes control batches).
    #[error("data entry at {offset} carries a control batch")]
    ControlPayload {
        /// The entry's first offset.
        offset: u64,
    },
    /// A data entry's record count disagrees with its batch header.
    #[error("entry at {offset} claims {entry} records, its batch holds {batch}")]
    RecordCount {
        /// The entry's first offset.
        offset: u64,
        /// The entry's count.
        entry: u64,
        /// The batch header's count.
        batch: u64,
    },
    /// A stored control batch cannot be decoded.
    #[error("control batch at {offset} is malformed: {reason}")]
    BadControl {
        /// Its base offset.
        offset: u64,
        /// Why.
        reason: BadControl,
    },
    /// The snapshot sidecar does not decode.
    #[error("damaged {SNAPSHOT_FILE}")]
    BadSnapshotMeta,
}

/// What is wrong with a stored control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadControl {
    /// Not exactly one record.
    #[error("holds {0} records, expected 1")]
    RecordCount(u32),
    /// The batch or its records do not parse.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The record is not a known control record.
    #[error(transparent)]
    Record(#[from] ControlError),
    /// A joint-consensus configuration (floe-raft changes one server at a time).
    #[error("joint configuration not supported")]
    Joint,
}

impl From<RaftLogError> for LogError {
    fn from(e: RaftLogError) -> Self {
        LogError::Storage(Box::new(e))
    }
}

fn storage_err(e: floe_storage::Error) -> LogError {
    RaftLogError::Storage(e).into()
}

/// One partition's Raft log over a floe-storage log. See the module docs.
#[derive(Debug)]
pub struct RaftLog {
    log: floe_storage::Log,
    dir: Arc<dyn Directory>,
    hard_state: HardStateFile,
    snapshot: Snapshot,
    /// Configuration entries held (offset order): the index `config_entries` answers from.
    configs: Vec<(Offset, Membership)>,
    damaged: Option<(Term, Offset)>,
    /// (term, vote) as last written to the hard-state file: a change of the commit alone
    /// goes to its commit floor instead (one in-place write and one fdatasync).
    stored_vote: (u64, Option<u64>),
    /// The lowest offset of damage found while reading (recovery does not scan everything:
    /// sealed segments are trusted by their index until read).
    found_damage: Option<u64>,
    now_ms: u64,
}

/// What [`RaftLog::open`] recovered.
#[derive(Debug)]
pub struct Opened {
    /// The log.
    pub log: RaftLog,
    /// The hard state to start the core with.
    pub hard_state: HardState,
    /// The last stop was clean: the clean-shutdown marker ([`CLEAN_FILE`]) was there. False
    /// after a crash or kill, and for a directory never closed (a new one holds nothing to
    /// check, so treating it as unclean costs nothing).
    pub clean: bool,
}

impl RaftLog {
    /// Opens (recovers) the partition directory `dir`. `now_ms` is the caller's clock.
    pub fn open(
        dir: Arc<dyn Directory>,
        config: LogConfig,
        now_ms: u64,
    ) -> Result<Opened, RaftLogError> {
        let clean = take_clean_marker(&dir)?;
        let hard_state = HardStateFile::new(dir.clone(), HARD_STATE_FILE);
        let stored = hard_state.load()?.unwrap_or_default();
        let durable_floor = matches!(config.fsync, floe_storage::FsyncPolicy::Always)
            .then_some(stored.commit)
            .filter(|&c| c > 0);
        let log = floe_storage::Log::open(
            dir.clone(),
            config,
            OpenOptions {
                now_ms,
                durable_floor,
            },
        )?;
        let snapshot = match sidecar::load(&dir, SNAPSHOT_FILE)? {
            Some(bytes) => decode_snapshot(&bytes).ok_or(RaftLogError::BadSnapshotMeta)?,
            None => Snapshot::default(),
        };
        let damaged = match sidecar::load(&dir, DAMAGED_FILE)? {
            Some(bytes) => decode_damaged(&bytes)?,
            None => None,
        };
        let mut me = RaftLog {
            log,
            dir,
            hard_state,
            snapshot,
            configs: Vec::new(),
            damaged,
            found_damage: None,
            now_ms,
            stored_vote: (stored.term, stored.vote),
        };
        // Finish a compaction or snapshot install that a crash interrupted.
        if me.snapshot.meta.end.0 > me.log.log_start() {
            me.log.truncate_prefix(me.snapshot.meta.end.0)?;
        }
        let (configs, found) = me.scan_configs()?;
        me.configs = configs;
        me.found_damage = found;
        let hard_state = HardState {
            term: Term(stored.term),
            vote: stored.vote.map(NodeId),
            commit_end: Offset(stored.commit),
            damaged: me.damaged,
        };
        Ok(Opened {
            log: me,
            hard_state,
            clean,
        })
    }

    /// The storage log (reads, metrics). Writes go through the Raft core.
    pub fn storage(&self) -> &floe_storage::Log {
        &self.log
    }

    /// Sets the clock used to age segments.
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Fsyncs everything appended so far (group commit). Returns the durable end. An error is
    /// fatal for the partition (fsyncgate): reopen it.
    pub fn sync(&mut self) -> Result<Offset, RaftLogError> {
        Ok(Offset(self.log.sync()?))
    }

    /// Writes the Raft hard state durably: a new term or vote atomically (the whole file is
    /// replaced), a change of the commit end alone in place, to the commit floor
    /// ([`HardStateFile::store_commit`]): it moves with every replicated batch, and one
    /// fdatasync is a fraction of a new file, a rename and a directory fsync.
    pub fn store_hard_state(&mut self, hs: &HardState) -> Result<(), RaftLogError> {
        if hs.damaged != self.damaged {
            sidecar::store(&self.dir, DAMAGED_FILE, &encode_damaged(hs.damaged))?;
            self.damaged = hs.damaged;
        }
        let vote = (hs.term.0, hs.vote.map(|v| v.0));
        if vote == self.stored_vote {
            self.hard_state.store_commit(hs.commit_end.0)?;
        } else {
            self.hard_state.store(&floe_storage::HardState {
                term: vote.0,
                vote: vote.1,
                commit: hs.commit_end.0,
            })?;
            self.stored_vote = vote;
        }
        Ok(())
    }

    /// Whole batches from `offset` that end at or below `limit` (the high watermark for
    /// consumers), up to about `max_bytes`, zero-copy. Control batches are included (consumers
    /// skip them by their attribute bit).
    pub fn read_until(
        &self,
        offset: u64,
        max_bytes: usize,
        limit: u64,
    ) -> Result<ReadBatches, RaftLogError> {
        Ok(self.log.read_until(offset, max_bytes, limit)?)
    }

    /// Clean shutdown: sync and checkpoint so the next open scans nothing, then write the
    /// clean-shutdown marker ([`CLEAN_FILE`]) so the next open does not scrub everything.
    pub fn close(self) -> Result<(), RaftLogError> {
        let dir = self.dir.clone();
        self.log.close()?;
        sidecar::store(&dir, CLEAN_FILE, &[])?;
        Ok(())
    }

    /// Checks about `budget` more bytes of the sealed segments (the background scrub, see
    /// [`floe_storage::Log::scrub_step`]). New damage shows in [`RaftLog::first_damage`].
    pub fn scrub_step(&mut self, budget: u64) -> Result<floe_storage::ScrubProgress, RaftLogError> {
        Ok(self.log.scrub_step(budget)?)
    }

    /// Walks every batch header from the log start and collects configuration entries, up to
    /// the first damaged range (the Raft core cuts the log there and re-fetches the rest).
    /// Returns the configurations and where damage was met, if it was.
    #[allow(clippy::type_complexity)]
    fn scan_configs(&self) -> Result<(Vec<(Offset, Membership)>, Option<u64>), RaftLogError> {
        let mut out = Vec::new();
        let mut at = self.log.log_start();
        let limit = self
            .first_damage()
            .unwrap_or(u64::MAX)
            .min(self.log.log_end());
        while at < limit {
            let h = match self.log.batch_header_at(at) {
                Ok(h) => h,
                Err(floe_storage::Error::Corruption { range }) => {
                    return Ok((out, Some(range.start.min(at))));
                }
                Err(e) => return Err(e.into()),
            };
            if h.is_control() {
                match self.read_entry_at(h.base_offset) {
                    Ok(e) => {
                        if let EntryKind::Config(m) = e.kind() {
                            out.push((Offset(h.base_offset), m.clone()));
                        }
                    }
                    Err(RaftLogError::Storage(floe_storage::Error::Corruption { range })) => {
                        return Ok((out, Some(range.start.min(h.base_offset))));
                    }
                    Err(e) => return Err(e),
                }
            }
            at = h.next_offset().max(at + 1);
        }
        Ok((out, None))
    }

    /// The lowest offset known to be damaged: found by recovery, by [`RaftLog::verify`], or
    /// while reading. The replica reports it to the Raft core, which re-fetches from there.
    pub fn first_damage(&self) -> Option<u64> {
        let storage = self.log.corruption().iter().map(|r| r.start).min();
        match (storage, self.found_damage) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Scrubs the whole log (every batch's CRC): for a replica restarted after it met damage
    /// that recovery's tail scan does not cover. Returns [`RaftLog::first_damage`].
    pub fn verify(&mut self) -> Result<Option<u64>, RaftLogError> {
        self.log.verify()?;
        Ok(self.first_damage())
    }

    fn read_entry_at(&self, offset: u64) -> Result<Entry, RaftLogError> {
        let read = self.log.read(offset, 1)?;
        let bytes = read
            .batches()
            .next()
            .ok_or(floe_storage::Error::OffsetOutOfRange {
                offset,
                start: self.log.log_start(),
                end: self.log.log_end(),
            })?;
        to_entry(bytes)
    }

    fn append_one(&mut self, e: &Entry) -> Result<(), RaftLogError> {
        let end = self.log.log_end();
        if e.first().0 != end {
            return Err(RaftLogError::NotAtEnd {
                expected: end,
                got: e.first().0,
            });
        }
        let mut batch = match e.kind() {
            EntryKind::Data { payload, records } => {
                let offset = e.first().0;
                let h = BatchHeader::parse(payload)
                    .map_err(|source| RaftLogError::BadPayload { offset, source })?;
                if h.is_control() {
                    return Err(RaftLogError::ControlPayload { offset });
                }
                if u64::from(h.record_count) != *records {
                    return Err(RaftLogError::RecordCount {
                        offset,
                        entry: *records,
                        batch: u64::from(h.record_count),
                    });
                }
                if h.base_offset == offset && h.term == e.term().0 {
                    // Already stamped (a follower appending the leader's batch): store the
                    // received bytes as they are, no copy. Validated (header, size, CRC).
                    self.log.append_replicated(payload, self.now_ms)?;
                    return Ok(());
                }
                payload.to_vec()
            }
            EntryKind::Noop => control_batch(&ControlRecord::NoOp)?,
            EntryKind::Config(m) => {
                let rec = ControlRecord::RaftConfig(RaftConfig {
                    voters: m.voters().iter().map(|n| n.0).collect(),
                    learners: m.learners().iter().map(|n| n.0).collect(),
                    outgoing_voters: Vec::new(),
                });
                control_batch(&rec)?
            }
        };
        // Validates (header, size limit, CRC) and stamps base offset = log end and the term.
        self.log.append(&mut batch, e.term().0, self.now_ms)?;
        if let EntryKind::Config(m) = e.kind() {
            self.configs.push((e.first(), m.clone()));
        }
        Ok(())
    }

    fn store_snapshot(&mut self, snapshot: Snapshot) -> Result<(), RaftLogError> {
        sidecar::store(&self.dir, SNAPSHOT_FILE, &encode_snapshot(&snapshot))?;
        self.snapshot = snapshot;
        Ok(())
    }
}

/// Encodes a control entry. The timestamp is always 0: a follower re-encodes the entries it
/// receives, and every replica must produce the same bytes (logs are byte-identical).
/// Whether the clean-shutdown marker is there; removes it durably (file, then directory
/// sync) before the open writes anything, so a crash from now on is seen as unclean. A
/// damaged marker counts as absent (unclean: the safe side).
fn take_clean_marker(dir: &Arc<dyn Directory>) -> Result<bool, RaftLogError> {
    let io = |source| SidecarError::Io {
        file: CLEAN_FILE,
        source,
    };
    let clean = match sidecar::load(dir, CLEAN_FILE) {
        Ok(found) => found.is_some(),
        Err(SidecarError::Damaged { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    match dir.remove(CLEAN_FILE) {
        Ok(()) => dir.sync().map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e).into()),
    }
    Ok(clean)
}

pub(crate) fn control_batch(rec: &ControlRecord) -> Result<Vec<u8>, RaftLogError> {
    let mut b = BatchBuilder::control();
    let built = b
        .append_control(0, rec)
        .and_then(|()| b.finish())
        // A one-record control batch is a few dozen bytes: far below any limit.
        .map_err(|_| RaftLogError::BadControl {
            offset: 0,
            reason: BadControl::RecordCount(0),
        })?;
    Ok(built.to_vec())
}

/// Decodes one stored batch into an entry.
pub(crate) fn to_entry(bytes: Bytes) -> Result<Entry, RaftLogError> {
    let h = BatchHeader::parse(&bytes)
        .map_err(|source| RaftLogError::BadPayload { offset: 0, source })?;
    let (first, term) = (Offset(h.base_offset), Term(h.term));
    if !h.is_control() {
        return Ok(Entry::data(first, term, bytes, u64::from(h.record_count)));
    }
    let bad = |reason| RaftLogError::BadControl {
        offset: h.base_offset,
        reason,
    };
    if h.record_count != 1 {
        return Err(bad(BadControl::RecordCount(h.record_count)));
    }
    let view = BatchView::parse(bytes, BatchLimits::default()).map_err(|e| bad(e.into()))?;
    let records = view.records().map_err(|e| bad(e.into()))?;
    let record = records
        .iter()
        .next()
        .ok_or(bad(BadControl::RecordCount(0)))?
        .map_err(|e| bad(BadControl::Batch(e)))?;
    match ControlRecord::decode(&record).map_err(|e| bad(e.into()))? {
        ControlRecord::NoOp => Ok(Entry::noop(first, term)),
        ControlRecord::RaftConfig(c) if c.outgoing_voters.is_empty() => Ok(Entry::config(
            first,
            term,
            Membership::new(
                c.voters.into_iter().map(NodeId),
                c.learners.into_iter().map(NodeId),
            ),
        )),
        ControlRecord::RaftConfig(_) => Err(bad(BadControl::Joint)),
    }
}

fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + s.data.len());
    out.extend_from_slice(&s.meta.end.0.to_le_bytes());
    out.extend_from_slice(&s.meta.term.0.to_le_bytes());
    let m = &s.meta.membership;
    sidecar::put_ids(&mut out, m.voters().iter().map(|n| n.0));
    sidecar::put_ids(&mut out, m.learners().iter().map(|n| n.0));
    out.extend_from_slice(&s.data);
    out
}

fn decode_snapshot(buf: &[u8]) -> Option<Snapshot> {
    let mut r = Reader::new(buf);
    let end = Offset(r.u64()?);
    let term = Term(r.u64()?);
    let voters = r.ids()?;
    let learners = r.ids()?;
    let data = Bytes::copy_from_slice(r.rest());
    Some(Snapshot {
        meta: SnapshotMeta {
            end,
            term,
            membership: Membership::new(
                voters.into_iter().map(NodeId),
                learners.into_iter().map(NodeId),
            ),
        },
        data,
    })
}

fn encode_damaged(d: Option<(Term, Offset)>) -> Vec<u8> {
    let mut out = vec![u8::from(d.is_some())];
    let (t, o) = d.unwrap_or_default();
    out.extend_from_slice(&t.0.to_le_bytes());
    out.extend_from_slice(&o.0.to_le_bytes());
    out
}

fn decode_damaged(buf: &[u8]) -> Result<Option<(Term, Offset)>, RaftLogError> {
    let damaged = || SidecarError::Damaged {
        file: DAMAGED_FILE,
        reason: "bad layout",
    };
    let mut r = Reader::new(buf);
    let flag = r.u8().ok_or_else(damaged)?;
    let (t, o) = (r.u64().ok_or_else(damaged)?, r.u64().ok_or_else(damaged)?);
    match flag {
        0 => Ok(None),
        1 => Ok(Some((Term(t), Offset(o)))),
        _ => Err(damaged().into()),
    }
}

impl Log for RaftLog {
    fn start(&self) -> Offset {
        Offset(self.log.log_start())
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot.meta.clone()
    }

    fn end(&self) -> Offset {
        Offset(self.log.log_end())
    }

    fn last_term(&self) -> Term {
        if self.log.log_end() <= self.log.log_start() {
            return self.snapshot.meta.term;
        }
        Term(self.log.last_term())
    }

    fn entry_meta(&self, offset: Offset) -> Result<Option<EntryMeta>, LogError> {
        if offset < self.start() || offset >= self.end() {
            return Ok(None);
        }
        let h = match self.log.batch_header_at(offset.0) {
            Ok(h) => h,
            // A damaged range (never served) is reported as one entry of term 0: the core
            // cuts the log at its start once told (`report_corruption`) and re-fetches it;
            // term 0 matches no leader's term, so nothing is ever acknowledged against it.
            Err(floe_storage::Error::Corruption { range }) => {
                return Ok(Some(EntryMeta {
                    first: Offset(range.start),
                    end: Offset(range.end.max(range.start + 1)),
                    term: Term(0),
                }));
            }
            Err(e) => return Err(storage_err(e)),
        };
        Ok(Some(EntryMeta {
            first: Offset(h.base_offset),
            end: Offset(h.next_offset()),
            term: Term(h.term),
        }))
    }

    fn entries(&self, from: Offset, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        if from == self.end() {
            return Ok(Vec::new());
        }
        if from < self.start() || from > self.end() {
            return Err(LogError::Unavailable { offset: from });
        }
        let mut out: Vec<Entry> = Vec::new();
        let mut budget = 0usize;
        let mut at = from.0;
        'reads: while at < self.log.log_end() {
            let read = self.log.read(at, max_bytes.max(1)).map_err(storage_err)?;
            if read.next_offset <= at {
                break;
            }
            for bytes in read.batches() {
                let entry = to_entry(bytes)?;
                budget = budget.saturating_add(entry.size_bytes());
                if !out.is_empty() && budget > max_bytes {
                    break 'reads;
                }
                out.push(entry);
            }
            at = read.next_offset;
        }
        Ok(out)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        for e in entries {
            self.append_one(e)?;
        }
        Ok(())
    }

    fn truncate_suffix(&mut self, at: Offset) -> Result<(), LogError> {
        self.log.truncate_suffix(at.0).map_err(storage_err)?;
        self.configs.retain(|(o, _)| *o < at);
        Ok(())
    }

    fn compact(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        let end = snapshot.meta.end;
        self.store_snapshot(snapshot)?;
        self.log.truncate_prefix(end.0).map_err(storage_err)?;
        self.configs.retain(|(o, _)| *o >= end);
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        let end = snapshot.meta.end;
        self.store_snapshot(snapshot)?;
        // Empty the log, then move its start: a crash in between is finished by `open`.
        let start = self.log.log_start();
        if self.log.log_end() > start {
            self.log.truncate_suffix(start).map_err(storage_err)?;
        }
        self.log.truncate_prefix(end.0).map_err(storage_err)?;
        self.configs.clear();
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot, LogError> {
        Ok(self.snapshot.clone())
    }

    fn config_entries(&self) -> Result<Vec<(Offset, Membership)>, LogError> {
        Ok(self.configs.clone())
    }
}

#[cfg(test)]
mod tests;

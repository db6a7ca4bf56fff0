//! One replica of one partition: a Raft core over the partition log, driven sans-IO.
//!
//! The driver (a tokio task in the server, a loop in tests) feeds the inputs —
//! [`Replica::tick`], [`Replica::handle_message`], [`Replica::produce`] — as many as it has,
//! then calls [`Replica::process`] once, then drains the outputs: [`Replica::poll_message`]
//! (send to peers) and [`Replica::poll_ack`] (answer producers). `process` carries out the
//! persistence the core asked for, in the order it demands: entries appended and fsynced
//! (one fsync for every input since the last call: group commit), then the hard state
//! written, then [`floe_raft::Raft::handle_persisted`]; only after that does the core release
//! the messages that depend on it (votes, append acknowledgements). Appends are visible to the
//! core (and sent to followers) before they are durable; the leader counts itself toward the
//! commit only once its own fsync is done.
//!
//! Acknowledgements: `acks=all` is answered once the high watermark (commit end) passes the
//! batch's end, `acks=leader` once the local log is durable past it. A batch a deposed leader
//! appended but a new leader overwrote is answered with [`ProduceError::Overwritten`] (it is
//! certainly not in the log, so a retry cannot duplicate it).
//!
//! Idempotent producers (batches with a producer id): the replica folds the batch headers of
//! the committed log into a [`ProducerStates`] (rebuilt by a header scan at open, advanced
//! as entries commit, on every replica, so a new leader knows what the old one appended).
//! The leader checks each producer batch against that state plus an overlay of its own
//! uncommitted tail (rebuilt from the log the first time it is needed in a term, extended by
//! each proposal; the log of a leader only grows within its term, so the overlay never needs
//! undoing: a truncation can only happen after a term change, which drops it). A retry of a
//! committed batch is answered at once with the original offsets ([`Produced::duplicate`]);
//! a retry of a batch still in flight waits for the original and gets its answer (its
//! offsets, or [`ProduceError::Overwritten`] if a new leader cut it): nothing is appended
//! twice and the client needs no extra retry.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::batch::{BatchHeader, validate_batch};
use floe_raft::{
    ChangeError, ConfChange, Config, EntryMeta, HardState, Log, Membership, Message, NodeId,
    Offset, ProposeError, Raft, RaftError, Role, Term, TransferError,
};
use floe_storage::backend::Directory;
use floe_storage::{LogConfig, ReadBatches, ScrubProgress};

use super::error::{CompactError, FetchError, ProduceError, ReplicaError};
use super::producers::{ProducerStates, SeqCheck, SeqError};
use super::raft_log::{Opened, RaftLog};

/// Most persistence rounds one input may cause (a guard: one or two is the norm).
const MAX_DRIVE_ROUNDS: usize = 64;

/// When a producer is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acks {
    /// Once a quorum holds the batch (committed: below the high watermark).
    All,
    /// Once the leader's own log holds it durably.
    Leader,
}

/// Where a produced batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Produced {
    /// Offset of its first record.
    pub base_offset: u64,
    /// One past its last record.
    pub next_offset: u64,
    /// The term it was appended in.
    pub term: u64,
    /// Whether this answers a retry of an idempotent producer's batch that was already
    /// appended: the offsets are the original's and nothing new was appended (the wire answer
    /// is `DuplicateSequence` with the original base offset).
    pub duplicate: bool,
}

impl Produced {
    /// The protocol error code of this (successful) answer: `DuplicateSequence` for a
    /// retry answered with the original offsets, else `None`.
    pub fn code(&self) -> floe_protocol::ErrorCode {
        if self.duplicate {
            floe_protocol::ErrorCode::DuplicateSequence
        } else {
            floe_protocol::ErrorCode::None
        }
    }
}

/// The answer to one produce, identified by the caller's token.
#[derive(Debug)]
pub struct ProduceAck {
    /// The token given to [`Replica::produce`].
    pub token: u64,
    /// Where the batch landed, or why it did not.
    pub result: Result<Produced, ProduceError>,
}

#[derive(Debug)]
struct Pending {
    token: u64,
    meta: EntryMeta,
    acks: Acks,
    /// A retry waiting for the original batch (at `meta`) to be answered.
    duplicate: bool,
}

/// The leader's view of idempotent producers with batches in its uncommitted tail (past
/// `Replica::producers_end`): for those producers, the committed state with the tail's
/// batches folded in. Valid for one term (a leader's log only grows within its term).
#[derive(Debug)]
struct Overlay {
    term: Term,
    states: ProducerStates,
    /// (end offset, producer id) of each producer batch in the tail, in log order.
    tail: VecDeque<(u64, i64)>,
    /// Batches per producer in `tail`.
    counts: HashMap<i64, usize>,
}

impl Overlay {
    fn new(term: Term) -> Overlay {
        Overlay {
            term,
            states: ProducerStates::default(),
            tail: VecDeque::new(),
            counts: HashMap::new(),
        }
    }

    /// Folds in a batch of the tail (stamped), seeding its producer from `committed`.
    fn push(&mut self, committed: &ProducerStates, h: &BatchHeader) {
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        self.states.seed_from(committed, h.producer_id);
        self.states.apply(h);
        self.tail.push_back((h.next_offset(), h.producer_id));
        *self.counts.entry(h.producer_id).or_insert(0) += 1;
    }

    /// Forgets the batches that ended up in the committed state (below `committed_end`).
    fn retire(&mut self, committed_end: u64) {
        while let Some(&(end, id)) = self.tail.front() {
            if end > committed_end {
                break;
            }
            self.tail.pop_front();
            if let Some(n) = self.counts.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&id);
                    self.states.remove(id);
                }
            }
        }
    }
}

/// What [`Replica::move_toward`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStep {
    /// The membership's voters are the target and it has no learner: nothing to do.
    Done,
    /// It proposed this one-server membership change.
    Changed(ConfChange),
    /// Every other change is made and this leader is not in the target: it asked Raft to hand
    /// leadership to this target voter (whose leader then removes this replica).
    Transferring(NodeId),
    /// A step is due but cannot be taken yet (not the leader, a change or a transfer not
    /// committed yet, a learner still catching up, no entry of this term committed yet);
    /// call again later.
    Waiting,
}

/// Options for one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The Raft group's tunables (node id, ticks, flow control, seed).
    pub raft: Config,
    /// The partition log's configuration.
    pub log: LogConfig,
    /// A hard-state change that only moves the commit end is written once the commit end
    /// moved by this many offsets (term, vote and damage mark are always written). The stored
    /// commit end is the durable floor recovery uses to tell damage inside acknowledged data
    /// (reported, repaired from the leader) from a torn tail (cut): a larger value saves two
    /// fsyncs per round but lets more damage pass for a torn tail. Default 1: every change.
    pub commit_store_every: u64,
    /// Scrub the whole log (every CRC) at open even after a clean stop. Recovery scans only
    /// the tail, so [`Replica::open`] scrubs everything anyway whenever the last stop was not
    /// a clean [`Replica::close`] (no clean-shutdown marker); set this too when restarting a
    /// replica that stopped on damage ([`ReplicaError::is_corruption`]), so the damage is
    /// reported to Raft and repaired from the leader. Default false.
    pub verify_on_open: bool,
}

impl ReplicaConfig {
    /// Options with the default `commit_store_every` (1).
    pub fn new(raft: Config, log: LogConfig) -> Self {
        ReplicaConfig {
            raft,
            log,
            commit_store_every: 1,
            verify_on_open: false,
        }
    }
}

/// One partition replica. See the module docs.
#[derive(Debug)]
pub struct Replica {
    raft: Raft<RaftLog>,
    max_batch_bytes: u32,
    pending: Vec<Pending>,
    acks: VecDeque<ProduceAck>,
    outbox: VecDeque<Message>,
    stopped: bool,
    /// The hard state last written.
    stored_hard_state: HardState,
    commit_store_every: u64,
    /// Idempotent-producer state of the log below `producers_end` (committed).
    producers: ProducerStates,
    /// Every batch below this offset is folded into `producers`.
    producers_end: u64,
    /// The leader's overlay for its uncommitted tail (built at the first idempotent produce
    /// of a term).
    overlay: Option<Overlay>,
    /// The Raft election timeout in ticks (how long a leadership transfer may take).
    election_ticks: u32,
    /// The whole log was scrubbed at open (unclean last stop, or `verify_on_open`).
    verified_at_open: bool,
}

impl Replica {
    /// Opens (recovers) the partition directory `dir` and starts the Raft core. `bootstrap`
    /// is the group's founding membership (ignored once the log holds a configuration).
    pub fn open(
        dir: Arc<dyn Directory>,
        cfg: ReplicaConfig,
        bootstrap: Membership,
        now_ms: u64,
    ) -> Result<Replica, ReplicaError> {
        let max_batch_bytes = cfg.log.max_batch_bytes;
        let election_ticks = cfg.raft.election_ticks;
        let cfg_commit_every = cfg.commit_store_every.max(1);
        let Opened {
            mut log,
            hard_state,
            clean,
        } = RaftLog::open(dir, cfg.log, now_ms)?;
        // After a crash or kill, damage may sit anywhere (a sealed segment damaged while the
        // node was down is trusted by recovery): check every CRC before taking part in Raft,
        // so the damage is reported below and repaired from the leader before this replica
        // votes or counts toward a commit over it.
        let verified_at_open = cfg.verify_on_open || !clean;
        if verified_at_open {
            log.verify()?;
        }
        let mut raft = Raft::new(cfg.raft, log, hard_state, bootstrap)?;
        // A partition log has no state machine: everything committed is "applied".
        raft.handle_applied(raft.commit_end());
        // Damage recovery found inside durable data: stop trusting the log from there; the
        // core cuts it once the damage mark is durable and re-fetches it from the leader
        // (not voting as if it held less meanwhile). Driven by the first `process`.
        if let Some(first) = raft.log().first_damage() {
            raft.report_corruption(Offset(first))?;
        }
        let producers_end = raft.log().start().0;
        let mut replica = Replica {
            raft,
            max_batch_bytes,
            pending: Vec::new(),
            acks: VecDeque::new(),
            outbox: VecDeque::new(),
            stopped: false,
            stored_hard_state: hard_state,
            commit_store_every: cfg_commit_every,
            producers: ProducerStates::default(),
            producers_end,
            overlay: None,
            election_ticks,
            verified_at_open,
        };
        // Rebuild the idempotent-producer state from the committed log's batch headers.
        replica.advance_producers();
        Ok(replica)
    }

    // ----- getters -----

    /// This replica's node id.
    pub fn id(&self) -> NodeId {
        self.raft.id()
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.raft.role()
    }

    /// Whether it leads its term.
    pub fn is_leader(&self) -> bool {
        self.raft.role() == Role::Leader
    }

    /// The leader it knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader()
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.raft.term()
    }

    /// The high watermark: every offset below it is committed.
    pub fn high_watermark(&self) -> u64 {
        self.raft.commit_end().0
    }

    /// The local log's end (committed or not).
    pub fn log_end(&self) -> u64 {
        self.raft.log().end().0
    }

    /// The local log's start.
    pub fn log_start(&self) -> u64 {
        self.raft.log().start().0
    }

    /// The Raft core, for inspection (metrics, tests).
    pub fn raft(&self) -> &Raft<RaftLog> {
        &self.raft
    }

    /// The Raft election timeout in ticks: a leadership transfer that has not completed
    /// within it was abandoned by the core.
    pub fn election_ticks(&self) -> u32 {
        self.election_ticks
    }

    /// Among the voters (other than this replica) that `eligible` accepts, the one whose log
    /// is the most up to date as this leader knows it: the best target for a leadership
    /// transfer (`None` off the leader or without such a voter).
    pub fn most_caught_up_follower(&self, eligible: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        if !self.is_leader() {
            return None;
        }
        let me = self.raft.id();
        self.raft
            .membership()
            .voters()
            .iter()
            .copied()
            .filter(|&v| v != me && eligible(v))
            .max_by_key(|&v| self.raft.match_end(v).unwrap_or(Offset(0)))
    }

    /// Whether [`Replica::open`] scrubbed the whole log (the last stop was not clean, or
    /// [`ReplicaConfig::verify_on_open`] asked for it).
    pub fn verified_at_open(&self) -> bool {
        self.verified_at_open
    }

    /// Whether the replica stopped after a failure (it serves nothing until reopened).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Produce requests not answered yet.
    pub fn pending_produces(&self) -> usize {
        self.pending.len()
    }

    /// Idempotent producers this replica knows from its committed log.
    pub fn producers_known(&self) -> usize {
        self.producers.len()
    }

    // ----- inputs -----

    /// One tick of logical time; `now_ms` is the caller's clock (for batch timestamps of
    /// control entries and segment ages).
    pub fn tick(&mut self, now_ms: u64) -> Result<(), ReplicaError> {
        self.check_running()?;
        self.raft.log_mut().set_now_ms(now_ms);
        let r = self.raft.handle_tick();
        self.after(r.map_err(ReplicaError::from))
    }

    /// Campaigns at once if this replica may lead and knows no leader (see
    /// [`Raft::campaign_now`]); the node does it for a partition's preferred leader at open.
    pub fn campaign_now(&mut self) -> Result<(), ReplicaError> {
        self.check_running()?;
        let r = self.raft.campaign_now();
        self.after(r.map_err(ReplicaError::from))
    }

    /// Hands leadership to voter `to` (Raft's transfer: the leader brings `to` up to date,
    /// then tells it to campaign at once). Proposals are refused
    /// ([`ProduceError::LeaderNotAvailable`]) until it completes or is abandoned after one
    /// election timeout. Call [`Replica::process`] afterwards to send what it asks for.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.raft.transfer_leadership(to)
    }

    /// Takes one step of moving the group's membership toward `target` (a partition
    /// reassignment), on the leader; anywhere else it only reports [`MoveStep::Waiting`].
    /// One server at a time, in an order that never lowers fault tolerance below the smaller
    /// of the two sets': first every target replica joins as a learner, then each learner is
    /// promoted once it holds the committed log, then learners outside the target and voters
    /// outside it (other than the leader) are removed, and last a leader outside the target
    /// hands its leadership to a target voter. Call it again after each change commits (once
    /// per tick is enough); `Changed` needs a [`Replica::process`] to be sent. An empty target
    /// means "no target" and changes nothing.
    pub fn move_toward(&mut self, target: &BTreeSet<NodeId>) -> Result<MoveStep, ReplicaError> {
        self.check_running()?;
        if !self.is_leader() || target.is_empty() {
            return Ok(MoveStep::Waiting);
        }
        let me = self.raft.id();
        let m = self.raft.membership().clone();
        let change = if let Some(&t) = target.iter().find(|&&t| !m.contains(t)) {
            ConfChange::AddLearner(t)
        } else if let Some(&l) = m.learners().iter().find(|l| target.contains(l)) {
            ConfChange::Promote(l)
        } else if let Some(&l) = m.learners().iter().find(|l| !target.contains(l)) {
            ConfChange::Remove(l)
        } else if let Some(&v) = m
            .voters()
            .iter()
            .find(|&&v| v != me && !target.contains(&v))
        {
            ConfChange::Remove(v)
        } else if !target.contains(&me) {
            // Only this leader is left to go: hand over first, so producers move to a target
            // replica at once; its new leader removes this one.
            let best = self.most_caught_up_follower(|v| target.contains(&v));
            let Some(to) = best else {
                return Ok(MoveStep::Waiting);
            };
            return Ok(match self.raft.transfer_leadership(to) {
                Ok(()) => MoveStep::Transferring(to),
                Err(_) => MoveStep::Waiting,
            });
        } else {
            return Ok(MoveStep::Done);
        };
        match self.raft.change_membership(change) {
            Ok(_) => Ok(MoveStep::Changed(change)),
            Err(ChangeError::Fatal(e)) => {
                self.stopped = true;
                Err(e.into())
            }
            // Not now: a change or transfer in flight, a learner behind, the term's first
            // entry not committed, or the membership moved under us. The next call retries.
            Err(_) => Ok(MoveStep::Waiting),
        }
    }

    /// A message from a peer replica of this group.
    pub fn handle_message(&mut self, msg: Message) -> Result<(), ReplicaError> {
        self.check_running()?;
        let r = self.raft.handle_message(msg);
        self.after(r.map_err(ReplicaError::from))
    }

    /// Proposes a producer's batch. On the leader it is validated (header, size limit, CRC;
    /// no control batches), stamped with its base offset and the term, and appended through
    /// the storage log (not yet durable: see [`Replica::process`]); the answer comes later
    /// from [`Replica::poll_ack`] with `token`. Rejections come back at once.
    pub fn produce(&mut self, token: u64, batch: Bytes, acks: Acks) -> Result<(), ProduceError> {
        self.check_running()?;
        if self.raft.role() != Role::Leader {
            return Err(ProduceError::NotLeader {
                leader: self.raft.leader(),
            });
        }
        let h = validate_batch(&batch, self.max_batch_bytes)?;
        if h.batch_len as usize != batch.len() {
            return Err(ProduceError::LengthMismatch {
                batch_len: h.batch_len,
                buf_len: batch.len(),
            });
        }
        if h.is_control() {
            return Err(ProduceError::ControlBatch);
        }
        if let SeqCheck::Duplicate(orig) = self.check_sequence(&h)? {
            let meta = EntryMeta {
                first: Offset(orig.base_offset),
                end: Offset(orig.last_offset + 1),
                term: Term(orig.term),
            };
            if meta.end <= self.raft.commit_end() {
                // Committed: it can never be overwritten; answer now.
                self.acks.push_back(ProduceAck {
                    token,
                    result: Ok(Produced {
                        base_offset: meta.first.0,
                        next_offset: meta.end.0,
                        term: meta.term.0,
                        duplicate: true,
                    }),
                });
            } else {
                // In flight: answered with the original's fate (see `resolve_acks`).
                self.pending.push(Pending {
                    token,
                    meta,
                    acks,
                    duplicate: true,
                });
            }
            return Ok(());
        }
        let meta = match self.raft.propose(batch, u64::from(h.record_count)) {
            Ok(meta) => meta,
            Err(ProposeError::NotLeader { leader }) => {
                return Err(ProduceError::NotLeader { leader });
            }
            Err(ProposeError::TransferInProgress { .. }) => {
                return Err(ProduceError::LeaderNotAvailable);
            }
            // Validated above: a batch holds at least one record.
            Err(ProposeError::EmptyBatch) => {
                return Err(ProduceError::InvalidBatch(
                    floe_protocol::batch::HeaderError::BadRecordCount {
                        record_count: h.record_count,
                        last_offset_delta: h.last_offset_delta,
                    },
                ));
            }
            Err(ProposeError::Fatal(e)) => {
                self.stopped = true;
                return Err(ReplicaError::from(e).into());
            }
        };
        if h.producer_id >= 0
            && let Some(o) = &mut self.overlay
        {
            let mut stamped = h;
            stamped.base_offset = meta.first.0;
            stamped.term = meta.term.0;
            o.push(&self.producers, &stamped);
        }
        self.pending.push(Pending {
            token,
            meta,
            acks,
            duplicate: false,
        });
        Ok(())
    }

    /// The idempotence check of a producer's batch on the leader (see the module docs).
    fn check_sequence(&mut self, h: &BatchHeader) -> Result<SeqCheck, ProduceError> {
        if h.producer_id < 0 {
            return Ok(SeqCheck::NotIdempotent);
        }
        let overlay = self.overlay()?;
        let states = if overlay.states.contains(h.producer_id) {
            &overlay.states
        } else {
            &self.producers
        };
        states.check(h).map_err(|e| match e {
            SeqError::Fenced { current_epoch } => ProduceError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch,
            },
            SeqError::OutOfOrder { expected } => ProduceError::OutOfOrderSequence {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                base_sequence: h.base_sequence,
                expected,
            },
            SeqError::InvalidFields => ProduceError::InvalidProducerFields {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                base_sequence: h.base_sequence,
            },
        })
    }

    /// The leader's overlay for this term, built from the log past `producers_end` if it is
    /// not yet. A batch header it cannot read (damage being repaired) makes it refuse
    /// idempotent produces, retryably, rather than risk a duplicate.
    fn overlay(&mut self) -> Result<&Overlay, ProduceError> {
        let term = self.raft.term();
        if self.overlay.as_ref().is_some_and(|o| o.term == term) {
            return self
                .overlay
                .as_ref()
                .ok_or(ProduceError::LeaderNotAvailable);
        }
        self.overlay = None;
        if self.producers_end < self.raft.commit_end().0 {
            return Err(ProduceError::LeaderNotAvailable);
        }
        let mut overlay = Overlay::new(term);
        let (mut at, end) = (self.producers_end, self.raft.log().end().0);
        while at < end {
            let h = self
                .raft
                .log()
                .storage()
                .batch_header_at(at)
                .map_err(|_| ProduceError::LeaderNotAvailable)?;
            if h.next_offset() <= at {
                return Err(ProduceError::LeaderNotAvailable);
            }
            overlay.push(&self.producers, &h);
            at = h.next_offset();
        }
        Ok(self.overlay.insert(overlay))
    }

    /// Folds the batch headers committed since the last call into `producers` (all of them
    /// at open: a header scan, one header read per batch, no record is read). A batch whose
    /// header cannot be read (damage being repaired) stops the scan; it resumes next time.
    /// Batches discarded by compaction or skipped by a snapshot install are not folded in:
    /// their producers' state is lost (a producer idle that long must start a new epoch).
    fn advance_producers(&mut self) {
        let log = self.raft.log();
        self.producers_end = self.producers_end.max(log.start().0);
        let commit = self.raft.commit_end().0.min(log.end().0);
        while self.producers_end < commit {
            let Ok(h) = log.storage().batch_header_at(self.producers_end) else {
                break;
            };
            if h.base_offset != self.producers_end || h.next_offset() <= self.producers_end {
                break;
            }
            self.producers.apply(&h);
            self.producers_end = h.next_offset();
        }
        if self.raft.role() != Role::Leader {
            self.overlay = None;
        } else if let Some(o) = &mut self.overlay {
            o.retire(self.producers_end);
        }
    }

    /// Committed batches from `offset` (up to about `max_bytes`, whole batches, zero-copy),
    /// never above the high watermark: a consumer never sees what a leader change could undo.
    /// Control batches are included; consumers skip them by their attribute bit.
    pub fn read_committed(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches, FetchError> {
        let (start, hw) = (self.log_start(), self.high_watermark());
        if offset < start || offset > hw {
            return Err(FetchError::OffsetOutOfRange {
                offset,
                start,
                high_watermark: hw,
            });
        }
        Ok(self.raft.log().read_until(offset, max_bytes, hw)?)
    }

    /// Retention: discards the log before `up_to` (a batch boundary at or below the high
    /// watermark), durably before it returns. Followers that need entries before the new log start are caught up from
    /// it (an empty snapshot: a partition log has no state machine).
    pub fn compact(&mut self, up_to: u64) -> Result<(), CompactError> {
        self.compact_with_snapshot(up_to, Bytes::new())
    }

    /// [`Replica::compact`] for a group with a state machine (the controller): `state` is the
    /// machine's snapshot at `up_to`, kept at the new log start (`raft.snapshot`) and sent to
    /// followers that need entries before it.
    pub fn compact_with_snapshot(&mut self, up_to: u64, state: Bytes) -> Result<(), CompactError> {
        self.check_running()?;
        match self.raft.compact(Offset(up_to), state) {
            Ok(()) => {}
            Err(floe_raft::CompactError::NotApplied { applied_end, .. }) => {
                return Err(CompactError::NotCommitted {
                    up_to,
                    high_watermark: applied_end.0,
                });
            }
            Err(floe_raft::CompactError::NotBoundary { .. }) => {
                return Err(CompactError::NotBoundary { up_to });
            }
            Err(floe_raft::CompactError::Fatal(e)) => {
                self.stopped = true;
                return Err(ReplicaError::from(e).into());
            }
        }
        Ok(())
    }

    /// Damage met at or after `from` while serving a read (a CRC failure is never served):
    /// the replica stops trusting its log from there and re-fetches it from the leader (a
    /// leader steps down first). Call [`Replica::process`] afterwards.
    pub fn report_damage(&mut self, from: u64) -> Result<(), ReplicaError> {
        self.check_running()?;
        let r = self.raft.report_corruption(Offset(from));
        self.after(r.map_err(ReplicaError::from))
    }

    /// The background scrub: checks about `budget` more bytes of the log's sealed segments
    /// (see [`floe_storage::Log::scrub_step`]) and reports damage it finds to Raft like
    /// [`Replica::report_damage`] (call [`Replica::process`] afterwards). A read error is
    /// returned without stopping the replica; a failed report stops it.
    pub fn scrub_step(&mut self, budget: u64) -> Result<ScrubProgress, ReplicaError> {
        self.check_running()?;
        let progress = self.raft.log_mut().scrub_step(budget)?;
        if let Some(first) = progress.found.iter().map(|r| r.start).min() {
            let r = self.raft.report_corruption(Offset(first));
            self.after(r.map_err(ReplicaError::from))?;
        }
        Ok(progress)
    }

    // ----- outputs -----

    /// Moves the messages the core may send before this round's persistence into the outbox
    /// (appends and heartbeats to followers; whatever depends on durable state — votes,
    /// append acknowledgements — stays held inside the core until [`Replica::process`] has
    /// made it durable). A driver that sends these before calling `process` lets followers
    /// write and fsync a batch while the leader's own fsync of it runs, instead of after it;
    /// the leader still counts itself toward the commit only once its fsync is done.
    pub fn release_messages(&mut self) {
        if self.stopped {
            return;
        }
        while let Some(msg) = self.raft.poll_message() {
            self.outbox.push_back(msg);
        }
    }

    /// The next message to send to a peer replica.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.outbox.pop_front()
    }

    /// The next produce answer.
    pub fn poll_ack(&mut self) -> Option<ProduceAck> {
        self.acks.pop_front()
    }

    /// Clean shutdown: sync and checkpoint the log and write the hard state with the current
    /// commit end. Unanswered produces are dropped (their callers time out; the batches may
    /// still commit under a new leader).
    pub fn close(self) -> Result<(), ReplicaError> {
        let hs = self.raft.hard_state();
        let mut log = self.raft.into_log();
        log.sync()?;
        log.store_hard_state(&hs)?;
        Ok(log.close()?)
    }

    // ----- the drive loop -----

    fn check_running(&self) -> Result<(), ReplicaError> {
        if self.stopped {
            return Err(ReplicaError::Stopped);
        }
        Ok(())
    }

    /// Finishes an input: a failure stops the replica.
    fn after(&mut self, input: Result<(), ReplicaError>) -> Result<(), ReplicaError> {
        if input.is_err() {
            self.stopped = true;
        }
        input
    }

    /// Carries out what the inputs since the last call asked for, then makes the outputs
    /// available: fsyncs the log once for all of them (group commit), writes the hard state,
    /// reports both done to the core, queues the messages it releases and answers the
    /// producers whose batches are now committed (or durable, for `acks=leader`). Call it
    /// after a burst of inputs, before polling.
    pub fn process(&mut self) -> Result<(), ReplicaError> {
        self.check_running()?;
        let r = self.drive();
        self.after(r)
    }

    /// Carries out persistence, collects messages, hands over committed entries and answers
    /// producers, until the core has nothing more to say.
    fn drive(&mut self) -> Result<(), ReplicaError> {
        for _ in 0..MAX_DRIVE_ROUNDS {
            let mut progressed = false;
            while let Some(req) = self.raft.poll_persist() {
                // 1. Entries: everything written so far becomes durable (group commit).
                let log = self.raft.log_mut();
                log.sync()?;
                // 2. Hard state, atomically, after the entries it may refer to.
                //    Term, vote and damage mark always; a commit-only change per
                //    `commit_store_every` (see `ReplicaConfig`).
                if let Some(hs) = &req.hard_state
                    && must_store(&self.stored_hard_state, hs, self.commit_store_every)
                {
                    log.store_hard_state(hs)?;
                    self.stored_hard_state = *hs;
                }
                // 3. Only now does the core count it done (and release dependent messages).
                self.raft.handle_persisted(req.id)?;
                progressed = true;
            }
            while let Some(msg) = self.raft.poll_message() {
                self.outbox.push_back(msg);
                progressed = true;
            }
            if let Some(snap) = self.raft.poll_snapshot()? {
                self.raft.handle_applied(snap.meta.end);
                progressed = true;
            }
            // A partition log has no state machine: committed batches are "applied" by being
            // committed, so they are not read back here (consumers read them from the log).
            let commit = self.raft.commit_end();
            if commit > self.raft.applied_end() {
                self.raft.handle_applied(commit);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        self.advance_producers();
        self.resolve_acks()
    }

    /// Answers every pending produce whose fate is known.
    fn resolve_acks(&mut self) -> Result<(), ReplicaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let commit = self.raft.commit_end();
        let durable = self.raft.durable_end();
        let leading_same_term =
            |term: Term| self.raft.role() == Role::Leader && self.raft.term() == term;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            // A leader never overwrites its own log: only after a term change can the batch be
            // gone. Then it is still there iff the entry at its position is exactly it.
            let present = leading_same_term(p.meta.term)
                || self
                    .raft
                    .log()
                    .entry_meta(p.meta.first)
                    .map_err(|e| ReplicaError::Raft(RaftError::Log(e)))?
                    == Some(p.meta);
            let done = match p.acks {
                Acks::All => commit >= p.meta.end,
                Acks::Leader => durable >= p.meta.end,
            };
            if present && !done {
                i += 1;
                continue;
            }
            let p = self.pending.remove(i);
            let result = if present {
                Ok(Produced {
                    base_offset: p.meta.first.0,
                    next_offset: p.meta.end.0,
                    term: p.meta.term.0,
                    duplicate: p.duplicate,
                })
            } else {
                Err(ProduceError::Overwritten {
                    leader: self.raft.leader(),
                })
            };
            self.acks.push_back(ProduceAck {
                token: p.token,
                result,
            });
        }
        Ok(())
    }
}

/// Whether `next` must be written over `stored`: always when the term, the vote or the
/// damage mark changed, and when the commit end moved by `every`.
fn must_store(stored: &HardState, next: &HardState, every: u64) -> bool {
    next.term != stored.term
        || next.vote != stored.vote
        || next.damaged != stored.damaged
        || next.commit_end.0.abs_diff(stored.commit_end.0) >= every
}

#[cfg(test)]
mod tests;

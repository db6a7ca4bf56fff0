//! The sans-IO Raft core: one replica of one group.
//!
//! Inputs are `handle_*` and the mutators (`propose`, `transfer_leadership`,
//! `change_membership`, `read_index`, `compact`, `report_corruption`); outputs are drained by
//! `poll_*`. After every input, the caller drains in this order:
//!
//! 1. [`Raft::poll_persist`]: write and fsync, then (now or later) call
//!    [`Raft::handle_persisted`] with the request's id;
//! 2. [`Raft::poll_message`]: send. Messages that depend on durable state (votes granted,
//!    append acknowledgements, a candidate's own term and vote) are held back by the core until
//!    their persistence request is reported done, so "persist, then send" is enforced here;
//! 3. [`Raft::poll_snapshot`]: restore the state machine from an installed snapshot;
//! 4. [`Raft::poll_committed`]: apply, then call [`Raft::handle_applied`];
//! 5. [`Raft::poll_read`]: reads that became linearizable; [`Raft::poll_failed_read`]: reads
//!    that cannot complete here (leadership lost).

mod corruption;
mod election;
mod members;
mod membership_change;
mod persist;
mod progress;
mod quiesce;
mod read_index;
mod replication;
mod snapshot;
mod transfer;

use std::collections::{BTreeMap, VecDeque};

pub use persist::{HardState, PersistId, PersistRequest};
pub use read_index::ReadyRead;

use crate::config::Config;
use crate::entry::{Entry, EntryKind};
use crate::error::RaftError;
use crate::log::{Log, Snapshot};
use crate::membership::Membership;
use crate::message::{Body, Message};
use crate::rng::SplitMix64;
use crate::types::{NodeId, Offset, Term};
use members::Members;
use persist::{Outbox, Persist};
use progress::Progress;

/// The role a replica plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes before campaigning.
    PreCandidate,
    /// Campaigns in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

#[derive(Debug, Default)]
struct Election {
    elapsed: u32,
    timeout: u32,
    votes: BTreeMap<NodeId, bool>,
}

#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_elapsed: u32,
    transfer: Option<transfer::Transfer>,
    reads: read_index::ReadQueue,
}

/// One replica of one Raft group over a log `L`. See the module docs for the drive loop.
#[derive(Debug)]
pub struct Raft<L: Log> {
    id: NodeId,
    cfg: Config,
    log: L,
    rng: SplitMix64,
    role: Role,
    term: Term,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    commit_end: Offset,
    handed_out_end: Offset,
    applied_end: Offset,
    members: Members,
    election: Election,
    lead: Option<Box<LeaderState>>,
    persist: Persist,
    outbox: Outbox,
    ready_reads: VecDeque<ReadyRead>,
    failed_reads: VecDeque<u64>,
    snapshot_out: Option<Offset>,
    corrupt: Option<corruption::Corruption>,
    /// A damaged log waiting to be cut at `.1` once persistence request `.0` is done.
    pending_cut: Option<(u64, Offset)>,
}

impl<L: Log> Raft<L> {
    /// A replica over a recovered (durable) `log` and `hard_state`. `bootstrap` is the initial
    /// membership, used when the log holds no configuration (a new group: every founding
    /// replica gets the same one; a joining replica gets `Membership::default()`).
    pub fn new(
        cfg: Config,
        log: L,
        hard_state: HardState,
        bootstrap: Membership,
    ) -> Result<Self, RaftError> {
        cfg.validate()?;
        let base = if log.start() > Offset(0) {
            log.snapshot_meta().membership
        } else {
            bootstrap
        };
        let members = Members::new(base, log.config_entries()?);
        let commit_end = hard_state.commit_end.min(log.end()).max(log.start());
        // The log may be durable further than the hard state (they are written apart).
        let (term, vote) = if log.last_term() > hard_state.term {
            (log.last_term(), None)
        } else {
            (hard_state.term, hard_state.vote)
        };
        let mut raft = Raft {
            id: cfg.id,
            rng: SplitMix64::new(cfg.seed),
            role: Role::Follower,
            term,
            vote,
            leader: None,
            commit_end,
            handed_out_end: log.start(),
            applied_end: log.start(),
            members,
            election: Election::default(),
            lead: None,
            persist: Persist::new(log.end(), commit_end),
            outbox: Outbox::default(),
            ready_reads: VecDeque::new(),
            failed_reads: VecDeque::new(),
            snapshot_out: None,
            corrupt: hard_state
                .damaged
                .map(corruption::Corruption::from_position),
            pending_cut: None,
            log,
            cfg,
        };
        raft.reset_election_timer();
        Ok(raft)
    }

    // ----- getters -----

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The commit end (Kafka's high watermark): every offset below it is committed.
    pub fn commit_end(&self) -> Offset {
        self.commit_end
    }

    /// What the application reported applied.
    pub fn applied_end(&self) -> Offset {
        self.applied_end
    }

    /// The current hard state.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit_end: self.commit_end,
            damaged: self.corrupt.map(|c| c.position()),
        }
    }

    /// The membership in effect (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        self.members.current()
    }

    /// The log.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log, for the storage driver (fsync, metrics). Do not append, truncate or compact
    /// behind the core's back: use [`Raft::compact`].
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    /// Gives the log back (on shutdown or crash).
    pub fn into_log(self) -> L {
        self.log
    }

    /// The durable end of the local log (as reported through `handle_persisted`).
    pub fn durable_end(&self) -> Offset {
        self.persist.durable_end()
    }

    /// Whether the replica has reported corruption that is not repaired yet.
    pub fn is_corrupt(&self) -> bool {
        self.corrupt.is_some()
    }

    /// For a leader: a follower's acknowledged end.
    pub fn match_end(&self, id: NodeId) -> Option<Offset> {
        self.lead.as_ref()?.progress.get(&id).map(|p| p.match_end)
    }

    /// For a leader: (messages, bytes) in flight to a follower.
    pub fn in_flight(&self, id: NodeId) -> Option<(usize, usize)> {
        self.lead
            .as_ref()?
            .progress
            .get(&id)
            .map(Progress::in_flight)
    }

    /// Whether there is nothing left to poll and nothing awaiting persistence.
    pub fn is_idle(&self) -> bool {
        self.outbox.is_empty() && self.persist.durable_end() == self.log.end()
    }

    // ----- outputs -----

    /// The next durability request. See the module docs for the order of polls.
    pub fn poll_persist(&mut self) -> Option<PersistRequest> {
        self.persist.poll()
    }

    /// The next message that may be sent now.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.outbox.pop(self.persist.done(), self.term)
    }

    /// Newly committed entries (up to about `max_bytes`), in order, each returned once.
    pub fn poll_committed(&mut self, max_bytes: usize) -> Result<Vec<Entry>, RaftError> {
        let from = self.handed_out_end.max(self.log.start());
        if from >= self.commit_end {
            return Ok(Vec::new());
        }
        let mut entries = self.log.entries(from, max_bytes)?;
        entries.retain(|e| e.end() <= self.commit_end);
        if let Some(last) = entries.last() {
            self.handed_out_end = last.end();
        }
        Ok(entries)
    }

    /// A snapshot installed from the leader: restore the state machine from it, then report
    /// `handle_applied(snapshot.meta.end)`.
    pub fn poll_snapshot(&mut self) -> Result<Option<Snapshot>, RaftError> {
        if self.snapshot_out.take().is_none() {
            return Ok(None);
        }
        Ok(Some(self.log.snapshot()?))
    }

    /// A read that is now linearizable: serve it from state applied up to its index.
    pub fn poll_read(&mut self) -> Option<ReadyRead> {
        match self.ready_reads.front() {
            Some(r) if r.index <= self.applied_end => self.ready_reads.pop_front(),
            _ => None,
        }
    }

    /// The context of a read that can no longer complete here (leadership was lost before a
    /// quorum confirmed it): retry it on the new leader.
    pub fn poll_failed_read(&mut self) -> Option<u64> {
        self.failed_reads.pop_front()
    }

    // ----- inputs -----

    /// Durability requests up to and including `id` are done.
    pub fn handle_persisted(&mut self, id: PersistId) -> Result<(), RaftError> {
        if self.persist.complete(id) {
            self.apply_pending_cut()?;
            self.check_repaired();
            if self.role == Role::Leader {
                self.maybe_commit()?;
            }
        }
        self.finish();
        Ok(())
    }

    /// The application has applied everything before `end` (also: "skip to `end`" after a
    /// snapshot restore or at restart).
    pub fn handle_applied(&mut self, end: Offset) {
        self.applied_end = self.applied_end.max(end);
        self.handed_out_end = self.handed_out_end.max(end);
    }

    /// One tick of logical time.
    pub fn handle_tick(&mut self) -> Result<(), RaftError> {
        self.election.elapsed += 1;
        if self.role == Role::Leader {
            self.tick_leader()?;
        } else if self.election.elapsed >= self.election.timeout && self.promotable() {
            self.campaign(self.cfg.pre_vote, false)?;
        }
        self.finish();
        Ok(())
    }

    /// Starts an election now (a pre-vote first, when configured) if this node may lead and
    /// follows no leader; otherwise does nothing. Used to elect a group's preferred leader at
    /// start instead of waiting out a whole election timeout, which is long (a second) so that
    /// a loaded machine's stalls do not depose healthy leaders. Safe at any time: any node may
    /// campaign, and with pre-vote one that cannot win disturbs nobody.
    pub fn campaign_now(&mut self) -> Result<(), RaftError> {
        if self.role != Role::Leader && self.leader.is_none() && self.promotable() {
            self.campaign(self.cfg.pre_vote, false)?;
        }
        self.finish();
        Ok(())
    }

    /// A message from a peer.
    pub fn handle_message(&mut self, msg: Message) -> Result<(), RaftError> {
        if msg.to == self.id && msg.from != self.id && self.step_term(&msg) {
            self.dispatch(msg)?;
        }
        self.finish();
        Ok(())
    }

    fn dispatch(&mut self, msg: Message) -> Result<(), RaftError> {
        let (from, term) = (msg.from, msg.term);
        match msg.body {
            Body::VoteRequest(r) => self.handle_vote_request(from, term, r),
            Body::VoteResponse(r) => self.handle_vote_response(from, term, r)?,
            Body::Append(a) => self.handle_append(from, a)?,
            Body::AppendResponse(r) => self.handle_append_response(from, r)?,
            Body::Heartbeat(h) => self.handle_heartbeat(from, h),
            Body::HeartbeatResponse(r) => self.handle_heartbeat_response(from, r)?,
            Body::TimeoutNow => self.handle_timeout_now(from)?,
            Body::InstallSnapshot(s) => self.handle_install_snapshot(from, s)?,
        }
        Ok(())
    }

    /// Term bookkeeping common to every message. Returns whether to go on handling it.
    fn step_term(&mut self, msg: &Message) -> bool {
        if msg.term > self.term {
            match &msg.body {
                Body::VoteRequest(r) => {
                    if !r.transfer && self.in_lease() {
                        return false;
                    }
                    if r.pre_vote {
                        return true;
                    }
                    self.become_follower(msg.term, None);
                }
                Body::VoteResponse(r) if r.pre_vote && r.granted => return true,
                Body::Append(_) | Body::Heartbeat(_) | Body::InstallSnapshot(_) => {
                    self.become_follower(msg.term, Some(msg.from));
                }
                _ => self.become_follower(msg.term, None),
            }
            return true;
        }
        if msg.term < self.term {
            self.answer_stale(msg);
            return false;
        }
        true
    }

    /// A message from an older term: tell a stale leader or pre-candidate about our term.
    fn answer_stale(&mut self, msg: &Message) {
        let body = match &msg.body {
            Body::Append(_) | Body::Heartbeat(_) | Body::InstallSnapshot(_) => {
                Body::HeartbeatResponse(crate::message::HeartbeatResponse {
                    read_ctx: 0,
                    repair_from: None,
                })
            }
            Body::VoteRequest(r) if r.pre_vote => {
                Body::VoteResponse(crate::message::VoteResponse {
                    pre_vote: true,
                    granted: false,
                })
            }
            _ => return,
        };
        self.send_now(msg.from, body);
    }

    fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.leader.is_some()
            && self.election.elapsed < self.cfg.election_ticks
    }

    fn promotable(&self) -> bool {
        self.membership().is_voter(self.id) && self.corrupt.is_none()
    }

    // ----- shared helpers -----

    fn finish(&mut self) {
        let hs = self.hard_state();
        self.persist.flush(hs, self.log.end());
    }

    /// Queue a message that needs no durability.
    fn send_now(&mut self, to: NodeId, body: Body) {
        self.outbox.push(
            0,
            Message {
                from: self.id,
                to,
                term: self.term,
                body,
            },
        );
    }

    /// Queue a message that must wait until the current state is durable.
    fn send_durable(&mut self, to: NodeId, term: Term, body: Body) {
        let after = self.persist.barrier();
        self.outbox.push(
            after,
            Message {
                from: self.id,
                to,
                term,
                body,
            },
        );
    }

    fn reset_election_timer(&mut self) {
        self.election.elapsed = 0;
        let base = u64::from(self.cfg.election_ticks.max(1));
        self.election.timeout = (base + self.rng.below(base)) as u32;
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.persist.mark_hard_state();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.drop_leader_state();
        self.election.votes.clear();
        self.reset_election_timer();
    }

    /// Appends entries made by this leader to the local log.
    fn append_local(&mut self, entry: Entry) -> Result<(), RaftError> {
        if let EntryKind::Config(m) = entry.kind() {
            self.members.push(entry.first(), m.clone());
        }
        self.log.append(std::slice::from_ref(&entry))?;
        self.persist.mark_log();
        Ok(())
    }

    fn peers(&self) -> Vec<NodeId> {
        self.membership()
            .members()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Commit advanced to `self.commit_end`: react to configuration commits.
    fn on_commit(&mut self) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        self.broadcast_heartbeat();
        self.release_waiting_reads();
        self.maybe_step_down_removed();
        Ok(())
    }
}

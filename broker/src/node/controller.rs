//! The controller group as this node runs it, and the node's link to the controller leader.
//!
//! - **On a voter** (its id is in `--voters`), Raft group 0 runs on an owner thread of its own
//!   ([`spawn_group`]), like a partition's: a [`Replica`] over a durable [`crate::partition::RaftLog`]
//!   in `data_dir/controller/`. A command is one record (its [`Command::encode`] payload as the
//!   value) in a batch of its own, so the controller log is a floe-storage log like any
//!   partition's. After every persistence round the owner reads the newly committed batches
//!   back from the log and applies them, in order, to its [`ControllerState`], then publishes the
//!   state (an `Arc` on a watch channel) when its version moved. The proposer of a command is
//!   answered once it is committed *and* applied, with the command's own outcome.
//! - **Snapshots.** Once `snapshot_every` offsets were applied past the log start, the owner
//!   compacts the log there, keeping the state's checksummed snapshot encoding as the Raft
//!   snapshot (`raft.snapshot`): restart = snapshot + replay of the tail; a voter behind the new
//!   log start gets the snapshot through Raft's InstallSnapshot, and the owner restores from it
//!   when it sees its log start move past what it applied.
//! - **Liveness is leader-local.** A heartbeat from a registered, unfenced broker at its
//!   current epoch is answered by the leader from memory (the time it was heard), not written
//!   to the log: an idle cluster's controller log does not grow, and snapshots do not churn.
//!   Only what changes the metadata is replicated: registration, the heartbeat that unfences a
//!   fenced broker, and the leader's fencing decisions. A new leader knows nobody's last
//!   heartbeat, so it counts everyone as heard when it took over and fences after the session
//!   timeout as before.
//! - **The link** ([`ControllerLink`]) is how the rest of the node reaches the controller:
//!   [`ControllerLink::propose`] proposes locally on the leader, or makes a `ControllerCall` to the
//!   leader it knows (following `NotController` hints, trying each voter when it knows none); on
//!   a node that is not a voter a fetch loop long-polls the leader with `ControllerFetch` for the
//!   whole state whenever its version rises. Either way the node sees the metadata as one
//!   `watch` of `Arc<ControllerState>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_protocol::ErrorCode;
use floe_protocol::batch::{BatchBuilder, BatchHeader, BatchLimits, BatchView, CompressionCodec};
use floe_protocol::peer::{
    ControllerCallRequest, ControllerCallResponse, ControllerFetchRequest, ControllerFetchResponse,
    PeerRequest, PeerResponse,
};
use floe_raft::{Message, Offset, StateMachine};
use tokio::sync::{oneshot, watch};

use crate::controller::{Applied, Command, ControllerError, ControllerState};
use crate::partition::{Acks, ProduceError, Replica};
use crate::peer::PeerTransport;

/// The controller's Raft group id (the protocol reserves 0 for it).
pub(crate) const CONTROLLER_GROUP: u64 = 0;

/// How long one remote controller call may take.
const CALL_WAIT: Duration = Duration::from_secs(10);
/// How long a broker's fetch long-poll is held by the leader.
const FETCH_HOLD: Duration = Duration::from_secs(3);
/// Results of applied commands kept for proposers that have not been answered yet.
const MAX_KEPT_RESULTS: usize = 65_536;

/// What a proposed command came to once it was committed and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `None`, or the command's refusal as a client sees it.
    pub(crate) code: ErrorCode,
    /// Why it was refused.
    pub(crate) message: Option<String>,
    /// Registration epoch, topic id, first producer id, or bumped producer epoch (else 0).
    pub(crate) value: u64,
    /// Producer-id block size (else 0).
    pub(crate) count: u32,
    /// The metadata version after it applied.
    pub(crate) version: u64,
}

impl Outcome {
    fn of(result: &Result<Applied, ControllerError>, version: u64) -> Outcome {
        let (value, count) = match result {
            Ok(Applied::BrokerRegistered { epoch }) => (*epoch, 0),
            Ok(Applied::TopicCreated { id }) => (id.0, 0),
            Ok(Applied::ProducerIdsAllocated(b)) => (b.first, b.count),
            Ok(Applied::ProducerEpochBumped { epoch }) => (u64::from(*epoch), 0),
            _ => (0, 0),
        };
        Outcome {
            code: result
                .as_ref()
                .map_or_else(|e| e.code(), |_| ErrorCode::None),
            message: result.as_ref().err().map(|e| e.to_string()),
            value,
            count,
            version,
        }
    }

    fn to_response(&self) -> ControllerCallResponse {
        ControllerCallResponse {
            error: self.code,
            leader: None,
            message: self.message.clone(),
            value: self.value,
            count: self.count,
            version: self.version,
        }
    }
}

/// Why a proposal has no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProposeError {
    /// This voter does not lead the controller group.
    #[error("not the controller leader (leader: {leader:?})")]
    NotController {
        /// The leader it knows of.
        leader: Option<u64>,
    },
    /// The outcome is unknown (leadership lost, owner stopped, no answer in time): the
    /// command may still apply.
    #[error("controller unavailable: {0}")]
    Unavailable(String),
}

/// Commands the controller group's owner accepts.
#[derive(Debug)]
pub(crate) enum GroupCmd {
    /// Propose a command (on the leader); answered once applied.
    Propose {
        command: Command,
        reply: oneshot::Sender<Result<Outcome, ProposeError>>,
    },
    /// A Raft message from a peer voter.
    Peer(Message),
    /// Close the replica cleanly and end the thread.
    Stop,
}

/// The controller group's published role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupStatus {
    pub(crate) is_leader: bool,
    pub(crate) leader: Option<u64>,
    pub(crate) term: u64,
    /// The controller log's start (moves with every compaction or installed snapshot).
    pub(crate) log_start: u64,
    /// The controller log's commit end.
    pub(crate) commit_end: u64,
    /// Heartbeats this replica answered from memory as leader (since it started).
    pub(crate) heartbeats_heard: u64,
    /// The replica failed and serves nothing until the node restarts.
    pub(crate) failed: bool,
}

/// The handle to the controller group's owner thread.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    tx: SyncSender<GroupCmd>,
    pub(crate) status: watch::Receiver<GroupStatus>,
}

impl GroupHandle {
    /// Queues `cmd` without blocking (`false`: full or gone).
    pub(crate) fn send(&self, cmd: GroupCmd) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Queues a stop, waiting for room.
    pub(crate) fn stop(&self) {
        loop {
            match self.tx.try_send(GroupCmd::Stop) {
                Err(TrySendError::Full(_)) => std::thread::sleep(Duration::from_millis(1)),
                _ => return,
            }
        }
    }
}

/// Settings of the controller group's owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupOptions {
    pub(crate) tick: Duration,
    /// Compact once this many offsets were applied past the log start.
    pub(crate) snapshot_every: u64,
    /// The leader fences a broker it has not heard from for this many milliseconds.
    pub(crate) fence_after_ms: u64,
}

/// Starts the owner thread of the controller replica `replica`; the applied state is published
/// on `state`.
pub(crate) fn spawn_group(
    replica: Replica,
    transport: Arc<PeerTransport>,
    state: watch::Sender<Arc<ControllerState>>,
    options: GroupOptions,
) -> std::io::Result<(GroupHandle, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(4096);
    let (status_tx, status_rx) = watch::channel(GroupStatus::default());
    let owner = Owner {
        replica,
        transport,
        state_tx: state,
        status: status_tx,
        machine: ControllerState::new(),
        applied: 0,
        published: None,
        waiting: BTreeMap::new(),
        results: BTreeMap::new(),
        next_token: 0,
        started: Instant::now(),
        leader_since: None,
        fencing: HashSet::new(),
        heard: HashMap::new(),
        heartbeats_heard: 0,
        last_fence_check: 0,
        failed: false,
        options,
    };
    let thread = std::thread::Builder::new()
        .name("floe-controller".into())
        .spawn(move || owner.run(rx))?;
    Ok((
        GroupHandle {
            tx,
            status: status_rx,
        },
        thread,
    ))
}

type Reply = oneshot::Sender<Result<Outcome, ProposeError>>;

struct Owner {
    replica: Replica,
    transport: Arc<PeerTransport>,
    state_tx: watch::Sender<Arc<ControllerState>>,
    status: watch::Sender<GroupStatus>,
    machine: ControllerState,
    /// Every committed batch below this offset is applied to `machine`.
    applied: u64,
    /// The version last published.
    published: Option<u64>,
    /// Proposals by token.
    waiting: BTreeMap<u64, Reply>,
    /// Outcomes of applied commands by base offset, until their proposer's ack comes.
    results: BTreeMap<u64, Outcome>,
    next_token: u64,
    /// Heartbeat stamps' clock: milliseconds since this owner started (each stamp is only
    /// compared by the leader that made it: its term is in the stamp).
    started: Instant,
    /// (term, clock) when this replica started leading its current term.
    leader_since: Option<(u64, u64)>,
    /// Fences proposed this term and not applied yet: (broker, epoch).
    fencing: HashSet<(u64, u64)>,
    /// On the leader, per broker: the clock when this leader last heard its heartbeat
    /// (memory only; cleared with every new term).
    heard: HashMap<u64, u64>,
    /// Heartbeats answered from `heard` (for the status).
    heartbeats_heard: u64,
    last_fence_check: u64,
    failed: bool,
    options: GroupOptions,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A command as the record batch the controller log stores: one record, the command payload
/// as its value.
fn command_batch(command: &Command) -> Result<Bytes, ProposeError> {
    let payload = command.encode();
    let mut b = BatchBuilder::new(CompressionCodec::None);
    b.append(0, None, Some(&payload), &[])
        .and_then(|()| b.finish())
        .map_err(|e| ProposeError::Unavailable(format!("encoding the command: {e}")))
}

impl Owner {
    fn run(mut self, rx: Receiver<GroupCmd>) {
        let tick = self.options.tick;
        self.restore_from_snapshot();
        self.round();
        let mut next_tick = Instant::now() + tick;
        'outer: loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(GroupCmd::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
            while let Ok(cmd) = rx.try_recv() {
                if matches!(cmd, GroupCmd::Stop) {
                    break 'outer;
                }
                self.handle(cmd);
            }
            if Instant::now() >= next_tick {
                next_tick += tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + tick;
                }
                if !self.failed {
                    let r = self.replica.tick(now_ms());
                    self.check(r.map_err(|e| e.to_string()));
                }
            }
            self.round();
        }
        self.fail_waiting("the controller stopped");
        if !self.failed
            && let Err(e) = self.replica.close()
        {
            tracing::error!(error = %e, "closing the controller replica failed");
        }
    }

    fn check(&mut self, r: Result<(), String>) {
        if let Err(e) = r {
            tracing::error!(error = %e, "controller replica failed; it serves nothing until restarted");
            self.failed = true;
        }
    }

    fn fail_waiting(&mut self, why: &str) {
        for (_, reply) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(Err(ProposeError::Unavailable(why.into())));
        }
    }

    fn handle(&mut self, cmd: GroupCmd) {
        match cmd {
            GroupCmd::Propose { command, reply } => self.propose(command, reply),
            GroupCmd::Peer(m) => {
                if !self.failed {
                    let r = self.replica.handle_message(m);
                    self.check(r.map_err(|e| e.to_string()));
                }
            }
            GroupCmd::Stop => {}
        }
    }

    fn propose(&mut self, mut command: Command, reply: Reply) {
        if self.failed {
            let _ = reply.send(Err(ProposeError::Unavailable("controller failed".into())));
            return;
        }
        if !self.replica.is_leader() {
            let leader = self.replica.leader().map(|n| n.0);
            let _ = reply.send(Err(ProposeError::NotController { leader }));
            return;
        }
        if let Command::BrokerHeartbeat { broker, epoch, .. } = &command
            && self
                .machine
                .broker(*broker)
                .is_some_and(|b| b.epoch == *epoch && !b.fenced)
        {
            // A live broker at its epoch: nothing in the metadata changes, so the leader only
            // notes when it heard it. Anything else (unknown broker, stale epoch, fenced) goes
            // through the log below, for an answer every voter agrees on (and the unfencing).
            self.heard.insert(broker.0, self.clock());
            self.heartbeats_heard += 1;
            let outcome = Outcome::of(&Ok(Applied::HeartbeatRecorded), self.machine.version());
            let _ = reply.send(Ok(outcome));
            return;
        }
        // Replicated heartbeats (and registrations) are stamped by the leader: its term and
        // clock (the state reads no clock).
        let (term, tick) = (self.replica.term().0, self.clock());
        match &mut command {
            Command::RegisterBroker {
                term: t, tick: k, ..
            }
            | Command::BrokerHeartbeat {
                term: t, tick: k, ..
            } => {
                *t = term;
                *k = tick;
            }
            _ => {}
        }
        let batch = match command_batch(&command) {
            Ok(b) => b,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        match self.replica.produce(token, batch, Acks::All) {
            Ok(()) => {
                self.waiting.insert(token, reply);
            }
            Err(ProduceError::NotLeader { leader }) => {
                let leader = leader.map(|n| n.0);
                let _ = reply.send(Err(ProposeError::NotController { leader }));
            }
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Unavailable(e.to_string())));
            }
        }
    }

    /// Persist, send, apply, answer, publish, maybe snapshot.
    fn round(&mut self) {
        if !self.failed {
            let r = self.replica.process();
            self.check(r.map_err(|e| e.to_string()));
        }
        while let Some(m) = self.replica.poll_message() {
            // A full or unknown peer drops the message; Raft retransmits.
            let _ = self.transport.send(CONTROLLER_GROUP, m);
        }
        if !self.failed {
            self.restore_from_snapshot();
            if let Err(e) = self.apply_committed() {
                self.check(Err(e));
            }
        }
        while let Some(ack) = self.replica.poll_ack() {
            let Some(reply) = self.waiting.remove(&ack.token) else {
                continue;
            };
            let answer = match ack.result {
                Ok(p) => self.results.remove(&p.base_offset).ok_or_else(|| {
                    ProposeError::Unavailable("the command's outcome is unknown".into())
                }),
                Err(ProduceError::NotLeader { leader } | ProduceError::Overwritten { leader }) => {
                    Err(ProposeError::NotController {
                        leader: leader.map(|n| n.0),
                    })
                }
                Err(e) => Err(ProposeError::Unavailable(e.to_string())),
            };
            let _ = reply.send(answer);
        }
        if self.waiting.is_empty() {
            self.results.clear();
        }
        if self.failed {
            self.fail_waiting("controller failed");
        }
        if !self.failed {
            self.fence_silent();
            self.maybe_snapshot();
        }
        let status = GroupStatus {
            is_leader: self.replica.is_leader() && !self.failed,
            leader: self.replica.leader().map(|n| n.0),
            term: self.replica.term().0,
            log_start: self.replica.log_start(),
            commit_end: self.replica.high_watermark(),
            heartbeats_heard: self.heartbeats_heard,
            failed: self.failed,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        if self.published != Some(self.machine.version()) {
            self.published = Some(self.machine.version());
            self.state_tx.send_replace(Arc::new(self.machine.clone()));
        }
    }

    /// The log starts past what was applied (at open after a compaction, or after an
    /// InstallSnapshot from the leader): the state is the snapshot's.
    fn restore_from_snapshot(&mut self) {
        let start = self.replica.log_start();
        if start <= self.applied {
            return;
        }
        let snapshot = match floe_raft::Log::snapshot(self.replica.raft().log()) {
            Ok(s) => s,
            Err(e) => return self.check(Err(format!("reading the controller snapshot: {e}"))),
        };
        match ControllerState::from_snapshot(&snapshot.data) {
            Ok(state) => {
                self.machine = state;
                self.applied = start;
            }
            Err(e) => self.check(Err(format!("the controller snapshot does not decode: {e}"))),
        }
    }

    /// Applies every committed command not applied yet, in log order.
    fn apply_committed(&mut self) -> Result<(), String> {
        let hw = self.replica.high_watermark();
        while self.applied < hw {
            let read = self
                .replica
                .read_committed(self.applied, 1 << 20)
                .map_err(|e| format!("reading the controller log: {e}"))?;
            if read.next_offset <= self.applied {
                return Err("the controller log did not advance".into());
            }
            for batch in read.batches() {
                let h = BatchHeader::parse(&batch).map_err(|e| e.to_string())?;
                if h.is_control() {
                    continue;
                }
                let view = BatchView::parse(batch, BatchLimits::default())
                    .map_err(|e| format!("controller batch at {}: {e}", h.base_offset))?;
                let records = view.records().map_err(|e| e.to_string())?;
                for record in records.iter() {
                    let record = record.map_err(|e| e.to_string())?;
                    let payload = Bytes::copy_from_slice(record.value.unwrap_or_default());
                    // A command that does not decode is a typed error result, like any
                    // refused command: every voter computes the same.
                    let result = self.machine.apply(Offset(h.base_offset), &payload);
                    if !self.waiting.is_empty() {
                        if self.results.len() >= MAX_KEPT_RESULTS {
                            self.results.pop_first();
                        }
                        let outcome = Outcome::of(&result, self.machine.version());
                        self.results.insert(h.base_offset, outcome);
                    }
                }
            }
            self.applied = read.next_offset;
        }
        Ok(())
    }

    /// Milliseconds since this owner started: wall time, because a loaded machine runs Raft
    /// ticks late, and a session timeout is a promise in seconds.
    fn clock(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// On the leader: fences the brokers it has not heard from for `fence_after_ms`
    /// (placement then leaves them out until they heartbeat again). Heard means a heartbeat
    /// this leader answered from memory, or a replicated stamp (registration, unfencing) of
    /// its own term; a broker it has heard nothing from counts from when it took over.
    fn fence_silent(&mut self) {
        if !self.replica.is_leader() {
            self.leader_since = None;
            return;
        }
        let term = self.replica.term().0;
        let now = self.clock();
        let since = match self.leader_since {
            Some((t, since)) if t == term => since,
            _ => {
                self.leader_since = Some((term, now));
                self.fencing.clear();
                self.heard.clear();
                now
            }
        };
        if now < self.last_fence_check + 100 {
            return;
        }
        self.last_fence_check = now;
        let me = self.replica.id().0;
        let limit = self.options.fence_after_ms.max(1);
        let machine = &self.machine;
        let heard_at = &self.heard;
        // Forget the fences that applied (or whose registration moved on).
        self.fencing.retain(|(id, epoch)| {
            machine
                .broker(floe_raft::NodeId(*id))
                .is_some_and(|b| b.epoch == *epoch && !b.fenced)
        });
        let silent: Vec<(u64, u64)> = machine
            .brokers()
            .filter(|b| !b.fenced && b.id.0 != me)
            .filter(|b| {
                let stamped = if b.last_heartbeat.term == term {
                    b.last_heartbeat.tick
                } else {
                    since
                };
                let heard = heard_at.get(&b.id.0).map_or(stamped, |h| stamped.max(*h));
                now.saturating_sub(heard) > limit
            })
            .map(|b| (b.id.0, b.epoch))
            .filter(|k| !self.fencing.contains(k))
            .collect();
        for (id, epoch) in silent {
            tracing::info!(
                broker = id,
                epoch,
                "fencing a broker that stopped heartbeating"
            );
            self.fencing.insert((id, epoch));
            // Nobody waits for the answer: the next check sees whether it applied.
            let (reply, _) = oneshot::channel();
            let command = Command::FenceBroker {
                broker: floe_raft::NodeId(id),
                epoch,
            };
            self.propose(command, reply);
        }
    }

    fn maybe_snapshot(&mut self) {
        let start = self.replica.log_start();
        if self.applied < start + self.options.snapshot_every.max(1) {
            return;
        }
        let data = self.machine.snapshot();
        match self.replica.compact_with_snapshot(self.applied, data) {
            Ok(()) => tracing::debug!(up_to = self.applied, "controller log compacted"),
            Err(e) => tracing::warn!(error = %e, "compacting the controller log failed"),
        }
    }
}

/// How this node reaches the controller. See the module docs.
#[derive(Debug)]
pub(crate) struct ControllerLink {
    me: u64,
    voters: Vec<u64>,
    transport: Arc<PeerTransport>,
    /// The controller group's owner, on a voter.
    local: Option<GroupHandle>,
    state: watch::Sender<Arc<ControllerState>>,
    /// The controller leader last heard of (0: none).
    leader_hint: AtomicU64,
}

impl ControllerLink {
    pub(crate) fn new(
        me: u64,
        voters: Vec<u64>,
        transport: Arc<PeerTransport>,
        local: Option<GroupHandle>,
        state: watch::Sender<Arc<ControllerState>>,
    ) -> Self {
        ControllerLink {
            me,
            voters,
            transport,
            local,
            state,
            leader_hint: AtomicU64::new(0),
        }
    }

    /// The metadata as this node knows it.
    pub(crate) fn state(&self) -> Arc<ControllerState> {
        self.state.borrow().clone()
    }

    /// A watch of the metadata.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<ControllerState>> {
        self.state.subscribe()
    }

    /// The local controller group's owner (voters only).
    pub(crate) fn local(&self) -> Option<&GroupHandle> {
        self.local.as_ref()
    }

    /// The controller leader as far as this node knows.
    pub(crate) fn leader(&self) -> Option<u64> {
        if let Some(l) = &self.local {
            let s = *l.status.borrow();
            if s.leader.is_some() {
                return s.leader;
            }
        }
        match self.leader_hint.load(Ordering::Relaxed) {
            0 => None,
            l => Some(l),
        }
    }

    fn note_leader(&self, leader: Option<u64>) {
        self.leader_hint
            .store(leader.unwrap_or(0), Ordering::Relaxed);
    }

    /// Where to send the next call: the known leader, else the voters in turn.
    fn target(&self, attempt: usize) -> u64 {
        match self.leader() {
            Some(l) => l,
            None => self.voters[attempt % self.voters.len().max(1)],
        }
    }

    /// Proposes `command` on this voter's own controller replica.
    async fn propose_local(&self, command: Command) -> Result<Outcome, ProposeError> {
        let Some(local) = &self.local else {
            return Err(ProposeError::NotController { leader: None });
        };
        let (tx, rx) = oneshot::channel();
        if !local.send(GroupCmd::Propose { command, reply: tx }) {
            return Err(ProposeError::Unavailable("controller queue full".into()));
        }
        match tokio::time::timeout(CALL_WAIT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ProposeError::Unavailable("controller stopped".into())),
            Err(_) => Err(ProposeError::Unavailable("no outcome in time".into())),
        }
    }

    /// Proposes `command` to the controller leader, wherever it is, until `wait` runs out;
    /// returns its outcome once applied. A retried command whose first attempt's outcome was
    /// unknown may have applied twice (a create then answers `TopicAlreadyExists`).
    pub(crate) async fn propose(
        &self,
        command: Command,
        wait: Duration,
    ) -> Result<Outcome, ProposeError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut last = ProposeError::Unavailable("no controller leader".into());
        for attempt in 0.. {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let target = self.target(attempt);
            let r = if target == self.me {
                self.propose_local(command.clone()).await
            } else {
                self.call_remote(target, &command, deadline).await
            };
            match r {
                Ok(o) => return Ok(o),
                Err(ProposeError::NotController { leader }) => {
                    // A hint naming the node just asked (or nobody) is no news.
                    self.note_leader(leader.filter(|l| *l != target));
                    last = ProposeError::NotController { leader };
                }
                Err(e) => {
                    self.note_leader(None);
                    last = e;
                }
            }
            let pause = Duration::from_millis(if attempt < 5 { 20 } else { 100 });
            tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(deadline)).await;
        }
        Err(last)
    }

    async fn call_remote(
        &self,
        to: u64,
        command: &Command,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, ProposeError> {
        let request = PeerRequest::from(ControllerCallRequest {
            origin_node: self.me,
            command: command.encode(),
        });
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.transport.call(to, &request, wait.min(CALL_WAIT)).await {
            Ok(PeerResponse::ControllerCall(r)) => match r.error {
                ErrorCode::NotController => Err(ProposeError::NotController { leader: r.leader }),
                ErrorCode::RequestTimedOut if r.version == 0 => Err(ProposeError::Unavailable(
                    r.message.unwrap_or_else(|| "controller unavailable".into()),
                )),
                code => {
                    self.note_leader(Some(to));
                    Ok(Outcome {
                        code,
                        message: r.message,
                        value: r.value,
                        count: r.count,
                        version: r.version,
                    })
                }
            },
            Ok(_) => Err(ProposeError::Unavailable("unexpected answer".into())),
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// Answers a peer's `ControllerCall` (on a voter; others refuse the call).
    pub(crate) async fn serve_call(&self, r: ControllerCallRequest) -> ControllerCallResponse {
        let refused = |error, leader, message: String| ControllerCallResponse {
            error,
            leader,
            message: Some(message),
            value: 0,
            count: 0,
            version: 0,
        };
        let command = match Command::decode(&r.command) {
            Ok(c) => c,
            Err(e) => return refused(ErrorCode::InvalidRequest, None, e.to_string()),
        };
        match self.propose_local(command).await {
            Ok(o) => o.to_response(),
            Err(ProposeError::NotController { leader }) => refused(
                ErrorCode::NotController,
                leader,
                "not the controller leader".into(),
            ),
            Err(ProposeError::Unavailable(why)) => refused(ErrorCode::RequestTimedOut, None, why),
        }
    }

    /// Answers a peer's `ControllerFetch`: on the leader, the state once its version is above
    /// the caller's (or nothing after the hold time).
    pub(crate) async fn serve_fetch(&self, r: ControllerFetchRequest) -> ControllerFetchResponse {
        let leading = self.local.as_ref().map(|l| *l.status.borrow());
        if !leading.is_some_and(|s| s.is_leader) {
            return ControllerFetchResponse {
                error: ErrorCode::NotController,
                leader: leading.and_then(|s| s.leader),
                version: 0,
                state: Bytes::new(),
            };
        }
        let hold = Duration::from_millis(u64::from(r.max_wait_ms)).min(FETCH_HOLD);
        let mut rx = self.state.subscribe();
        let newer = async {
            loop {
                if rx.borrow_and_update().version() > r.known_version {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(hold, newer).await;
        let state = self.state();
        ControllerFetchResponse {
            error: ErrorCode::None,
            leader: Some(self.me),
            version: state.version(),
            state: if state.version() > r.known_version {
                state.snapshot()
            } else {
                Bytes::new()
            },
        }
    }

    /// A node that is not a voter: keeps its metadata in step with the leader's, forever.
    pub(crate) async fn fetch_loop(self: Arc<Self>) {
        let mut attempt = 0usize;
        loop {
            let known = self.state().version();
            let target = self.target(attempt);
            let request = PeerRequest::from(ControllerFetchRequest {
                origin_node: self.me,
                known_version: known,
                max_wait_ms: FETCH_HOLD.as_millis() as u32,
            });
            let wait = FETCH_HOLD + Duration::from_secs(2);
            let ok = match self.transport.call(target, &request, wait).await {
                Ok(PeerResponse::ControllerFetch(r)) if r.error == ErrorCode::None => {
                    self.note_leader(Some(target));
                    if r.version > known && !r.state.is_empty() {
                        match ControllerState::from_snapshot(&r.state) {
                            Ok(s) if s.version() == r.version => {
                                self.state.send_replace(Arc::new(s));
                            }
                            Ok(_) | Err(_) => {
                                tracing::warn!(from = target, "controller state does not decode");
                            }
                        }
                    }
                    true
                }
                Ok(PeerResponse::ControllerFetch(r)) => {
                    self.note_leader(r.leader.filter(|l| *l != target));
                    false
                }
                Ok(_) | Err(_) => {
                    self.note_leader(None);
                    false
                }
            };
            if !ok {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

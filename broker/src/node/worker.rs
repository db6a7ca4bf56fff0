//! One partition replica's owner: a dedicated std thread that alone holds the [`Replica`].
//!
//! `Replica::process` fsyncs synchronously, so replicas never run on the async runtime's
//! threads. Everyone else talks to the owner through its command channel ([`Cmd`]) and
//! watches its published [`PartitionStatus`] (role, leader, high watermark), which async
//! readers (fetch long-polls, subscriptions) wait on.
//!
//! On `Stop` a leader hands its leadership over first (see [`Cmd::Stop`]); once per tick the
//! owner samples the metrics that move without a status change (elections, commit lag, log
//! size, and on the leader whether every follower keeps up: [`InSync`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_raft::{Message, NodeId};
use floe_storage::ReadBatches;
use tokio::sync::{Notify, oneshot, watch};

use crate::partition::{Acks, FetchError, MoveStep, ProduceError, Produced, Replica};
use crate::peer::PeerTransport;
use crate::telemetry;

/// Commands a partition owner accepts.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Propose one batch; the answer comes when it is acknowledged (per `acks`).
    Produce {
        batch: Bytes,
        acks: Acks,
        reply: oneshot::Sender<Result<Produced, ProduceError>>,
    },
    /// A Raft message from a peer replica.
    Peer(Message),
    /// Committed batches from `offset` (zero-copy `Bytes` from the log).
    Read {
        offset: u64,
        max_bytes: usize,
        reply: oneshot::Sender<Result<ReadBatches, FetchError>>,
    },
    /// The first committed batch whose max timestamp is at or after `ts`: its base offset
    /// and max timestamp (`None`: no such batch below the high watermark).
    LookupTime {
        ts: i64,
        reply: oneshot::Sender<Option<(u64, i64)>>,
    },
    /// Close the replica cleanly and end the thread. A leader first hands its leadership to
    /// the most up-to-date follower and waits (at most [`HANDOVER_WAIT`]) until that follower
    /// leads, so producers move to it at once instead of waiting out an election timeout.
    Stop,
    /// Close the replica at once, without handing leadership over: its partition is being
    /// deleted (every replica is closing).
    Discard,
}

/// What the owner publishes after every round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PartitionStatus {
    /// This replica leads its term.
    pub(crate) is_leader: bool,
    /// The leader it knows of.
    pub(crate) leader: Option<u64>,
    /// Its current term.
    pub(crate) term: u64,
    /// Commit end: every offset below it is committed.
    pub(crate) high_watermark: u64,
    /// The log start.
    pub(crate) log_start: u64,
    /// The log end: appended, not necessarily committed. A fetch between the high watermark
    /// and here waits; only one past it is out of range. It moves with every append, so a
    /// change of it alone wakes nobody (see [`PartitionStatus::same_news`]).
    pub(crate) log_end: u64,
    /// The replica failed (fsync error, damage) and serves nothing until reopened.
    pub(crate) failed: bool,
    /// The partition was moved off this node and this replica is out of its group: not in
    /// the target replicas, not leading, and no leader has written to it for
    /// [`DEPART_SILENCE`] (a leader stops addressing a replica as soon as it appends the
    /// configuration without it, so the removed replica never sees that entry itself). The
    /// node then stops it and deletes its data.
    pub(crate) departed: bool,
}

impl PartitionStatus {
    /// Equal but for the log end: what waiters (fetch long-polls, subscriptions) are woken
    /// for. They wait for the high watermark, so an append alone is no news to them.
    fn same_news(&self, other: &PartitionStatus) -> bool {
        PartitionStatus {
            log_end: other.log_end,
            ..*self
        } == *other
    }
}

/// The handle others hold: the command channel and the status watch.
#[derive(Debug)]
pub(crate) struct PartitionHandle {
    tx: SyncSender<Cmd>,
    pub(crate) status: watch::Receiver<PartitionStatus>,
}

/// Why a command did not reach the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// Its queue is full.
    Full,
    /// The owner has stopped.
    Gone,
}

impl PartitionHandle {
    /// Queues `cmd` without blocking.
    pub(crate) fn send(&self, cmd: Cmd) -> Result<(), Busy> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => Busy::Full,
            TrySendError::Disconnected(_) => Busy::Gone,
        })
    }
}

/// Options of one owner thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerOptions {
    pub(crate) tick: Duration,
    pub(crate) queue: usize,
    /// The background scrub's rate over the sealed segments (0: off).
    pub(crate) scrub_bytes_per_sec: u64,
    /// Campaign as soon as the owner starts (the partition's preferred leader), instead of
    /// after an election timeout (see `NodeConfig::election_ticks`).
    pub(crate) campaign_at_start: bool,
}

impl WorkerOptions {
    /// The scrub's byte budget per tick (at least one byte when the scrub is on, so a very
    /// short tick still makes progress).
    fn scrub_budget(&self) -> u64 {
        if self.scrub_bytes_per_sec == 0 {
            return 0;
        }
        let per_tick = u128::from(self.scrub_bytes_per_sec) * self.tick.as_micros() / 1_000_000;
        u64::try_from(per_tick).unwrap_or(u64::MAX).max(1)
    }
}

/// The owner's per-partition metrics (handles resolved once, at spawn; no-ops without a
/// recorder).
struct StatusMetrics {
    term: metrics::Gauge,
    commit_end: metrics::Gauge,
    log_start: metrics::Gauge,
    is_leader: metrics::Gauge,
    failed: metrics::Gauge,
    leader_changes: metrics::Counter,
    persist_latency: metrics::Histogram,
    elections: metrics::Counter,
    commit_lag: metrics::Gauge,
    under_replicated: metrics::Gauge,
    log_bytes: metrics::Gauge,
    log_segments: metrics::Gauge,
    handovers: metrics::Counter,
    scrubbed_bytes: metrics::Counter,
    scrub_damage: metrics::Counter,
    /// The term of the last leader this replica learned of.
    leader_term: Option<u64>,
    /// The last term seen in the hard state (an election this replica started shows as a
    /// new term with its own vote).
    seen_term: u64,
}

impl StatusMetrics {
    fn new(topic: &str, partition: u32) -> Self {
        let labels = [
            ("topic", topic.to_owned()),
            ("partition", partition.to_string()),
        ];
        StatusMetrics {
            term: metrics::gauge!(telemetry::RAFT_TERM, &labels),
            commit_end: metrics::gauge!(telemetry::RAFT_COMMIT_END, &labels),
            log_start: metrics::gauge!(telemetry::RAFT_LOG_START, &labels),
            is_leader: metrics::gauge!(telemetry::RAFT_IS_LEADER, &labels),
            failed: metrics::gauge!(telemetry::PARTITION_FAILED, &labels),
            leader_changes: metrics::counter!(telemetry::RAFT_LEADER_CHANGES, &labels),
            persist_latency: metrics::histogram!(telemetry::STORAGE_FSYNC_LATENCY, &labels),
            elections: metrics::counter!(telemetry::RAFT_ELECTIONS, &labels),
            commit_lag: metrics::gauge!(telemetry::RAFT_COMMIT_LAG, &labels),
            under_replicated: metrics::gauge!(telemetry::PARTITION_UNDER_REPLICATED, &labels),
            log_bytes: metrics::gauge!(telemetry::STORAGE_LOG_BYTES, &labels),
            log_segments: metrics::gauge!(telemetry::STORAGE_LOG_SEGMENTS, &labels),
            handovers: metrics::counter!(telemetry::RAFT_SHUTDOWN_HANDOVERS, &labels),
            scrubbed_bytes: metrics::counter!(telemetry::STORAGE_SCRUBBED_BYTES, &labels),
            scrub_damage: metrics::counter!(telemetry::STORAGE_SCRUB_DAMAGE, &labels),
            leader_term: None,
            seen_term: 0,
        }
    }

    /// Samples what changes without a status change (once per tick): elections this replica
    /// started, commit lag, log size, replication health.
    fn sample(&mut self, r: &Replica, under_replicated: bool) {
        let hs = r.raft().hard_state();
        if hs.term.0 != self.seen_term {
            if hs.vote == Some(r.id()) {
                self.elections.increment(1);
            }
            self.seen_term = hs.term.0;
        }
        self.commit_lag
            .set(r.log_end().saturating_sub(r.high_watermark()) as f64);
        let storage = r.raft().log().storage();
        self.log_bytes.set(storage.size_bytes() as f64);
        self.log_segments.set(storage.segment_count() as f64);
        self.under_replicated
            .set(if under_replicated { 1.0 } else { 0.0 });
    }

    fn publish(&mut self, s: &PartitionStatus) {
        self.term.set(s.term as f64);
        self.commit_end.set(s.high_watermark as f64);
        self.log_start.set(s.log_start as f64);
        self.is_leader.set(if s.is_leader { 1.0 } else { 0.0 });
        self.failed.set(if s.failed { 1.0 } else { 0.0 });
        if s.leader.is_some() && self.leader_term != Some(s.term) {
            self.leader_term = Some(s.term);
            self.leader_changes.increment(1);
        }
    }
}

/// A partition's retention limits (`None`: no limit by that measure). The node resolves them
/// (the topic's setting over the node's default) and may change them while the owner runs
/// (an altered topic configuration), so the owner reads the current value at every check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Retention {
    pub(crate) bytes: Option<u64>,
    pub(crate) ms: Option<u64>,
}

/// Which partition an owner serves (metric labels).
#[derive(Debug, Clone)]
pub(crate) struct PartitionLabel {
    pub(crate) topic: String,
    pub(crate) partition: u32,
}

/// The partition's target replicas as the node's metadata says (node ids), shared between
/// the reconciler, which writes it, and the owner, which reads it every tick.
pub(crate) type Target = Arc<Mutex<Vec<u64>>>;

/// What the node may change while an owner runs: the target replicas and the retention limits.
pub(crate) struct Followed {
    pub(crate) target: Target,
    pub(crate) retention: watch::Receiver<Retention>,
}

/// Starts the owner thread of `replica`, sending its Raft messages through `transport`. On
/// the leader, the group's membership follows `followed.target` (see
/// [`Replica::move_toward`]).
pub(crate) fn spawn(
    label: PartitionLabel,
    group_id: u64,
    replica: Replica,
    transport: Arc<PeerTransport>,
    changed: Arc<Notify>,
    options: WorkerOptions,
    followed: Followed,
) -> std::io::Result<(PartitionHandle, JoinHandle<()>)> {
    let Followed { target, retention } = followed;
    let (tx, rx) = sync_channel(options.queue.max(1));
    let initial = status_of(&replica, false, false);
    let (status_tx, status_rx) = watch::channel(initial);
    let mut metrics = StatusMetrics::new(&label.topic, label.partition);
    metrics.seen_term = replica.term().0;
    metrics.publish(&initial);
    let persisted = (replica.log_end(), replica.term().0);
    let worker = Worker {
        group_id,
        replica,
        transport,
        status: status_tx,
        changed,
        waiting: HashMap::new(),
        next_token: 0,
        failed: false,
        metrics,
        persisted,
        in_sync: InSync::default(),
        stopping: None,
        next_retention: Instant::now() + RETENTION_EVERY,
        target,
        leader_heard: Instant::now(),
        move_transfer_at: None,
        retention,
    };
    let thread = std::thread::Builder::new()
        .name(format!("floe-{}-{}", label.topic, label.partition))
        .spawn(move || worker.run(rx, options))?;
    Ok((
        PartitionHandle {
            tx,
            status: status_rx,
        },
        thread,
    ))
}

type ProduceReply = oneshot::Sender<Result<Produced, ProduceError>>;

struct Worker {
    group_id: u64,
    replica: Replica,
    transport: Arc<PeerTransport>,
    status: watch::Sender<PartitionStatus>,
    changed: Arc<Notify>,
    waiting: HashMap<u64, ProduceReply>,
    next_token: u64,
    failed: bool,
    metrics: StatusMetrics,
    /// (log end, term) after the last `process`: a round that moves either persisted.
    persisted: (u64, u64),
    /// The leader's view of which followers keep up (under-replicated partitions).
    in_sync: InSync,
    /// Set once `Stop` arrived while leading: the handover in progress.
    stopping: Option<Handover>,
    /// When retention is checked next.
    next_retention: Instant,
    /// The target replica set (see [`spawn`]).
    target: Target,
    /// When the leader it knows last sent it something (or when it last led).
    leader_heard: Instant,
    /// When a move last asked to hand this leader's leadership over.
    move_transfer_at: Option<Instant>,
    /// The current retention limits.
    retention: watch::Receiver<Retention>,
}

/// A replica outside its partition's target that no leader has addressed for this long has
/// been removed from the group (see [`PartitionStatus::departed`]). Generous: a follower
/// still in the group hears from its leader every tick.
pub(crate) const DEPART_SILENCE: Duration = Duration::from_secs(5);

/// How often each replica checks its retention settings against its log.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(1);

/// The longest a stopping leader waits for its leadership to move before it closes anyway.
pub(crate) const HANDOVER_WAIT: Duration = Duration::from_secs(4);

/// A stopping leader hands over only to a follower it heard from this recently.
pub(crate) const HANDOVER_ALIVE: Duration = Duration::from_secs(2);

/// A follower is out of sync once it has not held everything committed (or not been heard
/// from) for this long.
pub(crate) const IN_SYNC_LAG: Duration = Duration::from_secs(5);

/// A stopping leader's handover of its leadership.
#[derive(Debug, Clone, Copy)]
struct Handover {
    /// Close anyway after this.
    deadline: Instant,
    /// When the last transfer was asked for (the core abandons one after an election
    /// timeout; then the next most up-to-date follower is asked).
    asked: Instant,
}

/// One follower as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct FollowerSync {
    /// The last moment at which the follower was known to hold everything committed then.
    caught_up_at: Instant,
    /// (commit end, when): the follower is caught up to `when` once it holds the commit end.
    mark: (u64, Instant),
    /// The last message from it.
    heard_at: Instant,
}

/// Tracks, on the leader, whether each follower keeps up: Kafka's "in sync" with time
/// bounds. A follower that holds a commit end recorded at some moment was caught up at that
/// moment; a follower steadily a little behind under load stays in sync, one that stopped
/// (or stopped answering) drops out after [`IN_SYNC_LAG`].
#[derive(Debug, Default)]
struct InSync {
    /// Empty off the leader; reset whenever this replica becomes leader (a new term).
    followers: HashMap<NodeId, FollowerSync>,
    term: Option<u64>,
}

impl InSync {
    /// Whether the leader heard from follower `id` within `within` of `now`.
    fn heard_within(&self, id: NodeId, now: Instant, within: Duration) -> bool {
        self.followers
            .get(&id)
            .is_some_and(|f| now.saturating_duration_since(f.heard_at) <= within)
    }

    fn heard(&mut self, from: NodeId, now: Instant) {
        if let Some(f) = self.followers.get_mut(&from) {
            f.heard_at = now;
        }
    }

    /// Updates the view; true when some voter has been out of sync for longer than `lag`.
    fn sample(&mut self, r: &Replica, now: Instant, lag: Duration) -> bool {
        if !r.is_leader() {
            self.followers.clear();
            self.term = None;
            return false;
        }
        let term = r.term().0;
        let me = r.id();
        let commit = r.high_watermark();
        if self.term != Some(term) {
            self.term = Some(term);
            self.followers.clear();
        }
        let raft = r.raft();
        let voters = raft.membership().voters();
        self.followers.retain(|id, _| voters.contains(id));
        let mut out = false;
        for &v in voters.iter().filter(|&&v| v != me) {
            let f = self.followers.entry(v).or_insert(FollowerSync {
                caught_up_at: now,
                mark: (commit, now),
                heard_at: now,
            });
            let held = raft.match_end(v).map_or(0, |o| o.0);
            if held >= commit {
                f.caught_up_at = now;
                f.mark = (commit, now);
            } else if held >= f.mark.0 {
                f.caught_up_at = f.caught_up_at.max(f.mark.1);
                f.mark = (commit, now);
            }
            let behind = now.saturating_duration_since(f.caught_up_at);
            let silent = now.saturating_duration_since(f.heard_at);
            out |= behind > lag || silent > lag;
        }
        out
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn status_of(r: &Replica, failed: bool, departed: bool) -> PartitionStatus {
    PartitionStatus {
        departed,
        is_leader: r.is_leader() && !failed,
        leader: r.leader().map(|n| n.0),
        term: r.term().0,
        high_watermark: r.high_watermark(),
        log_start: r.log_start(),
        log_end: r.log_end(),
        failed,
    }
}

impl Worker {
    fn send_messages(&mut self) {
        while let Some(m) = self.replica.poll_message() {
            // A full or unknown peer drops the message; Raft retransmits.
            let _ = self.transport.send(self.group_id, m);
        }
    }

    fn run(mut self, rx: Receiver<Cmd>, options: WorkerOptions) {
        let tick = options.tick;
        let scrub_budget = options.scrub_budget();
        if options.campaign_at_start {
            let r = self.replica.campaign_now();
            self.check(r);
            self.round();
        }
        let mut next_tick = Instant::now() + tick;
        'outer: loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Err(RecvTimeoutError::Disconnected) | Ok(Cmd::Discard) => break,
                Ok(Cmd::Stop) => {
                    if !self.begin_stop() {
                        break;
                    }
                }
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take everything queued: one `process` (one fsync) for the whole burst.
            while let Ok(cmd) = rx.try_recv() {
                if matches!(cmd, Cmd::Discard) {
                    break 'outer;
                }
                if matches!(cmd, Cmd::Stop) {
                    if !self.begin_stop() {
                        break 'outer;
                    }
                    continue;
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
                    self.check(r);
                }
                self.reconfigure(tick);
                if Instant::now() >= self.next_retention {
                    self.next_retention = Instant::now() + RETENTION_EVERY;
                    self.apply_retention();
                }
                self.scrub(scrub_budget);
                let out = self
                    .in_sync
                    .sample(&self.replica, Instant::now(), IN_SYNC_LAG);
                self.metrics.sample(&self.replica, out);
            }
            self.round();
            if self.stopping.is_some() && self.handover_done(tick) {
                break;
            }
        }
        self.waiting.clear();
        if !self.failed
            && let Err(e) = self.replica.close()
        {
            tracing::error!(group = self.group_id, error = %e, "closing the replica failed");
        }
    }

    /// `Stop` arrived: true when this replica leads a group with other voters and started
    /// handing its leadership over (the loop then runs until [`Worker::handover_done`]),
    /// false when it can close at once.
    fn begin_stop(&mut self) -> bool {
        if self.stopping.is_some() {
            return true;
        }
        if self.failed || self.transfer_target().is_none() {
            return false;
        }
        let now = Instant::now();
        self.stopping = Some(Handover {
            deadline: now + HANDOVER_WAIT,
            asked: now,
        });
        self.ask_transfer();
        true
    }

    /// The most up-to-date follower heard from within [`HANDOVER_ALIVE`] (a transfer to a
    /// follower that is down could only time out; with none alive the leader closes at once).
    fn transfer_target(&self) -> Option<NodeId> {
        let now = Instant::now();
        self.replica
            .most_caught_up_follower(|id| self.in_sync.heard_within(id, now, HANDOVER_ALIVE))
    }

    fn ask_transfer(&mut self) {
        let Some(to) = self.transfer_target() else {
            return;
        };
        match self.replica.transfer_leadership(to) {
            Ok(()) => {
                tracing::info!(
                    group = self.group_id,
                    to = to.0,
                    "stopping: handing leadership over"
                );
            }
            Err(e) => {
                tracing::debug!(group = self.group_id, error = %e, "leadership transfer refused");
            }
        }
    }

    /// During a stop: whether the handover is over (another replica leads, or this one
    /// failed, or the wait ran out); asks again when the core abandoned a transfer.
    fn handover_done(&mut self, tick: Duration) -> bool {
        let Some(h) = self.stopping else {
            return true;
        };
        let me = self.replica.id();
        if self.failed {
            return true;
        }
        if !self.replica.is_leader() && self.replica.leader().is_some_and(|l| l != me) {
            self.metrics.handovers.increment(1);
            tracing::info!(
                group = self.group_id,
                leader = self.replica.leader().map(|l| l.0),
                term = self.replica.term().0,
                "stopping: leadership handed over"
            );
            return true;
        }
        let now = Instant::now();
        if self.replica.is_leader() && self.transfer_target().is_none() {
            // Every follower went quiet (stopped too, as when a whole cluster shuts down):
            // nobody to hand over to.
            tracing::info!(
                group = self.group_id,
                "stopping: no live follower to hand leadership to"
            );
            return true;
        }
        if now >= h.deadline {
            tracing::warn!(
                group = self.group_id,
                "stopping: leadership not handed over in time; closing anyway"
            );
            return true;
        }
        // The core gives a transfer one election timeout; ask again (the most up-to-date
        // follower may have changed) when it was abandoned while this replica still leads.
        let abandon = tick * (self.replica.election_ticks() + 1);
        if self.replica.is_leader() && now.saturating_duration_since(h.asked) > abandon {
            self.stopping = Some(Handover { asked: now, ..h });
            self.ask_transfer();
            self.round();
        }
        false
    }

    /// Retention (the current [`Retention`] limits): every replica discards, on
    /// its own, the sealed segments its settings let go, up to its high watermark, through
    /// Raft's compaction, so a follower that later needs what was discarded is caught up from
    /// the leader's log start.
    fn apply_retention(&mut self) {
        if self.failed {
            return;
        }
        let hw = self.replica.high_watermark();
        let limits = *self.retention.borrow();
        let storage = self.replica.raft().log().storage();
        let Some(cut) = storage.retention_point_with(limits.bytes, limits.ms, now_ms(), hw) else {
            return;
        };
        if cut <= self.replica.log_start() {
            return;
        }
        match self.replica.compact(cut) {
            Ok(()) => {
                tracing::debug!(
                    group = self.group_id,
                    log_start = cut,
                    "retention discarded old segments"
                );
            }
            Err(crate::partition::CompactError::Fatal(e)) => {
                tracing::error!(group = self.group_id, error = %e, "retention failed; the replica stops");
                self.failed = true;
            }
            Err(e) => {
                tracing::debug!(group = self.group_id, error = %e, "retention skipped");
            }
        }
    }

    /// One step of the background scrub (`budget` bytes of sealed segments, 0: off): damage
    /// it finds is reported to Raft by the replica (which stops trusting its log from there
    /// and re-fetches it from the leader; the next `round` persists that).
    fn scrub(&mut self, budget: u64) {
        if self.failed || budget == 0 {
            return;
        }
        match self.replica.scrub_step(budget) {
            Ok(progress) => {
                self.metrics
                    .scrubbed_bytes
                    .increment(progress.scanned_bytes);
                for range in &progress.found {
                    self.metrics.scrub_damage.increment(1);
                    tracing::warn!(
                        group = self.group_id,
                        start = range.start,
                        end = range.end,
                        segment = range.segment,
                        kind = ?range.kind,
                        "the scrub found damage; repairing it from the leader"
                    );
                }
            }
            Err(e) if self.replica.is_stopped() => self.check(Err(e)),
            Err(e) => {
                // A read error: nothing was changed; the next tick tries again.
                tracing::warn!(group = self.group_id, error = %e, "scrub step failed");
            }
        }
    }

    fn check(&mut self, r: Result<(), crate::partition::ReplicaError>) {
        if let Err(e) = r {
            tracing::error!(group = self.group_id, error = %e, "replica failed; it serves nothing until restarted");
            self.failed = true;
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Produce { batch, acks, reply } => {
                let token = self.next_token;
                self.next_token += 1;
                match self.replica.produce(token, batch, acks) {
                    Ok(()) => {
                        self.waiting.insert(token, reply);
                    }
                    Err(e) => {
                        if matches!(e, ProduceError::Fatal(_)) {
                            self.failed = true;
                        }
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Peer(m) => {
                self.in_sync.heard(m.from, Instant::now());
                let from = m.from;
                if !self.failed {
                    let r = self.replica.handle_message(m);
                    self.check(r);
                }
                if self.replica.leader() == Some(from) {
                    self.leader_heard = Instant::now();
                }
            }
            Cmd::Read {
                offset,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.replica.read_committed(offset, max_bytes));
            }
            Cmd::LookupTime { ts, reply } => {
                let hw = self.replica.high_watermark();
                let found = match self.replica.raft().log().storage().lookup_time(ts) {
                    Ok(Some(h)) if h.base_offset < hw => Some((h.base_offset, h.max_timestamp)),
                    _ => None,
                };
                let _ = reply.send(found);
            }
            Cmd::Stop | Cmd::Discard => {}
        }
    }

    /// The target replica set, `None` before the node set one.
    fn target(&self) -> Option<BTreeSet<NodeId>> {
        let t = self.target.lock().unwrap_or_else(|e| e.into_inner());
        (!t.is_empty()).then(|| t.iter().map(|&n| NodeId(n)).collect())
    }

    /// See [`PartitionStatus::departed`].
    fn departed(&self) -> bool {
        let Some(target) = self.target() else {
            return false;
        };
        !target.contains(&self.replica.id())
            && !self.replica.is_leader()
            && self.leader_heard.elapsed() > DEPART_SILENCE
    }

    /// On the leader: one step of moving the group's membership toward the target replicas
    /// (a reassignment), once per tick; each step waits for the previous one to commit.
    fn reconfigure(&mut self, tick: Duration) {
        if self.failed || self.stopping.is_some() || !self.replica.is_leader() {
            return;
        }
        let Some(target) = self.target() else {
            return;
        };
        // A handover asked for gets the core's election timeout before it is asked again.
        let abandon = tick * (self.replica.election_ticks() + 1);
        if self
            .move_transfer_at
            .is_some_and(|at| at.elapsed() < abandon)
        {
            return;
        }
        match self.replica.move_toward(&target) {
            Ok(MoveStep::Changed(change)) => {
                tracing::info!(
                    group = self.group_id,
                    ?change,
                    "reassignment: membership change"
                );
            }
            Ok(MoveStep::Transferring(to)) => {
                self.move_transfer_at = Some(Instant::now());
                tracing::info!(
                    group = self.group_id,
                    to = to.0,
                    "reassignment: this leader is moved away; handing leadership over"
                );
            }
            Ok(MoveStep::Done | MoveStep::Waiting) => {}
            Err(e) => self.check(Err(e)),
        }
    }

    /// Send what needs no fsync, persist, send the rest, answer, publish.
    fn round(&mut self) {
        if !self.failed {
            // Appends to followers go out before this round's fsync, so their disks work
            // while ours does (what depends on our fsync stays held in the core).
            self.replica.release_messages();
            self.send_messages();
            let started = Instant::now();
            let r = self.replica.process();
            let persisted = (self.replica.log_end(), self.replica.term().0);
            if r.is_ok() && persisted != self.persisted {
                self.metrics
                    .persist_latency
                    .record(started.elapsed().as_secs_f64());
            }
            self.persisted = persisted;
            self.check(r);
        }
        self.send_messages();
        while let Some(ack) = self.replica.poll_ack() {
            if let Some(reply) = self.waiting.remove(&ack.token) {
                let _ = reply.send(ack.result);
            }
        }
        if self.failed {
            // Dropping the replies tells the callers the replica is gone.
            self.waiting.clear();
        }
        if self.replica.is_leader() {
            self.leader_heard = Instant::now();
        }
        let now = status_of(&self.replica, self.failed, self.departed());
        // Always stored (readers see the current log end), announced only when it is news.
        let modified = self.status.send_if_modified(|s| {
            let changed = !s.same_news(&now);
            *s = now;
            changed
        });
        if modified {
            self.metrics.publish(&now);
            self.changed.notify_waiters();
        }
    }
}

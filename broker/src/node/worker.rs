//! One partition replica's owner: a dedicated std thread that alone holds the [`Replica`].
//!
//! `Replica::process` fsyncs synchronously, so replicas never run on the async runtime's
//! threads. Everyone else talks to the owner through its command channel ([`Cmd`]) and
//! watches its published [`PartitionStatus`] (role, leader, high watermark), which async
//! readers (fetch long-polls, subscriptions) wait on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_raft::Message;
use floe_storage::ReadBatches;
use tokio::sync::{Notify, oneshot, watch};

use crate::partition::{Acks, FetchError, ProduceError, Produced, Replica};
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
    /// Close the replica cleanly and end the thread.
    Stop,
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
    /// The replica failed (fsync error, damage) and serves nothing until reopened.
    pub(crate) failed: bool,
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
}

/// The owner's per-partition metrics (handles resolved once, at spawn; no-ops without a
/// recorder).
struct StatusMetrics {
    term: metrics::Gauge,
    commit_end: metrics::Gauge,
    is_leader: metrics::Gauge,
    failed: metrics::Gauge,
    leader_changes: metrics::Counter,
    persist_latency: metrics::Histogram,
    /// The term of the last leader this replica learned of.
    leader_term: Option<u64>,
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
            is_leader: metrics::gauge!(telemetry::RAFT_IS_LEADER, &labels),
            failed: metrics::gauge!(telemetry::PARTITION_FAILED, &labels),
            leader_changes: metrics::counter!(telemetry::RAFT_LEADER_CHANGES, &labels),
            persist_latency: metrics::histogram!(telemetry::STORAGE_FSYNC_LATENCY, &labels),
            leader_term: None,
        }
    }

    fn publish(&mut self, s: &PartitionStatus) {
        self.term.set(s.term as f64);
        self.commit_end.set(s.high_watermark as f64);
        self.is_leader.set(if s.is_leader { 1.0 } else { 0.0 });
        self.failed.set(if s.failed { 1.0 } else { 0.0 });
        if s.leader.is_some() && self.leader_term != Some(s.term) {
            self.leader_term = Some(s.term);
            self.leader_changes.increment(1);
        }
    }
}

/// Which partition an owner serves (metric labels).
#[derive(Debug, Clone)]
pub(crate) struct PartitionLabel {
    pub(crate) topic: String,
    pub(crate) partition: u32,
}

/// Starts the owner thread of `replica`, sending its Raft messages through `transport`.
pub(crate) fn spawn(
    label: PartitionLabel,
    group_id: u64,
    replica: Replica,
    transport: Arc<PeerTransport>,
    changed: Arc<Notify>,
    options: WorkerOptions,
) -> std::io::Result<(PartitionHandle, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(options.queue.max(1));
    let initial = status_of(&replica, false);
    let (status_tx, status_rx) = watch::channel(initial);
    let mut metrics = StatusMetrics::new(&label.topic, label.partition);
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
    };
    let thread = std::thread::Builder::new()
        .name(format!("floe-{}-{}", label.topic, label.partition))
        .spawn(move || worker.run(rx, options.tick))?;
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn status_of(r: &Replica, failed: bool) -> PartitionStatus {
    PartitionStatus {
        is_leader: r.is_leader() && !failed,
        leader: r.leader().map(|n| n.0),
        term: r.term().0,
        high_watermark: r.high_watermark(),
        log_start: r.log_start(),
        failed,
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Cmd>, tick: Duration) {
        let mut next_tick = Instant::now() + tick;
        'outer: loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take everything queued: one `process` (one fsync) for the whole burst.
            while let Ok(cmd) = rx.try_recv() {
                if matches!(cmd, Cmd::Stop) {
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
                    self.check(r);
                }
            }
            self.round();
        }
        self.waiting.clear();
        if !self.failed
            && let Err(e) = self.replica.close()
        {
            tracing::error!(group = self.group_id, error = %e, "closing the replica failed");
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
                if !self.failed {
                    let r = self.replica.handle_message(m);
                    self.check(r);
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
            Cmd::Stop => {}
        }
    }

    /// Persist, send, answer, publish.
    fn round(&mut self) {
        if !self.failed {
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
        while let Some(m) = self.replica.poll_message() {
            // A full or unknown peer drops the message; Raft retransmits.
            let _ = self.transport.send(self.group_id, m);
        }
        while let Some(ack) = self.replica.poll_ack() {
            if let Some(reply) = self.waiting.remove(&ack.token) {
                let _ = reply.send(ack.result);
            }
        }
        if self.failed {
            // Dropping the replies tells the callers the replica is gone.
            self.waiting.clear();
        }
        let now = status_of(&self.replica, self.failed);
        let modified = self.status.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
        if modified {
            self.metrics.publish(&now);
            self.changed.notify_waiters();
        }
    }
}

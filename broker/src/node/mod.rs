//! The node: one broker process hosting the controller group (on voters), many partition
//! replicas, its peer transport and its client service.
//!
//! - **The controller** (`controller.rs`): on a voter (an id in `--voters`), Raft group 0 with
//!   its durable log in `data_dir/controller/`, applying committed commands to a
//!   [`crate::controller::ControllerState`]; on any node a `ControllerLink` that
//!   proposes commands to the controller leader (locally or with a `ControllerCall` peer call)
//!   and, on a node that is not a voter, long-polls the leader for the state
//!   (`ControllerFetch`). Every node sees the metadata as a watch of `Arc<ControllerState>`.
//! - **The table is dynamic.** A reconciler task follows that watch: for every partition the
//!   controller places on this node it opens an owner (below), for every one it no longer
//!   does (topic deleted) it stops the owner and removes the partition directory; then it
//!   swaps the `Table` (the metadata plus the hosted partitions) the client service and the
//!   router read. It also hands the brokers' registered peer addresses to the transport.
//!   Group ids come from the controller's topic ids: `(topic_id + 1) << 32 | partition`
//!   (group 0 is the controller's); partition directories are
//!   `data_dir/partitions/<topic>-<partition>@<topic_id>`, so a topic deleted and created again
//!   never reuses the old one's data.
//! - **Registration**: every node registers with the controller (its client and peer
//!   addresses) at start, heartbeats every [`NodeConfig::heartbeat`], and registers again when
//!   the controller answers that its registration epoch is stale. The controller leader fences
//!   a broker silent for [`NodeConfig::broker_session_timeout`]: no new replicas go to it until
//!   it heartbeats again.
//! - **Bootstrap topics** ([`NodeConfig::topics`], `floe serve --topics FILE`) are created
//!   through the controller once enough brokers registered, if they do not exist yet (their
//!   explicit replica lists only give the partition count and replication factor: placement
//!   is the controller's).
//! - Every hosted partition replica has one owner: a dedicated std thread (`worker.rs`) that
//!   alone holds the [`Replica`] (whose `process` fsyncs synchronously, so it never runs on the
//!   async runtime). It is fed through a bounded command channel (produce, peer message, read,
//!   timestamp lookup, stop), ticks itself from its own timer, sends what `poll_message` yields
//!   to the [`PeerTransport`], answers producers from `poll_ack`, and publishes its status
//!   (role, leader, term, high watermark) on a watch channel.
//! - A router task hands inbound peer messages to the owner of their group (by group id).
//! - The client service (`service.rs`) is a floe-net [`floe_net::Handler`] answering the
//!   client protocol: metadata, list/describe topics and describe cluster from the controller's
//!   view with live leaders overlaid from the hosted replicas; create/delete topics proposed to
//!   the controller and answered once applied (and visible on this node); produce, fetch,
//!   subscribe and list offsets for the partitions this node leads; `InitProducerId` from a
//!   producer-id block this node obtained from the controller (ids unique cluster-wide and
//!   across restarts).
//! - Metrics go through the `metrics` facade (names in [`crate::telemetry`], all listed in
//!   `broker/METRICS.md`): the client service counts produced records and bytes, fetched and
//!   pushed bytes, request latency and error codes by api; each owner sets its partition's
//!   term, commit end, leadership and failure from the status it publishes and times its
//!   persisting `process` rounds. Per-partition handles are resolved when a partition opens;
//!   without a recorder they are no-ops.
//!
//! Not yet: reassigned replicas (the controller can move a replica, but a hosted partition's
//! Raft membership is not changed to follow: only creation and deletion are carried out).

mod controller;
mod service;
mod table;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use floe_net::Endpoint;
use floe_protocol::ErrorCode;
use floe_protocol::peer::{PeerRequest, PeerResponse};
use floe_raft::{Config, Membership, NodeId};
use floe_storage::LogConfig;
use floe_storage::backend::{Directory, FileDir};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::controller::{Command, ControllerState, TopicConfig, TopicId, TopicRecord};
use crate::partition::{Replica, ReplicaConfig, ReplicaError, SidecarError, bootstrap_membership};
use crate::peer::{GroupMessage, PeerAddress, PeerTransport, TransportOptions, UnaryHandler};
use controller::{CONTROLLER_GROUP, ControllerLink, GroupCmd, GroupOptions, Outcome, ProposeError};
use worker::{Cmd, PartitionHandle, WorkerOptions};

pub use service::ClientService;
pub use table::{StaticBroker, StaticTable, StaticTopic, TableError};

/// A node as the configuration names it: its id, advertised client address and peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSpec {
    /// Its node id (> 0).
    pub id: u64,
    /// The client address it advertises in metadata.
    pub client_addr: SocketAddr,
    /// Where its peer endpoint listens (and the name its certificate carries).
    pub peer: PeerAddress,
}

/// A bootstrap topic (created through the controller at start if missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// For each partition (index = partition number), its replicas' node ids; the first is the
    /// preferred leader.
    pub replicas: Vec<Vec<u64>>,
}

impl TopicSpec {
    /// Places `partitions` partitions of `replication_factor` replicas over `brokers`
    /// deterministically: partition `p` gets `brokers[(p + i) % n]` for `i` in
    /// `0..replication_factor`, so preferred leaders rotate over the brokers.
    pub fn placed(
        name: &str,
        partitions: u32,
        replication_factor: u16,
        brokers: &[u64],
    ) -> Result<TopicSpec, NodeError> {
        let rf = usize::from(replication_factor);
        if partitions == 0 {
            return Err(NodeError::InvalidTopic {
                name: name.into(),
                reason: "it has no partitions",
            });
        }
        if rf == 0 || rf > brokers.len() {
            return Err(NodeError::InvalidTopic {
                name: name.into(),
                reason: "its replication factor is 0 or above the number of brokers",
            });
        }
        let replicas = (0..partitions as usize)
            .map(|p| (0..rf).map(|i| brokers[(p + i) % brokers.len()]).collect())
            .collect();
        Ok(TopicSpec {
            name: name.into(),
            replicas,
        })
    }
}

/// The Raft group id of partition `partition` of the topic with id `topic` (group 0 is the
/// controller's).
pub fn group_id(topic: TopicId, partition: u32) -> u64 {
    ((topic.0 + 1) << 32) | u64::from(partition)
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: u64,
    /// The cluster id given to clients.
    pub cluster_id: String,
    /// The controller log lives in `data_dir/controller/`, partitions in
    /// `data_dir/partitions/<topic>-<partition>@<topic id>/`.
    pub data_dir: PathBuf,
    /// The nodes this one knows at start, this one included (its own entry is what it
    /// registers with the controller). Every controller voter must be here, with its peer
    /// address; the other entries' client addresses are not used (each broker advertises its
    /// own when it registers).
    pub brokers: Vec<BrokerSpec>,
    /// The controller voters (`--voters`); empty: every entry of `brokers`.
    pub voters: Vec<u64>,
    /// Topics created through the controller at start if missing (bootstrap).
    pub topics: Vec<TopicSpec>,
    /// Raft tick interval.
    pub tick: Duration,
    /// Raft election timeout in ticks (each timeout is drawn from this to twice this). A
    /// follower campaigns, and a leader steps down (check quorum), after this long without
    /// hearing from its leader or a quorum, so it must exceed a healthy node's worst stall
    /// (an fsync on a busy disk, a starved owner thread, a peer lane busy with a large
    /// append): at 100 ms a loaded 2-core machine changed leaders several times a second
    /// under produce load; 1 s (etcd's default) ended those runs in the first term. A
    /// group's preferred leader campaigns at once when it opens, so start-up stays fast.
    pub election_ticks: u32,
    /// Partition (and controller) log settings.
    pub log: LogConfig,
    /// Client connections one IP address may hold at once (0: no limit).
    pub max_connections_per_ip: u32,
    /// How often the node heartbeats to the controller.
    pub heartbeat: Duration,
    /// The controller leader fences a broker it has not heard from for this long: new
    /// replicas are not placed on it (and it is left out of the brokers clients see) until it
    /// heartbeats again.
    pub broker_session_timeout: Duration,
    /// The controller log is compacted (snapshot + trim) once this many offsets were applied
    /// past its start.
    pub controller_snapshot_every: u64,
    /// The background scrub's rate, in bytes per second per partition: each partition's
    /// owner re-checks the CRCs of its sealed segments at this pace, so damage that happens
    /// while running (or during a clean stop) is found and repaired from the leader. 0: off.
    pub scrub_bytes_per_sec: u64,
}

impl NodeConfig {
    /// A configuration with defaults: 10 ms ticks, 100-tick (1 s) elections, default log settings,
    /// every broker a voter, heartbeats every 2 s, brokers fenced after 10 s of silence, a
    /// controller snapshot every 1024 offsets, a background scrub of 4 MiB/s per partition.
    pub fn new(node_id: u64, data_dir: PathBuf, brokers: Vec<BrokerSpec>) -> Self {
        NodeConfig {
            node_id,
            cluster_id: "floe".into(),
            data_dir,
            brokers,
            voters: Vec::new(),
            topics: Vec::new(),
            tick: Duration::from_millis(10),
            election_ticks: 100,
            log: LogConfig::default(),
            max_connections_per_ip: floe_net::DEFAULT_MAX_CONNECTIONS_PER_IP,
            heartbeat: Duration::from_secs(2),
            broker_session_timeout: Duration::from_secs(10),
            controller_snapshot_every: 1024,
            scrub_bytes_per_sec: 4 << 20,
        }
    }

    /// The controller voters.
    fn voter_ids(&self) -> Vec<u64> {
        if self.voters.is_empty() {
            self.brokers.iter().map(|b| b.id).collect()
        } else {
            self.voters.clone()
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node's id is not among the brokers.
    #[error("node {0} is not among the configured brokers")]
    NotABroker(u64),
    /// A voter has no entry (peer address) among the brokers.
    #[error("voter {0} has no peer address among the configured brokers")]
    UnknownVoter(u64),
    /// A topic of the table is unusable.
    #[error("topic {name:?}: {reason}")]
    InvalidTopic {
        /// The topic.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A partition names a replica that is not a broker.
    #[error("topic {topic:?} partition {partition}: replica {replica} is not a broker")]
    UnknownReplica {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The unknown node id.
        replica: u64,
    },
    /// A partition directory could not be created.
    #[error("creating {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A partition replica could not be opened (recovered).
    #[error("opening topic {topic:?} partition {partition}: {source}")]
    Replica {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why.
        source: ReplicaError,
    },
    /// A partition's bootstrap membership could not be read or recorded.
    #[error("bootstrap membership of topic {topic:?} partition {partition}: {source}")]
    Bootstrap {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why.
        source: SidecarError,
    },
    /// The controller replica could not be opened (recovered).
    #[error("opening the controller log: {0}")]
    Controller(ReplicaError),
    /// An owner thread could not be started.
    #[error("starting a partition thread: {0}")]
    Thread(std::io::Error),
}

/// A partition this node hosts.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub(crate) handle: PartitionHandle,
    /// The partition's target replicas, which the owner's Raft membership follows.
    target: worker::Target,
    pub(crate) metrics: PartitionMetrics,
    pub(crate) group_id: u64,
    pub(crate) dir: PathBuf,
    /// The retention limits its owner applies (changed when the topic's configuration is).
    retention: watch::Sender<worker::Retention>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Hosted {
    /// Sets the target replicas its owner's membership follows.
    fn set_target(&self, replicas: &[u64]) {
        let mut t = self.target.lock().unwrap_or_else(|e| e.into_inner());
        if t.as_slice() != replicas {
            *t = replicas.to_vec();
        }
    }
}

/// The client service's per-partition metrics (handles resolved when the node starts;
/// no-ops without a recorder).
#[derive(Debug)]
pub(crate) struct PartitionMetrics {
    pub(crate) produce_records: metrics::Counter,
    pub(crate) produce_bytes: metrics::Counter,
    pub(crate) fetch_bytes: metrics::Counter,
    pub(crate) subscribe_bytes: metrics::Counter,
}

impl PartitionMetrics {
    fn new(topic: &str, partition: u32) -> Self {
        let labels = [
            ("topic", topic.to_owned()),
            ("partition", partition.to_string()),
        ];
        let fetch = |api: &'static str| {
            let mut l = labels.to_vec();
            l.push(("api", api.to_owned()));
            metrics::counter!(crate::telemetry::FETCH_BYTES, &l)
        };
        PartitionMetrics {
            produce_records: metrics::counter!(crate::telemetry::PRODUCE_RECORDS, &labels),
            produce_bytes: metrics::counter!(crate::telemetry::PRODUCE_BYTES, &labels),
            fetch_bytes: fetch("fetch"),
            subscribe_bytes: fetch("subscribe"),
        }
    }
}

/// The metadata and the partitions hosted here, swapped whole on every change.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) state: Arc<ControllerState>,
    /// (topic, partition) → hosted replica.
    pub(crate) hosted: HashMap<(String, u32), Arc<Hosted>>,
    /// group id → hosted replica.
    pub(crate) groups: HashMap<u64, Arc<Hosted>>,
}

impl Table {
    pub(crate) fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.state.topic(name)
    }

    pub(crate) fn hosted(&self, topic: &str, partition: u32) -> Option<&Arc<Hosted>> {
        self.hosted.get(&(topic.to_owned(), partition))
    }
}

/// What the client service, the router and the node's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node_id: u64,
    pub(crate) cluster_id: String,
    pub(crate) max_batch_bytes: u32,
    table: RwLock<Arc<Table>>,
    /// Notified by every owner whenever its status (high watermark, role) changes, and when
    /// the table is swapped.
    pub(crate) changed: Arc<Notify>,
    pub(crate) controller: Arc<ControllerLink>,
    /// The producer-id block in use: `[next, end)`.
    producer_ids: tokio::sync::Mutex<(u64, u64)>,
    /// The bootstrap topics' names (the node is not ready until they exist).
    bootstrap: Vec<String>,
}

/// How long a starting voter waits for its controller to replay its log.
const STATE_WAIT_VOTER: Duration = Duration::from_secs(10);
/// How long a starting broker-only node waits for its first metadata from the controller.
const STATE_WAIT_BROKER: Duration = Duration::from_secs(5);
/// Producer ids asked of the controller at a time.
const PRODUCER_ID_BLOCK: u32 = 1000;
/// How long a controller proposal made for a client may take.
const ADMIN_WAIT: Duration = Duration::from_secs(15);
/// The reconciler runs at least this often (replicas moved away depart without a metadata
/// change).
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

impl Shared {
    /// The hosted replica of `topic`/`partition`, if any.
    pub(crate) fn hosted(&self, topic: &str, partition: u32) -> Option<Arc<Hosted>> {
        self.table().hosted(topic, partition).cloned()
    }

    /// The current table.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ready once the controller has a leader, the bootstrap topics exist, and every hosted
    /// partition knows a leader and none failed; else why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.controller.leader().is_none() {
            return Err("no controller leader known yet".into());
        }
        let table = self.table();
        if let Some(t) = self.bootstrap.iter().find(|t| table.topic(t).is_none()) {
            return Err(format!("bootstrap topic {t} not created yet"));
        }
        for ((topic, p), h) in &table.hosted {
            let status = *h.handle.status.borrow();
            if status.failed {
                return Err(format!("partition {topic}-{p} failed"));
            }
            if status.leader.is_none() {
                return Err(format!("partition {topic}-{p} has no leader yet"));
            }
        }
        Ok(())
    }

    /// Swaps the table; wakes the waiters on `changed` (fetch long-polls, subscriptions,
    /// admin calls) only when the hosted partitions changed, not for every heartbeat.
    fn set_table(&self, table: Table) {
        let mut slot = self.table.write().unwrap_or_else(|e| e.into_inner());
        let moved = slot.groups.len() != table.groups.len()
            || table.groups.keys().any(|g| !slot.groups.contains_key(g));
        *slot = Arc::new(table);
        drop(slot);
        if moved {
            self.changed.notify_waiters();
        }
    }

    /// A producer id from this node's block, asking the controller for a new block when it is
    /// used up (`None`: the controller did not answer or refused).
    pub(crate) async fn allocate_producer_id(&self) -> Option<i64> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let command = Command::AllocateProducerIds {
                broker: NodeId(self.node_id),
                count: PRODUCER_ID_BLOCK,
            };
            let o = self.controller.propose(command, ADMIN_WAIT).await.ok()?;
            if o.code != ErrorCode::None || o.count == 0 {
                return None;
            }
            *block = (o.value, o.value + u64::from(o.count));
        }
        let id = i64::try_from(block.0).ok()?;
        block.0 += 1;
        Some(id)
    }

    /// Bumps the epoch of a producer id a producer re-initialises, through the controller
    /// (which holds every id's current epoch): `Ok(new epoch)`, or the refusal's code
    /// (`ProducerFenced` for an epoch that is not the current one; `CoordinatorNotAvailable`
    /// when the controller did not answer).
    pub(crate) async fn bump_producer_epoch(
        &self,
        producer_id: u64,
        epoch: u16,
    ) -> Result<u16, ErrorCode> {
        let command = Command::BumpProducerEpoch { producer_id, epoch };
        match self.controller.propose(command, ADMIN_WAIT).await {
            Ok(o) if o.code == ErrorCode::None => {
                u16::try_from(o.value).map_err(|_| ErrorCode::UnknownServerError)
            }
            Ok(o) => Err(o.code),
            Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Proposes `command` for a client and waits until this node's view includes it (not for
    /// its partitions to open: clients wait for leaders anyway, and a slow answer only makes a
    /// client retry a create that then finds the topic existing).
    pub(crate) async fn propose_admin(
        &self,
        command: Command,
        wait: Duration,
    ) -> Result<Outcome, ProposeError> {
        let wait = wait.clamp(Duration::from_secs(1), ADMIN_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let outcome = self.controller.propose(command, wait).await?;
        let mut rx = self.controller.subscribe();
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|s| s.version() >= outcome.version))
            .await;
        Ok(outcome)
    }
}

/// A running node. See the module docs.
#[derive(Debug)]
pub struct Node {
    shared: Arc<Shared>,
    transport: Option<Arc<PeerTransport>>,
    controller_thread: Option<JoinHandle<()>>,
    /// The router and the client service: they run until the replicas are closed.
    tasks: JoinSet<()>,
    /// Following the metadata, registering, bootstrapping: stopped first.
    background: Vec<tokio::task::AbortHandle>,
    client_endpoint: Endpoint,
    peer_endpoint: Endpoint,
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What opening a partition needs.
#[derive(Debug, Clone)]
struct OpenCtx {
    me: u64,
    data_dir: PathBuf,
    tick: Duration,
    election_ticks: u32,
    log: LogConfig,
    scrub_bytes_per_sec: u64,
    transport: Arc<PeerTransport>,
    changed: Arc<Notify>,
}

/// One partition the controller places on this node.
#[derive(Debug, Clone)]
struct Placed {
    topic: String,
    topic_id: TopicId,
    partition: u32,
    replicas: Vec<u64>,
    /// Reassignments since creation (0: `replicas` founded the group).
    moves: u64,
    /// The controller's preferred leader: it campaigns as soon as it opens the group.
    preferred_leader: u64,
    config: TopicConfig,
}

impl OpenCtx {
    /// The retention limits of a partition of a topic configured `config`: the topic's
    /// setting where it has one, else this node's (`--retention-bytes` / `--retention-ms`).
    /// A topic set to `-1` (unlimited) thus inherits the node's limit: the topic
    /// configuration cannot tell "unset" from "unlimited".
    fn retention_of(&self, config: &TopicConfig) -> worker::Retention {
        worker::Retention {
            bytes: config.retention_bytes.or(self.log.retention_bytes),
            ms: config.retention_ms.or(self.log.retention_ms),
        }
    }

    fn dir_of(&self, p: &Placed) -> PathBuf {
        self.data_dir
            .join("partitions")
            .join(format!("{}-{}@{}", p.topic, p.partition, p.topic_id.0))
    }

    /// Opens (recovers) a partition replica and starts its owner (blocking I/O).
    fn open(&self, p: &Placed) -> Result<Hosted, NodeError> {
        let gid = group_id(p.topic_id, p.partition);
        let path = self.dir_of(p);
        let dir = FileDir::open(&path).map_err(|source| NodeError::Dir {
            path: path.clone(),
            source,
        })?;
        let mut raft = Config::new(NodeId(self.me));
        raft.election_ticks = self.election_ticks;
        raft.seed = self.me.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ gid;
        let retention = self.retention_of(&p.config);
        let log = LogConfig {
            retention_bytes: retention.bytes,
            retention_ms: retention.ms,
            ..self.log.clone()
        };
        let cfg = ReplicaConfig::new(raft, log);
        let dir: Arc<dyn Directory> = Arc::new(dir);
        // A founding replica bootstraps the group with the founding set; a replica placed
        // here by a reassignment joins the existing group as a learner (no members of its
        // own until the leader's log reaches it). Recorded in the directory at creation.
        let founding = p.moves == 0;
        let members = bootstrap_membership(&dir, || {
            if founding {
                Membership::new(p.replicas.iter().map(|r| NodeId(*r)), [])
            } else {
                Membership::default()
            }
        })
        .map_err(|source| NodeError::Bootstrap {
            topic: p.topic.clone(),
            partition: p.partition,
            source,
        })?;
        let replica =
            Replica::open(dir, cfg, members, now_ms()).map_err(|source| NodeError::Replica {
                topic: p.topic.clone(),
                partition: p.partition,
                source,
            })?;
        let options = WorkerOptions {
            tick: self.tick,
            queue: 8192,
            scrub_bytes_per_sec: self.scrub_bytes_per_sec,
            // Elect the preferred leader at once rather than after a whole (long) election
            // timeout; the others wait theirs out. Harmless where a leader already exists
            // (its followers refuse the pre-vote), as after a restart.
            campaign_at_start: p.preferred_leader == self.me,
        };
        let label = worker::PartitionLabel {
            topic: p.topic.clone(),
            partition: p.partition,
        };
        let target: worker::Target = Arc::new(Mutex::new(p.replicas.clone()));
        let (retention_tx, retention_rx) = watch::channel(retention);
        let (handle, thread) = worker::spawn(
            label,
            gid,
            replica,
            self.transport.clone(),
            self.changed.clone(),
            options,
            worker::Followed {
                target: target.clone(),
                retention: retention_rx,
            },
        )
        .map_err(NodeError::Thread)?;
        Ok(Hosted {
            handle,
            target,
            metrics: PartitionMetrics::new(&p.topic, p.partition),
            group_id: gid,
            dir: path,
            retention: retention_tx,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// Stops a hosted partition's owner and waits for it (blocking).
fn stop_hosted(h: &Hosted) {
    while let Err(worker::Busy::Full) = h.handle.send(Cmd::Stop) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let thread = h.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = thread {
        let _ = t.join();
    }
}

/// The partitions `state` places on node `me`, by group id.
fn placed_on(state: &ControllerState, me: u64) -> BTreeMap<u64, Placed> {
    partitions_of(state)
        .into_iter()
        .filter(|(_, p)| p.replicas.contains(&me))
        .collect()
}

/// Resolves a registered `host:port` peer address.
async fn resolve_peer(addr: &str) -> Option<PeerAddress> {
    let (host, _) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let resolved = tokio::net::lookup_host(addr).await.ok()?.next()?;
    Some(PeerAddress {
        addr: resolved,
        server_name: host.to_string(),
    })
}

/// Brings the hosted partitions in line with `state`, then swaps the table.
async fn reconcile(shared: &Shared, ctx: &OpenCtx, state: Arc<ControllerState>) {
    for b in state.brokers() {
        if b.id.0 != ctx.me
            && ctx.transport.peer_address(b.id.0).is_none()
            && let Some(addr) = resolve_peer(&b.peer_addr).await
        {
            ctx.transport.add_peer(b.id.0, addr);
        }
    }
    let want = placed_on(&state, ctx.me);
    let current = shared.table();
    let mut groups: HashMap<u64, Arc<Hosted>> = HashMap::new();
    // Hosted partitions no longer placed here whose partition still exists: moved away.
    // They stay in their group (and keep serving while they lead) until the new replica set
    // has taken over and removed them, then their data goes.
    let mut departing: HashMap<u64, Placed> = HashMap::new();
    let mut removed = Vec::new();
    let mut departed = Vec::new();
    let partitions = partitions_of(&state);
    for (gid, h) in &current.groups {
        if let Some(p) = want.get(gid) {
            h.set_target(&p.replicas);
            // A kept partition follows its topic's (possibly altered) retention.
            let retention = ctx.retention_of(&p.config);
            h.retention.send_if_modified(|r| {
                let changed = *r != retention;
                *r = retention;
                changed
            });
            groups.insert(*gid, h.clone());
        } else if let Some(p) = partitions.get(gid) {
            h.set_target(&p.replicas);
            if h.handle.status.borrow().departed {
                departed.push(h.clone());
            } else {
                groups.insert(*gid, h.clone());
                departing.insert(*gid, p.clone());
            }
        } else {
            removed.push(h.clone());
        }
    }
    for (gid, p) in &want {
        if groups.contains_key(gid) {
            continue;
        }
        let ctx2 = ctx.clone();
        let p2 = p.clone();
        match tokio::task::spawn_blocking(move || ctx2.open(&p2)).await {
            Ok(Ok(h)) => {
                groups.insert(*gid, Arc::new(h));
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot open a partition"),
            Err(e) => tracing::error!(error = %e, "opening a partition panicked"),
        }
    }
    let hosted = groups
        .values()
        .filter_map(|h| {
            let p = want
                .get(&h.group_id)
                .or_else(|| departing.get(&h.group_id))?;
            Some(((p.topic.clone(), p.partition), h.clone()))
        })
        .collect();
    shared.set_table(Table {
        state,
        hosted,
        groups,
    });
    if !removed.is_empty() {
        // No longer placed here (its topic was deleted): close them at once (no leadership
        // handover: every replica is closing), then remove their data.
        let _ = tokio::task::spawn_blocking(move || {
            for h in &removed {
                while let Err(worker::Busy::Full) = h.handle.send(Cmd::Discard) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            for h in removed {
                stop_hosted(&h);
                if let Err(e) = std::fs::remove_dir_all(&h.dir) {
                    tracing::warn!(dir = %h.dir.display(), error = %e, "removing a deleted partition");
                }
            }
        })
        .await;
    }
    if !departed.is_empty() {
        // Moved away and out of the group: nobody needs this copy any more.
        let _ = tokio::task::spawn_blocking(move || {
            for h in departed {
                stop_hosted(&h);
                tracing::info!(dir = %h.dir.display(), "partition moved away; removing its data");
                if let Err(e) = std::fs::remove_dir_all(&h.dir) {
                    tracing::warn!(dir = %h.dir.display(), error = %e, "removing a moved partition");
                }
            }
        })
        .await;
    }
}

/// Every partition in `state`, by group id (with its replicas).
fn partitions_of(state: &ControllerState) -> HashMap<u64, Placed> {
    let mut out = HashMap::new();
    for t in state.topics() {
        for (p, pa) in t.partitions.iter().enumerate() {
            let p = p as u32;
            out.insert(
                group_id(t.id, p),
                Placed {
                    topic: t.name.clone(),
                    topic_id: t.id,
                    partition: p,
                    replicas: pa.replicas.iter().map(|r| r.0).collect(),
                    moves: pa.moves,
                    preferred_leader: pa.preferred_leader.0,
                    config: t.config,
                },
            );
        }
    }
    out
}

/// Registers this node with the controller, then heartbeats; registers again when the
/// controller no longer knows its registration.
async fn register_and_heartbeat(shared: Arc<Shared>, me: BrokerSpec, every: Duration) {
    let register = Command::RegisterBroker {
        broker: NodeId(me.id),
        client_addr: me.client_addr.to_string(),
        peer_addr: if me.peer.server_name.contains(':') {
            format!("[{}]:{}", me.peer.server_name, me.peer.addr.port())
        } else {
            format!("{}:{}", me.peer.server_name, me.peer.addr.port())
        },
        rack: None,
        term: 0,
        tick: 0,
    };
    let mut epoch = None;
    loop {
        match epoch {
            None => match shared
                .controller
                .propose(register.clone(), ADMIN_WAIT)
                .await
            {
                Ok(o) if o.code == ErrorCode::None => {
                    tracing::info!(epoch = o.value, "registered with the controller");
                    epoch = Some(o.value);
                    continue;
                }
                Ok(o) => {
                    tracing::warn!(code = ?o.code, message = ?o.message, "registration refused")
                }
                Err(e) => tracing::debug!(error = %e, "registration not answered yet"),
            },
            Some(e) => {
                let hb = Command::BrokerHeartbeat {
                    broker: NodeId(me.id),
                    epoch: e,
                    term: 0,
                    tick: 0,
                };
                match shared.controller.propose(hb, ADMIN_WAIT).await {
                    Ok(o) if o.code == ErrorCode::None => {}
                    Ok(o) => {
                        tracing::info!(code = ?o.code, "heartbeat refused; registering again");
                        epoch = None;
                        continue;
                    }
                    Err(e) => tracing::debug!(error = %e, "heartbeat not answered"),
                }
            }
        }
        let pause = if epoch.is_some() {
            every
        } else {
            Duration::from_millis(100)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Creates the bootstrap topics that do not exist yet, retrying until each exists.
async fn bootstrap_topics(shared: Arc<Shared>, topics: Vec<TopicSpec>) {
    let mut rx = shared.controller.subscribe();
    for t in topics {
        let partitions = t.replicas.len() as u32;
        let rf = t.replicas.first().map_or(0, |r| r.len()) as u16;
        loop {
            if rx.borrow_and_update().topic(&t.name).is_some() {
                break;
            }
            let create = Command::CreateTopic {
                name: t.name.clone(),
                partitions,
                replication_factor: rf,
                configs: Vec::new(),
            };
            match shared.controller.propose(create, ADMIN_WAIT).await {
                Ok(o) if matches!(o.code, ErrorCode::None | ErrorCode::TopicAlreadyExists) => {
                    break;
                }
                Ok(o) if o.code == ErrorCode::InvalidReplicationFactor => {
                    // Not enough brokers registered yet: wait for the next change.
                    let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
                }
                Ok(o) => {
                    tracing::error!(topic = %t.name, code = ?o.code, message = ?o.message, "bootstrap topic refused");
                    break;
                }
                Err(e) => {
                    tracing::debug!(topic = %t.name, error = %e, "bootstrap topic not created yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Node {
    /// Starts the node: the peer transport on `peer_endpoint` (an [`Endpoint::peer`]), the
    /// controller group if this node is a voter, the tasks that register it, follow the
    /// metadata (opening and closing partitions) and create the bootstrap topics, and the
    /// client service on `client_endpoint` (an [`Endpoint::client_listener`]). It returns once
    /// the metadata it starts from is known (a voter's own controller log; a broker's first
    /// fetch, waited for at most 5 s) and the partitions it places here are open; partitions
    /// of later changes (bootstrap topics included) open as they come. Must be called inside
    /// a multi-threaded tokio runtime.
    pub async fn start(
        config: NodeConfig,
        client_endpoint: Endpoint,
        peer_endpoint: Endpoint,
    ) -> Result<Node, NodeError> {
        let me = config.node_id;
        let Some(my_spec) = config.brokers.iter().find(|b| b.id == me).cloned() else {
            return Err(NodeError::NotABroker(me));
        };
        let voters = config.voter_ids();
        if let Some(v) = voters
            .iter()
            .find(|v| !config.brokers.iter().any(|b| b.id == **v))
        {
            return Err(NodeError::UnknownVoter(*v));
        }
        let mut seen = HashSet::new();
        for t in &config.topics {
            if !valid_topic_name(&t.name) {
                return Err(NodeError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "names are 1-249 of [A-Za-z0-9._-], not . or ..",
                });
            }
            if !seen.insert(t.name.clone()) {
                return Err(NodeError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "it is listed twice",
                });
            }
            if t.replicas.is_empty() || t.replicas.iter().any(|r| r.is_empty()) {
                return Err(NodeError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "it has no partitions, or a partition has no replicas",
                });
            }
        }
        let peers = config
            .brokers
            .iter()
            .map(|b| (b.id, b.peer.clone()))
            .collect();
        let (transport, mut inbound) = PeerTransport::start(
            me,
            peer_endpoint.clone(),
            peers,
            TransportOptions::default(),
        );
        let transport = Arc::new(transport);
        let changed = Arc::new(Notify::new());
        let (state_tx, state_rx) = watch::channel(Arc::new(ControllerState::new()));
        // The controller group, on a voter.
        let mut controller_thread = None;
        let local = if voters.contains(&me) {
            let path = config.data_dir.join("controller");
            let dir = FileDir::open(&path).map_err(|source| NodeError::Dir {
                path: path.clone(),
                source,
            })?;
            let mut raft = Config::new(NodeId(me));
            raft.election_ticks = config.election_ticks;
            raft.seed = me.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let cfg = ReplicaConfig::new(raft, config.log.clone());
            let members = Membership::new(voters.iter().map(|v| NodeId(*v)), []);
            // The lowest voter campaigns at once (see `OpenCtx::open`); the others wait out
            // an election timeout, so a cluster that starts together elects without a race.
            let first = voters.iter().min() == Some(&me);
            let replica = tokio::task::spawn_blocking(move || {
                let mut r = Replica::open(Arc::new(dir), cfg, members, now_ms())?;
                if first {
                    r.campaign_now()?;
                }
                Ok(r)
            })
            .await
            .map_err(|e| NodeError::Thread(std::io::Error::other(e.to_string())))?
            .map_err(NodeError::Controller)?;
            let options = GroupOptions {
                tick: config.tick,
                snapshot_every: config.controller_snapshot_every,
                fence_after_ms: config.broker_session_timeout.as_millis() as u64,
            };
            let (handle, thread) =
                controller::spawn_group(replica, transport.clone(), state_tx.clone(), options)
                    .map_err(NodeError::Thread)?;
            controller_thread = Some(thread);
            Some(handle)
        } else {
            None
        };
        let link = Arc::new(ControllerLink::new(
            me,
            voters.clone(),
            transport.clone(),
            local,
            state_tx,
        ));
        let shared = Arc::new(Shared {
            node_id: me,
            cluster_id: config.cluster_id.clone(),
            max_batch_bytes: config.log.max_batch_bytes,
            table: RwLock::new(Arc::new(Table::default())),
            changed: changed.clone(),
            controller: link.clone(),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            bootstrap: config.topics.iter().map(|t| t.name.clone()).collect(),
        });
        // Inbound controller calls.
        let unary_link = link.clone();
        let unary: UnaryHandler = Arc::new(move |req: PeerRequest| {
            let link = unary_link.clone();
            Box::pin(async move {
                match req {
                    PeerRequest::ControllerCall(r) => {
                        Some(PeerResponse::from(link.serve_call(r).await))
                    }
                    PeerRequest::ControllerFetch(r) => {
                        Some(PeerResponse::from(link.serve_fetch(r).await))
                    }
                    _ => None,
                }
            })
        });
        transport.set_unary_handler(unary);
        let mut tasks = JoinSet::new();
        // The router: peer messages to their group's owner.
        let router = shared.clone();
        tasks.spawn(async move {
            while let Some(GroupMessage { group_id, message }) = inbound.recv().await {
                route(&router, group_id, message);
            }
        });
        tasks.spawn(crate::telemetry::sample_endpoints(
            client_endpoint.clone(),
            peer_endpoint.clone(),
        ));
        let weak = Arc::downgrade(&shared);
        crate::telemetry::set_readiness(move || match weak.upgrade() {
            Some(shared) => shared.readiness(),
            None => Err("the node stopped".into()),
        });
        let mut background = Vec::new();
        if link.local().is_none() {
            background.push(tasks.spawn(link.clone().fetch_loop()));
        }
        let ctx = OpenCtx {
            me,
            data_dir: config.data_dir.clone(),
            tick: config.tick,
            election_ticks: config.election_ticks,
            log: config.log.clone(),
            scrub_bytes_per_sec: config.scrub_bytes_per_sec,
            transport: transport.clone(),
            changed,
        };
        // Serve nothing before the metadata is known: a restarted voter's own log (applied in
        // its controller's first round), or a broker's first fetch from the controller leader
        // (bounded: a broker whose controller is unreachable starts empty and catches up).
        // Else a client could be told that an existing topic is unknown.
        let mut rx = state_rx;
        let first = if link.local().is_some() {
            STATE_WAIT_VOTER
        } else {
            STATE_WAIT_BROKER
        };
        let _ = tokio::time::timeout(first, rx.changed()).await;
        // And open the partitions it places here before answering for them.
        let state = rx.borrow_and_update().clone();
        reconcile(&shared, &ctx, state).await;
        let follower = shared.clone();
        background.push(tasks.spawn(async move {
            loop {
                // Also once per period without a metadata change: a replica moved away
                // departs on its own time (see `PartitionStatus::departed`).
                if let Ok(Err(_)) = tokio::time::timeout(RECONCILE_EVERY, rx.changed()).await {
                    return;
                }
                let state = rx.borrow_and_update().clone();
                reconcile(&follower, &ctx, state).await;
            }
        }));
        background.push(tasks.spawn(register_and_heartbeat(
            shared.clone(),
            my_spec,
            config.heartbeat,
        )));
        if !config.topics.is_empty() {
            background.push(tasks.spawn(bootstrap_topics(shared.clone(), config.topics.clone())));
        }
        let service = Arc::new(ClientService::new(shared.clone()));
        tasks.spawn(floe_net::serve(
            client_endpoint.clone(),
            service,
            floe_net::ServeOptions {
                max_connections_per_ip: config.max_connections_per_ip,
                ..floe_net::ServeOptions::default()
            },
        ));
        Ok(Node {
            shared,
            transport: Some(transport),
            controller_thread,
            tasks,
            background,
            client_endpoint,
            peer_endpoint,
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.shared.node_id
    }

    /// The local client address.
    pub fn client_addr(&self) -> std::io::Result<SocketAddr> {
        self.client_endpoint.local_addr()
    }

    /// The leader this node's replica of `topic`/`partition` knows of (`None` when it does not
    /// host the partition or knows no leader).
    pub fn leader_of(&self, topic: &str, partition: u32) -> Option<u64> {
        let table = self.shared.table();
        let h = table.hosted(topic, partition)?;
        let status = *h.handle.status.borrow();
        status.leader
    }

    /// This node's replica's high watermark of `topic`/`partition` (`None` when not hosted).
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        let table = self.shared.table();
        let h = table.hosted(topic, partition)?;
        let status = *h.handle.status.borrow();
        Some(status.high_watermark)
    }

    /// This node's replica's log start of `topic`/`partition`: the first offset retention
    /// kept (`None` when not hosted).
    pub fn log_start(&self, topic: &str, partition: u32) -> Option<u64> {
        let table = self.shared.table();
        let h = table.hosted(topic, partition)?;
        let status = *h.handle.status.borrow();
        Some(status.log_start)
    }

    /// Whether this node hosts a replica of `topic`/`partition`.
    pub fn hosts(&self, topic: &str, partition: u32) -> bool {
        self.shared.table().hosted(topic, partition).is_some()
    }

    /// The controller leader as this node knows it.
    pub fn controller_leader(&self) -> Option<u64> {
        self.shared.controller.leader()
    }

    /// The start of this voter's controller log (above 0 once it was compacted or caught up
    /// from a snapshot; `None` on a node that is not a voter).
    pub fn controller_log_start(&self) -> Option<u64> {
        let local = self.shared.controller.local()?;
        let status = *local.status.borrow();
        Some(status.log_start)
    }

    /// The controller log's commit end on this voter (`None`: not a voter).
    pub fn controller_commit_end(&self) -> Option<u64> {
        let local = self.shared.controller.local()?;
        let status = *local.status.borrow();
        Some(status.commit_end)
    }

    /// How many broker heartbeats this voter answered from memory as the controller leader
    /// (`None`: not a voter). Such heartbeats are not written to the controller log.
    pub fn controller_heartbeats_heard(&self) -> Option<u64> {
        let local = self.shared.controller.local()?;
        let status = *local.status.borrow();
        Some(status.heartbeats_heard)
    }

    /// The cluster metadata as this node sees it now.
    pub fn metadata(&self) -> Arc<ControllerState> {
        self.shared.controller.state()
    }

    /// Graceful stop: the node stops following the metadata; every partition replica that
    /// leads hands its leadership to its most up-to-date follower and waits (bounded,
    /// `worker::HANDOVER_WAIT`) until that one leads, while peers and clients are still served
    /// (so the handover's messages flow and clients are told `NotLeader`); then every replica
    /// closes cleanly (sync, checkpoint, hard state), then the controller replica, and only then
    /// do the endpoints close.
    pub async fn shutdown(mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
        let table = self.shared.table();
        let controller = self.controller_thread.take();
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // Stop them all first, then wait: they hand over and close in parallel.
            for h in table.groups.values() {
                while let Err(worker::Busy::Full) = h.handle.send(Cmd::Stop) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            for h in table.groups.values() {
                stop_hosted(h);
            }
            if let Some(local) = shared.controller.local() {
                local.stop();
            }
            if let Some(t) = controller {
                let _ = t.join();
            }
        })
        .await;
        self.client_endpoint.close(0, b"shutdown");
        self.peer_endpoint.close(0, b"shutdown");
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(t) = self.transport.take() {
            t.shutdown().await;
        }
    }
}

fn route(shared: &Shared, group_id: u64, message: floe_raft::Message) {
    if group_id == CONTROLLER_GROUP {
        if let Some(local) = shared.controller.local() {
            // A full queue drops the message; Raft retransmits.
            let _ = local.send(GroupCmd::Peer(message));
        }
        return;
    }
    let table = shared.table();
    let Some(h) = table.groups.get(&group_id) else {
        tracing::debug!(group_id, "message for a group this node does not host");
        return;
    };
    // A full queue drops the message; Raft retransmits.
    let _ = h.handle.send(Cmd::Peer(message));
}

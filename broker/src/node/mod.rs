//! The node: one broker process hosting many partition replicas, its peer transport and its
//! client service.
//!
//! - Every hosted partition replica has one owner: a dedicated std thread (`worker.rs`) that
//!   alone holds the [`Replica`] (whose `process` fsyncs synchronously, so it never runs on the
//!   async runtime). It is fed through a bounded command channel (produce, peer message, read,
//!   timestamp lookup, stop), ticks itself from its own timer, sends what `poll_message` yields
//!   to the [`PeerTransport`], answers producers from `poll_ack`, and publishes its status
//!   (role, leader, term, high watermark) on a watch channel.
//! - A router task hands inbound peer messages to the owner of their group (by group id).
//! - The client service (`service.rs`) is a floe-net [`floe_net::Handler`] answering the
//!   client protocol for the partitions this node hosts: handshake, metadata, produce (many
//!   partitions per request; `NotLeader{leader}` off the leader), fetch (committed data only,
//!   long-poll), subscribe (server push of committed batches as they commit, zero-copy `Bytes`
//!   from the log, paced by byte credit and QUIC flow control), list offsets (earliest, latest,
//!   by timestamp through the storage time index), describe cluster, list/describe topics.
//! - Metrics go through the `metrics` facade (names in [`crate::telemetry`], all listed in
//!   `broker/METRICS.md`): the client service counts produced records and bytes, fetched and
//!   pushed bytes, request latency and error codes by api; each owner sets its partition's
//!   term, commit end, leadership and failure from the status it publishes and times its
//!   persisting `process` rounds. Per-partition handles are resolved when the node starts;
//!   without a recorder they are no-ops.
//!
//! **Topics are static in this milestone.** The node's topic table ([`NodeConfig::topics`])
//! comes from its configuration (`floe serve --topics FILE`) and must be the same on every
//! node; each partition's replicas are listed explicitly or placed deterministically
//! ([`TopicSpec::placed`]). Group ids are derived from the table ([`group_id`]). CreateTopics and
//! DeleteTopics answer `InvalidRequest` with a message saying so. `InitProducerId` hands out
//! ids unique per node (node id in the top bits); the partitions dedupe retried batches.
//!
//! **Where the controller plugs in.** The Raft-replicated controller (`crate::controller`)
//! replaces the static table: the node subscribes to the controller state machine's topic and
//! placement changes and, for each change, opens (or closes) the partition owners it should
//! host and updates the table the client service reads (today an immutable `Arc<Shared>` built
//! at start; then a table swapped on change). Metadata then comes from the controller's view,
//! CreateTopics/DeleteTopics are forwarded to the controller leader, and `InitProducerId`
//! allocates from the controller's producer-id blocks.

mod service;
mod table;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use floe_net::Endpoint;
use floe_raft::{Config, Membership, NodeId};
use floe_storage::LogConfig;
use floe_storage::backend::FileDir;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::partition::{Replica, ReplicaConfig, ReplicaError};
use crate::peer::{GroupMessage, PeerAddress, PeerTransport, TransportOptions};
use worker::{Cmd, PartitionHandle, WorkerOptions};

pub use service::ClientService;
pub use table::{StaticBroker, StaticTable, StaticTopic, TableError};

/// One broker of the static cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSpec {
    /// Its node id (> 0).
    pub id: u64,
    /// The client address it advertises in metadata.
    pub client_addr: SocketAddr,
    /// Where its peer endpoint listens (and the name its certificate carries).
    pub peer: PeerAddress,
}

/// One topic of the static table.
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

/// The group id of partition `partition` of the `topic_index`-th topic of the table (the same
/// on every node because the table is). Group 0 is left to the controller.
pub fn group_id(topic_index: usize, partition: u32) -> u64 {
    ((topic_index as u64 + 1) << 32) | u64::from(partition)
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: u64,
    /// The cluster id given to clients.
    pub cluster_id: String,
    /// Partitions live in `data_dir/partitions/<topic>-<partition>/`.
    pub data_dir: PathBuf,
    /// Every broker of the cluster, this one included.
    pub brokers: Vec<BrokerSpec>,
    /// The static topic table (identical on every node).
    pub topics: Vec<TopicSpec>,
    /// Raft tick interval.
    pub tick: Duration,
    /// Raft election timeout in ticks.
    pub election_ticks: u32,
    /// Partition log settings.
    pub log: LogConfig,
}

impl NodeConfig {
    /// A configuration with defaults: 10 ms ticks, 10-tick elections, default log settings.
    pub fn new(node_id: u64, data_dir: PathBuf, brokers: Vec<BrokerSpec>) -> Self {
        NodeConfig {
            node_id,
            cluster_id: "floe".into(),
            data_dir,
            brokers,
            topics: Vec::new(),
            tick: Duration::from_millis(10),
            election_ticks: 10,
            log: LogConfig::default(),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node's id is not among the brokers.
    #[error("node {0} is not among the configured brokers")]
    NotABroker(u64),
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
    /// An owner thread could not be started.
    #[error("starting a partition thread: {0}")]
    Thread(std::io::Error),
}

/// A partition this node hosts.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub(crate) handle: PartitionHandle,
    pub(crate) metrics: PartitionMetrics,
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

/// What the client service and the router read: immutable after start.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node_id: u64,
    pub(crate) cluster_id: String,
    pub(crate) brokers: Vec<BrokerSpec>,
    pub(crate) topics: Vec<TopicSpec>,
    pub(crate) max_batch_bytes: u32,
    /// (topic, partition) → hosted replica.
    pub(crate) hosted: HashMap<(String, u32), Hosted>,
    /// group id → (topic, partition).
    pub(crate) groups: HashMap<u64, (String, u32)>,
    /// Notified by every owner whenever its status (high watermark, role) changes.
    pub(crate) changed: Arc<Notify>,
    /// The next producer id's low bits (see `ClientService::init_producer_id`).
    pub(crate) next_producer_id: AtomicU64,
}

impl Shared {
    pub(crate) fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub(crate) fn hosted(&self, topic: &str, partition: u32) -> Option<&Hosted> {
        self.hosted.get(&(topic.to_owned(), partition))
    }

    /// A producer id unique to this node: node id in bits 44..59, a counter below (`None`
    /// when the node id does not fit 15 bits or the counter ran out).
    pub(crate) fn allocate_producer_id(&self) -> Option<i64> {
        const LOW_BITS: u32 = 44;
        if self.node_id >= 1 << 15 {
            return None;
        }
        let low = self.next_producer_id.fetch_add(1, Ordering::Relaxed);
        if low >= 1 << LOW_BITS {
            return None;
        }
        i64::try_from((self.node_id << LOW_BITS) | low).ok()
    }
}

/// A running node. See the module docs.
#[derive(Debug)]
pub struct Node {
    shared: Arc<Shared>,
    transport: Option<Arc<PeerTransport>>,
    threads: Vec<JoinHandle<()>>,
    tasks: JoinSet<()>,
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

impl Node {
    /// Opens every partition this node hosts, starts the peer transport on `peer_endpoint`
    /// (an [`Endpoint::peer`]) and serves clients on `client_endpoint` (an
    /// [`Endpoint::client_listener`]). Must be called inside a multi-threaded tokio runtime.
    pub async fn start(
        config: NodeConfig,
        client_endpoint: Endpoint,
        peer_endpoint: Endpoint,
    ) -> Result<Node, NodeError> {
        let me = config.node_id;
        if !config.brokers.iter().any(|b| b.id == me) {
            return Err(NodeError::NotABroker(me));
        }
        let mut to_open = Vec::new();
        let mut groups = HashMap::new();
        for (ti, t) in config.topics.iter().enumerate() {
            if !valid_topic_name(&t.name) {
                return Err(NodeError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "names are 1-249 of [A-Za-z0-9._-], not . or ..",
                });
            }
            if config.topics[..ti].iter().any(|o| o.name == t.name) {
                return Err(NodeError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "it is listed twice",
                });
            }
            if t.replicas.is_empty() {
                return Err(NodeError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "it has no partitions",
                });
            }
            for (p, replicas) in t.replicas.iter().enumerate() {
                let p = p as u32;
                if replicas.is_empty() {
                    return Err(NodeError::InvalidTopic {
                        name: t.name.clone(),
                        reason: "a partition has no replicas",
                    });
                }
                if let Some(&r) = replicas
                    .iter()
                    .find(|r| !config.brokers.iter().any(|b| b.id == **r))
                {
                    return Err(NodeError::UnknownReplica {
                        topic: t.name.clone(),
                        partition: p,
                        replica: r,
                    });
                }
                let gid = group_id(ti, p);
                groups.insert(gid, (t.name.clone(), p));
                if replicas.contains(&me) {
                    to_open.push((t.name.clone(), p, gid, replicas.clone()));
                }
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
        let mut hosted = HashMap::new();
        let mut threads = Vec::new();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (topic, p, gid, replicas) in to_open {
            let path = config
                .data_dir
                .join("partitions")
                .join(format!("{topic}-{p}"));
            let dir = FileDir::open(&path).map_err(|source| NodeError::Dir {
                path: path.clone(),
                source,
            })?;
            let mut raft = Config::new(NodeId(me));
            raft.election_ticks = config.election_ticks;
            raft.seed = me.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ gid;
            let cfg = ReplicaConfig::new(raft, config.log.clone());
            let members = Membership::new(replicas.iter().map(|r| NodeId(*r)), []);
            let replica = Replica::open(Arc::new(dir), cfg, members, now_ms).map_err(|source| {
                NodeError::Replica {
                    topic: topic.clone(),
                    partition: p,
                    source,
                }
            })?;
            let options = WorkerOptions {
                tick: config.tick,
                queue: 8192,
            };
            let label = worker::PartitionLabel {
                topic: topic.clone(),
                partition: p,
            };
            let (handle, thread) = worker::spawn(
                label,
                gid,
                replica,
                transport.clone(),
                changed.clone(),
                options,
            )
            .map_err(NodeError::Thread)?;
            threads.push(thread);
            let metrics = PartitionMetrics::new(&topic, p);
            hosted.insert((topic, p), Hosted { handle, metrics });
        }
        let shared = Arc::new(Shared {
            node_id: me,
            cluster_id: config.cluster_id.clone(),
            brokers: config.brokers.clone(),
            topics: config.topics.clone(),
            max_batch_bytes: config.log.max_batch_bytes,
            hosted,
            groups,
            changed,
            next_producer_id: AtomicU64::new(now_ms),
        });
        let mut tasks = JoinSet::new();
        let router = shared.clone();
        tasks.spawn(async move {
            while let Some(GroupMessage { group_id, message }) = inbound.recv().await {
                route(&router, group_id, message);
            }
        });
        let service = Arc::new(ClientService::new(shared.clone()));
        tasks.spawn(floe_net::serve(
            client_endpoint.clone(),
            service,
            floe_net::ServeOptions::default(),
        ));
        Ok(Node {
            shared,
            transport: Some(transport),
            threads,
            tasks,
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
        let h = self.shared.hosted(topic, partition)?;
        let status = *h.handle.status.borrow();
        status.leader
    }

    /// This node's replica's high watermark of `topic`/`partition` (`None` when not hosted).
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        let h = self.shared.hosted(topic, partition)?;
        let status = *h.handle.status.borrow();
        Some(status.high_watermark)
    }

    /// Graceful stop: stop accepting clients and peers, then close every replica cleanly
    /// (sync, checkpoint, hard state) and wait for the owner threads.
    pub async fn shutdown(mut self) {
        self.client_endpoint.close(0, b"shutdown");
        self.peer_endpoint.close(0, b"shutdown");
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        for h in self.shared.hosted.values() {
            // The owner drains its queue quickly; wait for room rather than skip the stop.
            while let Err(worker::Busy::Full) = h.handle.send(Cmd::Stop) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Some(t) = self.transport.take().and_then(|t| Arc::try_unwrap(t).ok()) {
            t.shutdown().await;
        }
    }
}

fn route(shared: &Shared, group_id: u64, message: floe_raft::Message) {
    let Some(h) = shared
        .groups
        .get(&group_id)
        .and_then(|(t, p)| shared.hosted(t, *p))
    else {
        tracing::debug!(group_id, "message for a group this node does not host");
        return;
    };
    // A full queue drops the message; Raft retransmits.
    let _ = h.handle.send(Cmd::Peer(message));
}

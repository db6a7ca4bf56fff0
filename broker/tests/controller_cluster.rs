//! The controller as a Raft group wired into real nodes (in one process, loopback QUIC, TLS
//! from `floe_broker::certs`), driven by the real floe-client's `Admin`, producer and consumer:
//! topics are created and deleted through the controller from any node, partitions open and
//! close as the metadata changes, the controller survives losing its leader and full restarts
//! (its log durable, compacted to snapshots), producer ids come from its blocks, a node
//! that is not a voter registers, learns the metadata and hosts replicas of new topics, and a
//! topic's own retention settings are applied by every replica of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use floe_broker::certs::{self, IssueRequest};
use floe_broker::node::{BrokerSpec, Node, NodeConfig};
use floe_broker::peer::PeerAddress;
use floe_client::{
    Acks, Client, Compression, Consumer, NewTopic, Producer, ProducerRecord, StartFrom,
    TopicPartition,
};
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use floe_protocol::ErrorCode;
use floe_protocol::client::{
    FetchPartition, FetchPartitionResult, FetchRequest, FetchTopic, InitProducerIdRequest,
    InitProducerIdResponse, Request, Response,
};
use futures_util::StreamExt;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(40);

struct Cluster {
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Node>,
    /// Every node's addresses (kept for restarts).
    specs: BTreeMap<u64, BrokerSpec>,
    voters: Vec<u64>,
    /// Applied to every node's configuration last (a test's own settings).
    tweak: fn(&mut NodeConfig),
}

fn certs_dir(dir: &Path) -> PathBuf {
    dir.join("certs")
}

fn identity(dir: &Path, id: u64) -> (Identity, CaCerts) {
    let c = certs_dir(dir);
    let name = format!("node-{id}");
    let me = Identity::from_pem_files(c.join(format!("{name}.pem")), c.join(format!("{name}.key")))
        .expect("identity");
    (me, CaCerts::from_pem_file(c.join("ca.pem")).expect("ca"))
}

/// Binds a node's endpoints: fresh ephemeral ports, or its old ones (retrying while the old
/// sockets go away).
async fn bind(dir: &Path, id: u64, at: Option<&BrokerSpec>) -> (Endpoint, Endpoint) {
    let (me, ca) = identity(dir, id);
    let opts = EndpointOptions::loopback();
    let any = SocketAddr::new(LOCAL, 0);
    let (c, p) = at.map_or((any, any), |s| (s.client_addr, s.peer.addr));
    let attempt = async {
        loop {
            let client = Endpoint::client_listener(c, &me, &opts);
            let peer = Endpoint::peer(p, &me, &ca, &opts);
            if let (Ok(c), Ok(p)) = (client, peer) {
                return (c, p);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, attempt).await.expect("bind in time")
}

impl Cluster {
    /// `voters` run the controller; `others` are broker-only nodes.
    async fn start(voters: &[u64], others: &[u64]) -> Cluster {
        Self::start_with(voters, others, |_| {}).await
    }

    /// Like [`Cluster::start`], every node's configuration changed by `tweak`.
    async fn start_with(voters: &[u64], others: &[u64], tweak: fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = certs_dir(dir.path());
        certs::init_ca(&c).expect("ca");
        let mut cluster = Cluster {
            dir,
            nodes: BTreeMap::new(),
            specs: BTreeMap::new(),
            voters: voters.to_vec(),
            tweak,
        };
        let mut endpoints = Vec::new();
        for &id in voters.iter().chain(others) {
            let req = IssueRequest::new(&format!("node-{id}"))
                .expect("name")
                .ip(LOCAL);
            certs::issue(&c, &req, &c).expect("issue");
            let (client, peer) = bind(cluster.dir.path(), id, None).await;
            cluster.specs.insert(
                id,
                BrokerSpec {
                    id,
                    client_addr: client.local_addr().expect("addr"),
                    peer: PeerAddress {
                        addr: peer.local_addr().expect("addr"),
                        server_name: LOCAL.to_string(),
                    },
                },
            );
            endpoints.push((id, client, peer));
        }
        for (id, client, peer) in endpoints {
            cluster.launch(id, client, peer).await;
        }
        cluster
    }

    fn config(&self, id: u64) -> NodeConfig {
        // The voters, plus this node when it is not one.
        let mut known: Vec<BrokerSpec> =
            self.voters.iter().map(|v| self.specs[v].clone()).collect();
        if !self.voters.contains(&id) {
            known.push(self.specs[&id].clone());
        }
        let mut cfg = NodeConfig::new(id, self.dir.path().join(format!("n{id}")), known);
        cfg.voters = self.voters.clone();
        cfg.heartbeat = Duration::from_millis(200);
        // Long enough that a loaded machine does not fence a live broker (a heartbeat waits
        // for its commit, which can take a second or more there).
        cfg.broker_session_timeout = Duration::from_secs(6);
        // Small, so the test compacts the controller log many times.
        cfg.controller_snapshot_every = 16;
        (self.tweak)(&mut cfg);
        cfg
    }

    async fn launch(&mut self, id: u64, client: Endpoint, peer: Endpoint) {
        let node = Node::start(self.config(id), client, peer)
            .await
            .expect("node starts");
        self.nodes.insert(id, node);
    }

    async fn restart(&mut self, id: u64) {
        let (client, peer) = bind(self.dir.path(), id, Some(&self.specs[&id])).await;
        self.launch(id, client, peer).await;
    }

    async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("running");
        timeout(WAIT, node.shutdown())
            .await
            .expect("shutdown in time");
    }

    /// Waits until every running voter names the same running controller leader.
    async fn controller_leader(&self) -> u64 {
        let wait = async {
            loop {
                let seen: BTreeSet<Option<u64>> = self
                    .nodes
                    .iter()
                    .filter(|(id, _)| self.voters.contains(id))
                    .map(|(_, n)| n.controller_leader())
                    .collect();
                if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..]
                    && self.nodes.contains_key(&l)
                {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(WAIT, wait).await.expect("a controller leader")
    }

    /// Waits until `check` holds on every running node.
    async fn until_all(&self, what: &str, check: impl Fn(&Node) -> bool) {
        let wait = async {
            while !self.nodes.values().all(&check) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{what}: not on every node in time"));
    }

    /// A client that knows only the nodes `via` at first (it learns the rest from metadata).
    async fn client(&self, via: &[u64]) -> Client {
        let addrs: Vec<String> = via
            .iter()
            .map(|id| self.specs[id].client_addr.to_string())
            .collect();
        let build = Client::builder()
            .brokers(addrs)
            .ca_cert(certs_dir(self.dir.path()).join("ca.pem"))
            .endpoint_options(EndpointOptions::loopback())
            .request_timeout(Duration::from_secs(5))
            .metadata_max_age(Duration::from_millis(300))
            .retries(100, Duration::from_millis(20))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .build();
        timeout(WAIT, build)
            .await
            .expect("client in time")
            .expect("client")
    }

    /// A raw client connection to node `id`.
    async fn connect(&self, id: u64) -> floe_net::quinn::Connection {
        let (_, ca) = identity(self.dir.path(), id);
        let ep = Endpoint::client(SocketAddr::new(LOCAL, 0), &ca, &EndpointOptions::loopback())
            .expect("client endpoint");
        timeout(WAIT, ep.connect(self.specs[&id].client_addr, "127.0.0.1"))
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// A raw `InitProducerId` to node `id` (`-1, -1`: a new producer id).
    async fn init_producer(&self, id: u64, producer_id: i64, epoch: i16) -> InitProducerIdResponse {
        let conn = self.connect(id).await;
        let req = Request::from(InitProducerIdRequest {
            producer_id,
            producer_epoch: epoch,
        });
        let resp = timeout(
            WAIT,
            floe_net::call_client(&conn, &req, 1, Default::default()),
        )
        .await
        .expect("answer in time")
        .expect("answer");
        let Response::InitProducerId(r) = resp else {
            panic!("not an InitProducerId answer");
        };
        r
    }

    /// Asks node `id` for a producer id (a raw `InitProducerId`).
    async fn producer_id(&self, id: u64) -> i64 {
        let r = self.init_producer(id, -1, -1).await;
        assert_eq!(r.error, ErrorCode::None);
        assert_eq!(r.producer_epoch, 0);
        r.producer_id
    }

    /// Stops every running node at once.
    async fn stop_all(&mut self) {
        let all = std::mem::take(&mut self.nodes)
            .into_values()
            .map(Node::shutdown);
        timeout(WAIT, futures_util::future::join_all(all))
            .await
            .expect("shutdown in time");
    }

    async fn shutdown(mut self) {
        self.stop_all().await;
    }
}

/// Creates `topic` through `client`, retrying while too few brokers are unfenced (a live
/// broker whose heartbeats a loaded machine delayed past the session timeout is fenced until
/// the next one lands).
async fn create(client: &Client, topic: NewTopic) {
    let admin = client.admin();
    let attempt = async {
        loop {
            match admin.create_topic(topic.clone()).await {
                Ok(()) => return,
                Err(e) if e.code() == Some(ErrorCode::InvalidReplicationFactor) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("creating {}: {e}", topic.name),
            }
        }
    };
    timeout(WAIT, attempt).await.expect("created in time");
}

/// Produces `n` records round-robin over `partitions` partitions of `topic` (acks=all,
/// idempotent), then consumes them all back; asserts each partition holds exactly what was
/// acknowledged, in order.
async fn produce_and_consume(client: &Client, topic: &str, partitions: u32, n: u32) {
    let producer = Producer::builder(client)
        .acks(Acks::All)
        .idempotence(true)
        .linger(Duration::from_millis(2))
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(30))
        .build();
    let producer = timeout(WAIT, producer)
        .await
        .expect("producer in time")
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..n {
        let p = i % partitions;
        let value = format!("{topic}-{i}");
        let record = ProducerRecord::new(topic, value.clone().into_bytes()).partition(p);
        let d = timeout(WAIT, producer.dispatch(record))
            .await
            .expect("dispatch in time")
            .expect("dispatch");
        deliveries.push((p, value, d));
    }
    let mut acked: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for (p, value, d) in deliveries {
        let meta = timeout(WAIT, d)
            .await
            .expect("delivery in time")
            .unwrap_or_else(|e| panic!("{value} not delivered to partition {p}: {e}"));
        acked.entry(p).or_default().push((meta.offset, value));
    }
    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
    let consumer = Consumer::builder(client).build().expect("consumer");
    for p in 0..partitions {
        timeout(
            WAIT,
            consumer.assign(TopicPartition::new(topic, p), StartFrom::Earliest),
        )
        .await
        .expect("assign in time")
        .expect("assign");
    }
    let mut stream = consumer.stream();
    let mut got: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    let read = async {
        while got.values().map(Vec::len).sum::<usize>() < n as usize {
            let r = stream.next().await.expect("stream open").expect("record");
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
            got.entry(r.partition).or_default().push((r.offset, value));
        }
    };
    timeout(WAIT, read).await.expect("consumed in time");
    consumer.close();
    assert_eq!(
        got, acked,
        "consumed exactly what was acknowledged, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_are_created_and_deleted_through_the_controller_from_any_node() {
    let cluster = Cluster::start(&[1, 2, 3], &[]).await;
    let leader = cluster.controller_leader().await;
    cluster
        .until_all("all registered", |n| n.metadata().brokers().count() == 3)
        .await;

    // Create from a node that is not the controller leader: it proposes to the leader.
    let other = *cluster
        .voters
        .iter()
        .find(|v| **v != leader)
        .expect("other");
    let client = cluster.client(&[other]).await;
    let admin = client.admin();
    create(&client, NewTopic::new("orders", 3, 3)).await;
    cluster
        .until_all("orders hosted", |n| (0..3).all(|p| n.hosts("orders", p)))
        .await;
    let t = cluster.nodes[&leader].metadata();
    let orders = t.topic("orders").expect("orders").clone();
    assert_eq!(orders.partitions.len(), 3);
    assert!(orders.partitions.iter().all(|p| p.replicas.len() == 3));
    // Preferred leaders spread over the brokers.
    let preferred: BTreeSet<u64> = orders
        .partitions
        .iter()
        .map(|p| p.preferred_leader.0)
        .collect();
    assert_eq!(preferred.len(), 3);

    // A second create of the same topic is refused with a typed error.
    let dup = timeout(WAIT, admin.create_topic(NewTopic::new("orders", 3, 3)))
        .await
        .expect("answer in time")
        .expect_err("duplicate refused");
    assert_eq!(dup.code(), Some(ErrorCode::TopicAlreadyExists), "{dup}");
    // Too wide for three brokers.
    let wide = timeout(WAIT, admin.create_topic(NewTopic::new("wide", 1, 5)))
        .await
        .expect("answer in time")
        .expect_err("refused");
    assert_eq!(
        wide.code(),
        Some(ErrorCode::InvalidReplicationFactor),
        "{wide}"
    );

    produce_and_consume(&client, "orders", 3, 300).await;
    let listed = timeout(WAIT, admin.list_topics())
        .await
        .expect("list in time")
        .expect("list");
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["orders"]
    );

    // Producer ids come from the controller's blocks: distinct across nodes.
    let mut pids = BTreeSet::new();
    for id in [1, 2, 3, 1, 2, 3] {
        assert!(
            pids.insert(cluster.producer_id(id).await),
            "producer id twice"
        );
    }

    // Delete: every node stops its partitions, removes their data, and forgets the topic.
    timeout(WAIT, admin.delete_topics(&["orders"]))
        .await
        .expect("delete in time")
        .expect("deleted");
    cluster
        .until_all("orders gone", |n| {
            n.metadata().topic("orders").is_none() && (0..3).all(|p| !n.hosts("orders", p))
        })
        .await;
    for id in [1, 2, 3] {
        let parts = cluster.dir.path().join(format!("n{id}")).join("partitions");
        let wait = async {
            while std::fs::read_dir(&parts).is_ok_and(|mut d| d.next().is_some()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(WAIT, wait)
            .await
            .expect("partition directories removed");
    }
    client.close().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_survives_losing_its_leader_and_a_full_restart() {
    let mut cluster = Cluster::start(&[1, 2, 3], &[]).await;
    let leader = cluster.controller_leader().await;
    cluster
        .until_all("all registered", |n| n.metadata().brokers().count() == 3)
        .await;
    let client = cluster.client(&[1, 2, 3]).await;
    create(&client, NewTopic::new("before", 2, 3)).await;
    client.close().await;
    let mut pids = BTreeSet::new();
    for id in [1, 2, 3] {
        assert!(
            pids.insert(cluster.producer_id(id).await),
            "producer id twice"
        );
    }

    // The controller leader goes away: the others elect a new one, fence the silent broker,
    // and creation still works, placing replicas on live brokers only (while it is down, new
    // topics grow the log past several compactions).
    cluster.stop(leader).await;
    let new_leader = cluster.controller_leader().await;
    assert_ne!(new_leader, leader);
    cluster
        .until_all("the stopped broker fenced", |n| {
            n.metadata()
                .broker(floe_raft::NodeId(leader))
                .is_some_and(|b| b.fenced)
        })
        .await;
    let survivor = *cluster.nodes.keys().next().expect("a node");
    let client = cluster.client(&[survivor]).await;
    create(&client, NewTopic::new("after-failover", 2, 2)).await;
    let placed = cluster.nodes[&new_leader].metadata();
    let placed = placed.topic("after-failover").expect("created");
    assert!(
        placed
            .partitions
            .iter()
            .all(|p| !p.replicas.contains(&floe_raft::NodeId(leader))),
        "nothing placed on the fenced broker"
    );
    produce_and_consume(&client, "after-failover", 2, 100).await;
    let start_before = cluster.nodes[&new_leader]
        .controller_log_start()
        .expect("voter");
    // Heartbeats are not logged: metadata changes grow the log. (A create a loaded machine
    // answers with a timeout may still apply; either way the log start tells.)
    let admin = client.admin();
    let mut grown = 0;
    while cluster.nodes[&new_leader].controller_log_start() <= Some(start_before + 16) {
        assert!(grown < 200, "the controller log is compacted as it grows");
        let topic = NewTopic::new(format!("grow-{grown}"), 1, 1);
        let _ = timeout(WAIT, admin.create_topic(topic)).await;
        grown += 1;
    }
    client.close().await;

    // The stopped node comes back behind the compacted log: it catches up (from a snapshot).
    cluster.restart(leader).await;
    cluster
        .until_all("caught up and unfenced", |n| {
            let m = n.metadata();
            m.topic("after-failover").is_some()
                && m.topic("before").is_some()
                && m.broker(floe_raft::NodeId(leader))
                    .is_some_and(|b| !b.fenced)
        })
        .await;
    let back = cluster.nodes[&leader]
        .controller_log_start()
        .expect("voter");
    assert!(back > 0, "the restarted voter's log starts at a snapshot");

    // Restart everything: the metadata is durable (snapshot + tail), the same on every node.
    let topics_before: Vec<_> = cluster.nodes[&new_leader]
        .metadata()
        .topics()
        .cloned()
        .collect();
    let next_pid_before = cluster.nodes[&new_leader].metadata().next_producer_id();
    cluster.stop_all().await;
    for id in [1, 2, 3] {
        cluster.restart(id).await;
    }
    cluster.controller_leader().await;
    cluster
        .until_all("metadata restored", |n| {
            n.metadata().topics().cloned().collect::<Vec<_>>() == topics_before
        })
        .await;
    for n in cluster.nodes.values() {
        assert!(n.metadata().next_producer_id() >= next_pid_before);
    }
    // Producer ids stay unique across the restart.
    for id in [1, 2, 3] {
        let pid = cluster.producer_id(id).await;
        assert!(
            pids.insert(pid),
            "producer id {pid} handed out again after a restart"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_only_node_registers_learns_the_metadata_and_hosts_new_topics() {
    let cluster = Cluster::start(&[1, 2, 3], &[4]).await;
    cluster.controller_leader().await;
    cluster
        .until_all("all four registered", |n| {
            n.metadata().brokers().count() == 4
        })
        .await;
    assert_eq!(
        cluster.nodes[&4].controller_log_start(),
        None,
        "not a voter"
    );

    // Created through the broker-only node (it calls the controller leader).
    let client = cluster.client(&[4]).await;
    create(&client, NewTopic::new("spread", 4, 3)).await;
    cluster
        .until_all("spread known", |n| n.metadata().topic("spread").is_some())
        .await;
    // 4 partitions x 3 replicas over 4 brokers: 3 replicas on each.
    let hosted = |n: &Node| (0..4).filter(|p| n.hosts("spread", *p)).count() == 3;
    cluster
        .until_all("3 replicas of spread on each node", hosted)
        .await;
    produce_and_consume(&client, "spread", 4, 200).await;
    // And its producer ids come from the controller too.
    let a = cluster.producer_id(4).await;
    let b = cluster.producer_id(1).await;
    assert_ne!(a, b);
    client.close().await;
    cluster.shutdown().await;
}

/// Produces `rounds` rounds of `per_round` records of about `pad` bytes to partition 0 of
/// `topic` (acks=all, uncompressed: the padding would compress to nothing), each round
/// awaited before the next so the log holds many batches; returns what was acknowledged as
/// (offset, value).
async fn produce_rounds(
    client: &Client,
    topic: &str,
    rounds: u32,
    per_round: u32,
    pad: usize,
) -> Vec<(u64, String)> {
    let producer = Producer::builder(client)
        .acks(Acks::All)
        .idempotence(true)
        .linger(Duration::from_millis(1))
        .compression(Compression::None)
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(30))
        .build();
    let producer = timeout(WAIT, producer)
        .await
        .expect("producer in time")
        .expect("producer");
    let padding = "x".repeat(pad);
    let mut acked = Vec::new();
    for r in 0..rounds {
        let mut deliveries = Vec::new();
        for i in 0..per_round {
            let value = format!("{topic}-{r}-{i}-{padding}");
            let record = ProducerRecord::new(topic, value.clone().into_bytes()).partition(0);
            let d = timeout(WAIT, producer.dispatch(record))
                .await
                .expect("dispatch in time")
                .expect("dispatch");
            deliveries.push((value, d));
        }
        for (value, d) in deliveries {
            let meta = timeout(WAIT, d)
                .await
                .expect("delivery in time")
                .unwrap_or_else(|e| panic!("{value} not delivered: {e}"));
            acked.push((meta.offset, value));
        }
    }
    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
    acked
}

/// Reads partition 0 of `topic` from its earliest offset until the record at `last`.
async fn read_from_earliest(client: &Client, topic: &str, last: u64) -> Vec<(u64, String)> {
    let consumer = Consumer::builder(client).build().expect("consumer");
    timeout(
        WAIT,
        consumer.assign(TopicPartition::new(topic, 0), StartFrom::Earliest),
    )
    .await
    .expect("assign in time")
    .expect("assign");
    let mut stream = consumer.stream();
    let mut got = Vec::new();
    let read = async {
        loop {
            let r = stream.next().await.expect("stream open").expect("record");
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
            got.push((r.offset, value));
            if r.offset >= last {
                break;
            }
        }
    };
    timeout(WAIT, read).await.expect("consumed in time");
    consumer.close();
    got
}

/// A topic created with a small `retention.bytes` drops its old segments on every replica,
/// while a topic without one on the same nodes (whose node default keeps everything) keeps
/// all of its log; a replica that was down while the log start moved past its log end is
/// caught up from the leader's log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topics_own_retention_is_applied_and_a_lagging_replica_catches_up() {
    let mut cluster = Cluster::start_with(&[1, 2, 3], &[], |c| c.log.segment_bytes = 4096).await;
    cluster.controller_leader().await;
    cluster
        .until_all("all registered", |n| n.metadata().brokers().count() == 3)
        .await;
    let client = cluster.client(&[1, 2, 3]).await;
    create(
        &client,
        NewTopic::new("trimmed", 1, 3).config("retention.bytes", "8192"),
    )
    .await;
    create(&client, NewTopic::new("kept", 1, 3)).await;
    cluster
        .until_all("both hosted", |n| {
            n.hosts("trimmed", 0) && n.hosts("kept", 0)
        })
        .await;
    // Stop a replica that does not lead `trimmed`: it misses everything produced next.
    let agreed = async {
        loop {
            let seen: BTreeSet<Option<u64>> = cluster
                .nodes
                .values()
                .map(|n| n.leader_of("trimmed", 0))
                .collect();
            if let [Some(l)] = seen.into_iter().collect::<Vec<_>>()[..] {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let leader = timeout(WAIT, agreed).await.expect("a leader of trimmed");
    let lagging = *cluster
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    cluster.stop(lagging).await;

    // ~60 KB into each topic: 15 segments of 4 KiB.
    let trimmed = produce_rounds(&client, "trimmed", 20, 10, 300).await;
    let kept = produce_rounds(&client, "kept", 20, 10, 300).await;
    let trimmed_end = trimmed.last().expect("acked").0 + 1;
    cluster
        .until_all(
            "trimmed's old segments dropped on every running replica",
            |n| n.log_start("trimmed", 0).is_some_and(|s| s > 0),
        )
        .await;
    for (id, n) in &cluster.nodes {
        assert_eq!(n.log_start("kept", 0), Some(0), "node {id} kept everything");
    }
    assert_eq!(
        read_from_earliest(&client, "kept", kept.last().expect("acked").0).await,
        kept,
        "kept: every acknowledged record from offset 0"
    );
    // What is left of trimmed is served from its new log start (raw fetches at the leader's
    // current log start: retention may still move it while this runs).
    let served = async {
        loop {
            let leader = cluster.nodes.values().find_map(|n| {
                let l = n.leader_of("trimmed", 0)?;
                cluster.nodes.contains_key(&l).then_some(l)
            });
            if let Some(l) = leader {
                let start = cluster.nodes[&l].log_start("trimmed", 0).expect("hosted");
                let r = fetch_at(&cluster.connect(l).await, "trimmed", start).await;
                if r.error == ErrorCode::None && !r.batches.is_empty() {
                    return (start, r.log_start_offset, r.high_watermark);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (start, reported, hw) = timeout(WAIT, served).await.expect("trimmed served");
    assert!(
        start > 0 && reported >= start,
        "trimmed starts past offset 0"
    );
    assert!(hw >= trimmed_end, "everything acknowledged is committed");

    // The stopped replica comes back behind the leader's log start: it is caught up from
    // there (a snapshot of the start, then the tail) for the trimmed topic, and in full for
    // the kept one.
    cluster.restart(lagging).await;
    let caught_up = |n: &Node| {
        // (A leader change since adds its no-op: at least the acknowledged end.)
        n.high_watermark("trimmed", 0) >= Some(trimmed_end)
            && n.log_start("trimmed", 0).is_some_and(|s| s > 0)
            && n.high_watermark("kept", 0) >= Some(kept.last().expect("acked").0 + 1)
    };
    cluster
        .until_all("the restarted replica caught up", caught_up)
        .await;
    client.close().await;
    cluster.shutdown().await;
}

/// A raw fetch of partition 0 of `topic` at `offset` (a 200 ms long poll).
async fn fetch_at(
    conn: &floe_net::quinn::Connection,
    topic: &str,
    offset: u64,
) -> FetchPartitionResult {
    let req = Request::from(FetchRequest {
        max_wait_ms: 200,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                max_bytes: 1 << 20,
            }],
        }],
    });
    let resp = timeout(
        WAIT,
        floe_net::call_client(conn, &req, 1, Default::default()),
    )
    .await
    .expect("answer in time")
    .expect("answer");
    let Response::Fetch(mut r) = resp else {
        panic!("not a Fetch answer");
    };
    r.topics.remove(0).partitions.remove(0)
}

/// A fetch at an offset the leader appended but has not committed (its followers are down,
/// an `acks=leader` producer was answered) waits and answers empty with the high watermark,
/// as Kafka does; only an offset past the leader's log end is out of range.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_above_the_high_watermark_but_within_the_log_waits() {
    // Long election timeouts (5-10 s): the partition leader keeps leading for at least 5 s
    // after it lost its followers (check-quorum), long enough to fetch from it.
    let mut cluster = Cluster::start_with(&[1, 2, 3], &[], |c| c.election_ticks = 500).await;
    cluster.controller_leader().await;
    cluster
        .until_all("all registered", |n| n.metadata().brokers().count() == 3)
        .await;
    let client = cluster.client(&[1, 2, 3]).await;
    create(&client, NewTopic::new("pending", 1, 3)).await;
    let agreed = async {
        loop {
            let seen: BTreeSet<Option<u64>> = cluster
                .nodes
                .values()
                .map(|n| n.leader_of("pending", 0))
                .collect();
            if let [Some(l)] = seen.into_iter().collect::<Vec<_>>()[..] {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let leader = timeout(WAIT, agreed).await.expect("a leader of pending");
    let committed = produce_rounds(&client, "pending", 1, 1, 10).await;
    let hw = committed[0].0 + 1;
    cluster
        .until_all("the first record committed", |n| {
            n.high_watermark("pending", 0) == Some(hw)
        })
        .await;
    let conn = cluster.connect(leader).await;
    let producer = Producer::builder(&client)
        .acks(Acks::Leader)
        .idempotence(false)
        .linger(Duration::from_millis(1))
        .build();
    let producer = timeout(WAIT, producer)
        .await
        .expect("producer in time")
        .expect("producer");
    let followers: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for f in followers {
        cluster.stop(f).await;
    }

    // Appended on the leader alone: acknowledged (acks=leader), not committed.
    let d = timeout(
        WAIT,
        producer.dispatch(ProducerRecord::new("pending", b"uncommitted".to_vec()).partition(0)),
    )
    .await
    .expect("dispatch in time")
    .expect("dispatch");
    let appended = timeout(WAIT, d)
        .await
        .expect("delivery in time")
        .expect("acks=leader answered")
        .offset;
    assert_eq!(appended, hw, "appended right after the committed record");
    let log_end = appended + 1;

    for offset in [appended, log_end] {
        let r = fetch_at(&conn, "pending", offset).await;
        assert_eq!(
            r.error,
            ErrorCode::None,
            "offset {offset} within the log waits (high watermark {hw}, log end {log_end})"
        );
        assert!(r.batches.is_empty(), "nothing committed to serve there");
        assert_eq!(r.high_watermark, hw);
    }
    let r = fetch_at(&conn, "pending", log_end + 1).await;
    assert_eq!(r.error, ErrorCode::OffsetOutOfRange, "past the log end");
    // Committed data is served as before.
    let r = fetch_at(&conn, "pending", committed[0].0).await;
    assert_eq!(r.error, ErrorCode::None);
    assert!(!r.batches.is_empty());
    drop(producer);
    client.close().await;
    cluster.shutdown().await;
}

/// Heartbeats are leader-local: an idle cluster whose brokers keep heartbeating (every
/// 200 ms here) adds nothing to the controller log, while the leader still fences a broker
/// that goes silent (a replicated decision) and unfences it when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_cluster_heartbeats_without_growing_the_controller_log() {
    // 1-2 s election timeouts: a loaded machine does not depose the leader mid-test (a new
    // term's first entry would grow the log).
    let mut cluster = Cluster::start_with(&[1, 2, 3], &[], |c| c.election_ticks = 100).await;
    let leader = cluster.controller_leader().await;
    cluster
        .until_all("all registered", |n| {
            let m = n.metadata();
            m.brokers().count() == 3 && m.brokers().all(|b| !b.fenced)
        })
        .await;
    let end = cluster.nodes[&leader]
        .controller_commit_end()
        .expect("voter");
    let heard = cluster.nodes[&leader]
        .controller_heartbeats_heard()
        .expect("voter");
    // 30 heartbeats: about 10 from each broker.
    let many = async {
        while cluster.nodes[&leader].controller_heartbeats_heard() < Some(heard + 30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, many)
        .await
        .expect("heartbeats answered by the leader");
    assert_eq!(
        cluster.controller_leader().await,
        leader,
        "the same leader throughout"
    );
    for (id, n) in &cluster.nodes {
        assert_eq!(
            n.controller_commit_end(),
            Some(end),
            "node {id}: the controller log did not grow while heartbeats flowed"
        );
    }

    // Fencing still works, and is replicated: a broker that stops is fenced everywhere.
    let silent = *cluster
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    cluster.stop(silent).await;
    cluster
        .until_all("the stopped broker fenced", |n| {
            n.metadata()
                .broker(floe_raft::NodeId(silent))
                .is_some_and(|b| b.fenced)
        })
        .await;
    cluster.restart(silent).await;
    cluster
        .until_all("unfenced once it heartbeats again", |n| {
            n.metadata()
                .broker(floe_raft::NodeId(silent))
                .is_some_and(|b| !b.fenced)
        })
        .await;
    cluster.shutdown().await;
}

/// A producer re-initialising the id it holds (after a restart) gets the next epoch only if
/// it names the current one, on any node (the controller keeps every id's epoch); an
/// instance holding an older epoch is fenced with `ProducerFenced`, and an id never handed
/// out is `UnknownProducerId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reinit_bumps_only_the_current_producer_epoch_and_fences_stale_ones() {
    let cluster = Cluster::start(&[1, 2, 3], &[]).await;
    cluster.controller_leader().await;
    cluster
        .until_all("all registered", |n| n.metadata().brokers().count() == 3)
        .await;
    let pid = cluster.producer_id(1).await;
    // A restarted instance re-initialises through another node: epoch 0 -> 1.
    let r = cluster.init_producer(2, pid, 0).await;
    assert_eq!(
        (r.error, r.producer_id, r.producer_epoch),
        (ErrorCode::None, pid, 1)
    );
    // The old instance, still at epoch 0, is fenced (through a third node).
    let r = cluster.init_producer(3, pid, 0).await;
    assert_eq!(r.error, ErrorCode::ProducerFenced, "stale epoch 0");
    // The current holder bumps again; then its own old epoch is stale too.
    let r = cluster.init_producer(1, pid, 1).await;
    assert_eq!((r.error, r.producer_epoch), (ErrorCode::None, 2));
    let r = cluster.init_producer(2, pid, 1).await;
    assert_eq!(r.error, ErrorCode::ProducerFenced, "stale epoch 1");
    let r = cluster.init_producer(3, pid, 5).await;
    assert_eq!(r.error, ErrorCode::ProducerFenced, "an epoch never given");
    // Never handed out.
    let r = cluster.init_producer(1, i64::MAX, 0).await;
    assert_eq!(r.error, ErrorCode::UnknownProducerId);
    let r = cluster.init_producer(1, -1, 3).await;
    assert_eq!(r.error, ErrorCode::InvalidRequest, "an epoch without an id");
    cluster.shutdown().await;
}

//! The controller as a Raft group wired into real nodes (in one process, loopback QUIC, TLS
//! from `floe_broker::certs`), driven by the real floe-client's `Admin`, producer and consumer:
//! topics are created and deleted through the controller from any node, partitions open and
//! close as the metadata changes, the controller survives losing its leader and full restarts
//! (its log durable, compacted to snapshots), producer ids come from its blocks, and a node
//! that is not a voter registers, learns the metadata and hosts replicas of new topics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use floe_broker::certs::{self, IssueRequest};
use floe_broker::node::{BrokerSpec, Node, NodeConfig};
use floe_broker::peer::PeerAddress;
use floe_client::{
    Acks, Client, Consumer, NewTopic, Producer, ProducerRecord, StartFrom, TopicPartition,
};
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use floe_protocol::ErrorCode;
use floe_protocol::client::{InitProducerIdRequest, Request, Response};
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
        let dir = tempfile::tempdir().expect("tempdir");
        let c = certs_dir(dir.path());
        certs::init_ca(&c).expect("ca");
        let mut cluster = Cluster {
            dir,
            nodes: BTreeMap::new(),
            specs: BTreeMap::new(),
            voters: voters.to_vec(),
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

    /// Asks node `id` for a producer id (a raw `InitProducerId`).
    async fn producer_id(&self, id: u64) -> i64 {
        let (_, ca) = identity(self.dir.path(), id);
        let ep = Endpoint::client(SocketAddr::new(LOCAL, 0), &ca, &EndpointOptions::loopback())
            .expect("client endpoint");
        let conn = timeout(WAIT, ep.connect(self.specs[&id].client_addr, "127.0.0.1"))
            .await
            .expect("connect in time")
            .expect("connect");
        let req = Request::from(InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
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
    // and creation still works, placing replicas on live brokers only (while it is down,
    // heartbeats keep the log growing past several compactions).
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
    client.close().await;
    let start_before = cluster.nodes[&new_leader]
        .controller_log_start()
        .expect("voter");
    let grown = async {
        while cluster.nodes[&new_leader].controller_log_start() <= Some(start_before + 16) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, grown)
        .await
        .expect("the controller log is compacted as it grows");

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

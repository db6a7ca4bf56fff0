//! An in-process cluster harness for the lifecycle tests: N real nodes on loopback QUIC
//! (TLS from `floe_broker::certs`), one topic placed over all of them, the real floe-client,
//! and a producer that runs in the background recording what was acknowledged.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use floe_broker::certs::{self, IssueRequest};
use floe_broker::node::{BrokerSpec, Node, NodeConfig, TopicSpec};
use floe_broker::peer::PeerAddress;
use floe_client::{
    Acks, Client, Consumer, Error, Producer, ProducerRecord, StartFrom, TopicPartition,
};
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use futures_util::StreamExt;
use tokio::sync::Mutex;
use tokio::time::timeout;

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const TOPIC: &str = "events";
/// Generous: the machine is shared by several builds at once.
pub const WAIT: Duration = Duration::from_secs(30);

/// (offset, value) per partition.
pub type Acked = BTreeMap<u32, Vec<(u64, String)>>;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
    pub brokers: Vec<BrokerSpec>,
    pub topic: TopicSpec,
}

fn identity(dir: &Path, id: u64) -> (Identity, CaCerts) {
    let name = format!("node-{id}");
    let me = Identity::from_pem_files(
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
    .expect("identity");
    (me, CaCerts::from_pem_file(dir.join("ca.pem")).expect("ca"))
}

pub async fn start_cluster(ids: &[u64], partitions: u32) -> Cluster {
    start_cluster_rf(ids, partitions, ids.len() as u16).await
}

/// Like [`start_cluster`], with `rf` replicas per partition (placed by the controller).
pub async fn start_cluster_rf(ids: &[u64], partitions: u32, rf: u16) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_dir = dir.path().join("certs");
    certs::init_ca(&certs_dir).expect("ca");
    let mut endpoints = Vec::new();
    let mut brokers = Vec::new();
    for &id in ids {
        let req = IssueRequest::new(&format!("node-{id}"))
            .expect("name")
            .ip(LOCAL);
        certs::issue(&certs_dir, &req, &certs_dir).expect("issue");
        let (me, ca) = identity(&certs_dir, id);
        let any = SocketAddr::new(LOCAL, 0);
        let opts = EndpointOptions::loopback();
        let client = Endpoint::client_listener(any, &me, &opts).expect("client endpoint");
        let peer = Endpoint::peer(any, &me, &ca, &opts).expect("peer endpoint");
        brokers.push(BrokerSpec {
            id,
            client_addr: client.local_addr().expect("addr"),
            peer: PeerAddress {
                addr: peer.local_addr().expect("addr"),
                server_name: LOCAL.to_string(),
            },
        });
        endpoints.push((id, client, peer));
    }
    let topic = TopicSpec::placed(TOPIC, partitions, rf, ids).expect("placement");
    let mut nodes = BTreeMap::new();
    for (id, client, peer) in endpoints {
        let mut cfg = NodeConfig::new(id, dir.path().join(format!("n{id}")), brokers.clone());
        cfg.topics = vec![topic.clone()];
        let node = Node::start(cfg, client, peer).await.expect("node starts");
        nodes.insert(id, node);
    }
    Cluster {
        dir,
        nodes,
        brokers,
        topic,
    }
}

impl Cluster {
    /// Waits until every live node agrees on a live leader for `partition`.
    pub async fn leader(&self, partition: u32) -> u64 {
        let wait = async {
            loop {
                if let Some(l) = self.agreed_leader(partition) {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        timeout(WAIT, wait).await.expect("a leader is elected")
    }

    /// The leader every live node names for `partition`, if they agree on a live one.
    pub fn agreed_leader(&self, partition: u32) -> Option<u64> {
        let seen: BTreeSet<Option<u64>> = self
            .nodes
            .values()
            .map(|n| n.leader_of(TOPIC, partition))
            .collect();
        match seen.iter().copied().collect::<Vec<_>>()[..] {
            [Some(l)] if self.nodes.contains_key(&l) => Some(l),
            _ => None,
        }
    }

    pub async fn client(&self) -> Client {
        let addrs: Vec<String> = self
            .nodes
            .values()
            .map(|n| n.client_addr().expect("addr").to_string())
            .collect();
        let build = Client::builder()
            .brokers(addrs)
            .ca_cert(self.dir.path().join("certs").join("ca.pem"))
            .endpoint_options(EndpointOptions::loopback())
            .request_timeout(Duration::from_secs(2))
            .metadata_max_age(Duration::from_millis(300))
            .retries(50, Duration::from_millis(20))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .build();
        timeout(WAIT, build)
            .await
            .expect("client in time")
            .expect("client")
    }

    pub async fn shutdown_all(&mut self) {
        for (_, n) in std::mem::take(&mut self.nodes) {
            timeout(WAIT, n.shutdown()).await.expect("shutdown in time");
        }
    }
}

pub async fn producer(client: &Client) -> Producer {
    let build = Producer::builder(client)
        .acks(Acks::All)
        .idempotence(true)
        .linger(Duration::from_millis(2))
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(20))
        .build();
    timeout(WAIT, build)
        .await
        .expect("producer in time")
        .expect("producer")
}

/// A producer running in the background: rounds of `per_round` records spread over
/// `partitions` partitions (value `v<i>`, distinct), each round awaited before the next.
pub struct Background {
    stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Acked>>,
    task: tokio::task::JoinHandle<(Producer, u64)>,
}

impl Background {
    pub fn start(producer: Producer, partitions: u32, per_round: u32) -> Background {
        Self::start_padded(producer, partitions, per_round, 0)
    }

    /// Like [`Background::start`], each value padded with `pad` bytes (to fill logs fast).
    pub fn start_padded(
        producer: Producer,
        partitions: u32,
        per_round: u32,
        pad: usize,
    ) -> Background {
        let padding = "x".repeat(pad);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Acked::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            let mut unacked = 0u64;
            while !s.load(Ordering::Relaxed) {
                let mut deliveries = Vec::new();
                for _ in 0..per_round {
                    let p = (i % u64::from(partitions)) as u32;
                    let value = format!("v{i}{padding}");
                    i += 1;
                    let record =
                        ProducerRecord::new(TOPIC, value.clone().into_bytes()).partition(p);
                    let d = timeout(WAIT, producer.dispatch(record))
                        .await
                        .expect("dispatch in time")
                        .expect("dispatch");
                    deliveries.push((p, value, d));
                }
                for (p, value, d) in deliveries {
                    match timeout(WAIT, d).await.expect("delivery in time") {
                        Ok(meta) => a
                            .lock()
                            .await
                            .entry(p)
                            .or_default()
                            .push((meta.offset, value)),
                        Err(Error::DeliveryTimeout { .. }) => unacked += 1,
                        Err(e) => panic!("unexpected delivery error: {e}"),
                    }
                }
            }
            (producer, unacked)
        });
        Background { stop, acked, task }
    }

    pub async fn count(&self) -> usize {
        self.acked.lock().await.values().map(Vec::len).sum()
    }

    /// Waits until at least `n` records in all were acknowledged.
    pub async fn wait_for(&self, n: usize) {
        let wait = async {
            while self.count().await < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{n} records acknowledged in time"));
    }

    /// Stops after the current round; returns the producer, what was acknowledged and how
    /// many deliveries timed out.
    pub async fn stop(self) -> (Producer, Acked, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (producer, unacked) = timeout(WAIT, self.task)
            .await
            .expect("producer stops in time")
            .expect("producer task");
        let acked = std::mem::take(&mut *self.acked.lock().await);
        (producer, acked, unacked)
    }
}

/// Reads `partitions` partitions from the start until each holds its last offset in
/// `want`; returns what was read.
pub async fn consume(client: &Client, partitions: u32, want: &Acked) -> Acked {
    let last: BTreeMap<u32, u64> = want
        .iter()
        .filter_map(|(p, v)| v.last().map(|r| (*p, r.0)))
        .collect();
    let consumer = Consumer::builder(client).build().expect("consumer");
    for p in 0..partitions {
        timeout(
            WAIT,
            consumer.assign(TopicPartition::new(TOPIC, p), StartFrom::Earliest),
        )
        .await
        .unwrap_or_else(|_| panic!("assign of partition {p} in time"))
        .expect("assign");
    }
    let mut stream = consumer.stream();
    let mut got = Acked::new();
    let done = |g: &Acked| {
        last.iter().all(|(p, off)| {
            g.get(p)
                .and_then(|v| v.last())
                .is_some_and(|(o, _)| o >= off)
        })
    };
    let read = async {
        while !done(&got) {
            let r = stream.next().await.expect("stream open").expect("record");
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
            got.entry(r.partition).or_default().push((r.offset, value));
        }
    };
    timeout(WAIT, read).await.expect("consumed in time");
    consumer.close();
    got
}

/// Every acknowledged record is in `got` at its acknowledged offset; `got` is in offset
/// order and holds no value twice.
pub fn assert_exactly_once(want: &Acked, got: &Acked) {
    for (p, recs) in want {
        let empty = Vec::new();
        let log_recs = got.get(p).unwrap_or(&empty);
        let log: BTreeMap<u64, &String> = log_recs.iter().map(|(o, v)| (*o, v)).collect();
        for (offset, value) in recs {
            assert_eq!(
                log.get(offset).copied(),
                Some(value),
                "partition {p}: acknowledged record at {offset} lost"
            );
        }
        assert!(
            log_recs.windows(2).all(|w| w[0].0 < w[1].0),
            "partition {p}: consumed out of order"
        );
        let values: BTreeSet<&String> = log_recs.iter().map(|r| &r.1).collect();
        assert_eq!(
            values.len(),
            log_recs.len(),
            "partition {p}: a record appears twice"
        );
    }
}

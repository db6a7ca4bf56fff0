//! Three real nodes in one process on loopback QUIC (TLS from `floe_broker::certs`), one topic
//! of 2 partitions × 3 replicas, driven by the real floe-client: produce with acks=all and
//! consume everything back exactly; then stop the leader of a partition, keep producing
//! (the client follows `NotLeader` to the new leader) and consume everything acknowledged.
//!
//! The producer is idempotent (the partitions dedupe retried batches by producer id and
//! sequence), so the second phase asserts exactly once: every acknowledged record at its
//! acknowledged offset, no record twice, order kept.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use floe_broker::certs::{self, IssueRequest};
use floe_broker::node::{BrokerSpec, Node, NodeConfig, TopicSpec};
use floe_broker::peer::PeerAddress;
use floe_client::{
    Acks, Client, Consumer, Error, Producer, ProducerRecord, StartFrom, TopicPartition,
};
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use futures_util::StreamExt;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TOPIC: &str = "events";
const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Node>,
    brokers: Vec<BrokerSpec>,
    topic: TopicSpec,
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

async fn start_cluster(ids: &[u64], partitions: u32) -> Cluster {
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
    let topic = TopicSpec::placed(TOPIC, partitions, ids.len() as u16, ids).expect("placement");
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
    /// Starts node `id` again on its old addresses and data directory.
    async fn restart(&mut self, id: u64) {
        let certs_dir = self.dir.path().join("certs");
        let (me, ca) = identity(&certs_dir, id);
        let spec = self.brokers.iter().find(|b| b.id == id).expect("broker");
        let opts = EndpointOptions::loopback();
        let bind = async {
            loop {
                let client = Endpoint::client_listener(spec.client_addr, &me, &opts);
                let peer = Endpoint::peer(spec.peer.addr, &me, &ca, &opts);
                if let (Ok(c), Ok(p)) = (client, peer) {
                    return (c, p);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let (client, peer) = timeout(WAIT, bind).await.expect("rebind in time");
        let mut cfg = NodeConfig::new(
            id,
            self.dir.path().join(format!("n{id}")),
            self.brokers.clone(),
        );
        cfg.topics = vec![self.topic.clone()];
        let node = Node::start(cfg, client, peer).await.expect("node restarts");
        self.nodes.insert(id, node);
    }

    /// Waits until every live node agrees on a live leader for `partition`.
    async fn leader(&self, partition: u32) -> u64 {
        let wait = async {
            loop {
                let seen: BTreeSet<Option<u64>> = self
                    .nodes
                    .values()
                    .map(|n| n.leader_of(TOPIC, partition))
                    .collect();
                if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..]
                    && self.nodes.contains_key(&l)
                {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(WAIT, wait).await.expect("a leader is elected")
    }

    async fn client(&self) -> Client {
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
            // The client refreshes leaders on `NotLeader`, but an api call to a leader that
            // stopped answering (list offsets on assign) only moves on with fresh metadata.
            .metadata_max_age(Duration::from_millis(300))
            .retries(50, Duration::from_millis(20))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .build();
        timeout(WAIT, build)
            .await
            .expect("client in time")
            .expect("client")
    }
}

async fn producer(client: &Client) -> Producer {
    let build = Producer::builder(client)
        .acks(Acks::All)
        .idempotence(true)
        .linger(Duration::from_millis(2))
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(8))
        .build();
    timeout(WAIT, build)
        .await
        .expect("producer in time")
        .expect("producer")
}

/// Sends `values[i]` to partition `i % 2`; returns what was acknowledged, per partition, in
/// send order, with offsets.
async fn produce(
    producer: &Producer,
    range: std::ops::Range<u32>,
) -> BTreeMap<u32, Vec<(u64, String)>> {
    let mut deliveries = Vec::new();
    for i in range {
        let p = i % 2;
        let value = format!("v{i}");
        let record = ProducerRecord::new(TOPIC, value.clone().into_bytes()).partition(p);
        let d = timeout(WAIT, producer.dispatch(record))
            .await
            .expect("dispatch in time")
            .expect("dispatch");
        deliveries.push((p, value, d));
    }
    let mut acked: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for (p, value, d) in deliveries {
        match timeout(WAIT, d).await.expect("delivery in time") {
            Ok(meta) => acked.entry(p).or_default().push((meta.offset, value)),
            Err(Error::DeliveryTimeout { .. }) => {}
            Err(e) => panic!("unexpected delivery error: {e}"),
        }
    }
    acked
}

/// Reads partitions 0 and 1 from the start until `until(records)` holds.
async fn consume(
    client: &Client,
    until: impl Fn(&BTreeMap<u32, Vec<(u64, String)>>) -> bool,
) -> BTreeMap<u32, Vec<(u64, String)>> {
    let consumer = Consumer::builder(client).build().expect("consumer");
    for p in 0..2 {
        timeout(
            WAIT,
            consumer.assign(TopicPartition::new(TOPIC, p), StartFrom::Earliest),
        )
        .await
        .unwrap_or_else(|_| panic!("assign of partition {p} in time"))
        .expect("assign");
    }
    let mut stream = consumer.stream();
    let mut got: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    let read = async {
        while !until(&got) {
            let r = stream.next().await.expect("stream open").expect("record");
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
            got.entry(r.partition).or_default().push((r.offset, value));
        }
    };
    timeout(WAIT, read).await.expect("consumed in time");
    consumer.close();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_serve_produce_and_consume_and_survive_a_leader_stop() {
    let mut cluster = start_cluster(&[1, 2, 3], 2).await;
    for p in 0..2 {
        cluster.leader(p).await;
    }
    let client = cluster.client().await;
    let producer = producer(&client).await;

    // Phase 1: 1,000 records, acks=all, all acknowledged; consumed back exactly.
    let acked = produce(&producer, 0..1000).await;
    assert_eq!(acked.values().map(Vec::len).sum::<usize>(), 1000);
    for (p, recs) in &acked {
        assert_eq!(recs.len(), 500, "partition {p}");
        // Offsets increase in send order (Raft's no-op entries also take offsets, so they
        // need not be contiguous).
        assert!(
            recs.windows(2).all(|w| w[0].0 < w[1].0),
            "partition {p}: offsets not increasing"
        );
    }
    let got = consume(&client, |g| g.values().map(Vec::len).sum::<usize>() >= 1000).await;
    assert_eq!(
        got, acked,
        "consumed exactly what was acknowledged, in order"
    );

    // Phase 2: stop the leader of partition 0 and keep producing.
    let old = cluster.leader(0).await;
    let node = cluster.nodes.remove(&old).expect("leader node");
    timeout(WAIT, node.shutdown())
        .await
        .expect("shutdown in time");
    let acked2 = produce(&producer, 1000..1400).await;
    let new = cluster.leader(0).await;
    assert_ne!(new, old);
    let n2: usize = acked2.values().map(Vec::len).sum();
    // Idempotent retries within the delivery timeout: every record is acknowledged.
    assert_eq!(n2, 400, "records not acknowledged after the leader stopped");

    // Every acknowledged record is there, at its acknowledged offset, in order.
    let want: BTreeMap<u32, Vec<(u64, String)>> = [0, 1]
        .into_iter()
        .map(|p| {
            let mut all = acked.get(&p).cloned().unwrap_or_default();
            all.extend(acked2.get(&p).cloned().unwrap_or_default());
            (p, all)
        })
        .collect();
    let last: BTreeMap<u32, u64> = want
        .iter()
        .map(|(p, v)| (*p, v.last().map_or(0, |r| r.0)))
        .collect();
    let got = consume(&client, |g| {
        last.iter().all(|(p, off)| {
            g.get(p)
                .and_then(|v| v.last())
                .is_some_and(|(o, _)| o >= off)
        })
    })
    .await;
    for (p, recs) in &want {
        let log: BTreeMap<u64, &String> = got[p].iter().map(|(o, v)| (*o, v)).collect();
        for (offset, value) in recs {
            assert_eq!(
                log.get(offset).copied(),
                Some(value),
                "partition {p}: acknowledged record at {offset} lost"
            );
        }
        let offsets: Vec<u64> = got[p].iter().map(|r| r.0).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: consumed out of order"
        );
        // Exactly once: no value twice (every value sent is distinct).
        let values: BTreeSet<&String> = got[p].iter().map(|r| &r.1).collect();
        assert_eq!(
            values.len(),
            got[p].len(),
            "partition {p}: a record appears twice"
        );
    }
    // Phase 3: the stopped node restarts from its disk and catches up with the leaders.
    cluster.restart(old).await;
    let caught_up = async {
        loop {
            let mut done = true;
            for p in 0..2 {
                let leader = cluster.leader(p).await;
                let want = cluster.nodes[&leader].high_watermark(TOPIC, p);
                if cluster.nodes[&old].high_watermark(TOPIC, p) < want {
                    done = false;
                }
            }
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, caught_up)
        .await
        .expect("restarted node catches up");
    let acked3 = produce(&producer, 1400..1500).await;
    assert_eq!(acked3.values().map(Vec::len).sum::<usize>(), 100);

    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
    client.close().await;
    for (_, n) in std::mem::take(&mut cluster.nodes) {
        timeout(WAIT, n.shutdown()).await.expect("shutdown in time");
    }
}

//! The single-node harness shared by broker integration tests: one `Node` hosting topic `t`
//! (2 partitions, 1 replica) on loopback QUIC with fresh certificates, and a raw client
//! connection to it.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use floe_broker::certs::{self, IssueRequest};
use floe_broker::node::{BrokerSpec, Node, NodeConfig, TopicSpec};
use floe_broker::peer::PeerAddress;
use floe_net::quinn::Connection;
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use floe_protocol::client::*;
use tokio::time::timeout;

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const WAIT: Duration = Duration::from_secs(10);

pub struct One {
    pub _dir: tempfile::TempDir,
    pub node: Node,
    pub conn: Connection,
    pub _client: Endpoint,
}

pub async fn start() -> One {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("certs");
    certs::init_ca(&c).expect("ca");
    let req = IssueRequest::new("node-1").expect("name").ip(LOCAL);
    certs::issue(&c, &req, &c).expect("issue");
    let me = Identity::from_pem_files(c.join("node-1.pem"), c.join("node-1.key")).expect("id");
    let ca = CaCerts::from_pem_file(c.join("ca.pem")).expect("ca");
    let any = SocketAddr::new(LOCAL, 0);
    let opts = EndpointOptions::loopback();
    let client_ep = Endpoint::client_listener(any, &me, &opts).expect("listener");
    let peer_ep = Endpoint::peer(any, &me, &ca, &opts).expect("peer");
    let broker = BrokerSpec {
        id: 1,
        client_addr: client_ep.local_addr().expect("addr"),
        peer: PeerAddress {
            addr: peer_ep.local_addr().expect("addr"),
            server_name: LOCAL.to_string(),
        },
    };
    let mut cfg = NodeConfig::new(1, dir.path().join("data"), vec![broker.clone()]);
    cfg.topics = vec![TopicSpec::placed("t", 2, 1, &[1]).expect("placed")];
    let node = Node::start(cfg, client_ep, peer_ep).await.expect("start");
    let wait = async {
        while (0..2).any(|p| node.leader_of("t", p) != Some(1)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(WAIT, wait).await.expect("leader elected");
    let client = Endpoint::client(any, &ca, &opts).expect("client endpoint");
    let conn = timeout(WAIT, client.connect(broker.client_addr, "127.0.0.1"))
        .await
        .expect("connect in time")
        .expect("connect");
    One {
        _dir: dir,
        node,
        conn,
        _client: client,
    }
}

pub async fn call(conn: &Connection, req: impl Into<Request>) -> Response {
    let req = req.into();
    timeout(
        WAIT,
        floe_net::call_client(conn, &req, 7, Default::default()),
    )
    .await
    .expect("answer in time")
    .expect("answer")
}

pub fn batch(values: &[&str], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(CompressionCodec::None);
    for v in values {
        b.append(ts, None, Some(v.as_bytes()), &[]).expect("append");
    }
    b.finish().expect("finish")
}

pub fn produce(topic: &str, partition: u32, batches: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: Acks::All,
        timeout_ms: 5000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, batches }],
        }],
    }
}

//! Two replicas of one group replicating over real QUIC (loopback, mutual TLS): the peer
//! transport carries Raft messages as peer frames on one lane per group.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_broker::certs::{self, IssueRequest};
use floe_broker::partition::{Acks, Replica, ReplicaConfig};
use floe_broker::peer::{GroupMessage, PeerAddress, PeerTransport, TransportOptions};
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use floe_raft::{Config, Membership, NodeId};
use floe_storage::LogConfig;
use floe_storage::backend::{Directory, MemDir};
use tokio::sync::mpsc;

const GROUP: u64 = 7;

struct Node {
    replica: Replica,
    transport: PeerTransport,
    inbound: mpsc::Receiver<GroupMessage>,
}

fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(CompressionCodec::None);
    b.append(0, None, Some(value.as_bytes()), &[])
        .expect("append");
    b.finish().expect("finish")
}

/// One round: deliver what arrived, tick every `tick_every` rounds, send what the replicas
/// want sent, collect produce answers.
fn round(nodes: &mut [Node], tick: bool, now_ms: u64, acked: &mut BTreeMap<u64, bool>) {
    for n in nodes.iter_mut() {
        while let Ok(m) = n.inbound.try_recv() {
            assert_eq!(m.group_id, GROUP);
            n.replica.handle_message(m.message).expect("message");
        }
        if tick {
            n.replica.tick(now_ms).expect("tick");
        }
        while let Some(m) = n.replica.poll_message() {
            // A full queue drops the message; Raft retransmits.
            let _ = n.transport.send(GROUP, m);
        }
        while let Some(a) = n.replica.poll_ack() {
            acked.insert(a.token, a.result.is_ok());
        }
    }
}

#[tokio::test]
async fn two_replicas_replicate_over_quic() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::init_ca(dir.path()).expect("ca");
    let ca = CaCerts::from_pem_file(dir.path().join("ca.pem")).expect("ca pem");
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut endpoints = Vec::new();
    for id in [1u64, 2] {
        let name = format!("node-{id}");
        let req = IssueRequest::new(&name).expect("name").ip(local);
        let paths = certs::issue(dir.path(), &req, dir.path()).expect("issue");
        let me = Identity::from_pem_files(&paths.cert, &paths.key).expect("identity");
        let ep = Endpoint::peer(
            SocketAddr::new(local, 0),
            &me,
            &ca,
            &EndpointOptions::loopback(),
        )
        .expect("endpoint");
        endpoints.push(ep);
    }
    let addrs: BTreeMap<u64, PeerAddress> = endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let id = i as u64 + 1;
            let addr = PeerAddress {
                addr: ep.local_addr().expect("addr"),
                server_name: format!("node-{id}"),
            };
            (id, addr)
        })
        .collect();
    let members = Membership::new([NodeId(1), NodeId(2)], []);
    let mut nodes = Vec::new();
    for (i, ep) in endpoints.into_iter().enumerate() {
        let id = i as u64 + 1;
        let (transport, inbound) =
            PeerTransport::start(id, ep, addrs.clone(), TransportOptions::default());
        let dir: Arc<dyn Directory> = Arc::new(MemDir::new());
        let cfg = ReplicaConfig {
            raft: Config::new(NodeId(id)),
            log: LogConfig::default(),
        };
        let replica = Replica::open(dir, cfg, members.clone(), 0).expect("replica");
        nodes.push(Node {
            replica,
            transport,
            inbound,
        });
    }

    let mut acked = BTreeMap::new();
    let run = async {
        let mut now_ms = 0;
        let mut produced = 0u64;
        for i in 0..4_000u64 {
            let tick = i % 5 == 0;
            if tick {
                now_ms += 10;
            }
            round(&mut nodes, tick, now_ms, &mut acked);
            if let Some(leader) = nodes.iter_mut().find(|n| n.replica.is_leader())
                && produced < 20
            {
                produced += 1;
                leader
                    .replica
                    .produce(produced, batch(&format!("v{produced}")), Acks::All)
                    .expect("produce");
            }
            let converged = nodes.iter().all(|n| {
                n.replica.high_watermark() == n.replica.log_end()
                    && n.replica.log_end() == nodes[0].replica.log_end()
            });
            if acked.len() == 20 && converged {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("no convergence: {} acknowledged", acked.len());
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("replication over QUIC within 30 s");
    assert!(acked.values().all(|ok| *ok), "{acked:?}");
    let read = |n: &Node| n.replica.read_committed(0, 1 << 20).expect("read").bytes;
    assert_eq!(read(&nodes[0]), read(&nodes[1]), "byte-identical logs");
    assert!(
        nodes[0].replica.high_watermark() >= 21,
        "20 records and a no-op"
    );
    let stray = floe_raft::Message {
        from: NodeId(1),
        to: NodeId(9),
        term: floe_raft::Term(1),
        body: floe_raft::message::Body::TimeoutNow,
    };
    assert_eq!(
        nodes[0].transport.send(GROUP, stray),
        Err(floe_broker::peer::SendError::UnknownPeer(9))
    );
    for n in nodes {
        n.transport.shutdown().await;
    }
}

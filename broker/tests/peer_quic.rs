//! Two replicas of one group replicating over real QUIC (loopback, mutual TLS): the peer
//! transport carries Raft messages as peer frames on one lane per group, and re-dials a peer
//! that went away.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_broker::certs::{self, IssueRequest};
use floe_broker::partition::{Acks, Replica, ReplicaConfig};
use floe_broker::peer::{GroupMessage, PeerAddress, PeerTransport, SendError, TransportOptions};
use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use floe_raft::message::Body;
use floe_raft::{Config, Membership, Message, NodeId, Term};
use floe_storage::LogConfig;
use floe_storage::backend::{Directory, MemDir};
use tokio::sync::mpsc;

const GROUP: u64 = 7;
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

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

fn endpoint(certs_dir: &Path, id: u64, bind: SocketAddr) -> std::io::Result<Endpoint> {
    let ca = CaCerts::from_pem_file(certs_dir.join("ca.pem")).expect("ca pem");
    let name = format!("node-{id}");
    let me = Identity::from_pem_files(
        certs_dir.join(format!("{name}.pem")),
        certs_dir.join(format!("{name}.key")),
    )
    .expect("identity");
    Endpoint::peer(bind, &me, &ca, &EndpointOptions::loopback()).map_err(std::io::Error::other)
}

/// One round: deliver what arrived, tick if asked, send what the replicas want sent,
/// collect produce answers.
fn round(nodes: &mut [Node], tick: bool, now_ms: u64, acked: &mut BTreeMap<u64, bool>) {
    for n in nodes.iter_mut() {
        while let Ok(m) = n.inbound.try_recv() {
            assert_eq!(m.group_id, GROUP);
            n.replica.handle_message(m.message).expect("message");
        }
        if tick {
            n.replica.tick(now_ms).expect("tick");
        }
        n.replica.process().expect("process");
        while let Some(m) = n.replica.poll_message() {
            // A full queue drops the message; Raft retransmits.
            let _ = n.transport.send(GROUP, m);
        }
        while let Some(a) = n.replica.poll_ack() {
            acked.insert(a.token, a.result.is_ok());
        }
    }
}

/// Drives until tokens `1..=upto` are all acknowledged and both logs are committed to the
/// same end, producing the missing ones at whichever node leads. Bounded rounds.
async fn produce_and_converge(
    nodes: &mut [Node],
    now_ms: &mut u64,
    acked: &mut BTreeMap<u64, bool>,
    from: u64,
    upto: u64,
) {
    let mut next = from;
    for i in 0..6_000u64 {
        let tick = i % 5 == 0;
        if tick {
            *now_ms += 10;
        }
        round(nodes, tick, *now_ms, acked);
        if next <= upto
            && let Some(leader) = nodes.iter_mut().find(|n| n.replica.is_leader())
        {
            leader
                .replica
                .produce(next, batch(&format!("v{next}")), Acks::All)
                .expect("produce");
            next += 1;
        }
        let end = nodes[0].replica.log_end();
        let converged = nodes.iter().all(|n| {
            n.replica.high_watermark() == n.replica.log_end() && n.replica.log_end() == end
        });
        if (from..=upto).all(|t| acked.contains_key(&t)) && converged {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no convergence: {} acknowledged", acked.len());
}

#[tokio::test]
async fn two_replicas_replicate_over_quic_and_survive_a_peer_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::init_ca(dir.path()).expect("ca");
    for id in [1u64, 2] {
        let req = IssueRequest::new(&format!("node-{id}"))
            .expect("name")
            .ip(LOCAL);
        certs::issue(dir.path(), &req, dir.path()).expect("issue");
    }
    let endpoints: Vec<Endpoint> = (1..=2)
        .map(|id| endpoint(dir.path(), id, SocketAddr::new(LOCAL, 0)).expect("endpoint"))
        .collect();
    let addrs: BTreeMap<u64, PeerAddress> = endpoints
        .iter()
        .zip(1u64..)
        .map(|(ep, id)| {
            let addr = PeerAddress {
                addr: ep.local_addr().expect("addr"),
                server_name: format!("node-{id}"),
            };
            (id, addr)
        })
        .collect();
    let members = Membership::new([NodeId(1), NodeId(2)], []);
    let mut nodes = Vec::new();
    for (ep, id) in endpoints.into_iter().zip(1u64..) {
        let (transport, inbound) =
            PeerTransport::start(id, ep, addrs.clone(), TransportOptions::default());
        let disk: Arc<dyn Directory> = Arc::new(MemDir::new());
        let log = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let cfg = ReplicaConfig::new(Config::new(NodeId(id)), log);
        let replica = Replica::open(disk, cfg, members.clone(), 0).expect("replica");
        nodes.push(Node {
            replica,
            transport,
            inbound,
        });
    }

    let mut acked = BTreeMap::new();
    let mut now_ms = 0;
    tokio::time::timeout(
        Duration::from_secs(30),
        produce_and_converge(&mut nodes, &mut now_ms, &mut acked, 1, 20),
    )
    .await
    .expect("replication over QUIC within 30 s");
    let read = |n: &Node| n.replica.read_committed(0, 1 << 20).expect("read").bytes;
    assert_eq!(read(&nodes[0]), read(&nodes[1]), "byte-identical logs");
    assert!(
        nodes[0].replica.high_watermark() >= 21,
        "20 records and a no-op"
    );

    let stray = Message {
        from: NodeId(1),
        to: NodeId(9),
        term: Term(1),
        body: Body::TimeoutNow,
    };
    assert_eq!(
        nodes[0].transport.send(GROUP, stray),
        Err(SendError::UnknownPeer(9))
    );

    // Node 2's transport goes away (its connection dies) and comes back on the same address:
    // node 1 must re-dial it, and replication goes on.
    let node2 = nodes.pop().expect("node 2");
    let addr2 = addrs[&2].addr;
    let Node {
        replica: replica2,
        transport: transport2,
        ..
    } = node2;
    transport2.shutdown().await;
    drop(transport2);
    let mut rebound = None;
    for _ in 0..100 {
        match endpoint(dir.path(), 2, addr2) {
            Ok(ep) => {
                rebound = Some(ep);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let ep = rebound.expect("node 2's address can be bound again");
    let (transport, inbound) = PeerTransport::start(2, ep, addrs, TransportOptions::default());
    nodes.push(Node {
        replica: replica2,
        transport,
        inbound,
    });
    tokio::time::timeout(
        Duration::from_secs(30),
        produce_and_converge(&mut nodes, &mut now_ms, &mut acked, 21, 30),
    )
    .await
    .expect("replication after the peer came back");
    assert!(acked.values().all(|ok| *ok), "{acked:?}");
    assert_eq!(read(&nodes[0]), read(&nodes[1]), "byte-identical logs");
    for n in nodes {
        n.transport.shutdown().await;
    }
}

#[tokio::test]
async fn a_lane_with_a_bad_frame_is_stopped_and_other_lanes_still_deliver() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::init_ca(dir.path()).expect("ca");
    for id in [1u64, 2] {
        let req = IssueRequest::new(&format!("node-{id}"))
            .expect("name")
            .ip(LOCAL);
        certs::issue(dir.path(), &req, dir.path()).expect("issue");
    }
    let ep1 = endpoint(dir.path(), 1, SocketAddr::new(LOCAL, 0)).expect("endpoint");
    let addr1 = ep1.local_addr().expect("addr");
    let (transport, mut inbound) =
        PeerTransport::start(1, ep1, BTreeMap::new(), TransportOptions::default());
    // A raw peer (node 2) speaking directly on lanes.
    let raw = endpoint(dir.path(), 2, SocketAddr::new(LOCAL, 0)).expect("endpoint");
    let conn = tokio::time::timeout(Duration::from_secs(10), raw.connect(addr1, "node-1"))
        .await
        .expect("in time")
        .expect("connect");
    let timeout_now = |group_id: u64, to: u64, term: u64| {
        floe_protocol::peer::PeerRequest::from(floe_protocol::peer::TimeoutNow {
            group_id,
            from: 2,
            to,
            term,
        })
        .encode_frame_chunks(0)
    };
    // Lane A: an append whose batches are garbage, then a good message (never delivered).
    let mut bad = floe_net::open_frame_stream(&conn).await.expect("lane");
    let garbage = floe_protocol::peer::PeerRequest::from(floe_protocol::peer::AppendEntries {
        group_id: 1,
        from: 2,
        to: 1,
        term: 1,
        prev_end: 0,
        prev_term: 0,
        commit_end: 0,
        batches: Bytes::from_static(&[0xff; 100]),
    });
    bad.write_frame(&mut garbage.encode_frame_chunks(0))
        .await
        .expect("write");
    let _ = bad.write_frame(&mut timeout_now(1, 1, 99)).await;
    // Lane B: a message for another node (dropped), then one for node 1.
    let mut good = floe_net::open_frame_stream(&conn).await.expect("lane");
    good.write_frame(&mut timeout_now(2, 5, 7))
        .await
        .expect("write");
    good.write_frame(&mut timeout_now(2, 1, 8))
        .await
        .expect("write");
    let got = tokio::time::timeout(Duration::from_secs(10), inbound.recv())
        .await
        .expect("a message in time")
        .expect("open channel");
    assert_eq!(
        (got.group_id, got.message.to, got.message.term),
        (2, NodeId(1), Term(8))
    );
    // Nothing else arrives: not the stray, not what followed the bad frame.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        inbound.try_recv().is_err(),
        "only the good lane's message to node 1"
    );
    transport.shutdown().await;
    raw.close(0, b"done");
}

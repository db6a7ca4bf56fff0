//! Bad input against a real node, while another client keeps producing (acks=all) on its own
//! connection: malformed and oversized frames, an oversized batch, a CRC mismatch, unknown
//! topics and partitions, a stale producer epoch and an out-of-order sequence, too many
//! connections from one address and too many concurrent streams on one connection. Each gets
//! its typed error (or its stream reset, or its connection closed, with a reason); the node
//! stays up, the other client is never refused, and everything it had acknowledged is in the
//! log at its acknowledged offset afterwards.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{LOCAL, WAIT, batch, call, produce};
use floe_broker::certs::{self, IssueRequest};
use floe_broker::node::{BrokerSpec, Node, NodeConfig, TopicSpec};
use floe_broker::peer::PeerAddress;
use floe_net::quinn::{Connection, ConnectionError};
use floe_net::{
    CaCerts, CloseCode, Endpoint, EndpointOptions, FrameReader, Identity, StreamCode, StreamError,
    TOO_MANY_CONNECTIONS_REASON,
};
use floe_protocol::ErrorCode;
use floe_protocol::FrameLimits;
use floe_protocol::batch::{BatchBuilder, BatchIter, CompressionCodec};
use floe_protocol::client::*;
use tokio::time::timeout;

const MAX_CONNECTIONS_PER_IP: u32 = 3;
const MAX_STREAMS: u32 = 4;
const MAX_BATCH: u32 = 64 * 1024;

struct Setup {
    _dir: tempfile::TempDir,
    node: Node,
    client: Endpoint,
    addr: SocketAddr,
}

async fn start() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("certs");
    certs::init_ca(&c).expect("ca");
    let req = IssueRequest::new("node-1").expect("name").ip(LOCAL);
    certs::issue(&c, &req, &c).expect("issue");
    let me = Identity::from_pem_files(c.join("node-1.pem"), c.join("node-1.key")).expect("id");
    let ca = CaCerts::from_pem_file(c.join("ca.pem")).expect("ca");
    let any = SocketAddr::new(LOCAL, 0);
    let mut opts = EndpointOptions::loopback();
    opts.transport.max_concurrent_bidi_streams = MAX_STREAMS;
    let client_ep = Endpoint::client_listener(any, &me, &opts).expect("listener");
    let peer_ep = Endpoint::peer(any, &me, &ca, &EndpointOptions::loopback()).expect("peer");
    let broker = BrokerSpec {
        id: 1,
        client_addr: client_ep.local_addr().expect("addr"),
        peer: PeerAddress {
            addr: peer_ep.local_addr().expect("addr"),
            server_name: LOCAL.to_string(),
        },
    };
    let mut cfg = NodeConfig::new(1, dir.path().join("data"), vec![broker.clone()]);
    cfg.topics = vec![TopicSpec::placed("t", 1, 1, &[1]).expect("placed")];
    cfg.max_connections_per_ip = MAX_CONNECTIONS_PER_IP;
    cfg.log.max_batch_bytes = MAX_BATCH;
    let node = Node::start(cfg, client_ep, peer_ep).await.expect("start");
    let wait = async {
        while node.leader_of("t", 0) != Some(1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(WAIT, wait).await.expect("leader elected");
    let client = Endpoint::client(any, &ca, &EndpointOptions::loopback()).expect("client");
    Setup {
        _dir: dir,
        node,
        client,
        addr: broker.client_addr,
    }
}

impl Setup {
    async fn connect(&self) -> Connection {
        timeout(WAIT, self.client.connect(self.addr, "127.0.0.1"))
            .await
            .expect("connect in time")
            .expect("connect")
    }
}

fn produce_result(r: Response) -> ProducePartitionResult {
    let Response::Produce(mut r) = r else {
        panic!("not a produce response: {r:?}")
    };
    r.topics.remove(0).partitions.remove(0)
}

/// A raw frame on a fresh stream; the answer frame decoded, or how the stream failed.
async fn raw(conn: &Connection, frame: Bytes) -> Result<ClientFrame, StreamError> {
    let r = timeout(
        WAIT,
        floe_net::call(conn, &mut [frame], FrameLimits::default()),
    )
    .await
    .expect("answer in time");
    match r {
        Ok(bytes) => Ok(decode_client_frame(&bytes, FrameLimits::default())
            .expect("a decodable answer")
            .1),
        Err(floe_net::CallError::Receive(e) | floe_net::CallError::Send(e)) => Err(e),
        Err(e) => panic!("unexpected call error: {e}"),
    }
}

fn api_versions_frame(correlation_id: u32) -> BytesMut {
    let mut frame = BytesMut::new();
    Request::from(ApiVersionsRequest {
        client_name: "bad".into(),
        client_version: "0".into(),
        client_id: None,
        apis: vec![],
    })
    .encode_frame(correlation_id, &mut frame);
    frame
}

fn producer_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    let mut b = BatchBuilder::new(CompressionCodec::None).with_producer(pid, epoch, seq);
    b.append(1_000, None, Some(value.as_bytes()), &[])
        .expect("append");
    b.finish().expect("finish")
}

/// Produces one single-record batch after another on its own connection; returns
/// (base offset, value) of each acknowledged one.
fn good_client(
    conn: Connection,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<(u64, String)>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let value = format!("good-{i}");
            i += 1;
            let r = produce_result(call(&conn, produce("t", 0, batch(&[&value], 1_000))).await);
            assert_eq!(r.error, ErrorCode::None, "the good client is never refused");
            acked.push((r.base_offset, value));
            progress.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_never_hurts_another_client() {
    let s = start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let good = good_client(s.connect().await, stop.clone(), progress.clone());
    let conn = s.connect().await;

    // Malformed frames: an unknown frame kind gets an InvalidRequest error frame; a length
    // prefix below the envelope size resets the stream as malformed.
    let mut frame = api_versions_frame(77);
    frame[8] = 9;
    assert_eq!(
        raw(&conn, frame.freeze()).await.expect("an answer"),
        ClientFrame::Error(ErrorCode::InvalidRequest)
    );
    let err = raw(&conn, Bytes::from_static(&[3, 0, 0, 0, 1, 2, 3]))
        .await
        .expect_err("reset");
    assert!(matches!(err, StreamError::Reset { .. }), "{err:?}");
    // Garbage where a produce body should be.
    let mut frame = api_versions_frame(78);
    frame[4..6].copy_from_slice(&0u16.to_le_bytes()); // api key 0 with an api-versions body
    frame.extend_from_slice(b"trailing garbage");
    let len = (frame.len() - 4) as u32;
    frame[0..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(
        raw(&conn, frame.freeze()).await,
        Ok(ClientFrame::Error(
            ErrorCode::InvalidRequest | ErrorCode::UnsupportedVersion
        ))
    ));

    // An oversized frame: a length prefix of ~4 GiB stops that stream before anything is
    // allocated.
    let err = raw(&conn, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, StreamError::Reset { code } if code == StreamCode::FRAME_TOO_LARGE),
        "{err:?}"
    );

    // An oversized batch (within the frame limit): MessageTooLarge.
    let big = "x".repeat(MAX_BATCH as usize);
    let r = produce_result(call(&conn, produce("t", 0, batch(&[&big], 1_000))).await);
    assert_eq!(r.error, ErrorCode::MessageTooLarge);

    // A CRC mismatch: CorruptBatch.
    let mut corrupt = batch(&["x"], 1_000).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let r = produce_result(call(&conn, produce("t", 0, Bytes::from(corrupt))).await);
    assert_eq!(r.error, ErrorCode::CorruptBatch);

    // Unknown topic, unknown partition.
    let r = produce_result(call(&conn, produce("nope", 0, batch(&["x"], 1_000))).await);
    assert_eq!(r.error, ErrorCode::UnknownTopicOrPartition);
    let r = produce_result(call(&conn, produce("t", 7, batch(&["x"], 1_000))).await);
    assert_eq!(r.error, ErrorCode::UnknownTopicOrPartition);

    // A stale producer epoch is fenced; a sequence gap is out of order.
    let Response::InitProducerId(init) = call(
        &conn,
        InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
        },
    )
    .await
    else {
        panic!("not init producer id")
    };
    assert_eq!(init.error, ErrorCode::None);
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let ok = |r: &ProducePartitionResult| r.error == ErrorCode::None;
    let r = produce_result(call(&conn, produce("t", 0, producer_batch(pid, epoch, 0, "p0"))).await);
    assert!(ok(&r), "{r:?}");
    let r = produce_result(
        call(
            &conn,
            produce("t", 0, producer_batch(pid, epoch + 1, 0, "p1")),
        )
        .await,
    );
    assert!(ok(&r), "a new epoch starts at sequence 0: {r:?}");
    let r = produce_result(call(&conn, produce("t", 0, producer_batch(pid, epoch, 1, "p2"))).await);
    assert_eq!(r.error, ErrorCode::ProducerFenced, "stale epoch");
    let r = produce_result(
        call(
            &conn,
            produce("t", 0, producer_batch(pid, epoch + 1, 5, "p3")),
        )
        .await,
    );
    assert_eq!(r.error, ErrorCode::OutOfOrderSequence, "sequence gap");

    // Too many concurrent streams on one connection: QUIC stream credit (by design, see
    // ARCHITECTURE.md, floe-net). With MAX_STREAMS requests pending (each has sent only part
    // of its frame), the next stream cannot open until one of them is done; the connection
    // stays up and other clients are served meanwhile.
    let mut pending = Vec::new();
    for _ in 0..MAX_STREAMS {
        let (mut send, recv) = timeout(WAIT, conn.open_bi())
            .await
            .expect("open in time")
            .expect("open");
        send.write_all(&100u32.to_le_bytes()).await.expect("prefix");
        pending.push((send, recv));
    }
    assert!(
        timeout(Duration::from_millis(500), conn.open_bi())
            .await
            .is_err(),
        "a stream beyond the limit does not open"
    );
    let before = progress.load(Ordering::Relaxed);
    let served = async {
        while progress.load(Ordering::Relaxed) < before + 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, served)
        .await
        .expect("the other client is served while this connection is at its limit");
    assert!(
        conn.close_reason().is_none(),
        "the connection at its limit stays open"
    );
    // Finishing one mid-frame: the node resets it as malformed, which frees its stream.
    let (mut send, recv) = pending.pop().expect("one");
    send.finish().expect("finish");
    let err = FrameReader::new(recv, FrameLimits::default())
        .read_frame()
        .await
        .expect_err("reset");
    assert!(matches!(err, StreamError::Reset { code } if code == StreamCode::MALFORMED_FRAME));
    let r = produce_result(
        timeout(
            WAIT,
            floe_net::call_client(
                &conn,
                &produce("t", 0, batch(&["after"], 1_000)).into(),
                9,
                FrameLimits::default(),
            ),
        )
        .await
        .expect("a stream opens once one is free")
        .expect("answer"),
    );
    assert_eq!(r.error, ErrorCode::None);
    drop(pending);

    // Too many connections from one address: the good client's and ours are two; a third is
    // served, a fourth is closed right after its handshake with a reason.
    let third = s.connect().await;
    let fourth = s.connect().await;
    let why = timeout(WAIT, fourth.closed())
        .await
        .expect("closed in time");
    match why {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CloseCode::TOO_MANY_CONNECTIONS.varint());
            assert_eq!(&close.reason[..], TOO_MANY_CONNECTIONS_REASON);
        }
        other => panic!("closed for another reason: {other:?}"),
    }
    let r = produce_result(call(&third, produce("t", 0, batch(&["third"], 1_000))).await);
    assert_eq!(r.error, ErrorCode::None, "the third connection is served");
    // Once one closes, a new one is admitted.
    third.close(0u32.into(), b"done");
    let admitted = async {
        loop {
            let c = s.connect().await;
            let r = timeout(
                Duration::from_secs(2),
                floe_net::call_client(
                    &c,
                    &produce("t", 0, batch(&["fifth"], 1_000)).into(),
                    1,
                    FrameLimits::default(),
                ),
            )
            .await;
            if let Ok(Ok(r)) = r {
                return produce_result(r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let r = timeout(WAIT, admitted)
        .await
        .expect("admitted once a slot is free");
    assert_eq!(r.error, ErrorCode::None);

    // The good client was never refused; everything it had acknowledged is in the log.
    stop.store(true, Ordering::Relaxed);
    let acked = timeout(WAIT, good)
        .await
        .expect("good client stops")
        .expect("join");
    assert!(
        acked.len() >= 5,
        "the good client kept producing: {}",
        acked.len()
    );
    let hw = s.node.high_watermark("t", 0).expect("hosted");
    let mut log = std::collections::BTreeMap::new();
    let mut offset = 0;
    while offset < hw {
        let Response::Fetch(f) = call(
            &conn,
            FetchRequest {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![FetchTopic {
                    name: "t".into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        fetch_offset: offset,
                        max_bytes: 1 << 20,
                    }],
                }],
            },
        )
        .await
        else {
            panic!("not a fetch response")
        };
        let p = &f.topics[0].partitions[0];
        assert_eq!(p.error, ErrorCode::None);
        for b in BatchIter::new(p.batches.clone(), Default::default()) {
            let b = b.expect("batch");
            offset = offset.max(b.header().next_offset());
            if b.header().is_control() {
                continue;
            }
            for r in b.records().expect("records").iter() {
                let r = r.expect("record");
                let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
                log.insert(r.offset, value);
            }
        }
    }
    for (o, v) in &acked {
        assert_eq!(
            log.get(o),
            Some(v),
            "acknowledged record at {o} is in the log"
        );
    }
    conn.close(0u32.into(), b"done");
    timeout(WAIT, s.node.shutdown()).await.expect("shutdown");
}

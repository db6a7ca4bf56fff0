//! One node, raw client-protocol calls over loopback QUIC: each api's answers, and typed
//! errors for bad input (unknown topics and partitions, corrupt batches, out-of-range
//! offsets, static-table admin), with the node staying up.

use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_protocol::ErrorCode;
use floe_protocol::client::*;
use tokio::time::timeout;

mod common;
use common::{WAIT, batch, call, produce, start};

fn produce_result(r: Response) -> ProducePartitionResult {
    let Response::Produce(r) = r else {
        panic!("not a produce response: {r:?}")
    };
    r.topics[0].partitions[0].clone()
}

fn fetch(topic: &str, partition: u32, offset: u64, wait_ms: u32) -> FetchRequest {
    FetchRequest {
        max_wait_ms: wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                max_bytes: 1 << 20,
            }],
        }],
    }
}

fn fetch_result(r: Response) -> FetchPartitionResult {
    let Response::Fetch(r) = r else {
        panic!("not a fetch response: {r:?}")
    };
    r.topics[0].partitions[0].clone()
}

fn list(topic: &str, partition: u32, spec: OffsetSpec) -> ListOffsetsRequest {
    ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition { partition, spec }],
        }],
    }
}

fn list_result(r: Response) -> ListOffsetsPartitionResult {
    let Response::ListOffsets(r) = r else {
        panic!("not a list offsets response: {r:?}")
    };
    r.topics[0].partitions[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_answers_every_api_and_refuses_bad_input_with_typed_errors() {
    let one = start().await;
    let conn = &one.conn;

    // Handshake and metadata.
    let Response::ApiVersions(v) = call(
        conn,
        ApiVersionsRequest {
            client_name: "test".into(),
            client_version: "0".into(),
            client_id: None,
            apis: vec![],
        },
    )
    .await
    else {
        panic!("not api versions")
    };
    assert_eq!(v.node_id, 1);
    assert!(v.apis.iter().any(|a| a.api_key == ApiKey::Subscribe as u16));
    let Response::Metadata(m) = call(conn, MetadataRequest { topics: None }).await else {
        panic!("not metadata")
    };
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.topics[0].partitions.len(), 2);
    assert!(m.topics[0].partitions.iter().all(|p| p.leader == Some(1)));
    let Response::Metadata(m) = call(
        conn,
        MetadataRequest {
            topics: Some(vec!["nope".into()]),
        },
    )
    .await
    else {
        panic!("not metadata")
    };
    assert_eq!(m.topics[0].error, ErrorCode::UnknownTopicOrPartition);

    // At the high watermark (past the leader's no-op), a fetch long-polls for its max wait,
    // then answers empty.
    let hw = list_result(call(conn, list("t", 1, OffsetSpec::Latest)).await).offset;
    let t0 = Instant::now();
    let f = fetch_result(call(conn, fetch("t", 1, hw, 300)).await);
    assert!(t0.elapsed() >= Duration::from_millis(250), "no long poll");
    assert!(f.error.is_ok() && f.batches.is_empty(), "{f:?}");

    // A waiting fetch is answered when a produce commits.
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let hw = list_result(call(&conn, list("t", 0, OffsetSpec::Latest)).await).offset;
            fetch_result(call(&conn, fetch("t", 0, hw, 5000)).await)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let p = produce_result(call(conn, produce("t", 0, batch(&["a", "b"], 1_000))).await);
    assert!(p.error.is_ok(), "{p:?}");
    let f = timeout(WAIT, waiting)
        .await
        .expect("in time")
        .expect("task");
    assert!(t0.elapsed() < Duration::from_secs(4), "fetch not woken");
    assert!(!f.batches.is_empty() && f.high_watermark > p.base_offset);

    // Two batches in one request; list offsets by time finds the later one.
    let mut two = batch(&["c"], 2_000).to_vec();
    two.extend_from_slice(&batch(&["d"], 3_000));
    let p2 = produce_result(call(conn, produce("t", 0, Bytes::from(two))).await);
    assert!(p2.error.is_ok(), "{p2:?}");
    let by_time = list_result(call(conn, list("t", 0, OffsetSpec::Timestamp(2_500))).await);
    assert_eq!((by_time.error, by_time.timestamp), (ErrorCode::None, 3_000));
    assert!(by_time.offset > p2.base_offset);
    let latest = list_result(call(conn, list("t", 0, OffsetSpec::Latest)).await);
    assert_eq!(latest.offset, by_time.offset + 1);
    let earliest = list_result(call(conn, list("t", 0, OffsetSpec::Earliest)).await);
    assert_eq!(earliest.offset, 0);

    // Bad input: typed errors, the node stays up.
    let bad = produce_result(call(conn, produce("nope", 0, batch(&["x"], 0))).await);
    assert_eq!(bad.error, ErrorCode::UnknownTopicOrPartition);
    let bad = produce_result(call(conn, produce("t", 9, batch(&["x"], 0))).await);
    assert_eq!(bad.error, ErrorCode::UnknownTopicOrPartition);
    let mut corrupt = batch(&["x"], 0).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let bad = produce_result(call(conn, produce("t", 0, Bytes::from(corrupt))).await);
    assert_eq!(bad.error, ErrorCode::CorruptBatch);
    let bad = produce_result(call(conn, produce("t", 0, Bytes::from_static(b"junk"))).await);
    assert_eq!(bad.error, ErrorCode::CorruptBatch);
    let bad = fetch_result(call(conn, fetch("t", 0, 1_000_000, 0)).await);
    assert_eq!(bad.error, ErrorCode::OffsetOutOfRange);
    let bad = fetch_result(call(conn, fetch("nope", 0, 0, 0)).await);
    assert_eq!(bad.error, ErrorCode::UnknownTopicOrPartition);
    let bad = list_result(call(conn, list("t", 5, OffsetSpec::Latest)).await);
    assert_eq!(bad.error, ErrorCode::UnknownTopicOrPartition);
    // Topic admin goes through the controller: a new topic is created (and hosted here once
    // the call returns), a second create of it is refused with a typed error.
    let create = |name: &str| CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            partitions: 1,
            replication_factor: 1,
            configs: vec![],
        }],
        timeout_ms: 5000,
        validate_only: false,
    };
    let Response::CreateTopics(c) = call(conn, create("new")).await else {
        panic!("not create topics")
    };
    assert_eq!(c.results[0].error, ErrorCode::None, "{:?}", c.results[0]);
    let hosted = async {
        while !one.node.hosts("new", 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(WAIT, hosted)
        .await
        .expect("the new topic's partition opens");
    let Response::CreateTopics(c) = call(conn, create("new")).await else {
        panic!("not create topics")
    };
    assert_eq!(c.results[0].error, ErrorCode::TopicAlreadyExists);
    let Response::CreateTopics(c) = call(
        conn,
        CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "too-wide".into(),
                partitions: 1,
                replication_factor: 3,
                configs: vec![],
            }],
            timeout_ms: 5000,
            validate_only: false,
        },
    )
    .await
    else {
        panic!("not create topics")
    };
    assert_eq!(c.results[0].error, ErrorCode::InvalidReplicationFactor);
    let Response::CreateTopics(c) = call(conn, create("bad/name")).await else {
        panic!("not create topics")
    };
    assert_eq!(c.results[0].error, ErrorCode::InvalidTopicName);

    // Still serving: the data is all there, in order.
    let f = fetch_result(call(conn, fetch("t", 0, 0, 0)).await);
    let mut values = Vec::new();
    for b in floe_protocol::batch::BatchIter::new(f.batches, Default::default()) {
        let b = b.expect("batch");
        if b.header().is_control() {
            continue;
        }
        for r in b.records().expect("records").iter() {
            values.push(r.expect("record").value.expect("value").to_vec());
        }
    }
    assert_eq!(values, [b"a", b"b", b"c", b"d"].map(|v| v.to_vec()));
    timeout(WAIT, one.node.shutdown()).await.expect("shutdown");
}

/// Reads the next push on a subscription: (partition, batch bytes) pairs.
async fn next_push(reader: &mut floe_net::FrameReader) -> Vec<(u32, ErrorCode, usize)> {
    let frame = timeout(WAIT, reader.read_frame())
        .await
        .expect("push in time")
        .expect("read")
        .expect("stream open");
    let (_, f, _) = decode_client_frame(&frame, Default::default()).expect("decode");
    let ClientFrame::Push(Push::Subscribe(e)) = f else {
        panic!("not a push: {f:?}")
    };
    e.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition, p.error, p.batches.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_pushes_committed_batches_paced_by_byte_credit() {
    let one = start().await;
    let conn = &one.conn;
    let hw = list_result(call(conn, list("t", 1, OffsetSpec::Latest)).await).offset;
    let one_batch = batch(&["0123456789"], 0).len() as u64;

    let (send, recv) = conn.open_bi().await.expect("stream");
    let mut writer = floe_net::FrameWriter::new(send);
    let mut reader = floe_net::FrameReader::new(recv, Default::default());
    let req = Request::from(SubscribeRequest {
        topics: vec![
            FetchTopic {
                name: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 1,
                    fetch_offset: hw,
                    max_bytes: 1 << 20,
                }],
            },
            FetchTopic {
                name: "nope".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    max_bytes: 1 << 20,
                }],
            },
        ],
        // Room for one batch only.
        initial_credit: one_batch,
    });
    writer
        .write_frame(&mut req.encode_frame_chunks(9))
        .await
        .expect("send");
    let first = timeout(WAIT, reader.read_frame())
        .await
        .expect("in time")
        .expect("read")
        .expect("open");
    let (_, f, _) = decode_client_frame(&first, Default::default()).expect("decode");
    let ClientFrame::Response(Response::Subscribe(status)) = f else {
        panic!("not a subscribe response: {f:?}")
    };
    assert_eq!(status.topics[0].partitions[0].error, ErrorCode::None);
    assert_eq!(
        status.topics[1].partitions[0].error,
        ErrorCode::UnknownTopicOrPartition
    );

    // Three single-record batches commit; the credit lets one through.
    for i in 0..3 {
        let v = format!("012345678{i}");
        let p = produce_result(call(conn, produce("t", 1, batch(&[&v], 0))).await);
        assert!(p.error.is_ok(), "{p:?}");
    }
    let push = next_push(&mut reader).await;
    assert_eq!(push, vec![(1, ErrorCode::None, one_batch as usize)]);
    let nothing = timeout(Duration::from_millis(300), reader.read_frame()).await;
    assert!(nothing.is_err(), "pushed beyond the credit");

    // More credit: the other two arrive.
    let grant = Request::from(SubscribeCredit {
        bytes: 2 * one_batch,
    });
    writer
        .write_frame(&mut grant.encode_frame_chunks(9))
        .await
        .expect("credit");
    let mut got = 0;
    while got < 2 * one_batch as usize {
        for (p, e, len) in next_push(&mut reader).await {
            assert_eq!((p, e), (1, ErrorCode::None));
            got += len;
        }
    }
    assert_eq!(got, 2 * one_batch as usize);
    timeout(WAIT, one.node.shutdown()).await.expect("shutdown");
}

//! floe-client against a fake cluster on loopback QUIC (tests/support): routing, metadata,
//! retries, faults. Every network wait is under a timeout.

mod support;

use std::time::Duration;

use floe_client::{Error, ErrorCode, NewTopic};
use support::{FakeCluster, WAIT};
use tokio::time::timeout;

#[tokio::test]
async fn client_connects_with_ca_pem_or_file_and_loads_metadata() {
    let cluster = FakeCluster::start(2);
    cluster.add_topic("orders", 3, 2);
    let client = timeout(WAIT, cluster.client().build())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client.cluster_id(), "fake");
    assert_eq!(client.partition_count("orders").await.unwrap(), 3);
    let tp = floe_client::TopicPartition::new("orders", 1);
    assert_eq!(client.leader(&tp).await.unwrap(), 2);
    let unknown = client.partition_count("nope").await.unwrap_err();
    assert!(matches!(unknown, Error::UnknownTopic { .. }), "{unknown}");
    client.close().await;
    assert!(matches!(
        client.partition_count("new").await,
        Err(Error::Closed)
    ));

    let by_file = floe_client::Client::builder()
        .brokers([cluster.addr(1)])
        .ca_cert(cluster.ca.ca_path())
        .build();
    let by_file = timeout(WAIT, by_file).await.unwrap().unwrap();
    assert_eq!(by_file.partition_count("orders").await.unwrap(), 3);
}

#[tokio::test]
async fn wrong_ca_is_a_fatal_connect_error() {
    let cluster = FakeCluster::start(1);
    let other = support::TestCa::new();
    let e = timeout(
        WAIT,
        floe_client::Client::builder()
            .brokers([cluster.addr(1)])
            .ca_pem(other.pem.clone())
            .build(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.is_fatal(), "{e}");
}

#[tokio::test]
async fn unreachable_broker_fails_within_the_timeout() {
    // A UDP port with nobody behind it: the handshake times out.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let ca = support::TestCa::new();
    let started = std::time::Instant::now();
    let e = timeout(
        WAIT,
        floe_client::Client::builder()
            .brokers([addr])
            .ca_pem(ca.pem.clone())
            .request_timeout(Duration::from_millis(300))
            .build(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn admin_creates_lists_describes_and_deletes() {
    let cluster = FakeCluster::start(3);
    let client = timeout(WAIT, cluster.client().build())
        .await
        .unwrap()
        .unwrap();
    let admin = client.admin();
    timeout(
        WAIT,
        admin.create_topic(NewTopic::new("a", 3, 1).config("fsync", "always")),
    )
    .await
    .unwrap()
    .unwrap();
    let e = timeout(WAIT, admin.create_topic(NewTopic::new("a", 3, 1)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TopicAlreadyExists));
    assert!(e.is_fatal());
    let listed = admin.list_topics().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].partitions), ("a", 3));
    let d = admin.describe_topics(&["a"]).await.unwrap();
    assert_eq!(d[0].partitions.len(), 3);
    assert_eq!(d[0].partitions[1].leader, Some(2));
    assert_eq!(d[0].replication_factor(), 1);
    assert_eq!(
        d[0].configs,
        vec![("fsync".to_string(), "always".to_string())]
    );
    let e = admin.describe_topics(&["missing"]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownTopicOrPartition));
    let c = admin.describe_cluster().await.unwrap();
    assert_eq!(
        (c.cluster_id.as_str(), c.controller, c.brokers.len()),
        ("fake", Some(1), 3)
    );
    admin.delete_topics(&["a"]).await.unwrap();
    assert!(admin.list_topics().await.unwrap().is_empty());
}

#[tokio::test]
async fn admin_retries_not_controller() {
    let cluster = FakeCluster::start(1);
    let client = timeout(WAIT, cluster.client().build())
        .await
        .unwrap()
        .unwrap();
    cluster.with(|s| s.knobs.not_controller = 2);
    timeout(WAIT, client.admin().create_topic(NewTopic::new("x", 1, 1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cluster.with(|s| s.knobs.not_controller), 0);
    // More refusals than retries: the retryable error comes back.
    cluster.with(|s| s.knobs.not_controller = 100);
    let e = timeout(WAIT, client.admin().list_topics())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotController));
    assert!(e.is_retryable());
}

// ---------------------------------------------------------------------------------------
// Producer

use floe_client::{Compression, Producer, ProducerRecord, WhenFull};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

async fn connect(cluster: &FakeCluster) -> floe_client::Client {
    timeout(WAIT, cluster.client().build())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn producer_batches_partitions_per_leader_and_keeps_send_order() {
    let cluster = FakeCluster::start(2);
    cluster.add_topic("t", 4, 1);
    cluster.with(|s| s.topics.get_mut("t").unwrap()[3].leader = 2);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client)
        .linger(Duration::from_millis(20))
        .acks(floe_client::Acks::Leader)
        .compression(Compression::Lz4)
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..200u32 {
        let record = ProducerRecord::new("t", format!("v{i}")).partition(i % 4);
        deliveries.push((i, producer.dispatch(record).await.unwrap()));
    }
    let mut next = [0u64; 4];
    for (i, d) in deliveries {
        let meta = timeout(WAIT, d).await.unwrap().unwrap();
        assert_eq!(meta.partition, i % 4);
        // Offsets are dense and in send order within a partition.
        assert_eq!(meta.offset, next[meta.partition as usize]);
        next[meta.partition as usize] += 1;
    }
    for p in 0..4u32 {
        let expected: Vec<Vec<u8>> = (0..200u32)
            .filter(|i| i % 4 == p)
            .map(|i| format!("v{i}").into_bytes())
            .collect();
        assert_eq!(cluster.values("t", p), expected, "partition {p}");
    }
    // Partitions 0..3 share leader 1: some request carried several of them.
    assert_eq!(
        cluster.with(|s| s.stats.last_acks),
        Some(floe_client::Acks::Leader)
    );
    let max_parts = cluster.with(|s| s.stats.produce_partitions.iter().copied().max());
    assert!(max_parts.unwrap() >= 2, "{max_parts:?}");
    assert_eq!(producer.buffered_bytes(), 0);
    producer.close().await.unwrap();
    let e = producer
        .send(ProducerRecord::new("t", "late"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Closed));
}

#[tokio::test]
async fn keyed_records_follow_the_key_and_unknown_topics_fail() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("k", 8, 1);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client).build().await.unwrap();
    let a = producer
        .send(ProducerRecord::new("k", "1").key("user-1"))
        .await
        .unwrap();
    let b = producer
        .send(ProducerRecord::new("k", "2").key("user-1"))
        .await
        .unwrap();
    assert_eq!(a.partition, b.partition);
    assert_eq!(b.offset, a.offset + 1);
    let e = producer
        .send(ProducerRecord::new("missing", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownTopic { .. }), "{e}");
    let e = producer
        .send(ProducerRecord::new("k", "x").partition(8))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::UnknownPartition { partitions: 8, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn not_leader_refreshes_metadata_and_retries_at_the_new_leader() {
    let cluster = FakeCluster::start(2);
    cluster.add_topic("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client).build().await.unwrap();
    producer
        .send(ProducerRecord::new("t", "before"))
        .await
        .unwrap();
    cluster.with(|s| s.knobs.not_leader_once = Some(("t".into(), 0, 2)));
    let meta = timeout(WAIT, producer.send(ProducerRecord::new("t", "after")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.offset, 1);
    assert_eq!(
        cluster.values("t", 0),
        vec![b"before".to_vec(), b"after".to_vec()]
    );
    let tp = floe_client::TopicPartition::new("t", 0);
    assert_eq!(client.leader(&tp).await.unwrap(), 2);
}

#[tokio::test]
async fn lost_response_is_retried_and_deduplicated_with_the_original_offset() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = timeout(
        WAIT,
        cluster
            .client()
            .request_timeout(Duration::from_millis(300))
            .build(),
    )
    .await
    .unwrap()
    .unwrap();
    let producer = Producer::builder(&client)
        .retries(10, Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    producer
        .send(ProducerRecord::new("t", "first"))
        .await
        .unwrap();
    cluster.with(|s| s.knobs.drop_produce_responses = 1);
    let meta = timeout(WAIT, producer.send(ProducerRecord::new("t", "second")))
        .await
        .unwrap()
        .unwrap();
    // The first attempt was appended at 1; the retry resolved with that original offset.
    assert_eq!(meta.offset, 1);
    assert_eq!(
        cluster.values("t", 0),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    // The lost attempt and at least one retry.
    assert!(cluster.with(|s| s.stats.produce_requests) >= 3);
    let third = producer
        .send(ProducerRecord::new("t", "third"))
        .await
        .unwrap();
    assert_eq!(third.offset, 2);
}

#[tokio::test]
async fn without_idempotence_a_lost_response_duplicates() {
    // The control for the test above: the same fault without idempotence appends twice.
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = timeout(
        WAIT,
        cluster
            .client()
            .request_timeout(Duration::from_millis(300))
            .build(),
    )
    .await
    .unwrap()
    .unwrap();
    let producer = Producer::builder(&client)
        .idempotence(false)
        .retries(10, Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    assert_eq!(producer.producer_id(), None);
    cluster.with(|s| s.knobs.drop_produce_responses = 1);
    let meta = timeout(WAIT, producer.send(ProducerRecord::new("t", "x")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.offset, 1);
    assert_eq!(cluster.values("t", 0).len(), 2);
}

/// A client with 100 ms request timeouts. On a loaded machine the first handshake may take
/// longer than that, so building is retried (the timeouts under test come after).
async fn with_short_timeouts(cluster: &FakeCluster) -> floe_client::Client {
    let build = async {
        loop {
            let built = cluster
                .client()
                .request_timeout(Duration::from_millis(100))
                .build()
                .await;
            match built {
                Ok(c) => return c,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("{e}"),
            }
        }
    };
    timeout(WAIT, build).await.expect("client built in time")
}

#[tokio::test]
async fn slow_broker_times_out_and_the_delivery_timeout_ends_retries() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = with_short_timeouts(&cluster).await;
    let producer = Producer::builder(&client)
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    cluster.with(|s| s.knobs.produce_delay = Some(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let e = timeout(WAIT, producer.send(ProducerRecord::new("t", "x")))
        .await
        .unwrap()
        .unwrap_err();
    let Error::DeliveryTimeout { last, .. } = &e else {
        panic!("{e}")
    };
    assert!(matches!(**last, Error::Timeout { .. }), "{last}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(e.is_fatal());
}

#[tokio::test]
async fn fatal_errors_are_typed_and_not_retried() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client).build().await.unwrap();
    cluster.with(|s| s.knobs.refuse_produce = Some(ErrorCode::CorruptBatch));
    let e = producer
        .send(ProducerRecord::new("t", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::CorruptBatch));
    assert!(e.is_fatal());
    assert_eq!(cluster.with(|s| s.stats.produce_requests), 1);
    cluster.with(|s| s.knobs.refuse_produce = None);
    // The refused batch's sequence numbers are reused: the next batch is not out of order.
    let ok = producer.send(ProducerRecord::new("t", "y")).await.unwrap();
    assert_eq!(ok.offset, 0);
    assert_eq!(cluster.values("t", 0), vec![b"y".to_vec()]);

    // A newer epoch of the same producer id exists: fenced.
    let (pid, _) = producer.producer_id().unwrap();
    cluster.with(|s| {
        s.topics.get_mut("t").unwrap()[0].producers.insert(
            pid,
            support::ProducerState {
                epoch: 5,
                batches: vec![],
            },
        );
    });
    let e = producer
        .send(ProducerRecord::new("t", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::ProducerFenced { producer_id, .. } if producer_id == pid),
        "{e}"
    );
    // For good: later records fail at once, without asking the broker, and the fenced
    // producer never bumps its epoch (that would fence the instance that owns the id).
    let requests = cluster.with(|s| s.stats.produce_requests);
    let later = timeout(WAIT, producer.send(ProducerRecord::new("t", "later")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(later, Error::ProducerFenced { .. }), "{later}");
    assert_eq!(cluster.with(|s| s.stats.produce_requests), requests);
    assert_eq!(cluster.with(|s| s.stats.epoch_bumps), 0);
    timeout(WAIT, producer.flush()).await.unwrap().unwrap();

    // The broker already has sequences 0..=4 of this producer: sequence 0 of a one-record
    // batch leaves a gap.
    let other = Producer::builder(&client).build().await.unwrap();
    let (pid, _) = other.producer_id().unwrap();
    cluster.with(|s| {
        s.topics.get_mut("t").unwrap()[0].producers.insert(
            pid,
            support::ProducerState {
                epoch: 0,
                batches: vec![(0, 4, 0)],
            },
        );
    });
    let e = other.send(ProducerRecord::new("t", "x")).await.unwrap_err();
    assert!(
        matches!(e, Error::OutOfOrderSequence { sequence: 0, .. }),
        "{e}"
    );
    assert_eq!(cluster.values("t", 0), vec![b"y".to_vec()]);
}

#[tokio::test]
async fn full_buffer_fails_or_waits_as_configured() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = connect(&cluster).await;
    // Acknowledgements take 400 ms, so the buffer fills.
    cluster.with(|s| s.knobs.produce_delay = Some(Duration::from_millis(400)));
    let value = vec![7u8; 1000];
    let failing = Producer::builder(&client)
        .buffer_memory(4096)
        .batch_size(1024)
        .when_full(WhenFull::Fail)
        .build()
        .await
        .unwrap();
    let mut accepted = Vec::new();
    let e = loop {
        match failing
            .dispatch(ProducerRecord::new("t", value.clone()))
            .await
        {
            Ok(d) => accepted.push(d),
            Err(e) => break e,
        }
        assert!(accepted.len() < 10, "the buffer never filled");
    };
    assert!(matches!(e, Error::BufferFull { capacity: 4096, .. }), "{e}");
    assert!(failing.buffered_bytes() <= 4096);
    assert_eq!(accepted.len(), 3);
    for d in accepted {
        timeout(WAIT, d).await.unwrap().unwrap();
    }
    assert_eq!(failing.buffered_bytes(), 0);

    let waiting = Producer::builder(&client)
        .buffer_memory(4096)
        .batch_size(1024)
        .when_full(WhenFull::Wait)
        .max_block(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut pending = Vec::new();
    for _ in 0..6 {
        pending.push(
            timeout(
                WAIT,
                waiting.dispatch(ProducerRecord::new("t", value.clone())),
            )
            .await
            .unwrap()
            .unwrap(),
        );
        assert!(waiting.buffered_bytes() <= 4096);
    }
    // The fourth record had to wait for the first acknowledgements.
    assert!(started.elapsed() >= Duration::from_millis(300));
    for d in pending {
        timeout(WAIT, d).await.unwrap().unwrap();
    }
    let short = Producer::builder(&client)
        .buffer_memory(2048)
        .batch_size(1024)
        .max_block(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let _held = short
        .dispatch(ProducerRecord::new("t", value.clone()))
        .await
        .unwrap();
    let _held2 = short
        .dispatch(ProducerRecord::new("t", value.clone()))
        .await;
    let e = short
        .dispatch(ProducerRecord::new("t", value.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BufferFull { .. }), "{e}");
}

#[tokio::test]
async fn callbacks_fire_and_flush_waits_for_them() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 2, 1);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client)
        .linger(Duration::from_secs(30))
        .compression(Compression::None)
        .build()
        .await
        .unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    for i in 0..50 {
        let delivered = delivered.clone();
        producer
            .send_with_callback(ProducerRecord::new("t", format!("{i}")), move |r| {
                assert!(r.is_ok());
                delivered.fetch_add(1, Ordering::SeqCst);
            })
            .await
            .unwrap();
    }
    // Linger is 30 s: nothing goes out until flush.
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    timeout(WAIT, producer.flush()).await.unwrap().unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 50);
    assert_eq!(
        cluster.values("t", 0).len() + cluster.values("t", 1).len(),
        50
    );
    // A dropped Delivery still delivers (fire and forget), and close flushes.
    drop(
        producer
            .dispatch(ProducerRecord::new("t", "last"))
            .await
            .unwrap(),
    );
    timeout(WAIT, producer.close()).await.unwrap().unwrap();
    assert_eq!(
        cluster.values("t", 0).len() + cluster.values("t", 1).len(),
        51
    );
}

// ---------------------------------------------------------------------------------------
// Consumer

use floe_client::{Consumer, StartFrom, TopicPartition};
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use futures_util::StreamExt;

/// A batch of `n` records valued `prefix{i}`, timestamps `ts0 + i`.
fn batch(prefix: &str, n: u32, ts0: i64, codec: CompressionCodec) -> bytes::Bytes {
    let mut b = BatchBuilder::new(codec);
    for i in 0..n {
        let v = format!("{prefix}{i}");
        b.append(
            ts0 + i64::from(i),
            Some(b"k"),
            Some(v.as_bytes()),
            &[("h", b"1")],
        )
        .unwrap();
    }
    b.finish().unwrap()
}

async fn take(
    stream: &mut floe_client::RecordStream,
    n: usize,
) -> Vec<floe_client::ConsumerRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = timeout(WAIT, stream.next())
            .await
            .expect("stream stalled")
            .unwrap()
            .unwrap();
        out.push(r);
    }
    out
}

async fn nothing_within(stream: &mut floe_client::RecordStream, wait: Duration) {
    if let Ok(r) = timeout(wait, stream.next()).await {
        panic!("unexpected record {r:?}");
    }
}

#[tokio::test]
async fn consumer_starts_at_earliest_offset_timestamp_and_latest() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.append("t", 0, batch("a", 10, 1000, CompressionCodec::None));
    cluster.append("t", 0, batch("b", 10, 1010, CompressionCodec::Lz4));
    cluster.append("t", 0, batch("c", 10, 1020, CompressionCodec::None));
    let client = connect(&cluster).await;
    let tp = TopicPartition::new("t", 0);

    let consumer = Consumer::builder(&client).build().unwrap();
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    let records = take(&mut stream, 30).await;
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..30).collect::<Vec<_>>());
    assert_eq!(records[12].value.as_deref(), Some(&b"b2"[..]));
    assert_eq!(records[12].timestamp, 1012);
    assert_eq!(records[12].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(
        records[12].headers,
        vec![("h".to_string(), bytes::Bytes::from_static(b"1"))]
    );
    assert_eq!(&*records[0].topic, "t");
    assert_eq!(consumer.position(&tp).unwrap(), 30);

    let at = Consumer::builder(&client).build().unwrap();
    at.assign(tp.clone(), StartFrom::Offset(15)).await.unwrap();
    assert_eq!(take(&mut at.stream(), 1).await[0].offset, 15);

    let by_time = Consumer::builder(&client).build().unwrap();
    by_time
        .assign(tp.clone(), StartFrom::Timestamp(1021))
        .await
        .unwrap();
    assert_eq!(take(&mut by_time.stream(), 1).await[0].offset, 21);

    let latest = Consumer::builder(&client).build().unwrap();
    latest.assign(tp.clone(), StartFrom::Latest).await.unwrap();
    assert_eq!(latest.position(&tp).unwrap(), 30);
    let mut s = latest.stream();
    nothing_within(&mut s, Duration::from_millis(200)).await;
    cluster.append("t", 0, batch("d", 2, 2000, CompressionCodec::None));
    let got = take(&mut s, 2).await;
    assert_eq!((got[0].offset, got[1].offset), (30, 31));
    // And the earliest consumer sees them too: the subscription stays open.
    assert_eq!(take(&mut stream, 2).await[0].offset, 30);
}

#[tokio::test]
async fn seek_pause_and_resume() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 2, 1);
    cluster.append("t", 0, batch("x", 5, 0, CompressionCodec::None));
    cluster.append("t", 1, batch("y", 5, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    consumer
        .assign_topic("t", StartFrom::Earliest)
        .await
        .unwrap();
    let (p0, p1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    assert_eq!(consumer.assignment(), vec![p0.clone(), p1.clone()]);
    let mut stream = consumer.stream();
    let got = take(&mut stream, 10).await;
    for p in 0..2 {
        let offsets: Vec<u64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    }

    consumer.seek(&p0, 3).unwrap();
    assert_eq!(consumer.position(&p0).unwrap(), 3);
    let got = take(&mut stream, 2).await;
    assert_eq!((got[0].partition, got[0].offset, got[1].offset), (0, 3, 4));

    consumer.pause(&p1).unwrap();
    assert!(consumer.is_paused(&p1).unwrap());
    cluster.append("t", 1, batch("z", 3, 0, CompressionCodec::None));
    nothing_within(&mut stream, Duration::from_millis(200)).await;
    assert_eq!(consumer.position(&p1).unwrap(), 5);
    consumer.resume(&p1).unwrap();
    let got = take(&mut stream, 3).await;
    assert!(got.iter().all(|r| r.partition == 1));
    assert_eq!(got[0].offset, 5);

    consumer.seek_to(&p1, StartFrom::Earliest).await.unwrap();
    assert_eq!(take(&mut stream, 1).await[0].offset, 0);
    // Unassign with records buffered, then assign again from the end: none of the old
    // assignment's buffered records come back.
    cluster.append("t", 1, batch("w", 3, 0, CompressionCodec::None));
    tokio::time::sleep(Duration::from_millis(100)).await;
    consumer.unassign(&p1).unwrap();
    consumer
        .assign(p1.clone(), StartFrom::Latest)
        .await
        .unwrap();
    nothing_within(&mut stream, Duration::from_millis(200)).await;
    consumer.unassign(&p1).unwrap();
    let e = consumer.position(&p1).unwrap_err();
    assert!(matches!(e, Error::NotAssigned { partition: 1, .. }), "{e}");
    assert!(matches!(
        consumer.seek(&p1, 0),
        Err(Error::NotAssigned { .. })
    ));

    // Closing ends the stream and refuses new assignments.
    consumer.close();
    assert!(timeout(WAIT, stream.next()).await.unwrap().is_none());
    let e = consumer.assign(p0, StartFrom::Earliest).await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e}");
}

#[tokio::test]
async fn consumer_follows_a_moved_leader() {
    let cluster = FakeCluster::start(2);
    cluster.add_topic("t", 1, 1);
    cluster.append("t", 0, batch("v", 3, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    assert_eq!(client.partition_count("t").await.unwrap(), 1);
    // The client still thinks node 1 leads; node 1 answers NotLeader (leader 2).
    cluster.with(|s| s.topics.get_mut("t").unwrap()[0].leader = 2);
    let consumer = Consumer::builder(&client).build().unwrap();
    consumer
        .assign(TopicPartition::new("t", 0), StartFrom::Offset(0))
        .await
        .unwrap();
    let got = take(&mut consumer.stream(), 3).await;
    assert_eq!(got[2].offset, 2);
}

#[tokio::test]
async fn a_slow_consumer_bounds_client_memory_and_slows_the_broker() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    // 200 batches of 10 records of ~1 KiB: about 2 MB in the log.
    let value = "x".repeat(1000);
    for _ in 0..200 {
        cluster.append("t", 0, batch(&value, 10, 0, CompressionCodec::None));
    }
    let total = cluster.with(|s| {
        s.topics["t"][0]
            .log
            .iter()
            .map(|b| b.len() as u64)
            .sum::<u64>()
    });
    let client = connect(&cluster).await;
    let max_buffered = 64 * 1024;
    let consumer = Consumer::builder(&client)
        .max_buffered_bytes(max_buffered)
        .max_partition_bytes(16 * 1024)
        .build()
        .unwrap();
    consumer
        .assign(TopicPartition::new("t", 0), StartFrom::Earliest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    take(&mut stream, 1).await;
    // The consumer stalls; the fake pushes as fast as the client lets it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let buffered = consumer.buffered_bytes();
    let pushed = cluster.with(|s| s.stats.pushed_bytes);
    assert!(
        buffered > 0 && buffered <= max_buffered,
        "buffered {buffered}"
    );
    // The broker was held back by the credit the client grants only for buffered bytes.
    assert!(
        pushed <= 3 * max_buffered as u64,
        "pushed {pushed} of {total}"
    );
    // Reading on drains everything, in order, and memory stays bounded throughout.
    let mut next = 1;
    while next < 2000 {
        let r = timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.offset, next);
        assert!(consumer.buffered_bytes() <= max_buffered);
        next += 1;
    }
    assert_eq!(cluster.with(|s| s.stats.pushed_bytes), total);
}

// ---------------------------------------------------------------------------------------
// Connections and metadata over time

#[tokio::test]
async fn client_reconnects_after_a_broker_restart() {
    let mut cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client).build().await.unwrap();
    producer.send(ProducerRecord::new("t", "a")).await.unwrap();
    assert_eq!(cluster.with(|s| s.stats.connections), 1);
    timeout(WAIT, cluster.restart(1)).await.unwrap();
    // Both the admin path and the producer reconnect (after a backoff) and carry on.
    let topics = timeout(WAIT, client.admin().list_topics())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(topics.len(), 1);
    let meta = timeout(WAIT, producer.send(ProducerRecord::new("t", "b")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.offset, 1);
    assert_eq!(cluster.with(|s| s.stats.connections), 2);
}

#[tokio::test]
async fn metadata_is_refreshed_on_a_timer() {
    let cluster = FakeCluster::start(2);
    cluster.add_topic("t", 1, 1);
    let client = timeout(
        WAIT,
        cluster
            .client()
            .metadata_max_age(Duration::from_millis(100))
            .build(),
    )
    .await
    .unwrap()
    .unwrap();
    let tp = TopicPartition::new("t", 0);
    assert_eq!(client.leader(&tp).await.unwrap(), 1);
    // The leader moves without anyone telling the client; the timer picks it up.
    cluster.with(|s| s.topics.get_mut("t").unwrap()[0].leader = 2);
    let before = cluster.with(|s| s.stats.metadata_requests);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(cluster.with(|s| s.stats.metadata_requests) >= before + 2);
    assert_eq!(client.leader(&tp).await.unwrap(), 2);
}

#[tokio::test]
async fn a_fatal_partition_error_reaches_the_stream_once() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 2, 1);
    cluster.append("t", 1, batch("ok", 2, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    // Partition 0 has no offset 100; partition 1 is fine.
    consumer
        .assign(TopicPartition::new("t", 0), StartFrom::Offset(100))
        .await
        .unwrap();
    consumer
        .assign(TopicPartition::new("t", 1), StartFrom::Earliest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    let mut errors = Vec::new();
    let mut records = Vec::new();
    while records.len() < 2 || errors.is_empty() {
        match timeout(WAIT, stream.next()).await.unwrap().unwrap() {
            Ok(r) => records.push(r),
            Err(e) => errors.push(e),
        }
    }
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code(), Some(ErrorCode::OffsetOutOfRange));
    assert!(errors[0].is_fatal());
    assert!(records.iter().all(|r| r.partition == 1));
    nothing_within(&mut stream, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_unresolved_batch_bumps_the_epoch_so_later_batches_are_not_out_of_order() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = with_short_timeouts(&cluster).await;
    let producer = Producer::builder(&client)
        .retries(u32::MAX, Duration::from_millis(10))
        .delivery_timeout(Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let (pid, epoch) = producer.producer_id().unwrap();
    producer.send(ProducerRecord::new("t", "a")).await.unwrap();
    // The broker swallows the next batch: the client cannot know whether it was appended.
    cluster.with(|s| s.knobs.black_hole_produce = true);
    let e = timeout(WAIT, producer.send(ProducerRecord::new("t", "lost")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::DeliveryTimeout { .. }), "{e}");
    cluster.with(|s| s.knobs.black_hole_produce = false);
    // Sequence 1 never reached the log; without a new epoch the next batch (sequence 2)
    // would be refused as out of order.
    let meta = timeout(WAIT, producer.send(ProducerRecord::new("t", "b")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.offset, 1);
    assert_eq!(producer.producer_id(), Some((pid, epoch + 1)));
    assert_eq!(cluster.with(|s| s.stats.epoch_bumps), 1);
    assert_eq!(cluster.values("t", 0), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[tokio::test]
async fn a_broker_without_a_common_api_version_is_refused() {
    let cluster = FakeCluster::start(1);
    cluster
        .with(|s| s.knobs.handshake_without = vec![floe_protocol::client::ApiKey::Produce as u16]);
    let e = timeout(WAIT, cluster.client().build())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnsupportedVersion));
    assert!(matches!(
        e,
        Error::Broker {
            api: floe_protocol::client::ApiKey::Produce,
            ..
        }
    ));
    assert!(e.is_fatal());
}

#[tokio::test]
async fn reassigning_never_yields_records_buffered_for_the_old_assignment() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.append("t", 0, batch("old", 5, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    let tp = TopicPartition::new("t", 0);
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .unwrap();
    // Let the records arrive in the buffer without reading them.
    let deadline = std::time::Instant::now() + WAIT;
    while consumer.buffered_bytes() == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    consumer.unassign(&tp).unwrap();
    consumer
        .assign(tp.clone(), StartFrom::Latest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    nothing_within(&mut stream, Duration::from_millis(200)).await;
    cluster.append("t", 0, batch("new", 1, 0, CompressionCodec::None));
    let got = take(&mut stream, 1).await;
    assert_eq!(
        (got[0].offset, got[0].value.as_deref()),
        (5, Some(&b"new0"[..]))
    );
}

#[tokio::test]
async fn a_record_over_the_request_limit_is_refused_before_buffering() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client)
        .max_request_size(4096)
        .compression(Compression::None)
        .build()
        .await
        .unwrap();
    let e = producer
        .send(ProducerRecord::new("t", vec![0u8; 4096 - 70]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RecordTooLarge { .. }), "{e}");
    assert!(e.is_fatal());
    assert_eq!(producer.buffered_bytes(), 0);
    // Just under the limit goes through.
    let ok = producer
        .send(ProducerRecord::new("t", vec![0u8; 4096 - 200]))
        .await
        .unwrap();
    assert_eq!(ok.offset, 0);
}

#[tokio::test]
async fn consumer_moves_with_the_leader_mid_stream_without_gaps_or_duplicates() {
    let cluster = FakeCluster::start(2);
    cluster.add_topic("t", 1, 1);
    cluster.append("t", 0, batch("a", 5, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    let tp = TopicPartition::new("t", 0);
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    let first = take(&mut stream, 5).await;
    // Node 1 loses leadership; node 2 has the same log (one shared in the fake) and more.
    cluster.with(|s| s.topics.get_mut("t").unwrap()[0].leader = 2);
    cluster.append("t", 0, batch("b", 5, 0, CompressionCodec::None));
    let second = take(&mut stream, 5).await;
    let offsets: Vec<u64> = first.iter().chain(&second).map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    assert_eq!(second[0].value.as_deref(), Some(&b"b0"[..]));
    assert_eq!(client.leader(&tp).await.unwrap(), 2);
    nothing_within(&mut stream, Duration::from_millis(100)).await;
}

// ---------------------------------------------------------------------------------------
// A leader that stops answering: forgotten at once, not when the metadata expires

/// Well under the retries against a dead leader (five of a second each) and the metadata
/// age (an hour): only a refresh after the first failure gets there in time.
const FAILOVER: Duration = Duration::from_secs(4);

/// A client bootstrapped at node 1 whose metadata never expires on its timer during a test.
async fn long_lived_metadata_client(cluster: &FakeCluster) -> floe_client::Client {
    timeout(
        WAIT,
        cluster
            .client()
            .request_timeout(Duration::from_secs(1))
            .metadata_max_age(Duration::from_secs(3600))
            .build(),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn producer_leaves_a_silent_leader_for_the_new_one() {
    let cluster = FakeCluster::start(3);
    cluster.add_topic("t", 1, 2);
    let client = long_lived_metadata_client(&cluster).await;
    let producer = Producer::builder(&client).build().await.unwrap();
    timeout(WAIT, producer.send(ProducerRecord::new("t", "before")))
        .await
        .unwrap()
        .unwrap();
    // Node 2 hangs with its connection up; node 3 takes over, and node 1 says so.
    cluster.stop_answering(2, 3);
    let in_flight = timeout(
        WAIT,
        producer.dispatch(ProducerRecord::new("t", "in-flight")),
    )
    .await
    .unwrap()
    .unwrap();
    let later = producer.dispatch(ProducerRecord::new("t", "later"));
    let (first, second) = timeout(FAILOVER, async {
        let first = in_flight.await;
        let second = later.await.unwrap().await;
        (first, second)
    })
    .await
    .expect("sends still going to the silent leader");
    assert_eq!(first.unwrap().offset, 1);
    assert_eq!(second.unwrap().offset, 2);
    assert_eq!(
        cluster.values("t", 0),
        vec![b"before".to_vec(), b"in-flight".to_vec(), b"later".to_vec()]
    );
    let tp = TopicPartition::new("t", 0);
    assert_eq!(client.leader(&tp).await.unwrap(), 3);
    // Later sends go straight to the new leader.
    let meta = timeout(
        Duration::from_millis(500),
        producer.send(ProducerRecord::new("t", "next")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(meta.offset, 3);
}

#[tokio::test]
async fn consumer_assigns_and_streams_from_the_new_leader_of_a_silent_one() {
    let cluster = FakeCluster::start(3);
    cluster.add_topic("t", 1, 2);
    cluster.append("t", 0, batch("a", 3, 0, CompressionCodec::None));
    let client = long_lived_metadata_client(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    let tp = TopicPartition::new("t", 0);
    timeout(WAIT, consumer.assign(tp.clone(), StartFrom::Offset(0)))
        .await
        .unwrap()
        .unwrap();
    let mut stream = consumer.stream();
    let first = take(&mut stream, 3).await;
    consumer.unassign(&tp).unwrap();
    // Node 2 (which was streaming) hangs; node 3 leads and has more.
    cluster.stop_answering(2, 3);
    cluster.append("t", 0, batch("b", 3, 0, CompressionCodec::None));
    let second = timeout(FAILOVER, async {
        consumer
            .assign(tp.clone(), StartFrom::Offset(3))
            .await
            .unwrap();
        let mut out = Vec::new();
        while out.len() < 3 {
            out.push(stream.next().await.unwrap().unwrap());
        }
        out
    })
    .await
    .expect("subscribing still goes to the silent leader");
    let offsets: Vec<u64> = first.iter().chain(&second).map(|r| r.offset).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<_>>());
    assert_eq!(second[0].value.as_deref(), Some(&b"b0"[..]));
    assert_eq!(client.leader(&tp).await.unwrap(), 3);
}

#[tokio::test]
async fn list_offsets_asks_the_new_leader_of_a_silent_one() {
    let cluster = FakeCluster::start(3);
    cluster.add_topic("t", 1, 2);
    cluster.append("t", 0, batch("a", 2, 0, CompressionCodec::None));
    let client = long_lived_metadata_client(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    let tp = TopicPartition::new("t", 0);
    // Assigning at Latest lists offsets at node 2 and leaves a subscription open there.
    timeout(WAIT, consumer.assign(tp.clone(), StartFrom::Latest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(consumer.position(&tp).unwrap(), 2);
    cluster.stop_answering(2, 3);
    cluster.append("t", 0, batch("b", 3, 0, CompressionCodec::None));
    timeout(FAILOVER, consumer.seek_to(&tp, StartFrom::Latest))
        .await
        .expect("list offsets still goes to the silent leader")
        .unwrap();
    assert_eq!(consumer.position(&tp).unwrap(), 5);
    assert_eq!(client.leader(&tp).await.unwrap(), 3);
    let other = Consumer::builder(&client).build().unwrap();
    timeout(
        Duration::from_millis(500),
        other.assign(tp.clone(), StartFrom::Earliest),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(other.position(&tp).unwrap(), 0);
}

#[tokio::test]
async fn partitions_failing_over_together_share_metadata_refreshes() {
    let cluster = FakeCluster::start(3);
    cluster.add_topic("t", 8, 2);
    let client = long_lived_metadata_client(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    let tp0 = TopicPartition::new("t", 0);
    // Connects to node 2 (listing offsets there) while it answers.
    timeout(WAIT, consumer.assign(tp0.clone(), StartFrom::Latest))
        .await
        .unwrap()
        .unwrap();
    consumer.unassign(&tp0).unwrap();
    cluster.stop_answering(2, 3);
    for p in 0..8 {
        cluster.append("t", p, batch("a", 1, 0, CompressionCodec::None));
    }
    let before = cluster.with(|s| s.stats.metadata_requests);
    // Eight readers subscribe at the silent node, time out together and refresh.
    for p in 0..8 {
        consumer
            .assign(TopicPartition::new("t", p), StartFrom::Offset(0))
            .await
            .unwrap();
    }
    let mut stream = consumer.stream();
    let got = timeout(FAILOVER, async {
        let mut partitions = Vec::new();
        while partitions.len() < 8 {
            partitions.push(stream.next().await.unwrap().unwrap().partition);
        }
        partitions.sort_unstable();
        partitions
    })
    .await
    .expect("readers still on the silent leader");
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    let refreshes = cluster.with(|s| s.stats.metadata_requests) - before;
    assert!(
        (1..=3).contains(&refreshes),
        "{refreshes} metadata requests for one failover of 8 partitions"
    );
}

/// Reads `t`/0 from the start with a fresh consumer and checks 8 records, then 4 more
/// appended while it waits (a long poll or a push).
async fn read_twelve(cluster: &FakeCluster, client: &floe_client::Client) {
    let consumer = Consumer::builder(client).build().unwrap();
    let tp = TopicPartition::new("t", 0);
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    let first = take(&mut stream, 8).await;
    assert_eq!(
        first.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    assert_eq!(first[5].value.as_deref(), Some(&b"a5"[..]));
    cluster.append("t", 0, batch("b", 4, 0, CompressionCodec::Lz4));
    let more = take(&mut stream, 4).await;
    assert_eq!(
        more.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (8..12).collect::<Vec<_>>()
    );
    assert_eq!(consumer.position(&tp).unwrap(), 12);
    consumer.close();
}

#[tokio::test]
async fn consumer_fetches_when_the_broker_has_no_subscriptions() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.with(|s| {
        s.knobs.handshake_without = vec![floe_protocol::client::ApiKey::Subscribe as u16]
    });
    cluster.append("t", 0, batch("a", 8, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    read_twelve(&cluster, &client).await;
    assert!(cluster.with(|s| s.stats.fetch_requests) >= 2);
    assert_eq!(cluster.with(|s| s.stats.pushed_bytes), 0);
    client.close().await;
}

#[tokio::test]
async fn consumer_fetches_when_the_broker_refuses_a_subscription() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.with(|s| s.knobs.refuse_subscribe = true);
    cluster.append("t", 0, batch("a", 8, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    read_twelve(&cluster, &client).await;
    assert!(cluster.with(|s| s.stats.fetch_requests) >= 2);
    client.close().await;
}

#[tokio::test]
async fn broker_with_neither_subscribe_nor_fetch_is_refused() {
    let cluster = FakeCluster::start(1);
    cluster.with(|s| {
        s.knobs.handshake_without = vec![
            floe_protocol::client::ApiKey::Subscribe as u16,
            floe_protocol::client::ApiKey::Fetch as u16,
        ]
    });
    let e = timeout(WAIT, cluster.client().retries(0, Duration::ZERO).build())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnsupportedVersion), "{e}");
}

#[tokio::test]
async fn subscriptions_are_used_when_offered() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.append("t", 0, batch("a", 8, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    read_twelve(&cluster, &client).await;
    assert_eq!(cluster.with(|s| s.stats.fetch_requests), 0);
    assert!(cluster.with(|s| s.stats.pushed_bytes) > 0);
    client.close().await;
}

/// While a partition's batch is in flight, records sent meanwhile fill one open batch (up
/// to `batch_size`) instead of being sealed by `linger` into many small ones that would each
/// wait for a round trip of their own.
#[tokio::test]
async fn a_slow_round_trip_grows_batches_instead_of_queueing_small_ones() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.with(|s| s.knobs.produce_delay = Some(Duration::from_millis(300)));
    let client = connect(&cluster).await;
    let producer = Producer::builder(&client)
        .linger(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    // 20 bursts, each lingering alone well past `linger`, all within about one round trip.
    for burst in 0..20u32 {
        for i in 0..10u32 {
            let record = ProducerRecord::new("t", format!("v{}", burst * 10 + i)).partition(0);
            deliveries.push(producer.dispatch(record).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(timeout(WAIT, d).await.unwrap().unwrap().offset, i as u64);
    }
    let requests = cluster.with(|s| s.stats.produce_requests);
    // One request per round trip, not one per burst (20 without the open batch growing).
    assert!(requests < 10, "{requests} produce requests for 20 bursts");
    producer.close().await.unwrap();
}

/// A broker ends a subscription when leadership moves: it stops reading credit, sends
/// `NotLeader` and finishes. A credit grant that fails meanwhile is part of that ending,
/// not a fatal error: the consumer resubscribes and reads on, nothing lost or repeated.
#[tokio::test]
async fn a_subscription_ended_by_the_broker_is_resumed_not_failed() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.with(|s| s.knobs.end_subscriptions_after_push = true);
    let client = connect(&cluster).await;
    let consumer = Consumer::builder(&client)
        .max_partition_bytes(1)
        .build()
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    consumer.assign(tp, StartFrom::Earliest).await.unwrap();
    let mut stream = consumer.stream();
    for b in 0..20 {
        cluster.append(
            "t",
            0,
            batch(&format!("b{b}-"), 5, 0, CompressionCodec::None),
        );
    }
    let got = take(&mut stream, 100).await;
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    consumer.close();
    client.close().await;
}

/// After a leader change, the new leader's high watermark can trail what the consumer has
/// already read (it learns the commit point once it commits an entry of its own term). Such
/// an `OffsetOutOfRange` is waited out, not reported; an offset the user chose past the end
/// of the log still is.
#[tokio::test]
async fn a_new_leaders_lagging_high_watermark_is_waited_out() {
    let cluster = FakeCluster::start(1);
    cluster.add_topic("t", 1, 1);
    cluster.append("t", 0, batch("a", 5, 0, CompressionCodec::None));
    let client = connect(&cluster).await;
    let consumer = Consumer::builder(&client).build().unwrap();
    let tp = TopicPartition::new("t", 0);
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .unwrap();
    let mut stream = consumer.stream();
    assert_eq!(take(&mut stream, 5).await.last().unwrap().offset, 4);
    // The subscription ends after its next push; the next three resubscriptions (at 10)
    // meet a leader whose high watermark says 9.
    cluster.with(|s| {
        s.knobs.end_subscriptions_after_push = true;
        s.knobs.lagging_high_watermark = 3;
    });
    cluster.append("t", 0, batch("b", 5, 0, CompressionCodec::None));
    assert_eq!(take(&mut stream, 5).await.last().unwrap().offset, 9);
    cluster.append("t", 0, batch("c", 5, 0, CompressionCodec::None));
    let got = take(&mut stream, 5).await;
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (10..15).collect::<Vec<_>>()
    );
    assert_eq!(cluster.with(|s| s.knobs.lagging_high_watermark), 0);

    // An offset the user picked beyond the end is an error, once.
    cluster.with(|s| s.knobs.end_subscriptions_after_push = false);
    consumer.seek(&tp, 1000).unwrap();
    let e = timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange), "{e}");
    consumer.close();
    client.close().await;
}

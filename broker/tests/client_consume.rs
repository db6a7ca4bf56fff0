//! floe-client against a real single-node `floe serve`: a fenced producer gets the typed
//! error; a stalled consumer holds no more than its buffer and the broker pushes only what
//! the consumer granted; start positions, seek, position, pause and resume.

mod client_support;

use std::net::SocketAddr;
use std::time::Duration;

use client_support::{Cluster, WAIT};
use floe_client::{
    Acks, Client, Compression, Consumer, Error, Producer, ProducerRecord, RecordStream, StartFrom,
    TopicPartition,
};
use floe_net::{CaCerts, Endpoint, EndpointOptions};
use floe_protocol::ErrorCode;
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use floe_protocol::client::{
    InitProducerIdRequest, ProducePartition, ProduceRequest, ProduceTopic, Request, Response,
};
use futures_util::StreamExt;
use tokio::time::timeout;

async fn producer(client: &Client) -> Producer {
    let build = Producer::builder(client)
        .acks(Acks::All)
        .linger(Duration::from_millis(1))
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(20))
        .build();
    timeout(WAIT, build)
        .await
        .expect("producer in time")
        .expect("producer")
}

/// The next record's (offset, value), within `WAIT`.
async fn next(stream: &mut RecordStream) -> (u64, String) {
    let r = timeout(WAIT, stream.next())
        .await
        .expect("a record in time")
        .expect("stream open")
        .expect("record");
    let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
    (r.offset, value)
}

/// Asserts the stream yields nothing for a while (a negative check: what is not allowed
/// to arrive has had time to).
async fn quiet(stream: &mut RecordStream) {
    if let Ok(r) = timeout(Duration::from_secs(1), stream.next()).await {
        panic!("nothing expected, got {r:?}");
    }
}

/// A raw call to the broker at `addr`, outside the client (to act as another instance).
async fn raw_call(cluster: &Cluster, addr: &str, request: impl Into<Request>) -> Response {
    let ca = CaCerts::from_pem_file(cluster.certs_dir().join("ca.pem")).expect("ca");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let opts = EndpointOptions::loopback();
    let ep = Endpoint::client(any, &ca, &opts).expect("endpoint");
    let addr: SocketAddr = addr.parse().expect("addr");
    let conn = timeout(WAIT, ep.connect(addr, "127.0.0.1"))
        .await
        .expect("connect in time")
        .expect("connect");
    let request = request.into();
    let response = timeout(
        WAIT,
        floe_net::call_client(&conn, &request, 1, Default::default()),
    )
    .await
    .expect("answer in time")
    .expect("answer");
    conn.close(0u32.into(), b"done");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_producer_cannot_write_and_gets_the_typed_error() {
    let cluster = Cluster::start(1);
    let client = cluster.client().await;
    cluster.create_topics(&client, &[("t", 1, 1)]).await;
    let old = producer(&client).await;
    let first = old
        .send(ProducerRecord::new("t", "first").partition(0))
        .await
        .expect("first record");
    let (id, epoch) = old.producer_id().expect("idempotent");

    // Another instance takes over the producer id: InitProducerId with the current id and
    // epoch hands out the next epoch, and its first batch shows the partition that epoch.
    let addr = cluster.nodes[&1].client_addr.clone();
    let bumped = raw_call(
        &cluster,
        &addr,
        InitProducerIdRequest {
            producer_id: id,
            producer_epoch: epoch,
        },
    )
    .await;
    let Response::InitProducerId(bumped) = bumped else {
        panic!("unexpected answer {bumped:?}");
    };
    assert_eq!(
        (bumped.error, bumped.producer_id, bumped.producer_epoch),
        (ErrorCode::None, id, epoch + 1)
    );
    let mut batch = BatchBuilder::new(CompressionCodec::None).with_producer(id, epoch + 1, 0);
    batch
        .append(floe_client_now(), None, Some(b"newer"), &[])
        .expect("append");
    let produced = raw_call(
        &cluster,
        &addr,
        ProduceRequest {
            acks: Acks::All,
            timeout_ms: 10_000,
            topics: vec![ProduceTopic {
                name: "t".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    batches: batch.finish().expect("finish"),
                }],
            }],
        },
    )
    .await;
    let Response::Produce(produced) = produced else {
        panic!("unexpected answer {produced:?}");
    };
    assert_eq!(produced.topics[0].partitions[0].error, ErrorCode::None);

    // The old instance is fenced: a typed, fatal error, for this record and the next.
    for value in ["stale-1", "stale-2"] {
        let e = timeout(WAIT, old.send(ProducerRecord::new("t", value).partition(0)))
            .await
            .expect("answer in time")
            .expect_err("a fenced producer cannot write");
        assert!(
            matches!(
                &e,
                Error::ProducerFenced { producer_id, epoch: e_epoch, topic, partition: 0 }
                    if *producer_id == id && *e_epoch == epoch && topic == "t"
            ),
            "{e:?}"
        );
        assert!(e.is_fatal() && e.code() == Some(ErrorCode::ProducerFenced));
    }

    // The log holds the first record and the newer instance's, nothing of the stale ones.
    let consumer = Consumer::builder(&client).build().expect("consumer");
    let tp = TopicPartition::new("t", 0);
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .expect("assign");
    let mut stream = consumer.stream();
    assert_eq!(next(&mut stream).await, (first.offset, "first".into()));
    assert_eq!(next(&mut stream).await.1, "newer");
    quiet(&mut stream).await;
    consumer.close();
    client.close().await;
}

/// Now, in ms since the Unix epoch.
fn floe_client_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_holds_its_buffer_and_the_broker_pushes_only_on_credit() {
    const BUFFER: usize = 256 * 1024;
    const PUSH: u32 = 32 * 1024;
    const RECORDS: usize = 8_000;
    const VALUE: usize = 1000;
    let cluster = Cluster::start(1);
    let client = cluster.client().await;
    cluster.create_topics(&client, &[("big", 1, 1)]).await;
    let tp = TopicPartition::new("big", 0);
    let consumer = Consumer::builder(&client)
        .max_buffered_bytes(BUFFER)
        .max_partition_bytes(PUSH)
        .build()
        .expect("consumer");
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .expect("assign");
    // The stream exists but is not polled: the consumer is stalled.
    let mut stream = consumer.stream();

    let producer = Producer::builder(&client)
        .compression(Compression::None)
        .linger(Duration::from_millis(2))
        .batch_size(16 * 1024)
        .build()
        .await
        .expect("producer");
    let value = |i: usize| {
        let mut v = format!("{i:08}").into_bytes();
        v.resize(VALUE, b'.');
        v
    };
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let d = producer
            .dispatch(ProducerRecord::new("big", value(i)).partition(0))
            .await
            .expect("buffered");
        deliveries.push(d);
    }
    for d in deliveries {
        timeout(WAIT, d)
            .await
            .expect("acked in time")
            .expect("acked");
    }
    let produced = (RECORDS * VALUE) as f64;

    // Wait until the broker stops pushing (its subscribe counter settles).
    let pushed_metric = "floe_fetch_bytes_total{topic=\"big\",partition=\"0\",api=\"subscribe\"}";
    let pushed = || cluster.metric(1, pushed_metric);
    let settle = async {
        let mut last = -1.0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = pushed();
            if now == last && consumer.buffered_bytes() > 0 {
                return now;
            }
            last = now;
        }
    };
    let stalled_push = timeout(WAIT, settle).await.expect("pushes settle");
    let buffered = consumer.buffered_bytes();
    eprintln!(
        "stalled: consumer buffers {buffered} bytes (limit {BUFFER}), broker pushed \
         {stalled_push} of {produced} bytes"
    );
    assert!(buffered > 0 && buffered <= BUFFER, "buffered {buffered}");
    // Credit: the initial grant (the buffer) plus what the consumer took into the buffer,
    // and at most one push beyond it (a whole batch is pushed even past the credit).
    let bound = (2 * BUFFER + 2 * PUSH as usize + 64 * 1024) as f64;
    assert!(
        stalled_push <= bound,
        "the broker pushed {stalled_push} bytes to a stalled consumer (bound {bound})"
    );
    assert!(stalled_push < produced / 4.0);

    // Reading resumes the pushes; everything arrives in order, the buffer stays bounded.
    let mut max_seen = 0;
    let read = async {
        for i in 0..RECORDS {
            let r = stream.next().await.expect("open").expect("record");
            assert_eq!(r.value.as_deref(), Some(&value(i)[..]), "record #{i}");
            max_seen = max_seen.max(consumer.buffered_bytes());
        }
    };
    timeout(Duration::from_secs(60), read)
        .await
        .expect("read everything in time");
    assert!(max_seen <= BUFFER, "buffered {max_seen} while reading");
    assert!(pushed() >= produced, "the rest was pushed once credit came");
    quiet(&mut stream).await;
    consumer.close();
    producer.close().await.expect("close");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions_seek_position_pause_and_resume() {
    // An hour ago: recent enough for any time-based retention, far enough from now that
    // the records' timestamps are distinct from anything produced during the test.
    let base_ts = floe_client_now() - 3_600_000;
    let cluster = Cluster::start(1);
    let client = cluster.client().await;
    cluster.create_topics(&client, &[("pos", 1, 1)]).await;
    let tp = TopicPartition::new("pos", 0);
    let producer = producer(&client).await;
    let mut offsets = Vec::new();
    for i in 0..100i64 {
        let r = ProducerRecord::new("pos", format!("v{i}"))
            .partition(0)
            .timestamp(base_ts + i * 1000);
        offsets.push(producer.send(r).await.expect("acked").offset);
    }
    let consumer = Consumer::builder(&client).build().expect("consumer");
    let mut stream = consumer.stream();
    let assign = |start| {
        let (consumer, tp) = (&consumer, tp.clone());
        async move {
            timeout(WAIT, consumer.assign(tp, start))
                .await
                .expect("assign in time")
                .expect("assign");
        }
    };

    // Earliest.
    assign(StartFrom::Earliest).await;
    assert_eq!(next(&mut stream).await, (offsets[0], "v0".into()));
    assert_eq!(consumer.position(&tp).expect("assigned"), offsets[0] + 1);

    // An offset.
    assign(StartFrom::Offset(offsets[42])).await;
    assert_eq!(consumer.position(&tp).expect("assigned"), offsets[42]);
    assert_eq!(next(&mut stream).await, (offsets[42], "v42".into()));

    // A timestamp: the first record at or after it.
    assign(StartFrom::Timestamp(base_ts + 50_000)).await;
    assert_eq!(next(&mut stream).await, (offsets[50], "v50".into()));
    assign(StartFrom::Timestamp(base_ts + 60_500)).await;
    assert_eq!(next(&mut stream).await, (offsets[61], "v61".into()));

    // Latest: only what comes after.
    assign(StartFrom::Latest).await;
    let latest = consumer.position(&tp).expect("assigned");
    assert!(latest > offsets[99]);
    quiet(&mut stream).await;
    let new = producer
        .send(ProducerRecord::new("pos", "v100").partition(0))
        .await
        .expect("acked");
    assert_eq!(next(&mut stream).await, (new.offset, "v100".into()));
    offsets.push(new.offset);

    // Seek back and forth.
    consumer.seek(&tp, offsets[10]).expect("seek");
    assert_eq!(consumer.position(&tp).expect("assigned"), offsets[10]);
    assert_eq!(next(&mut stream).await, (offsets[10], "v10".into()));
    assert_eq!(next(&mut stream).await, (offsets[11], "v11".into()));
    assert_eq!(consumer.position(&tp).expect("assigned"), offsets[11] + 1);
    timeout(WAIT, consumer.seek_to(&tp, StartFrom::Earliest))
        .await
        .expect("in time")
        .expect("seek_to");
    assert_eq!(next(&mut stream).await, (offsets[0], "v0".into()));
    consumer.seek(&tp, offsets[99]).expect("seek");
    assert_eq!(next(&mut stream).await, (offsets[99], "v99".into()));
    assert_eq!(next(&mut stream).await, (offsets[100], "v100".into()));

    // Pause: nothing is yielded, the position stays; resume continues from it.
    consumer.pause(&tp).expect("pause");
    assert!(consumer.is_paused(&tp).expect("assigned"));
    let paused_at = consumer.position(&tp).expect("assigned");
    let more = producer
        .send(ProducerRecord::new("pos", "v101").partition(0))
        .await
        .expect("acked");
    quiet(&mut stream).await;
    assert_eq!(consumer.position(&tp).expect("assigned"), paused_at);
    consumer.resume(&tp).expect("resume");
    assert!(!consumer.is_paused(&tp).expect("assigned"));
    assert_eq!(next(&mut stream).await, (more.offset, "v101".into()));

    // Partitions not assigned are typed errors.
    let other = TopicPartition::new("pos", 7);
    assert!(matches!(
        consumer.position(&other),
        Err(Error::NotAssigned { partition: 7, .. })
    ));
    assert!(matches!(
        consumer.seek(&other, 0),
        Err(Error::NotAssigned { .. })
    ));
    consumer.unassign(&tp).expect("unassign");
    assert!(consumer.assignment().is_empty());
    quiet(&mut stream).await;
    consumer.close();
    producer.close().await.expect("close");
    client.close().await;
}

/// A consumer reading with fetch long-polls (as it does from brokers without
/// subscriptions) reads everything in order from a real broker, steps over Raft's no-op
/// control batches, and wakes for new records; its buffer stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_polls_read_everything_in_order() {
    const BUFFER: usize = 64 * 1024;
    const RECORDS: usize = 5_000;
    let cluster = Cluster::start(1);
    let client = cluster.client().await;
    cluster.create_topics(&client, &[("f", 1, 1)]).await;
    let tp = TopicPartition::new("f", 0);
    let producer = producer(&client).await;
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let r = ProducerRecord::new("f", format!("{i:06}")).partition(0);
        deliveries.push(producer.dispatch(r).await.expect("buffered"));
    }
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(
            timeout(WAIT, d)
                .await
                .expect("in time")
                .expect("acked")
                .offset,
        );
    }
    let consumer = Consumer::builder(&client)
        .subscriptions(false)
        .max_buffered_bytes(BUFFER)
        .max_partition_bytes(16 * 1024)
        .build()
        .expect("consumer");
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .expect("assign");
    let mut stream = consumer.stream();
    let mut max_buffered = 0;
    for (i, offset) in offsets.iter().enumerate() {
        assert_eq!(next(&mut stream).await, (*offset, format!("{i:06}")));
        max_buffered = max_buffered.max(consumer.buffered_bytes());
    }
    assert!(max_buffered <= BUFFER, "buffered {max_buffered}");
    // Caught up: the next long poll waits at the broker and answers when a record commits.
    quiet(&mut stream).await;
    let late = producer
        .send(ProducerRecord::new("f", "late").partition(0))
        .await
        .expect("acked");
    assert_eq!(next(&mut stream).await, (late.offset, "late".into()));
    let served = |api: &str| {
        cluster.metric(
            1,
            &format!("floe_fetch_bytes_total{{topic=\"f\",partition=\"0\",api=\"{api}\"}}"),
        )
    };
    assert!(served("fetch") > 0.0);
    assert_eq!(served("subscribe"), 0.0, "no subscription was opened");
    consumer.close();
    producer.close().await.expect("close");
    client.close().await;
}

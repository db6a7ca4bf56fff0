//! floe-client against three real `floe serve` processes: an idempotent producer keeps
//! sending while a partition leader is killed with `kill -9`, and the log ends up holding
//! each record exactly once, in send order per partition (read back afterwards, and live
//! by a consumer that follows the partitions through the kill).

mod client_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_support::{Cluster, WAIT};
use floe_client::{
    Acks, Client, Consumer, Error, ErrorCode, NewTopic, Producer, ProducerRecord, RecordMetadata,
    StartFrom, TopicPartition,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::timeout;

const TOPIC: &str = "t";
/// Bound of each phase of the 100,000-record run: about 20 s in all on a loaded 2-core
/// machine, but other engineers' clusters can push the load far higher; the assertions are
/// about what arrives, not how fast.
const PHASE: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;

/// Reads every partition of `TOPIC` from the start until `want[p]` records of each arrived,
/// then checks nothing more arrives for a while; returns the values per partition in log
/// order.
async fn read_all(
    client: &Client,
    want: &BTreeMap<u32, usize>,
) -> BTreeMap<u32, Vec<(u64, String)>> {
    let consumer = Consumer::builder(client).build().expect("consumer");
    for p in 0..PARTITIONS {
        timeout(
            WAIT,
            consumer.assign(TopicPartition::new(TOPIC, p), StartFrom::Earliest),
        )
        .await
        .expect("assign in time")
        .expect("assign");
    }
    let mut stream = consumer.stream();
    let mut got: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let enough = |got: &BTreeMap<u32, Vec<(u64, String)>>| {
        want.iter()
            .all(|(p, n)| got.get(p).map_or(0, Vec::len) >= *n)
    };
    let read = async {
        while !enough(&got) {
            let r = stream.next().await.expect("stream open").expect("record");
            if let Some(prev) = last.insert(r.partition, r.offset) {
                assert!(
                    r.offset > prev,
                    "partition {}: offsets go back",
                    r.partition
                );
            }
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
            got.entry(r.partition).or_default().push((r.offset, value));
        }
    };
    timeout(PHASE, read)
        .await
        .unwrap_or_else(|_| panic!("read everything back in time: {want:?}"));
    // A duplicate at the tail would come after the expected count: nothing more may come.
    if let Ok(Some(extra)) = timeout(Duration::from_secs(2), stream.next()).await {
        panic!("a record beyond what was sent: {extra:?}");
    }
    consumer.close();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_survives_a_leader_kill_exactly_once_in_order() {
    const RECORDS: usize = 100_000;
    const KILL_AFTER: usize = 30_000;
    let mut cluster = Cluster::start(3);
    let client = cluster.client().await;
    cluster
        .create_topics(&client, &[(TOPIC, PARTITIONS, 3)])
        .await;
    let producer = Producer::builder(&client)
        .acks(Acks::All)
        .idempotence(true)
        .linger(Duration::from_millis(5))
        // A small buffer keeps records streaming, so the kill lands with batches in flight.
        .buffer_memory(512 * 1024)
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(PHASE)
        .build();
    let producer = timeout(WAIT, producer)
        .await
        .expect("producer in time")
        .expect("producer");

    // A consumer follows the partitions live, through the kill.
    let counts: BTreeMap<u32, usize> = (0..PARTITIONS)
        .map(|p| {
            (
                p,
                (0..RECORDS)
                    .filter(|i| i % PARTITIONS as usize == p as usize)
                    .count(),
            )
        })
        .collect();
    let live = {
        let (client, counts) = (client.clone(), counts.clone());
        tokio::spawn(async move { read_all(&client, &counts).await })
    };

    let acked = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, floe_client::Result<RecordMetadata>)>();
    let send_all = {
        let (producer, acked) = (producer.clone(), acked.clone());
        async move {
            for i in 0..RECORDS {
                let p = (i % PARTITIONS as usize) as u32;
                let record = ProducerRecord::new(TOPIC, format!("{i:08}")).partition(p);
                let (tx, acked) = (tx.clone(), acked.clone());
                producer
                    .send_with_callback(record, move |r| {
                        acked.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send((i, r));
                    })
                    .await
                    .expect("buffered");
            }
        }
    };
    let started = std::time::Instant::now();
    let sender = tokio::spawn(send_all);

    // Mid-run: kill -9 the leader of partition 0.
    let wait_some = async {
        while acked.load(Ordering::Relaxed) < KILL_AFTER {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(PHASE, wait_some)
        .await
        .expect("a third acknowledged in time");
    let victim = cluster
        .leader(&client, &TopicPartition::new(TOPIC, 0))
        .await;
    cluster.kill(victim);
    eprintln!("killed node {victim} after {:?}", started.elapsed());
    let in_flight_at_kill = RECORDS - acked.load(Ordering::Relaxed);
    assert!(in_flight_at_kill > 0, "the kill came after the last ack");

    // Progress on stderr, for a failure's diagnosis.
    let progress = {
        let acked = acked.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                eprintln!("acked {}", acked.load(Ordering::Relaxed));
            }
        })
    };
    timeout(PHASE, sender)
        .await
        .expect("everything buffered in time")
        .expect("sender task");
    timeout(PHASE, producer.flush())
        .await
        .expect("flushed in time")
        .expect("flush");
    progress.abort();
    let mut acks: Vec<Option<RecordMetadata>> = vec![None; RECORDS];
    while let Ok((i, r)) = rx.try_recv() {
        let meta = r.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        assert!(
            acks[i].replace(meta).is_none(),
            "record {i} acknowledged twice"
        );
    }
    assert!(
        acks.iter().all(Option::is_some),
        "every record acknowledged"
    );
    // Per partition, acknowledged offsets increase in send order.
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for meta in acks.iter().flatten() {
        if let Some(prev) = last.insert(meta.partition, meta.offset) {
            assert!(
                meta.offset > prev,
                "partition {}: offsets not in send order",
                meta.partition
            );
        }
    }
    let new_leader = cluster
        .leader(&client, &TopicPartition::new(TOPIC, 0))
        .await;
    assert_ne!(new_leader, victim, "partition 0 moved to a live node");

    // The log: each record exactly once, in send order per partition, at the offset its
    // acknowledgement named.
    let mut want: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for (i, meta) in acks.iter().enumerate() {
        let meta = meta.as_ref().expect("checked above");
        want.entry(meta.partition)
            .or_default()
            .push((meta.offset, format!("{i:08}")));
    }
    let live = timeout(PHASE * 2, live)
        .await
        .expect("the live consumer finished")
        .expect("live consumer task");
    let after = read_all(&client, &counts).await;
    for (name, got) in [("live", live), ("after", after)] {
        for p in 0..PARTITIONS {
            let (g, w) = (&got[&p], &want[&p]);
            assert_eq!(g.len(), w.len(), "{name}: partition {p}: record count");
            if let Some(i) = (0..w.len()).find(|&i| g[i] != w[i]) {
                panic!(
                    "{name}: partition {p}: log differs from the acknowledged send order at \
                     #{i}: {:?} vs {:?}",
                    &g[i..(i + 5).min(g.len())],
                    &w[i..(i + 5).min(w.len())]
                );
            }
        }
    }
    eprintln!("kill -9 of node {victim} with {in_flight_at_kill} records not yet acknowledged");

    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
    client.close().await;
}

/// A consumer whose partition is idle notices a leader that died silently (`kill -9`: no
/// connection close, no `NotLeader`) through the client's idle timeout, well before QUIC's
/// usual 30 s, and continues at the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscription_leaves_a_silently_dead_leader_in_time() {
    let mut cluster = Cluster::start(3);
    let client = cluster.client().await;
    cluster.create_topics(&client, &[("idle", 1, 3)]).await;
    let tp = TopicPartition::new("idle", 0);
    cluster.leader(&client, &tp).await;
    let producer = Producer::builder(&client)
        .linger(Duration::from_millis(1))
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(60))
        .build()
        .await
        .expect("producer");
    let consumer = Consumer::builder(&client).build().expect("consumer");
    consumer
        .assign(tp.clone(), StartFrom::Earliest)
        .await
        .expect("assign");
    let mut stream = consumer.stream();
    let first = producer
        .send(ProducerRecord::new("idle", "before").partition(0))
        .await
        .expect("acked");
    let r = timeout(WAIT, stream.next())
        .await
        .expect("first record in time")
        .expect("open")
        .expect("record");
    assert_eq!(
        (r.offset, r.value.as_deref()),
        (first.offset, Some(&b"before"[..]))
    );

    // The subscription is idle; its leader dies without a word. The client's cached leader
    // is the node it subscribed to (a move since would have come with `NotLeader` and a
    // resubscription that updated the cache).
    let leader = client.leader(&tp).await.expect("cached leader");
    cluster.kill(leader);
    let killed = std::time::Instant::now();
    let after = producer
        .send(ProducerRecord::new("idle", "after").partition(0))
        .await
        .expect("acked by the new leader");
    let r = timeout(Duration::from_secs(25), stream.next())
        .await
        .expect("the consumer moved to the new leader before QUIC's 30 s idle timeout")
        .expect("open")
        .expect("record");
    assert_eq!(
        (r.offset, r.value.as_deref()),
        (after.offset, Some(&b"after"[..]))
    );
    eprintln!("consumer resumed {:?} after the kill", killed.elapsed());
    consumer.close();
    producer.close().await.expect("close");
    client.close().await;
}

/// Admin against three real nodes: topics created, listed and described as placed (leaders live,
/// replicas distinct, in-sync replicas among them), the cluster's brokers at the addresses
/// the client uses, typed errors for an unknown topic and an existing one. Topic `b` has one
/// replica per partition: a broker without it cannot tell its leader, so the client asks the
/// replica (for describe and for routing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_and_describes_topics_and_the_cluster() {
    let cluster = Cluster::start(3);
    let client = cluster.client().await;
    cluster
        .create_topics(&client, &[("a", 3, 3), ("b", 2, 1)])
        .await;
    let admin = client.admin();

    let mut listed = timeout(WAIT, admin.list_topics())
        .await
        .expect("in time")
        .expect("list");
    listed.sort_by(|x, y| x.name.cmp(&y.name));
    let summary: Vec<(&str, u32, u16, bool)> = listed
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.partitions,
                t.replication_factor,
                t.internal,
            )
        })
        .collect();
    assert_eq!(summary, vec![("a", 3, 3, false), ("b", 2, 1, false)]);

    // A leader can be lost again after `create_topics` saw it: on a loaded machine a missed
    // heartbeat starts an election, and while it runs the partition has no leader to report.
    // The leader is part of what is checked, so wait until every partition names one.
    let has_leaders = |d: &[floe_client::TopicDescription]| {
        d.iter()
            .all(|t| t.partitions.iter().all(|p| p.leader.is_some()))
    };
    let described = timeout(WAIT, async {
        loop {
            let d = admin.describe_topics(&["a", "b"]).await.expect("describe");
            if has_leaders(&d) {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every partition has a leader in time");
    assert_eq!(described.len(), 2);
    for (t, (name, partitions, rf)) in described.iter().zip([("a", 3u32, 3usize), ("b", 2, 1)]) {
        assert_eq!(t.name, name);
        assert_eq!(t.replication_factor(), rf, "{name}");
        let numbers: Vec<u32> = t.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(numbers, (0..partitions).collect::<Vec<_>>(), "{name}");
        for p in &t.partitions {
            let mut replicas = p.replicas.clone();
            replicas.sort_unstable();
            replicas.dedup();
            assert_eq!(
                replicas.len(),
                rf,
                "{name}/{}: {:?}",
                p.partition,
                p.replicas
            );
            assert!(replicas.iter().all(|r| (1..=3).contains(r)));
            assert!(p.in_sync.iter().all(|r| p.replicas.contains(r)));
            let leader = p.leader.expect("a leader");
            assert!(p.replicas.contains(&leader), "{name}/{}", p.partition);
        }
    }

    let e = timeout(WAIT, admin.describe_topics(&["nope"]))
        .await
        .expect("in time")
        .expect_err("unknown topic");
    assert!(
        matches!(&e, Error::Broker { code: ErrorCode::UnknownTopicOrPartition, topic: Some(t), .. } if t == "nope"),
        "{e:?}"
    );
    let e = timeout(WAIT, admin.create_topic(NewTopic::new("a", 1, 1)))
        .await
        .expect("in time")
        .expect_err("existing topic");
    assert_eq!(e.code(), Some(ErrorCode::TopicAlreadyExists), "{e:?}");
    assert!(e.is_fatal());
    let e = timeout(WAIT, admin.create_topic(NewTopic::new("wide", 1, 4)))
        .await
        .expect("in time")
        .expect_err("more replicas than brokers");
    assert_eq!(e.code(), Some(ErrorCode::InvalidReplicationFactor), "{e:?}");

    let d = timeout(WAIT, admin.describe_cluster())
        .await
        .expect("in time")
        .expect("describe cluster");
    let mut brokers: Vec<(u64, String)> = d
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
        .collect();
    brokers.sort();
    let want: Vec<(u64, String)> = cluster
        .nodes
        .iter()
        .map(|(id, p)| (*id, p.client_addr.clone()))
        .collect();
    assert_eq!(brokers, want);
    assert_eq!(d.cluster_id, client.cluster_id());

    // A partition whose only replica is not the broker that answers metadata is still
    // found (its replica is asked) and written to.
    let producer = Producer::builder(&client)
        .linger(Duration::from_millis(1))
        .delivery_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("producer");
    for p in 0..2 {
        let meta = timeout(
            WAIT,
            producer.send(ProducerRecord::new("b", format!("to {p}")).partition(p)),
        )
        .await
        .expect("in time")
        .expect("acked");
        assert_eq!(meta.partition, p);
    }
    producer.close().await.expect("close");

    // Deleted: gone from the listing and from descriptions. (Once seen taking over 30 s
    // with the machine at load 28 while it takes 2 s alone: a generous bound.)
    timeout(2 * WAIT, admin.delete_topics(&["b"]))
        .await
        .expect("in time")
        .expect("delete");
    let names: Vec<String> = timeout(WAIT, admin.list_topics())
        .await
        .expect("in time")
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
    let e = timeout(WAIT, admin.describe_topics(&["b"]))
        .await
        .expect("in time")
        .expect_err("deleted");
    assert_eq!(e.code(), Some(ErrorCode::UnknownTopicOrPartition), "{e:?}");
    client.close().await;
}

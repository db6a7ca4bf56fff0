//! The controller with real `floe serve` processes: three nodes started with no topic at all;
//! a topic created with the client's `Admin`, produced to and consumed; the controller
//! leader's process `kill -9`ed and a topic still created; every process killed and restarted:
//! the topics and their data are still there.

mod client_support;

use std::time::Duration;

use client_support::{Cluster, WAIT};
use floe_client::{
    Acks, Client, Consumer, NewTopic, Producer, ProducerRecord, StartFrom, TopicPartition,
};
use floe_protocol::ErrorCode;
use futures_util::StreamExt;
use tokio::time::timeout;

/// Creates `topic`, retrying while the controller is not ready (just started, or electing).
async fn create(client: &Client, topic: NewTopic) {
    let admin = client.admin();
    let attempt = async {
        loop {
            match admin.create_topic(topic.clone()).await {
                Ok(()) => return,
                Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => return,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("creating {}: {e}", topic.name),
            }
        }
    };
    timeout(WAIT, attempt).await.expect("created in time");
}

async fn produce(client: &Client, topic: &str, partitions: u32, n: u32) {
    let producer = Producer::builder(client)
        .acks(Acks::All)
        .idempotence(true)
        .retries(u32::MAX, Duration::from_millis(20))
        .delivery_timeout(Duration::from_secs(25))
        .build();
    let producer = timeout(WAIT, producer)
        .await
        .expect("producer in time")
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..n {
        let record =
            ProducerRecord::new(topic, format!("{i}").into_bytes()).partition(i % partitions);
        deliveries.push(
            timeout(WAIT, producer.dispatch(record))
                .await
                .expect("dispatch in time")
                .expect("dispatch"),
        );
    }
    for d in deliveries {
        timeout(WAIT, d)
            .await
            .expect("delivery in time")
            .expect("delivered");
    }
    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
}

/// Reads every partition of `topic` from the start until `n` records came; returns them
/// sorted by value.
async fn consume(client: &Client, topic: &str, partitions: u32, n: usize) -> Vec<u32> {
    let consumer = Consumer::builder(client).build().expect("consumer");
    for p in 0..partitions {
        timeout(
            WAIT,
            consumer.assign(TopicPartition::new(topic, p), StartFrom::Earliest),
        )
        .await
        .expect("assign in time")
        .expect("assign");
    }
    let mut stream = consumer.stream();
    let mut got = Vec::new();
    let read = async {
        while got.len() < n {
            let r = stream.next().await.expect("stream open").expect("record");
            let v = String::from_utf8(r.value.expect("value").to_vec()).expect("utf8");
            got.push(v.parse::<u32>().expect("number"));
        }
    };
    timeout(WAIT, read).await.expect("consumed in time");
    consumer.close();
    got.sort_unstable();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_created_on_demand_survive_a_killed_controller_and_a_full_restart() {
    let mut cluster = Cluster::start(3);
    let client = cluster.client().await;
    // Three replicas need three registered brokers.
    let registered = async {
        while client
            .admin()
            .describe_cluster()
            .await
            .map_or(true, |d| d.brokers.len() < 3)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    timeout(WAIT, registered)
        .await
        .expect("three brokers registered");
    create(&client, NewTopic::new("live", 3, 3)).await;
    produce(&client, "live", 3, 600).await;
    assert_eq!(
        consume(&client, "live", 3, 600).await,
        (0..600).collect::<Vec<_>>()
    );

    // kill -9 the controller leader: a new one takes over and creation still works.
    let leader = async {
        loop {
            if let Ok(d) = client.admin().describe_cluster().await
                && let Some(c) = d.controller
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let controller = timeout(WAIT, leader).await.expect("a controller leader");
    cluster.kill(controller);
    create(&client, NewTopic::new("after-kill", 2, 3)).await;
    cluster.spawn(controller);
    produce(&client, "after-kill", 2, 100).await;
    client.close().await;

    // Every process killed and restarted: the metadata (and the data) is durable.
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    let client = cluster.client().await;
    let names = async {
        loop {
            if let Ok(t) = client.admin().list_topics().await {
                let mut names: Vec<String> = t.into_iter().map(|t| t.name).collect();
                names.sort();
                // A restarted node answers from the controller state it has applied so far,
                // which can be a prefix of the log: wait for both topics, not the first answer.
                if names == ["after-kill", "live"] {
                    return names;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let names = timeout(WAIT, names).await.expect("topics listed");
    assert_eq!(names, ["after-kill", "live"], "{}", cluster.log(1));
    assert_eq!(
        consume(&client, "live", 3, 600).await,
        (0..600).collect::<Vec<_>>()
    );
    assert_eq!(
        consume(&client, "after-kill", 2, 100).await,
        (0..100).collect::<Vec<_>>()
    );
    client.close().await;
}

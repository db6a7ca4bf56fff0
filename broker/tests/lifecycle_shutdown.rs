//! Graceful stop of a partition leader with a producer running (acks=all, idempotent): the
//! stopping node hands each leadership it holds to an up-to-date follower before it closes,
//! so when `Node::shutdown` returns another node already leads (no election timeout to wait
//! out), and every acknowledged record is there exactly once, in order.

mod cluster;

use std::time::Instant;

use cluster::{Background, TOPIC, WAIT, assert_exactly_once, consume, producer, start_cluster};
use tokio::time::timeout;

const PARTITIONS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_leader_hands_over_and_nothing_acknowledged_is_lost() {
    let mut cluster = start_cluster(&[1, 2, 3], PARTITIONS).await;
    for p in 0..PARTITIONS {
        cluster.leader(p).await;
    }
    let client = cluster.client().await;
    let bg = Background::start(producer(&client).await, PARTITIONS, 20);
    bg.wait_for(300).await;

    let old = cluster.leader(0).await;
    let led: Vec<u32> = (0..PARTITIONS)
        .filter(|&p| cluster.nodes[&old].leader_of(TOPIC, p) == Some(old))
        .collect();
    let node = cluster.nodes.remove(&old).expect("leader node");
    let started = Instant::now();
    timeout(WAIT, node.shutdown())
        .await
        .expect("shutdown in time");
    let took = started.elapsed();
    // The handover is part of the stop: when it returns, each partition the node led already
    // has a new leader that knows it leads (without a handover the survivors would still
    // follow the stopped node until their election timeout).
    for &p in &led {
        let leaders: Vec<u64> = cluster
            .nodes
            .values()
            .filter(|n| n.leader_of(TOPIC, p) == Some(n.id()))
            .map(|n| n.id())
            .collect();
        assert_eq!(
            leaders.len(),
            1,
            "partition {p}: a survivor leads as soon as the old leader stopped (took {took:?})"
        );
    }
    eprintln!("graceful stop of node {old} leading {led:?} took {took:?}");
    let new = cluster.leader(0).await;
    assert_ne!(new, old);

    // The producer keeps going on the new leaders.
    let before = bg.count().await;
    bg.wait_for(before + 300).await;
    let (producer, acked, unacked) = bg.stop().await;
    assert_eq!(
        unacked, 0,
        "every record is acknowledged (idempotent retries)"
    );
    let got = consume(&client, PARTITIONS, &acked).await;
    assert_exactly_once(&acked, &got);

    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
    client.close().await;
    cluster.shutdown_all().await;
}

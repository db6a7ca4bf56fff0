//! Moving partition replicas (reassignment) on a real in-process cluster: the controller
//! records the new replica set, the partition leader moves the Raft membership to it one
//! server at a time (learner, catch-up, promotion, removal; a leader that is moved away hands
//! its leadership over first), and removed replicas delete their data, all while a producer
//! with acks=all keeps writing. Nothing acknowledged may be lost.

mod cluster;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use cluster::{Background, Cluster, TOPIC, WAIT, assert_exactly_once, consume, producer};
use floe_protocol::ErrorCode;
use tokio::time::timeout;

/// A move waits for a removed replica to go quiet for `DEPART_SILENCE` (5 s) and for
/// catch-up on a loaded machine: more than the harness's usual bound.
const MOVE_WAIT: Duration = Duration::from_secs(90);

/// Node `node`'s directory of `partition` of the topic, if it exists.
fn partition_dir(c: &Cluster, node: u64, partition: u32) -> Option<PathBuf> {
    let parts = c.dir.path().join(format!("n{node}")).join("partitions");
    let prefix = format!("{TOPIC}-{partition}@");
    std::fs::read_dir(parts)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}

/// The replicas of `partition` in every running node's metadata, if they all agree.
fn agreed_replicas(c: &Cluster, partition: u32) -> Option<Vec<u64>> {
    let seen: BTreeSet<Vec<u64>> = c
        .nodes
        .values()
        .map(|n| {
            n.metadata()
                .topic(TOPIC)
                .and_then(|t| t.partitions.get(partition as usize))
                .map(|p| p.replicas.iter().map(|r| r.0).collect())
                .unwrap_or_default()
        })
        .collect();
    match seen.into_iter().collect::<Vec<_>>().as_slice() {
        [r] if !r.is_empty() => Some(r.clone()),
        _ => None,
    }
}

/// The leader every node hosting `partition` names, if they agree on one of them.
fn hosted_leader(c: &Cluster, partition: u32) -> Option<u64> {
    let seen: BTreeSet<Option<u64>> = c
        .nodes
        .values()
        .filter(|n| n.hosts(TOPIC, partition))
        .map(|n| n.leader_of(TOPIC, partition))
        .collect();
    match seen.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(l)] if c.nodes.get(l).is_some_and(|n| n.hosts(TOPIC, partition)) => Some(*l),
        _ => None,
    }
}

async fn until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let wait = async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(within, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not in time"));
}

/// Waits until the move to `target` is complete: every node's metadata shows it, exactly the
/// target nodes host the partition (and hold a directory for it), they agree on a leader
/// among them, and each holds at least `hw` committed offsets.
async fn until_moved(c: &Cluster, target: &[u64], hw: u64) -> u64 {
    let want: BTreeSet<u64> = target.iter().copied().collect();
    until("the metadata shows the move", WAIT, || {
        agreed_replicas(c, 0).as_deref() == Some(target)
    })
    .await;
    until(
        "exactly the target replicas hold the partition",
        MOVE_WAIT,
        || {
            c.nodes.iter().all(|(id, n)| {
                let placed = want.contains(id);
                n.hosts(TOPIC, 0) == placed && partition_dir(c, *id, 0).is_some() == placed
            })
        },
    )
    .await;
    until("a target replica leads, all caught up", MOVE_WAIT, || {
        hosted_leader(c, 0).is_some_and(|l| want.contains(&l))
            && want.iter().all(|id| {
                c.nodes[id]
                    .high_watermark(TOPIC, 0)
                    .is_some_and(|h| h >= hw)
            })
    })
    .await;
    hosted_leader(c, 0).expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_move_online_while_producing_and_nothing_acknowledged_is_lost() {
    let mut c = cluster::start_cluster_rf(&[1, 2, 3, 4], 1, 3).await;
    until("the topic is placed everywhere", WAIT, || {
        agreed_replicas(&c, 0).is_some()
    })
    .await;
    let founders = agreed_replicas(&c, 0).expect("replicas");
    let spare = (1..=4)
        .find(|n| !founders.contains(n))
        .expect("a spare node");
    until("a founder leads", WAIT, || hosted_leader(&c, 0).is_some()).await;
    let leader = hosted_leader(&c, 0).expect("leader");
    assert!(partition_dir(&c, spare, 0).is_none());

    let client = c.client().await;
    let admin = client.admin();
    let background = Background::start(producer(&client).await, 1, 20);
    background.wait_for(200).await;

    // 1. A follower moves to the spare node.
    let gone = *founders.iter().find(|&&n| n != leader).expect("a follower");
    let mut target: Vec<u64> = founders.iter().copied().filter(|&n| n != gone).collect();
    target.push(spare);
    timeout(WAIT, admin.alter_partition_replicas(TOPIC, 0, &target))
        .await
        .expect("in time")
        .expect("first move recorded");
    let hw = c.nodes[&leader].high_watermark(TOPIC, 0).expect("hw");
    let leader = until_moved(&c, &target, hw).await;
    // Produce keeps working on the new replica set.
    let n = background.count().await;
    background.wait_for(n + 200).await;

    // 2. The leader itself is moved away, to the node the first move emptied (which joins
    //    afresh: its old data is gone).
    let mut target2: Vec<u64> = target.iter().copied().filter(|&n| n != leader).collect();
    target2.push(gone);
    timeout(WAIT, admin.alter_partition_replicas(TOPIC, 0, &target2))
        .await
        .expect("in time")
        .expect("second move recorded");
    let hw = c.nodes[&leader].high_watermark(TOPIC, 0).expect("hw");
    let new_leader = until_moved(&c, &target2, hw).await;
    assert_ne!(new_leader, leader, "the moved-away leader handed over");
    let n = background.count().await;
    background.wait_for(n + 200).await;

    let (producer, acked, _unacked) = background.stop().await;
    timeout(WAIT, producer.close())
        .await
        .expect("close in time")
        .expect("close");
    // Every acknowledged record is on the final replica set, exactly once, in order.
    let last = acked[&0].last().expect("acked").0;
    until(
        "the final replicas hold every acknowledged record",
        WAIT,
        || {
            target2.iter().all(|id| {
                c.nodes[id]
                    .high_watermark(TOPIC, 0)
                    .is_some_and(|h| h > last)
            })
        },
    )
    .await;
    let got = consume(&client, 1, &acked).await;
    assert_exactly_once(&acked, &got);
    client.close().await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_reassignments_are_refused_with_typed_errors() {
    let mut c = cluster::start_cluster_rf(&[1, 2, 3], 2, 2).await;
    until("the topic is placed everywhere", WAIT, || {
        agreed_replicas(&c, 0).is_some()
    })
    .await;
    let before = agreed_replicas(&c, 0).expect("replicas");
    let client = c.client().await;
    let admin = client.admin();
    let refused = |topic: &'static str, partition: u32, replicas: Vec<u64>| {
        let admin = admin.clone();
        async move {
            let e = timeout(
                WAIT,
                admin.alter_partition_replicas(topic, partition, &replicas),
            )
            .await
            .expect("in time")
            .expect_err("refused");
            let detail = match &e {
                floe_client::Error::Broker { message, .. } => message.clone().unwrap_or_default(),
                e => e.to_string(),
            };
            (e.code(), detail)
        }
    };
    let (code, _) = refused(TOPIC, 0, vec![]).await;
    assert_eq!(code, Some(ErrorCode::InvalidReplicationFactor));
    let (code, _) = refused(TOPIC, 0, (1..=17).collect()).await;
    assert_eq!(code, Some(ErrorCode::InvalidReplicationFactor));
    let (code, msg) = refused(TOPIC, 0, vec![1, 2, 1]).await;
    assert_eq!(code, Some(ErrorCode::InvalidRequest), "{msg}");
    assert!(msg.contains("named twice"), "{msg}");
    let (code, _) = refused(TOPIC, 0, vec![1, 9]).await;
    assert_eq!(code, Some(ErrorCode::BrokerNotAvailable));
    let (code, _) = refused(TOPIC, 7, vec![1]).await;
    assert_eq!(code, Some(ErrorCode::UnknownTopicOrPartition));
    let (code, _) = refused("nope", 0, vec![1]).await;
    assert_eq!(code, Some(ErrorCode::UnknownTopicOrPartition));
    assert_eq!(agreed_replicas(&c, 0), Some(before), "nothing moved");
    client.close().await;
    c.shutdown_all().await;
}

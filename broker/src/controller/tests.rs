//! Unit and property tests of the controller state machine.

use std::collections::BTreeMap;

use bytes::Bytes;
use floe_protocol::ErrorCode;
use floe_raft::{NodeId, Offset, StateMachine};
use floe_storage::FsyncPolicy;
use proptest::prelude::*;

use super::*;

fn register(id: u64) -> Command {
    Command::RegisterBroker {
        broker: NodeId(id),
        client_addr: format!("10.0.0.{id}:9092"),
        peer_addr: format!("10.0.0.{id}:9093"),
        rack: Some(format!("rack-{}", id % 2)),
        term: 1,
        tick: id,
    }
}

fn create(name: &str, partitions: u32, rf: u16) -> Command {
    Command::CreateTopic {
        name: name.to_string(),
        partitions,
        replication_factor: rf,
        configs: Vec::new(),
    }
}

/// Applies through the `StateMachine` path (encode, decode, apply).
fn run(s: &mut ControllerState, c: &Command) -> Result<Applied, ControllerError> {
    s.apply(Offset(0), &c.encode())
}

fn cluster(brokers: u64) -> ControllerState {
    let mut s = ControllerState::new();
    for id in 1..=brokers {
        run(&mut s, &register(id)).unwrap();
    }
    s
}

fn epoch(s: &ControllerState, id: u64) -> u64 {
    s.broker(NodeId(id)).unwrap().epoch
}

/// Checks a failed command left the state exactly as it was.
fn rejects(s: &mut ControllerState, c: &Command, want: ControllerError) {
    let before = s.clone();
    assert_eq!(run(s, c), Err(want));
    assert_eq!(*s, before);
}

#[test]
fn register_assigns_new_epochs_and_reregistration_unfences() {
    let mut s = ControllerState::new();
    assert_eq!(
        run(&mut s, &register(1)),
        Ok(Applied::BrokerRegistered { epoch: 1 })
    );
    assert_eq!(
        run(&mut s, &register(2)),
        Ok(Applied::BrokerRegistered { epoch: 2 })
    );
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(1),
            epoch: 1,
        },
    )
    .unwrap();
    assert!(s.broker(NodeId(1)).unwrap().fenced);
    assert_eq!(
        run(&mut s, &register(1)),
        Ok(Applied::BrokerRegistered { epoch: 4 })
    );
    let b = s.broker(NodeId(1)).unwrap();
    assert!(!b.fenced);
    assert_eq!(b.client_addr, "10.0.0.1:9092");
    assert_eq!(b.rack.as_deref(), Some("rack-1"));
    assert_eq!(s.version(), 4);
}

#[test]
fn register_rejects_bad_addresses() {
    let mut s = ControllerState::new();
    for (client, peer, rack) in [
        ("nohost", "h:1", None),
        ("h:1", "h:notaport", None),
        (":9092", "h:1", None),
        ("h:70000", "h:1", None),
        ("h:1", "h:1", Some("r".repeat(MAX_ADDR_LEN + 1))),
    ] {
        let c = Command::RegisterBroker {
            broker: NodeId(1),
            client_addr: client.to_string(),
            peer_addr: peer.to_string(),
            rack,
            term: 0,
            tick: 0,
        };
        rejects(&mut s, &c, ControllerError::InvalidAddress);
    }
    let v6 = Command::RegisterBroker {
        broker: NodeId(1),
        client_addr: "[::1]:9092".into(),
        peer_addr: "[::1]:9093".into(),
        rack: None,
        term: 0,
        tick: 0,
    };
    run(&mut s, &v6).unwrap();
    let info = &s.broker_infos()[0];
    assert_eq!((info.host.as_str(), info.port), ("::1", 9092));
}

#[test]
fn heartbeat_records_stamp_unfences_and_checks_epoch() {
    let mut s = cluster(2);
    let e = epoch(&s, 1);
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(1),
            epoch: e,
        },
    )
    .unwrap();
    assert_eq!(s.live_brokers(), vec![NodeId(2)]);
    let hb = Command::BrokerHeartbeat {
        broker: NodeId(1),
        epoch: e,
        term: 7,
        tick: 99,
    };
    assert_eq!(run(&mut s, &hb), Ok(Applied::HeartbeatRecorded));
    let b = s.broker(NodeId(1)).unwrap();
    assert!(!b.fenced);
    assert_eq!(b.last_heartbeat, HeartbeatStamp { term: 7, tick: 99 });
    let stale = Command::BrokerHeartbeat {
        broker: NodeId(1),
        epoch: e + 100,
        term: 8,
        tick: 100,
    };
    rejects(
        &mut s,
        &stale,
        ControllerError::StaleBrokerEpoch {
            broker: NodeId(1),
            current: e,
            given: e + 100,
        },
    );
    let unknown = Command::BrokerHeartbeat {
        broker: NodeId(9),
        epoch: 1,
        term: 0,
        tick: 0,
    };
    rejects(
        &mut s,
        &unknown,
        ControllerError::UnknownBroker { broker: NodeId(9) },
    );
}

#[test]
fn fence_checks_broker_and_epoch() {
    let mut s = cluster(1);
    rejects(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(5),
            epoch: 1,
        },
        ControllerError::UnknownBroker { broker: NodeId(5) },
    );
    rejects(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(1),
            epoch: 0,
        },
        ControllerError::StaleBrokerEpoch {
            broker: NodeId(1),
            current: 1,
            given: 0,
        },
    );
    assert_eq!(
        run(
            &mut s,
            &Command::FenceBroker {
                broker: NodeId(1),
                epoch: 1
            }
        ),
        Ok(Applied::BrokerFenced)
    );
    assert!(s.broker_infos().is_empty());
}

#[test]
fn create_topic_places_and_validates() {
    let mut s = cluster(3);
    assert_eq!(
        run(&mut s, &create("orders", 6, 3)),
        Ok(Applied::TopicCreated { id: TopicId(0) })
    );
    assert_eq!(
        run(&mut s, &create("audit", 1, 1)),
        Ok(Applied::TopicCreated { id: TopicId(1) })
    );
    rejects(
        &mut s,
        &create("orders", 1, 1),
        ControllerError::TopicAlreadyExists,
    );
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "sp ace",
        &"x".repeat(MAX_TOPIC_NAME_LEN + 1),
    ] {
        rejects(
            &mut s,
            &create(bad, 1, 1),
            ControllerError::InvalidTopicName,
        );
    }
    rejects(
        &mut s,
        &create("t", 0, 1),
        ControllerError::InvalidPartitions { count: 0 },
    );
    let too_many = MAX_PARTITIONS_PER_TOPIC + 1;
    rejects(
        &mut s,
        &create("t", too_many, 1),
        ControllerError::InvalidPartitions { count: too_many },
    );
    rejects(
        &mut s,
        &create("t", 1, 0),
        ControllerError::InvalidReplicationFactor { factor: 0 },
    );
    rejects(
        &mut s,
        &create("t", 1, MAX_REPLICATION_FACTOR + 1),
        ControllerError::InvalidReplicationFactor {
            factor: MAX_REPLICATION_FACTOR + 1,
        },
    );
    rejects(
        &mut s,
        &create("t", 1, 4),
        ControllerError::NotEnoughBrokers { needed: 4, have: 3 },
    );
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(3),
            epoch: 3,
        },
    )
    .unwrap();
    rejects(
        &mut s,
        &create("t", 1, 3),
        ControllerError::NotEnoughBrokers { needed: 3, have: 2 },
    );
    let t = s.topic("orders").unwrap();
    assert_eq!(t.partitions.len(), 6);
    assert_eq!(t.replication_factor, 3);
    assert_eq!(t.config, TopicConfig::default());
}

#[test]
fn create_topic_on_a_fenced_broker_set_avoids_fenced_brokers() {
    let mut s = cluster(4);
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(2),
            epoch: 2,
        },
    )
    .unwrap();
    run(&mut s, &create("t", 12, 2)).unwrap();
    let t = s.topic("t").unwrap();
    assert!(
        t.partitions
            .iter()
            .all(|p| !p.replicas.contains(&NodeId(2)))
    );
}

#[test]
fn create_topic_configs_are_parsed_and_bad_ones_named() {
    let mut s = cluster(1);
    let c = Command::CreateTopic {
        name: "t".into(),
        partitions: 1,
        replication_factor: 1,
        configs: vec![
            ("retention.bytes".into(), "1000000".into()),
            ("retention.ms".into(), "-1".into()),
            ("fsync".into(), "250ms".into()),
            ("segment.bytes".into(), "1048576".into()),
            ("max.batch.bytes".into(), "65536".into()),
        ],
    };
    run(&mut s, &c).unwrap();
    let cfg = *s.topic_config("t").unwrap();
    assert_eq!(cfg.retention_bytes, Some(1_000_000));
    assert_eq!(cfg.retention_ms, None);
    assert_eq!(cfg.fsync, FsyncPolicy::Interval { ms: 250 });
    assert_eq!(cfg.segment_bytes, 1 << 20);
    assert_eq!(cfg.max_batch_bytes, 65536);
    for (key, value) in [
        ("nope", "1"),
        ("fsync", "sometimes"),
        ("fsync", "0ms"),
        ("fsync", "ms"),
        ("segment.bytes", "10"),
        ("max.batch.bytes", "999999999"),
        ("retention.ms", "-2"),
    ] {
        let c = Command::CreateTopic {
            name: "u".into(),
            partitions: 1,
            replication_factor: 1,
            configs: vec![("fsync".into(), "never".into()), (key.into(), value.into())],
        };
        rejects(
            &mut s,
            &c,
            ControllerError::InvalidConfig { key: key.into() },
        );
    }
}

#[test]
fn delete_topic() {
    let mut s = cluster(1);
    run(&mut s, &create("t", 2, 1)).unwrap();
    assert_eq!(
        run(&mut s, &Command::DeleteTopic { name: "t".into() }),
        Ok(Applied::TopicDeleted)
    );
    assert!(s.topic("t").is_none());
    rejects(
        &mut s,
        &Command::DeleteTopic { name: "t".into() },
        ControllerError::UnknownTopic,
    );
    // Ids are never reused.
    assert_eq!(
        run(&mut s, &create("t", 1, 1)),
        Ok(Applied::TopicCreated { id: TopicId(1) })
    );
}

#[test]
fn alter_topic_config_is_all_or_nothing() {
    let mut s = cluster(1);
    run(&mut s, &create("t", 1, 1)).unwrap();
    let alter = |configs: &[(&str, &str)]| Command::AlterTopicConfig {
        name: "t".into(),
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        run(&mut s, &alter(&[("fsync", "never")])),
        Ok(Applied::TopicConfigAltered)
    );
    assert_eq!(s.topic_config("t").unwrap().fsync, FsyncPolicy::Never);
    rejects(
        &mut s,
        &alter(&[("retention.ms", "5"), ("bogus", "1")]),
        ControllerError::InvalidConfig {
            key: "bogus".into(),
        },
    );
    assert_eq!(s.topic_config("t").unwrap().retention_ms, None);
    let unknown = Command::AlterTopicConfig {
        name: "u".into(),
        configs: Vec::new(),
    };
    rejects(&mut s, &unknown, ControllerError::UnknownTopic);
    let entries = s.config_entries("t").unwrap();
    assert_eq!(entries.len(), config::CONFIG_KEYS.len());
    assert!(
        entries
            .iter()
            .any(|e| e.name == "fsync" && e.value == "never")
    );
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut s = cluster(2);
    let alloc = |b: u64, count: u32| Command::AllocateProducerIds {
        broker: NodeId(b),
        count,
    };
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for (b, n) in [(1, 10), (2, 1), (1, MAX_PRODUCER_ID_BLOCK), (2, 7)] {
        let Ok(Applied::ProducerIdsAllocated(block)) = run(&mut s, &alloc(b, n)) else {
            panic!("allocation failed");
        };
        assert_eq!((block.broker, block.count), (NodeId(b), n));
        let range = (block.first, block.first + u64::from(block.count));
        assert!(seen.iter().all(|&(a, z)| range.1 <= a || z <= range.0));
        seen.push(range);
        assert_eq!(s.producer_id_block(NodeId(b)), Some(block));
    }
    assert_eq!(
        s.next_producer_id(),
        10 + 1 + u64::from(MAX_PRODUCER_ID_BLOCK) + 7
    );
    rejects(
        &mut s,
        &alloc(1, 0),
        ControllerError::InvalidProducerIdCount { count: 0 },
    );
    rejects(
        &mut s,
        &alloc(1, MAX_PRODUCER_ID_BLOCK + 1),
        ControllerError::InvalidProducerIdCount {
            count: MAX_PRODUCER_ID_BLOCK + 1,
        },
    );
    rejects(
        &mut s,
        &alloc(3, 1),
        ControllerError::UnknownBroker { broker: NodeId(3) },
    );
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(2),
            epoch: 2,
        },
    )
    .unwrap();
    rejects(
        &mut s,
        &alloc(2, 1),
        ControllerError::BrokerFenced { broker: NodeId(2) },
    );
    // Exhaustion: nothing wraps around.
    s.next_producer_id = u64::MAX - 5;
    rejects(&mut s, &alloc(1, 6), ControllerError::ProducerIdsExhausted);
    assert!(run(&mut s, &alloc(1, 5)).is_ok());
}

#[test]
fn producer_epochs_bump_only_from_the_current_one() {
    let mut s = cluster(1);
    let bump = |producer_id: u64, epoch: u16| Command::BumpProducerEpoch { producer_id, epoch };
    rejects(
        &mut s,
        &bump(0, 0),
        ControllerError::UnknownProducerId { producer_id: 0 },
    );
    run(
        &mut s,
        &Command::AllocateProducerIds {
            broker: NodeId(1),
            count: 10,
        },
    )
    .unwrap();
    assert_eq!(s.producer_epoch(3), Some(0), "handed out at epoch 0");
    assert_eq!(s.producer_epoch(10), None);
    assert_eq!(
        run(&mut s, &bump(3, 0)),
        Ok(Applied::ProducerEpochBumped { epoch: 1 })
    );
    assert_eq!(
        run(&mut s, &bump(3, 1)),
        Ok(Applied::ProducerEpochBumped { epoch: 2 })
    );
    // The instance that still holds epoch 1 (or invents a later one) is fenced.
    for given in [0, 1, 3] {
        rejects(
            &mut s,
            &bump(3, given),
            ControllerError::ProducerFenced {
                producer_id: 3,
                current: 2,
                given,
            },
        );
    }
    assert_eq!(s.producer_epoch(3), Some(2));
    assert_eq!(s.producer_epoch(4), Some(0), "other ids untouched");
    assert_eq!(
        ControllerError::ProducerFenced {
            producer_id: 3,
            current: 2,
            given: 1
        }
        .code(),
        ErrorCode::ProducerFenced
    );
    // Kept by snapshots, and a snapshot with an impossible epoch is refused.
    let restored = ControllerState::from_snapshot(&s.snapshot()).unwrap();
    assert_eq!(restored.producer_epoch(3), Some(2));
    assert_eq!(restored, s);
    let mut broken = s.clone();
    broken.producer_epochs.insert(99, 1);
    assert_eq!(
        ControllerState::from_snapshot(&broken.snapshot()),
        Err(SnapshotError::Inconsistent {
            what: "producer epoch"
        })
    );
    // A format-2 snapshot (written before producer epochs) still reads: all at epoch 0.
    let plain = cluster(1);
    let v3 = plain.snapshot();
    let mut v2 = v3[..v3.len() - 8].to_vec(); // without the empty epoch list and the crc
    v2[4..6].copy_from_slice(&2u16.to_le_bytes());
    let crc = crc32fast::hash(&v2);
    v2.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(ControllerState::from_snapshot(&Bytes::from(v2)), Ok(plain));
    // The last epoch the protocol carries is not bumped past.
    s.producer_epochs.insert(5, MAX_PRODUCER_EPOCH);
    rejects(
        &mut s,
        &bump(5, MAX_PRODUCER_EPOCH),
        ControllerError::ProducerEpochExhausted { producer_id: 5 },
    );
}

#[test]
fn reassign_partition_moves_a_replica_and_the_leadership() {
    let mut s = cluster(3);
    run(&mut s, &create("t", 1, 2)).unwrap();
    run(&mut s, &register(4)).unwrap();
    let p = s.topic("t").unwrap().partitions[0].clone();
    let leader = p.preferred_leader;
    let spare = NodeId(4);
    let outsider = (1..=3)
        .map(NodeId)
        .find(|n| !p.replicas.contains(n))
        .unwrap();
    let mv = |partition: u32, from: NodeId, to: NodeId| Command::ReassignPartition {
        topic: "t".into(),
        partition,
        from,
        to,
    };
    assert_eq!(
        run(&mut s, &mv(0, leader, spare)),
        Ok(Applied::PartitionReassigned)
    );
    let q = s.topic("t").unwrap().partitions[0].clone();
    assert!(q.replicas.contains(&spare) && !q.replicas.contains(&leader));
    assert_eq!(q.preferred_leader, spare);
    let ghost = Command::ReassignPartition {
        topic: "u".into(),
        partition: 0,
        from: spare,
        to: leader,
    };
    rejects(&mut s, &ghost, ControllerError::UnknownTopic);
    rejects(
        &mut s,
        &mv(1, spare, leader),
        ControllerError::UnknownPartition { partition: 1 },
    );
    rejects(
        &mut s,
        &mv(0, outsider, leader),
        ControllerError::NotAReplica { broker: outsider },
    );
    let other = q.replicas.iter().copied().find(|&n| n != spare).unwrap();
    rejects(
        &mut s,
        &mv(0, spare, other),
        ControllerError::AlreadyAReplica { broker: other },
    );
    rejects(
        &mut s,
        &mv(0, spare, NodeId(9)),
        ControllerError::UnknownBroker { broker: NodeId(9) },
    );
    let e = epoch(&s, leader.0);
    run(
        &mut s,
        &Command::FenceBroker {
            broker: leader,
            epoch: e,
        },
    )
    .unwrap();
    rejects(
        &mut s,
        &mv(0, spare, leader),
        ControllerError::BrokerFenced { broker: leader },
    );
}

#[test]
fn malformed_payloads_are_errors() {
    let mut s = cluster(1);
    let cases: [(&[u8], CommandDecodeError); 4] = [
        (&[], CommandDecodeError::Empty),
        (&[1], CommandDecodeError::Empty),
        (&[2, 1], CommandDecodeError::UnsupportedVersion(2)),
        (&[1, 200], CommandDecodeError::UnknownTag(200)),
    ];
    for (bytes, want) in cases {
        let before = s.clone();
        assert_eq!(
            s.apply(Offset(0), &Bytes::copy_from_slice(bytes)),
            Err(ControllerError::Malformed(want))
        );
        assert_eq!(s, before);
    }
    let mut trailing = create("t", 1, 1).encode().to_vec();
    trailing.push(0);
    assert!(matches!(
        s.apply(Offset(0), &Bytes::from(trailing)),
        Err(ControllerError::Malformed(CommandDecodeError::Malformed(_)))
    ));
    let full = create("t", 1, 1).encode();
    assert!(matches!(
        s.apply(Offset(0), &full.slice(..full.len() - 1)),
        Err(ControllerError::Malformed(CommandDecodeError::Malformed(_)))
    ));
    assert_eq!(s.version(), 1);
}

#[test]
fn error_codes_map_to_the_protocol() {
    assert_eq!(
        ControllerError::TopicAlreadyExists.code(),
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        ControllerError::UnknownTopic.code(),
        ErrorCode::UnknownTopicOrPartition
    );
    let c = ControllerError::NotEnoughBrokers { needed: 3, have: 1 };
    assert_eq!(c.code(), ErrorCode::InvalidReplicationFactor);
    let c = ControllerError::InvalidConfig { key: "k".into() };
    assert_eq!(c.code(), ErrorCode::InvalidConfig);
}

#[test]
fn metadata_and_describe_cluster_answers() {
    let mut s = cluster(3);
    run(&mut s, &create("orders", 3, 2)).unwrap();
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(3),
            epoch: 3,
        },
    )
    .unwrap();
    let leader_of = |topic: &str, p: u32| {
        (topic == "orders" && p == 0).then_some(LiveLeader { node: 1, term: 4 })
    };
    let names = ["orders".to_string(), "nope".to_string()];
    let m = s.metadata("c1", Some(1), Some(&names), &leader_of);
    assert_eq!(m.cluster_id, "c1");
    assert_eq!(m.brokers.len(), 2);
    assert_eq!(m.topics[1].error, ErrorCode::UnknownTopicOrPartition);
    let parts = &m.topics[0].partitions;
    assert_eq!(parts.len(), 3);
    assert_eq!((parts[0].leader, parts[0].leader_term), (Some(1), 4));
    assert_eq!(parts[1].error, ErrorCode::LeaderNotAvailable);
    let placed = &s.topic("orders").unwrap().partitions;
    for (pm, pa) in parts.iter().zip(placed) {
        let ids: Vec<u64> = pa.replicas.iter().map(|n| n.0).collect();
        assert_eq!(pm.replicas, ids);
        assert!(!pm.in_sync.contains(&3));
    }
    let all = s.metadata("c1", None, None, &|_, _| None);
    assert_eq!(all.topics.len(), 1);
    let d = s.describe_cluster("c1", Some(2));
    assert_eq!(d.controller_id, Some(2));
    assert_eq!(
        d.brokers.iter().map(|b| b.node_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        (d.brokers[0].host.as_str(), d.brokers[0].port),
        ("10.0.0.1", 9092)
    );
    let desc = s.describe_topic("orders", &|_, _| None);
    assert_eq!(desc.configs.len(), config::CONFIG_KEYS.len());
    let l = s.topic_listings();
    assert_eq!((l[0].partitions, l[0].replication_factor), (3, 2));
}

#[test]
fn snapshot_errors_are_typed_and_restore_keeps_state() {
    let mut s = cluster(2);
    run(&mut s, &create("t", 4, 2)).unwrap();
    let snap = s.snapshot();
    assert_eq!(ControllerState::from_snapshot(&snap).as_ref(), Ok(&s));
    assert!(matches!(
        ControllerState::from_snapshot(&snap.slice(..5)),
        Err(SnapshotError::TooShort { len: 5 })
    ));
    let mut bad = snap.to_vec();
    bad[0] = b'X';
    assert_eq!(
        ControllerState::from_snapshot(&Bytes::from(bad)),
        Err(SnapshotError::BadMagic)
    );
    let mut bad = snap.to_vec();
    bad[4] = 9;
    assert_eq!(
        ControllerState::from_snapshot(&Bytes::from(bad)),
        Err(SnapshotError::UnsupportedFormat(9))
    );
    let mut bad = snap.to_vec();
    bad[10] ^= 1;
    assert!(matches!(
        ControllerState::from_snapshot(&Bytes::from(bad.clone())),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
    let mut other = ControllerState::new();
    other.restore(&Bytes::from(bad));
    assert_eq!(other, ControllerState::new());
    other.restore(&snap);
    assert_eq!(other, s);
}

#[test]
fn snapshot_checks_invariants_behind_a_valid_checksum() {
    let mut s = cluster(2);
    run(&mut s, &create("t", 1, 2)).unwrap();
    let t = s.topics.get_mut("t").unwrap();
    t.partitions[0].preferred_leader = NodeId(77);
    let snap = s.snapshot();
    assert_eq!(
        ControllerState::from_snapshot(&snap),
        Err(SnapshotError::Inconsistent {
            what: "partition replicas"
        })
    );
}

// ---- properties ----

fn counts(s: &ControllerState, topic: &str) -> (BTreeMap<NodeId, u32>, BTreeMap<NodeId, u32>) {
    let mut replicas: BTreeMap<NodeId, u32> =
        s.live_brokers().into_iter().map(|b| (b, 0)).collect();
    let mut leaders = replicas.clone();
    for p in &s.topic(topic).unwrap().partitions {
        for r in &p.replicas {
            *replicas.get_mut(r).unwrap() += 1;
        }
        *leaders.get_mut(&p.preferred_leader).unwrap() += 1;
    }
    (replicas, leaders)
}

fn spread(m: &BTreeMap<NodeId, u32>) -> u32 {
    m.values().max().unwrap() - m.values().min().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn placement_is_distinct_even_and_deterministic(
        brokers in 1u64..13,
        partitions in 1u32..200,
        rf in 1u16..6,
        existing in proptest::collection::vec((1u32..20, 1u16..4), 0..4),
        gaps in proptest::collection::vec(1u64..4, 12),
    ) {
        prop_assume!(u64::from(rf) <= brokers);
        // Broker ids with gaps, and some topics placed before.
        let mut s = ControllerState::new();
        let mut id = 0;
        for g in gaps.iter().take(brokers as usize) {
            id += g;
            run(&mut s, &register(id)).unwrap();
        }
        for (i, (p, r)) in existing.iter().enumerate() {
            let _ = run(&mut s, &create(&format!("pre{i}"), *p, *r));
        }
        let mut twin = s.clone();
        run(&mut s, &create("t", partitions, rf)).unwrap();
        run(&mut twin, &create("t", partitions, rf)).unwrap();
        prop_assert_eq!(&s, &twin);
        for p in &s.topic("t").unwrap().partitions {
            prop_assert_eq!(p.replicas.len(), usize::from(rf));
            let mut sorted = p.replicas.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), p.replicas.len());
            prop_assert!(p.replicas.contains(&p.preferred_leader));
        }
        let (replicas, leaders) = counts(&s, "t");
        prop_assert!(spread(&replicas) <= 1, "replicas {:?}", replicas);
        prop_assert!(spread(&leaders) <= 1, "leaders {:?}", leaders);
    }

    #[test]
    fn rebalance_after_adding_brokers_evens_replicas(
        before in 1u64..6,
        added in 1u64..6,
        topics in proptest::collection::vec((1u32..40, 1u16..4), 1..4),
    ) {
        let mut s = cluster(before);
        for (i, (p, r)) in topics.iter().enumerate() {
            let _ = run(&mut s, &create(&format!("t{i}"), *p, (*r).min(before as u16)));
        }
        for id in before + 1..=before + added {
            run(&mut s, &register(id)).unwrap();
        }
        let plan = s.rebalance_plan();
        prop_assert_eq!(&plan, &s.clone().rebalance_plan());
        for mv in &plan {
            prop_assert_eq!(run(&mut s, &mv.to_command()), Ok(Applied::PartitionReassigned));
        }
        let loads = s.broker_loads();
        let max = loads.values().map(|l| l.replicas).max().unwrap();
        let min = loads.values().map(|l| l.replicas).min().unwrap();
        prop_assert!(max - min <= 1, "loads {:?}", loads);
        prop_assert!(s.rebalance_plan().is_empty());
    }

    #[test]
    fn snapshot_round_trips(cmds in proptest::collection::vec(arb_command(), 0..40)) {
        let mut s = ControllerState::new();
        for c in &cmds {
            let _ = run(&mut s, c);
        }
        let snap = s.snapshot();
        let mut restored = ControllerState::new();
        restored.restore(&snap);
        prop_assert_eq!(&restored, &s);
        prop_assert_eq!(restored.snapshot(), snap);
    }

    #[test]
    fn commands_round_trip(c in arb_command()) {
        prop_assert_eq!(Command::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut s = cluster(2);
        let before = s.clone();
        if s.apply(Offset(0), &Bytes::from(bytes.clone())).is_err() {
            prop_assert_eq!(&s, &before);
        }
        let mut t = cluster(1);
        let kept = t.clone();
        t.restore(&Bytes::from(bytes.clone()));
        prop_assert_eq!(&t, &kept);
        // A correct header and checksum around arbitrary bytes.
        let mut framed = b"FLCS\x01\x00".to_vec();
        framed.extend_from_slice(&bytes);
        let crc = crc32fast::hash(&framed);
        framed.extend_from_slice(&crc.to_le_bytes());
        let _ = ControllerState::from_snapshot(&Bytes::from(framed));
    }

    #[test]
    fn mutated_valid_payloads_never_panic(c in arb_command(), at in any::<usize>(), byte in any::<u8>()) {
        let mut payload = c.encode().to_vec();
        let i = at % payload.len();
        payload[i] = byte;
        let mut s = cluster(3);
        let _ = s.apply(Offset(0), &Bytes::from(payload));
        let mut snap = s.snapshot().to_vec();
        let j = at % snap.len();
        snap[j] ^= byte | 1;
        prop_assert!(ControllerState::from_snapshot(&Bytes::from(snap)).is_err());
    }
}

fn arb_command() -> impl Strategy<Value = Command> {
    let node = (1u64..6).prop_map(NodeId);
    let name = prop::sample::select(vec!["a", "b", "c", "bad name"]).prop_map(String::from);
    let config = prop::sample::select(vec![
        ("fsync", "always"),
        ("fsync", "10ms"),
        ("retention.bytes", "4096"),
        ("segment.bytes", "2048"),
        ("bogus", "1"),
    ])
    .prop_map(|(k, v)| (k.to_string(), v.to_string()));
    let configs = proptest::collection::vec(config, 0..3);
    prop_oneof![
        (node.clone(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
            |(b, rack, term, tick)| {
                Command::RegisterBroker {
                    broker: b,
                    client_addr: format!("h{}:9092", b.0),
                    peer_addr: format!("h{}:9093", b.0),
                    rack: rack.then(|| "r1".to_string()),
                    term,
                    tick,
                }
            }
        ),
        (node.clone(), 0u64..30, any::<u64>(), any::<u64>()).prop_map(
            |(broker, epoch, term, tick)| {
                Command::BrokerHeartbeat {
                    broker,
                    epoch,
                    term,
                    tick,
                }
            }
        ),
        (node.clone(), 0u64..30).prop_map(|(broker, epoch)| Command::FenceBroker { broker, epoch }),
        (name.clone(), 0u32..12, 0u16..4, configs.clone()).prop_map(
            |(name, partitions, replication_factor, configs)| Command::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            }
        ),
        name.clone().prop_map(|name| Command::DeleteTopic { name }),
        (name.clone(), configs)
            .prop_map(|(name, configs)| Command::AlterTopicConfig { name, configs }),
        (node.clone(), 0u32..5000)
            .prop_map(|(broker, count)| Command::AllocateProducerIds { broker, count }),
        (name.clone(), 0u32..12, node.clone(), node.clone()).prop_map(
            |(topic, partition, from, to)| {
                Command::ReassignPartition {
                    topic,
                    partition,
                    from,
                    to,
                }
            }
        ),
        (name, 0u32..12, proptest::collection::vec(node, 0..5)).prop_map(
            |(topic, partition, replicas)| Command::AlterPartitionReplicas {
                topic,
                partition,
                replicas,
            }
        ),
        (0u64..40, 0u16..4)
            .prop_map(|(producer_id, epoch)| Command::BumpProducerEpoch { producer_id, epoch }),
    ]
}

#[test]
fn alter_partition_replicas_sets_the_target_and_validates() {
    let mut s = ControllerState::new();
    for id in 1..=4 {
        run(&mut s, &register(id)).unwrap();
    }
    run(&mut s, &create("t", 2, 3)).unwrap();
    let alter = |partition: u32, replicas: &[u64]| Command::AlterPartitionReplicas {
        topic: "t".into(),
        partition,
        replicas: replicas.iter().copied().map(NodeId).collect(),
    };
    let before = s.topic("t").unwrap().partitions[0].clone();
    assert_eq!(before.moves, 0);
    // The same set is not a move: the founding set stays the founding set.
    let same: Vec<u64> = before.replicas.iter().map(|n| n.0).collect();
    assert_eq!(
        run(&mut s, &alter(0, &same)),
        Ok(Applied::PartitionReassigned)
    );
    assert_eq!(s.topic("t").unwrap().partitions[0].moves, 0);

    assert_eq!(
        run(&mut s, &alter(0, &[4, 2, 1])),
        Ok(Applied::PartitionReassigned)
    );
    let after = s.topic("t").unwrap().partitions[0].clone();
    assert_eq!(after.replicas, vec![NodeId(4), NodeId(2), NodeId(1)]);
    assert_eq!(after.preferred_leader, NodeId(4));
    assert_eq!(after.moves, 1);
    // Survives the snapshot encoding.
    let back = ControllerState::from_snapshot(&s.snapshot()).unwrap();
    assert_eq!(back.topic("t").unwrap().partitions[0], after);

    let version = s.version();
    rejects(
        &mut s,
        &alter(0, &[]),
        ControllerError::InvalidReplicaCount { count: 0 },
    );
    let many: Vec<u64> = (1..=17).collect();
    rejects(
        &mut s,
        &alter(0, &many),
        ControllerError::InvalidReplicaCount { count: 17 },
    );
    rejects(
        &mut s,
        &alter(0, &[1, 2, 1]),
        ControllerError::DuplicateReplica { broker: NodeId(1) },
    );
    rejects(
        &mut s,
        &alter(0, &[1, 9]),
        ControllerError::UnknownBroker { broker: NodeId(9) },
    );
    rejects(
        &mut s,
        &alter(2, &[1]),
        ControllerError::UnknownPartition { partition: 2 },
    );
    let ghost = Command::AlterPartitionReplicas {
        topic: "u".into(),
        partition: 0,
        replicas: vec![NodeId(1)],
    };
    rejects(&mut s, &ghost, ControllerError::UnknownTopic);
    let e = epoch(&s, 3);
    run(
        &mut s,
        &Command::FenceBroker {
            broker: NodeId(3),
            epoch: e,
        },
    )
    .unwrap();
    let version_fenced = s.version();
    assert!(version_fenced > version);
    rejects(
        &mut s,
        &alter(0, &[3]),
        ControllerError::BrokerFenced { broker: NodeId(3) },
    );
    assert_eq!(s.version(), version_fenced);
    assert_eq!(s.topic("t").unwrap().partitions[0], after);
    // The command survives its encoding.
    let c = alter(1, &[2, 3]);
    assert_eq!(Command::decode(&c.encode()), Ok(c));
}

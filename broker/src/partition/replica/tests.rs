//! One replica alone (a single-voter group): group commit, acknowledgements, fsync failure.

use std::sync::Arc;

use bytes::Bytes;
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use floe_raft::{Config, Membership, NodeId};
use floe_storage::LogConfig;
use floe_storage::backend::FaultDir;

use super::{Acks, Replica, ReplicaConfig};
use crate::partition::{FetchError, ProduceError, ReplicaError};

fn batch(v: &str) -> Bytes {
    let mut b = BatchBuilder::new(CompressionCodec::None);
    b.append(0, None, Some(v.as_bytes()), &[]).expect("append");
    b.finish().expect("finish")
}

/// Small preallocated segments: the fault backend copies file images on sync and crash.
fn small_log() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

/// A single-voter group on `disk`, ticked until it leads.
fn leader(disk: &FaultDir) -> Replica {
    let cfg = ReplicaConfig::new(Config::new(NodeId(1)), small_log());
    let mut r = Replica::open(
        Arc::new(disk.clone()),
        cfg,
        Membership::new([NodeId(1)], []),
        0,
    )
    .expect("open");
    for t in 0..100 {
        if r.is_leader() {
            return r;
        }
        r.tick(t).expect("tick");
        r.process().expect("process");
    }
    panic!("a single voter elects itself");
}

#[test]
fn one_fsync_covers_a_burst_of_produces() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    // Steady state: a round costs the same fsyncs for one produce as for ten.
    r.produce(100, batch("warm"), Acks::All).expect("produce");
    r.process().expect("process");
    assert!(r.poll_ack().is_some());
    let before = disk.sync_count();
    r.produce(101, batch("one"), Acks::All).expect("produce");
    r.process().expect("process");
    let one = disk.sync_count() - before;
    assert!(r.poll_ack().is_some());
    let before = disk.sync_count();
    for i in 0..10 {
        r.produce(i, batch(&format!("v{i}")), Acks::All)
            .expect("produce");
    }
    assert!(r.poll_ack().is_none(), "not durable, not answered");
    r.process().expect("process");
    assert_eq!(
        disk.sync_count() - before,
        one,
        "ten produces cost what one costs"
    );
    // (one data fsync, and the hard state with the new commit end: file and directory)
    assert_eq!(one, 3);
    let acks: Vec<_> = std::iter::from_fn(|| r.poll_ack()).collect();
    assert_eq!(acks.len(), 10);
    let offsets: Vec<u64> = acks
        .iter()
        .map(|a| a.result.as_ref().expect("ok").base_offset)
        .collect();
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    assert_eq!(r.high_watermark(), r.log_end());
}

#[test]
fn reads_stop_at_the_high_watermark() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    r.produce(1, batch("a"), Acks::All).expect("produce");
    r.process().expect("process");
    let hw = r.high_watermark();
    r.produce(2, batch("b"), Acks::All).expect("produce");
    // Appended, not committed: invisible to consumers.
    assert_eq!(r.log_end(), hw + 1);
    let read = r.read_committed(0, 1 << 20).expect("read");
    assert_eq!(read.next_offset, hw);
    assert!(
        r.read_committed(hw, 1 << 20)
            .expect("at hw")
            .bytes
            .is_empty()
    );
    match r.read_committed(hw + 1, 1 << 20) {
        Err(e @ FetchError::OffsetOutOfRange { .. }) => {
            assert_eq!(e.code(), floe_protocol::ErrorCode::OffsetOutOfRange);
        }
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
}

#[test]
fn a_failed_fsync_stops_the_replica_and_nothing_is_acknowledged() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    r.produce(1, batch("a"), Acks::All).expect("produce");
    disk.fail_syncs(true);
    assert!(r.process().is_err(), "the fsync failure is reported");
    assert!(r.poll_ack().is_none(), "nothing acknowledged");
    assert!(matches!(r.process(), Err(ReplicaError::Stopped)));
    assert!(matches!(
        r.produce(2, batch("b"), Acks::All),
        Err(ProduceError::Fatal(ReplicaError::Stopped))
    ));
    assert!(matches!(r.tick(1_000), Err(ReplicaError::Stopped)));
}

#[test]
fn hard_state_is_written_for_votes_and_now_and_then_for_the_commit() {
    use floe_raft::{HardState, Offset, Term};
    let base = HardState {
        term: Term(3),
        vote: Some(NodeId(1)),
        commit_end: Offset(100),
        damaged: None,
    };
    let with = |f: &dyn Fn(&mut HardState)| {
        let mut h = base;
        f(&mut h);
        super::must_store(&base, &h, 4096)
    };
    assert!(!with(&|_| {}));
    assert!(with(&|h| h.term = Term(4)));
    assert!(with(&|h| h.vote = None));
    assert!(with(&|h| h.damaged = Some((Term(2), Offset(50)))));
    assert!(!with(&|h| h.commit_end = Offset(101)));
    assert!(with(&|h| h.commit_end = Offset(100 + 4096)));
}

#[test]
fn close_then_reopen_keeps_the_commit_end() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    for i in 0..5 {
        r.produce(i, batch("x"), Acks::All).expect("produce");
    }
    r.process().expect("process");
    let hw = r.high_watermark();
    r.close().expect("close");
    let cfg = ReplicaConfig::new(Config::new(NodeId(1)), small_log());
    let r = Replica::open(
        Arc::new(disk.crash(floe_storage::backend::CrashMode::DropUnsynced)),
        cfg,
        Membership::new([NodeId(1)], []),
        0,
    )
    .expect("reopen");
    assert_eq!(
        r.high_watermark(),
        hw,
        "the commit end survives a clean close"
    );
    assert_eq!(r.read_committed(0, 1 << 20).expect("read").next_offset, hw);
}

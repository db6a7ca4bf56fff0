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
    // (one data fsync, and the new commit end: one in-place write of the commit floor)
    assert_eq!(one, 2);
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

/// A batch of `n` records from producer `pid`/`epoch` starting at sequence `seq`.
fn pbatch(pid: i64, epoch: i16, seq: i32, n: u32) -> Bytes {
    let mut b = BatchBuilder::new(CompressionCodec::None).with_producer(pid, epoch, seq);
    for i in 0..n {
        b.append(
            0,
            None,
            Some(format!("{pid}/{epoch}/{seq}+{i}").as_bytes()),
            &[],
        )
        .expect("append");
    }
    b.finish().expect("finish")
}

/// Produces and processes; returns the answer.
fn produce_now(r: &mut Replica, token: u64, b: Bytes) -> Result<super::Produced, ProduceError> {
    r.produce(token, b, Acks::All)?;
    r.process().expect("process");
    let ack = r.poll_ack().expect("answered");
    assert_eq!(ack.token, token);
    ack.result
}

#[test]
fn a_committed_retry_is_answered_with_the_original_offset_and_not_appended() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    let first = produce_now(&mut r, 1, pbatch(7, 0, 0, 3)).expect("first");
    assert!(!first.duplicate);
    assert_eq!(first.code(), floe_protocol::ErrorCode::None);
    let second = produce_now(&mut r, 2, pbatch(7, 0, 3, 2)).expect("second");
    let end = r.log_end();
    // Both retried (same bytes): answered with their own original offsets.
    let again = produce_now(&mut r, 3, pbatch(7, 0, 0, 3)).expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.code(), floe_protocol::ErrorCode::DuplicateSequence);
    assert_eq!(
        (again.base_offset, again.next_offset),
        (first.base_offset, first.next_offset)
    );
    let again = produce_now(&mut r, 4, pbatch(7, 0, 3, 2)).expect("retry");
    assert_eq!(
        (again.base_offset, again.next_offset, again.duplicate),
        (second.base_offset, second.next_offset, true)
    );
    assert_eq!(r.log_end(), end, "nothing appended");
    // Batches without a producer id are never deduplicated.
    produce_now(&mut r, 5, batch("plain")).expect("plain");
    produce_now(&mut r, 6, batch("plain")).expect("plain again");
    assert_eq!(r.log_end(), end + 2);
    assert_eq!(r.producers_known(), 1);
}

#[test]
fn a_retry_of_a_batch_in_flight_waits_for_it_and_is_not_appended() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    r.produce(1, pbatch(7, 0, 0, 2), Acks::All)
        .expect("original");
    let end = r.log_end();
    // Not yet durable nor committed: the retry arrives.
    r.produce(2, pbatch(7, 0, 0, 2), Acks::All).expect("retry");
    assert_eq!(r.log_end(), end, "the retry is not appended");
    // The next batch of the same producer continues after the in-flight one.
    r.produce(3, pbatch(7, 0, 2, 1), Acks::All).expect("next");
    assert!(matches!(
        r.produce(4, pbatch(7, 0, 0, 1), Acks::All),
        Err(ProduceError::OutOfOrderSequence { expected: 3, .. })
    ));
    assert!(r.poll_ack().is_none(), "nothing answered before the commit");
    r.process().expect("process");
    let acks: Vec<_> = std::iter::from_fn(|| r.poll_ack()).collect();
    let by_token = |t: u64| {
        acks.iter()
            .find(|a| a.token == t)
            .and_then(|a| a.result.as_ref().ok())
            .copied()
            .expect("answered ok")
    };
    let (orig, retry) = (by_token(1), by_token(2));
    assert!(!orig.duplicate && retry.duplicate);
    assert_eq!(
        (orig.base_offset, orig.next_offset),
        (retry.base_offset, retry.next_offset)
    );
    assert_eq!(by_token(3).base_offset, orig.next_offset);
}

#[test]
fn fenced_and_out_of_order_batches_get_typed_errors_and_are_not_appended() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    produce_now(&mut r, 1, pbatch(7, 2, 0, 1)).expect("first");
    let end = r.log_end();
    match r.produce(2, pbatch(7, 1, 1, 1), Acks::All) {
        Err(e @ ProduceError::ProducerFenced { .. }) => {
            assert_eq!(e.code(), floe_protocol::ErrorCode::ProducerFenced);
            assert!(matches!(
                e,
                ProduceError::ProducerFenced {
                    producer_id: 7,
                    epoch: 1,
                    current_epoch: 2
                }
            ));
        }
        other => panic!("expected fenced, got {other:?}"),
    }
    match r.produce(3, pbatch(7, 2, 5, 1), Acks::All) {
        Err(e @ ProduceError::OutOfOrderSequence { .. }) => {
            assert_eq!(e.code(), floe_protocol::ErrorCode::OutOfOrderSequence);
        }
        other => panic!("expected out of order, got {other:?}"),
    }
    // A new epoch must start over at 0.
    assert!(matches!(
        r.produce(4, pbatch(7, 3, 1, 1), Acks::All),
        Err(ProduceError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert!(matches!(
        r.produce(5, pbatch(7, 0, -1, 1), Acks::All),
        Err(ProduceError::InvalidProducerFields { .. })
    ));
    assert_eq!(r.log_end(), end);
    produce_now(&mut r, 6, pbatch(7, 3, 0, 1)).expect("new epoch");
    assert_eq!(r.log_end(), end + 1);
}

#[test]
fn a_reopened_replica_rebuilds_the_producer_state_from_the_log() {
    let disk = FaultDir::new();
    let mut r = leader(&disk);
    let mut firsts = Vec::new();
    for p in 0..3_i64 {
        for s in 0..4 {
            let got = produce_now(&mut r, (p * 10 + s) as u64, pbatch(p, 1, s as i32 * 2, 2))
                .expect("produce");
            if s == 0 {
                firsts.push(got);
            }
        }
    }
    produce_now(&mut r, 99, batch("plain")).expect("plain");
    let end = r.log_end();
    drop(r); // a kill: no clean close
    let cfg = ReplicaConfig::new(Config::new(NodeId(1)), small_log());
    let mut r = Replica::open(
        Arc::new(disk.crash(floe_storage::backend::CrashMode::KeepAll)),
        cfg,
        Membership::new([NodeId(1)], []),
        0,
    )
    .expect("reopen");
    assert_eq!(r.producers_known(), 3, "rebuilt at open");
    for t in 0..100 {
        if r.is_leader() {
            break;
        }
        r.tick(t).expect("tick");
        r.process().expect("process");
    }
    assert!(r.is_leader());
    let end = r.log_end().max(end); // the new term's no-op
    for (p, first) in firsts.iter().enumerate() {
        let again = produce_now(&mut r, 1000 + p as u64, pbatch(p as i64, 1, 0, 2)).expect("retry");
        assert!(again.duplicate);
        assert_eq!(again.base_offset, first.base_offset);
    }
    assert_eq!(r.log_end(), end, "no retry appended");
    // And the sequences continue where the log left them.
    produce_now(&mut r, 2000, pbatch(0, 1, 8, 1)).expect("next");
    assert!(matches!(
        r.produce(2001, pbatch(1, 0, 8, 1), Acks::All),
        Err(ProduceError::ProducerFenced { .. })
    ));
}

//! Hand-made histories: a good one passes, and each anomaly of TESTING.md, planted into it,
//! is reported by its check (and, where the anomaly is not also another one, only by it).

use super::*;
use crate::history::{BatchDigest, Event, History, NemesisPhase};

fn invoke(t: u64, process: u32, op: u64, partition: u32, value: &str) -> Event {
    Event::Invoke {
        t,
        process,
        op,
        partition,
        value: value.into(),
    }
}

fn ok(t: u64, op: u64, partition: u32, offset: u64) -> Event {
    Event::Ok {
        t,
        op,
        partition,
        offset,
    }
}

fn subscribe(consumer: u32, session: u32, partition: u32, from: u64) -> Event {
    Event::Subscribe {
        t: 1,
        consumer,
        session,
        partition,
        from,
    }
}

fn read(consumer: u32, session: u32, partition: u32, offset: u64, value: &str) -> Event {
    Event::Read {
        t: 50,
        consumer,
        session,
        partition,
        offset,
        value: value.into(),
    }
}

fn records(r: &[(u64, &str)]) -> Vec<(u64, String)> {
    r.iter().map(|(o, v)| (*o, (*v).to_string())).collect()
}

fn final_read(partition: u32, high_watermark: u64, r: &[(u64, &str)]) -> Event {
    Event::FinalRead {
        t: 100,
        partition,
        high_watermark,
        records: records(r),
    }
}

/// One batch per offset, term 1, CRC derived from the offset (and `salt`).
fn digests(end: u64, salt: u32) -> Vec<BatchDigest> {
    (0..end)
        .map(|o| BatchDigest {
            base: o,
            last: o,
            term: 1,
            crc: 100 + o as u32 + salt,
        })
        .collect()
}

fn replica(node: u64, partition: u32, end: u64, r: &[(u64, &str)]) -> Event {
    Event::Replica {
        node,
        partition,
        committed_end: end,
        batches: digests(end, partition * 1000),
        records: records(r),
        damage: None,
    }
}

/// Two producers, two partitions (offset 0 of each is the leader's no-op), a consumer, a
/// fault, the final read and three agreeing replicas.
fn good() -> Vec<Event> {
    let mut h = vec![
        invoke(10, 0, 1, 0, "a"),
        invoke(15, 1, 3, 1, "c"),
        ok(20, 1, 0, 1),
        Event::Nemesis {
            t: 22,
            phase: NemesisPhase::Start,
            fault: "kill".into(),
            detail: "node 2".into(),
        },
        ok(25, 3, 1, 1),
        Event::Nemesis {
            t: 28,
            phase: NemesisPhase::Stop,
            fault: "kill".into(),
            detail: "node 2".into(),
        },
        invoke(30, 0, 2, 0, "b"),
        invoke(35, 1, 4, 1, "d"),
        ok(40, 2, 0, 2),
        Event::Unknown {
            t: 60,
            op: 4,
            error: "timed out".into(),
        },
        invoke(61, 1, 5, 1, "e"),
        Event::Fail {
            t: 62,
            op: 5,
            error: "record too large".into(),
        },
        subscribe(0, 0, 0, 0),
        subscribe(0, 1, 1, 0),
        read(0, 0, 0, 1, "a"),
        read(0, 1, 1, 1, "c"),
        read(0, 0, 0, 2, "b"),
        final_read(0, 3, &[(1, "a"), (2, "b")]),
        final_read(1, 3, &[(1, "c"), (2, "d")]),
    ];
    for node in 1..=3 {
        h.push(replica(node, 0, 3, &[(1, "a"), (2, "b")]));
        h.push(replica(node, 1, 3, &[(1, "c"), (2, "d")]));
    }
    h
}

fn verdict(events: Vec<Event>) -> Verdict {
    check(&History { events }, 5)
}

fn failing(v: &Verdict) -> Vec<Check> {
    v.checks
        .iter()
        .filter(|c| !c.valid)
        .map(|c| c.check)
        .collect()
}

/// Replaces the first event matching `pick` by `with`.
fn replace(mut h: Vec<Event>, pick: impl Fn(&Event) -> bool, with: Event) -> Vec<Event> {
    let i = h.iter().position(pick).expect("event to replace");
    h[i] = with;
    h
}

#[test]
fn a_good_history_passes() {
    let v = verdict(good());
    assert!(v.valid, "{:#?}", v.checks);
    assert_eq!(v.ops.invoked, 5);
    assert_eq!(v.ops.ok, 3);
    assert_eq!(v.ops.unknown, 1);
    assert_eq!(v.ops.unknown_found, 1, "d is in the final log");
    assert_eq!(v.ops.failed, 1);
    assert_eq!(v.ops.reads, 3);
    assert_eq!(v.ops.final_records, 4);
    assert_eq!(v.checks.len(), Check::ALL.len());
}

#[test]
fn inconsistent_offsets_are_detected() {
    // Node 3 holds another value at 0/2 than the final read.
    let h = replace(
        good(),
        |e| {
            matches!(
                e,
                Event::Replica {
                    node: 3,
                    partition: 0,
                    ..
                }
            )
        },
        replica(3, 0, 3, &[(1, "a"), (2, "z")]),
    );
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::InconsistentOffsets]);
    let ex = &v.check(Check::InconsistentOffsets).examples[0];
    assert!(
        ex.contains("partition 0 offset 2") && ex.contains("node 3"),
        "{ex}"
    );
}

#[test]
fn an_ack_on_another_partition_is_inconsistent() {
    let h = replace(
        good(),
        |e| matches!(e, Event::Ok { op: 1, .. }),
        ok(20, 1, 1, 1),
    );
    let v = verdict(h);
    assert!(failing(&v).contains(&Check::InconsistentOffsets), "{v:#?}");
}

#[test]
fn duplicates_are_detected() {
    let h = replace(
        good(),
        |e| matches!(e, Event::FinalRead { partition: 1, .. }),
        final_read(1, 4, &[(1, "c"), (2, "d"), (3, "d")]),
    );
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::Duplicates]);
    assert!(
        v.check(Check::Duplicates).examples[0].contains("1/2, 1/3"),
        "{:?}",
        v.check(Check::Duplicates)
    );
}

#[test]
fn lost_writes_are_detected() {
    // b was acknowledged at 0/2 and is not in the final log (and nobody read it).
    let h: Vec<Event> = good()
        .into_iter()
        .filter(|e| !matches!(e, Event::Read { value, .. } if value == "b"))
        .collect();
    let h = replace(
        h,
        |e| matches!(e, Event::FinalRead { partition: 0, .. }),
        final_read(0, 2, &[(1, "a")]),
    );
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::LostWrites]);
    assert_eq!(v.check(Check::LostWrites).count, 1);
    assert!(v.check(Check::LostWrites).examples[0].contains("op 2"));
}

#[test]
fn a_partition_acknowledged_but_never_read_back_is_not_valid() {
    let h: Vec<Event> = good()
        .into_iter()
        .filter(|e| !matches!(e, Event::FinalRead { partition: 0, .. }))
        .collect();
    let v = verdict(h);
    assert!(failing(&v).contains(&Check::WellFormed), "{v:#?}");
}

#[test]
fn phantom_and_aborted_reads_are_detected() {
    let mut h = good();
    h.push(subscribe(1, 0, 1, 3));
    h.push(read(1, 0, 1, 3, "ghost"));
    let v = verdict(h);
    assert!(failing(&v).contains(&Check::PhantomReads), "{v:#?}");
    assert!(v.check(Check::PhantomReads).examples[0].contains("never produced"));

    // "e" definitely failed; the final log holding it is an aborted read.
    let h = replace(
        good(),
        |e| matches!(e, Event::FinalRead { partition: 1, .. }),
        final_read(1, 4, &[(1, "c"), (2, "d"), (3, "e")]),
    );
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::PhantomReads]);
    assert!(v.check(Check::PhantomReads).examples[0].contains("definitely failed"));
}

#[test]
fn uncommitted_reads_are_detected() {
    // f's outcome is unknown: reading it is fine only if it is in the final log; it is not.
    let mut h = good();
    h.push(invoke(70, 0, 6, 1, "f"));
    h.push(Event::Unknown {
        t: 80,
        op: 6,
        error: "connection lost".into(),
    });
    h.push(subscribe(1, 0, 1, 3));
    h.push(read(1, 0, 1, 3, "f"));
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::UncommittedReads]);
}

#[test]
fn reads_going_backwards_or_skipping_are_order_anomalies() {
    // Backwards: a second read of 0/1 in the same session.
    let mut h = good();
    h.push(read(0, 0, 0, 1, "a"));
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::Order]);

    // Skipping: a session from 0 whose first read is 0/2 although 0/1 holds "a".
    let mut h = good();
    h.push(subscribe(2, 0, 0, 0));
    h.push(read(2, 0, 0, 2, "b"));
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::Order]);
    assert!(v.check(Check::Order).examples[0].contains("skipped 0/1"));

    // Starting later is not skipping.
    let mut h = good();
    h.push(subscribe(2, 0, 0, 2));
    h.push(read(2, 0, 0, 2, "b"));
    assert!(verdict(h).valid);
}

#[test]
fn real_time_order_violations_are_detected() {
    // a was acknowledged (t=20) before b was invoked (t=30), yet b sits below a.
    let h = vec![
        invoke(10, 0, 1, 0, "a"),
        ok(20, 1, 0, 2),
        invoke(30, 1, 2, 0, "b"),
        ok(40, 2, 0, 1),
        final_read(0, 3, &[(1, "b"), (2, "a")]),
    ];
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::Order]);
    assert!(v.check(Check::Order).examples[0].contains("op 1"));

    // Concurrent operations may land in either order.
    let h = vec![
        invoke(10, 0, 1, 0, "a"),
        invoke(11, 1, 2, 0, "b"),
        ok(20, 1, 0, 2),
        ok(21, 2, 0, 1),
        final_read(0, 3, &[(1, "b"), (2, "a")]),
    ];
    assert!(verdict(h).valid);
}

#[test]
fn divergent_replicas_are_detected() {
    // Node 2 holds another batch at 0/2 (same records seen, different bytes: another term).
    let mut batches = digests(3, 0);
    batches[2].term = 2;
    let h = replace(
        good(),
        |e| {
            matches!(
                e,
                Event::Replica {
                    node: 2,
                    partition: 0,
                    ..
                }
            )
        },
        Event::Replica {
            node: 2,
            partition: 0,
            committed_end: 3,
            batches,
            records: records(&[(1, "a"), (2, "b")]),
            damage: None,
        },
    );
    let v = verdict(h);
    assert_eq!(failing(&v), vec![Check::Divergence]);
    assert_eq!(
        v.check(Check::Divergence).count,
        2,
        "node 2 against 1 and 3"
    );

    // A replica behind (a shorter committed prefix) is not divergent.
    let h = replace(
        good(),
        |e| {
            matches!(
                e,
                Event::Replica {
                    node: 2,
                    partition: 0,
                    ..
                }
            )
        },
        replica(2, 0, 2, &[(1, "a")]),
    );
    assert!(verdict(h).valid);

    // A replica whose log starts later (it joined through a move, or from a snapshot) is
    // compared from its start: agreeing there is not divergent, differing there is.
    let later = |term_of_2: u64| Event::Replica {
        node: 2,
        partition: 0,
        committed_end: 3,
        batches: digests(3, 0)
            .into_iter()
            .skip(1)
            .map(|mut d| {
                if d.base == 2 {
                    d.term = term_of_2;
                }
                d
            })
            .collect(),
        records: records(&[(1, "a"), (2, "b")]),
        damage: None,
    };
    let is_node_2 = |e: &Event| {
        matches!(
            e,
            Event::Replica {
                node: 2,
                partition: 0,
                ..
            }
        )
    };
    assert!(verdict(replace(good(), is_node_2, later(1))).valid);
    assert_eq!(
        failing(&verdict(replace(good(), is_node_2, later(2)))),
        vec![Check::Divergence]
    );

    // Damage in a committed prefix, and a gap in one, are.
    let h = replace(
        good(),
        |e| {
            matches!(
                e,
                Event::Replica {
                    node: 1,
                    partition: 1,
                    ..
                }
            )
        },
        Event::Replica {
            node: 1,
            partition: 1,
            committed_end: 3,
            batches: digests(3, 1000),
            records: records(&[(1, "c"), (2, "d")]),
            damage: Some("segment 0: damaged batch at byte 120".into()),
        },
    );
    assert_eq!(failing(&verdict(h)), vec![Check::Divergence]);
    let mut gap = digests(3, 1000);
    gap.remove(1);
    let h = replace(
        good(),
        |e| {
            matches!(
                e,
                Event::Replica {
                    node: 1,
                    partition: 1,
                    ..
                }
            )
        },
        Event::Replica {
            node: 1,
            partition: 1,
            committed_end: 3,
            batches: gap,
            records: records(&[(2, "d")]),
            damage: None,
        },
    );
    assert_eq!(failing(&verdict(h)), vec![Check::Divergence]);
}

#[test]
fn malformed_histories_are_not_valid() {
    let mut h = good();
    h.push(ok(90, 99, 0, 5));
    assert_eq!(failing(&verdict(h)), vec![Check::WellFormed]);
    let mut h = good();
    h.push(invoke(90, 0, 7, 0, "a"));
    assert!(failing(&verdict(h)).contains(&Check::WellFormed));
}

#[test]
fn examples_are_capped_but_counted() {
    let mut h = good();
    h.push(subscribe(3, 0, 1, 3));
    for o in 3..20 {
        h.push(read(3, 0, 1, o, &format!("ghost{o}")));
    }
    let v = check(&History { events: h }, 3);
    let c = v.check(Check::PhantomReads);
    assert_eq!(c.count, 17);
    assert_eq!(c.examples.len(), 3);
}

#[test]
fn availability_measures_the_stall_after_each_fault() {
    let v = verdict(good());
    let a = &v.availability;
    assert_eq!(a.faults.len(), 1);
    let f = &a.faults[0];
    assert_eq!(f.fault, "kill");
    assert!((f.at_s - 22e-6).abs() < 1e-12);
    // Next ack at 25 (3 µs later); then 40 (a 15 µs gap); then nothing until the end at 62.
    assert!((f.first_ok_after_s.expect("an ack") - 3e-6).abs() < 1e-12);
    assert!((f.longest_gap_s - 22e-6).abs() < 1e-12, "{f:?}");
    assert!((a.longest_gap_s - 22e-6).abs() < 1e-12, "{a:?}");

    // What follows the end of the workload (stopping producers, the fences) is not counted.
    let mut h = good();
    h.insert(
        12,
        Event::Nemesis {
            t: 45,
            phase: NemesisPhase::Info,
            fault: crate::history::WORKLOAD_END.into(),
            detail: "producers stop".into(),
        },
    );
    let a = verdict(h).availability;
    assert!((a.longest_gap_s - 15e-6).abs() < 1e-12, "{a:?}");
    assert!((a.faults[0].longest_gap_s - 15e-6).abs() < 1e-12, "{a:?}");
}

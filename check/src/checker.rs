//! The history checker: TESTING.md's seven checks for a per-partition log, each with examples,
//! plus availability figures. Pure: a [`History`] in, a [`Verdict`] out.
//!
//! "The final log" of a partition is its [`Event::FinalRead`] (everything committed, read after
//! healing). Values are unique per run, so a value names the operation that produced it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::history::{BatchDigest, Event, History, NemesisPhase, WORKLOAD_END};

/// The checks, in TESTING.md's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// One (partition, offset) seen with two values, across acks, reads, the final read and
    /// the replicas.
    InconsistentOffsets,
    /// One value at two positions.
    Duplicates,
    /// An acknowledged (offset, value) missing from the final log.
    LostWrites,
    /// A value read that was never produced, or whose produce definitely failed.
    PhantomReads,
    /// A value read that is not at that offset in the final log.
    UncommittedReads,
    /// Reads out of order, skipping records, or acknowledgements against real-time order.
    Order,
    /// Replicas whose committed prefixes differ (or are damaged).
    Divergence,
    /// The history itself is incomplete or contradictory (an answer without its invoke, a
    /// repeated value, a partition with acknowledged writes but no final read).
    WellFormed,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 8] = [
        Check::InconsistentOffsets,
        Check::Duplicates,
        Check::LostWrites,
        Check::PhantomReads,
        Check::UncommittedReads,
        Check::Order,
        Check::Divergence,
        Check::WellFormed,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::InconsistentOffsets => "inconsistent-offsets",
            Check::Duplicates => "duplicates",
            Check::LostWrites => "lost-writes",
            Check::PhantomReads => "phantom-reads",
            Check::UncommittedReads => "uncommitted-reads",
            Check::Order => "order",
            Check::Divergence => "divergence",
            Check::WellFormed => "well-formed",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Which check.
    pub check: Check,
    /// No anomaly found.
    pub valid: bool,
    /// How many anomalies.
    pub count: usize,
    /// Up to the configured number of them, described.
    pub examples: Vec<String>,
}

/// Operation counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Produces invoked.
    pub invoked: usize,
    /// Acknowledged.
    pub ok: usize,
    /// Definitely failed.
    pub failed: usize,
    /// Outcome unknown (timed out, connection lost).
    pub unknown: usize,
    /// Invoked and never answered (the run ended first).
    pub pending: usize,
    /// Records read by consumers during the run.
    pub reads: usize,
    /// Records in the final read, over all partitions.
    pub final_records: usize,
    /// Unknown operations whose value is in the final log (they did happen).
    pub unknown_found: usize,
}

/// How long producing stalled after one fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAvailability {
    /// The fault's kind.
    pub fault: String,
    /// What exactly.
    pub detail: String,
    /// When it started (seconds since the run started).
    pub at_s: f64,
    /// Seconds from the fault to the next acknowledged produce (any partition); `None` if
    /// none came before the next fault or the end.
    pub first_ok_after_s: Option<f64>,
    /// The longest stretch without any acknowledgement between this fault and the next (or
    /// the end of the workload), counted from the fault.
    pub longest_gap_s: f64,
}

/// Availability over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Availability {
    /// Per fault, in order.
    pub faults: Vec<FaultAvailability>,
    /// The longest stretch without any acknowledged produce in the whole workload.
    pub longest_gap_s: f64,
    /// Acknowledged produces per second over the workload.
    pub ok_per_sec: f64,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Every check passed.
    pub valid: bool,
    /// Operation counts.
    pub ops: OpCounts,
    /// Each check, in [`Check::ALL`] order.
    pub checks: Vec<CheckResult>,
    /// Availability figures (informational: they never make a history invalid).
    pub availability: Availability,
}

impl Verdict {
    /// The result of one check.
    pub fn check(&self, check: Check) -> &CheckResult {
        // `checks` always holds every check (built from Check::ALL).
        self.checks
            .iter()
            .find(|c| c.check == check)
            .unwrap_or_else(|| unreachable!("every check is reported"))
    }
}

/// Collects anomalies per check, keeping the first `limit` descriptions.
struct Findings {
    limit: usize,
    found: BTreeMap<Check, (usize, Vec<String>)>,
}

impl Findings {
    fn add(&mut self, check: Check, describe: impl FnOnce() -> String) {
        let entry = self.found.entry(check).or_default();
        entry.0 += 1;
        if entry.1.len() < self.limit {
            entry.1.push(describe());
        }
    }
}

#[derive(Debug, Clone)]
struct Op {
    process: u32,
    partition: u32,
    value: String,
    invoked: u64,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pending,
    Ok { t: u64, partition: u32, offset: u64 },
    Fail,
    Unknown,
}

/// Where a value was seen at a (partition, offset).
fn source_name(s: &Source) -> String {
    match s {
        Source::Ack(op) => format!("ack of op {op}"),
        Source::Read(c) => format!("read by consumer {c}"),
        Source::Final => "final read".into(),
        Source::Replica(n) => format!("node {n}'s log"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Ack(u64),
    Read(u32),
    Final,
    Replica(u64),
}

type Seen<'a> = BTreeMap<(u32, u64), BTreeMap<&'a str, BTreeSet<Source>>>;

fn observe<'a>(seen: &mut Seen<'a>, p: u32, o: u64, v: &'a str, s: Source) {
    seen.entry((p, o))
        .or_default()
        .entry(v)
        .or_default()
        .insert(s);
}

/// Checks `history`, describing up to `examples` anomalies per check.
pub fn check(history: &History, examples: usize) -> Verdict {
    let mut f = Findings {
        limit: examples,
        found: BTreeMap::new(),
    };

    // Operations, by id, and values to their operation.
    let mut ops: BTreeMap<u64, Op> = BTreeMap::new();
    let mut by_value: HashMap<&str, u64> = HashMap::new();
    for e in &history.events {
        if let Event::Invoke {
            t,
            process,
            op,
            partition,
            value,
        } = e
        {
            if ops.contains_key(op) {
                f.add(Check::WellFormed, || format!("op {op} invoked twice"));
                continue;
            }
            if let Some(other) = by_value.insert(value, *op) {
                f.add(Check::WellFormed, || {
                    format!("value {value:?} invoked by op {other} and op {op}")
                });
            }
            ops.insert(
                *op,
                Op {
                    process: *process,
                    partition: *partition,
                    value: value.clone(),
                    invoked: *t,
                    outcome: Outcome::Pending,
                },
            );
        }
    }
    for e in &history.events {
        let (op, outcome) = match e {
            Event::Ok {
                t,
                op,
                partition,
                offset,
            } => (
                op,
                Outcome::Ok {
                    t: *t,
                    partition: *partition,
                    offset: *offset,
                },
            ),
            Event::Fail { op, .. } => (op, Outcome::Fail),
            Event::Unknown { op, .. } => (op, Outcome::Unknown),
            _ => continue,
        };
        match ops.get_mut(op) {
            None => f.add(Check::WellFormed, || {
                format!("op {op} answered but never invoked")
            }),
            Some(o) if o.outcome != Outcome::Pending => f.add(Check::WellFormed, || {
                format!("op {op} answered twice: {:?} then {outcome:?}", o.outcome)
            }),
            Some(o) => {
                if let Outcome::Ok { partition, .. } = outcome
                    && partition != o.partition
                {
                    let sent = o.partition;
                    f.add(Check::InconsistentOffsets, || {
                        format!("op {op} sent to partition {sent} acknowledged on {partition}")
                    });
                }
                o.outcome = outcome;
            }
        }
    }

    // The final log per partition.
    let mut finals: BTreeMap<u32, (u64, BTreeMap<u64, &str>)> = BTreeMap::new();
    for e in &history.events {
        if let Event::FinalRead {
            partition,
            high_watermark,
            records,
            ..
        } = e
        {
            let mut log = BTreeMap::new();
            let mut last: Option<u64> = None;
            for (o, v) in records {
                if last.is_some_and(|l| *o <= l) || *o >= *high_watermark {
                    f.add(Check::Order, || {
                        format!(
                            "final read of partition {partition}: offset {o} after {last:?} (high watermark {high_watermark})"
                        )
                    });
                }
                last = Some(*o);
                log.insert(*o, v.as_str());
            }
            if finals.insert(*partition, (*high_watermark, log)).is_some() {
                f.add(Check::WellFormed, || {
                    format!("partition {partition} has two final reads")
                });
            }
        }
    }

    // Acknowledged operations: (partition, offset, value, op, process).
    let op_values: Vec<(u32, u64, String, u64, u32)> = ops
        .iter()
        .filter_map(|(id, o)| match o.outcome {
            Outcome::Ok {
                partition, offset, ..
            } => Some((partition, offset, o.value.clone(), *id, o.process)),
            _ => None,
        })
        .collect();
    // Every (partition, offset) → value observation, with where it was seen.
    let mut seen: Seen<'_> = BTreeMap::new();
    for (p, o, v, id, _) in &op_values {
        observe(&mut seen, *p, *o, v, Source::Ack(*id));
    }
    for e in &history.events {
        match e {
            Event::Read {
                consumer,
                partition,
                offset,
                value,
                ..
            } => observe(
                &mut seen,
                *partition,
                *offset,
                value,
                Source::Read(*consumer),
            ),
            Event::FinalRead {
                partition, records, ..
            } => {
                for (o, v) in records {
                    observe(&mut seen, *partition, *o, v, Source::Final);
                }
            }
            Event::Replica {
                node,
                partition,
                records,
                ..
            } => {
                for (o, v) in records {
                    observe(&mut seen, *partition, *o, v, Source::Replica(*node));
                }
            }
            _ => {}
        }
    }

    // 1. Inconsistent offsets.
    for ((p, o), values) in &seen {
        if values.len() > 1 {
            f.add(Check::InconsistentOffsets, || {
                let parts: Vec<String> = values
                    .iter()
                    .map(|(v, srcs)| {
                        let s: Vec<String> = srcs.iter().map(source_name).collect();
                        format!("{v:?} ({})", s.join(", "))
                    })
                    .collect();
                format!("partition {p} offset {o}: {}", parts.join(" vs "))
            });
        }
    }

    // 2. Duplicates: one value at two positions.
    let mut positions: HashMap<&str, BTreeSet<(u32, u64)>> = HashMap::new();
    for ((p, o), values) in &seen {
        for v in values.keys() {
            positions.entry(v).or_default().insert((*p, *o));
        }
    }
    let mut dups: Vec<(&str, &BTreeSet<(u32, u64)>)> = positions
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(v, at)| (*v, at))
        .collect();
    dups.sort();
    for (v, at) in dups {
        f.add(Check::Duplicates, || {
            let at: Vec<String> = at.iter().map(|(p, o)| format!("{p}/{o}")).collect();
            format!("value {v:?} at {}", at.join(", "))
        });
    }

    // 3. Lost writes.
    let mut acked_partitions = BTreeSet::new();
    for (p, o, v, id, process) in &op_values {
        acked_partitions.insert(*p);
        let Some((hw, log)) = finals.get(p) else {
            continue;
        };
        match log.get(o) {
            Some(found) if *found == v.as_str() => {}
            found => f.add(Check::LostWrites, || {
                format!(
                    "op {id} (producer {process}): {v:?} acknowledged at {p}/{o}, final log has {} (high watermark {hw})",
                    found.map_or("nothing".to_string(), |x| format!("{x:?}"))
                )
            }),
        }
    }
    for p in acked_partitions {
        if !finals.contains_key(&p) {
            f.add(Check::WellFormed, || {
                format!("partition {p} has acknowledged writes but no final read")
            });
        }
    }

    // 4. Phantom / aborted reads, and 5. uncommitted reads.
    let phantom = |v: &str| -> Option<String> {
        match by_value.get(v).and_then(|id| ops.get(id).map(|o| (id, o))) {
            None => Some("never produced".into()),
            Some((id, o)) if o.outcome == Outcome::Fail => {
                Some(format!("op {id} definitely failed"))
            }
            _ => None,
        }
    };
    for e in &history.events {
        match e {
            Event::Read {
                consumer,
                partition,
                offset,
                value,
                ..
            } => {
                if let Some(why) = phantom(value) {
                    f.add(Check::PhantomReads, || {
                        format!("consumer {consumer} read {value:?} at {partition}/{offset}: {why}")
                    });
                }
                if let Some((hw, log)) = finals.get(partition)
                    && log.get(offset) != Some(&value.as_str())
                {
                    f.add(Check::UncommittedReads, || {
                        format!(
                            "consumer {consumer} read {value:?} at {partition}/{offset}; final log has {} (high watermark {hw})",
                            log.get(offset)
                                .map_or("nothing".to_string(), |x| format!("{x:?}"))
                        )
                    });
                }
            }
            Event::FinalRead {
                partition, records, ..
            } => {
                for (o, v) in records {
                    if let Some(why) = phantom(v) {
                        f.add(Check::PhantomReads, || {
                            format!("final read has {v:?} at {partition}/{o}: {why}")
                        });
                    }
                }
            }
            _ => {}
        }
    }

    // 6. Order: sessions read in increasing offsets without skipping committed data; and
    // real-time order of acknowledgements.
    check_sessions(history, &finals, &mut f);
    check_real_time(&ops, &mut f);

    // 7. Divergence.
    check_divergence(history, &mut f);

    // Counts and availability.
    let mut counts = OpCounts {
        invoked: ops.len(),
        ..OpCounts::default()
    };
    for o in ops.values() {
        match o.outcome {
            Outcome::Pending => counts.pending += 1,
            Outcome::Ok { .. } => counts.ok += 1,
            Outcome::Fail => counts.failed += 1,
            Outcome::Unknown => {
                counts.unknown += 1;
                if finals
                    .get(&o.partition)
                    .is_some_and(|(_, log)| log.values().any(|v| *v == o.value))
                {
                    counts.unknown_found += 1;
                }
            }
        }
    }
    counts.reads = history
        .events
        .iter()
        .filter(|e| matches!(e, Event::Read { .. }))
        .count();
    counts.final_records = finals.values().map(|(_, l)| l.len()).sum();
    let availability = availability(history, &ops);

    let checks: Vec<CheckResult> = Check::ALL
        .iter()
        .map(|c| {
            let (count, examples) = f.found.remove(c).unwrap_or_default();
            CheckResult {
                check: *c,
                valid: count == 0,
                count,
                examples,
            }
        })
        .collect();
    Verdict {
        valid: checks.iter().all(|c| c.valid),
        ops: counts,
        checks,
        availability,
    }
}

/// Within a session offsets strictly increase, and no record of the final log lies between
/// the session's start (or its previous read) and a read: a consumer never skips committed data.
fn check_sessions(
    history: &History,
    finals: &BTreeMap<u32, (u64, BTreeMap<u64, &str>)>,
    f: &mut Findings,
) {
    // (consumer, session) -> (partition, next expected position, last offset read)
    let mut sessions: HashMap<(u32, u32), (u32, u64, Option<u64>)> = HashMap::new();
    for e in &history.events {
        match e {
            Event::Subscribe {
                consumer,
                session,
                partition,
                from,
                ..
            } => {
                sessions.insert((*consumer, *session), (*partition, *from, None));
            }
            Event::Read {
                consumer,
                session,
                partition,
                offset,
                ..
            } => {
                let Some((p, next, last)) = sessions.get_mut(&(*consumer, *session)) else {
                    f.add(Check::WellFormed, || {
                        format!("consumer {consumer} read in session {session} it never opened")
                    });
                    continue;
                };
                if *p != *partition {
                    f.add(Check::Order, || {
                        format!(
                            "consumer {consumer} session {session} on partition {p} read from partition {partition}"
                        )
                    });
                    continue;
                }
                if *offset < *next {
                    f.add(Check::Order, || {
                        format!(
                            "consumer {consumer} session {session} read {partition}/{offset} after {last:?} (expected at least {next})"
                        )
                    });
                } else if let Some((_, log)) = finals.get(partition)
                    && let Some((skipped, v)) = log.range(*next..*offset).next()
                {
                    f.add(Check::Order, || {
                        format!(
                            "consumer {consumer} session {session} skipped {partition}/{skipped} ({v:?}): read {offset} after {last:?}"
                        )
                    });
                }
                *next = (*next).max(offset.saturating_add(1));
                *last = Some(*offset);
            }
            _ => {}
        }
    }
}

/// Real-time order: if A was acknowledged before B was invoked, both on one partition and
/// both acknowledged, then A's offset is below B's.
fn check_real_time(ops: &BTreeMap<u64, Op>, f: &mut Findings) {
    // Per partition: acknowledged ops sorted by acknowledgement time, with a running maximum
    // of their offsets; each op B then looks up the ops acknowledged before B's invoke.
    let mut per: BTreeMap<u32, Vec<(u64, u64, u64, u64)>> = BTreeMap::new(); // (ack t, offset, op, invoke t)
    for (id, o) in ops {
        if let Outcome::Ok {
            t,
            partition,
            offset,
        } = o.outcome
        {
            per.entry(partition)
                .or_default()
                .push((t, offset, *id, o.invoked));
        }
    }
    for (p, mut acks) in per {
        acks.sort_unstable();
        // prefix_max[i] = (max offset, its op) among acks[..=i]
        let mut prefix_max: Vec<(u64, u64)> = Vec::with_capacity(acks.len());
        for (i, (_, off, id, _)) in acks.iter().enumerate() {
            let m = match i {
                0 => (*off, *id),
                _ => prefix_max[i - 1].max((*off, *id)),
            };
            prefix_max.push(m);
        }
        for (_, off, id, invoked) in &acks {
            // Acks strictly before this invoke.
            let n = acks.partition_point(|(t, ..)| *t < *invoked);
            if n == 0 {
                continue;
            }
            let (max_off, max_id) = prefix_max[n - 1];
            if max_off >= *off {
                f.add(Check::Order, || {
                    format!(
                        "partition {p}: op {max_id} acknowledged at offset {max_off} before op {id} was invoked, but op {id} got offset {off}"
                    )
                });
            }
        }
    }
}

/// Every pair of replicas of a partition agrees on their common committed prefix, batch by
/// batch; damage inside a committed prefix is divergence too.
fn check_divergence(history: &History, f: &mut Findings) {
    // partition -> (node, end of its committed batches, the batches)
    type Held<'a> = (u64, u64, &'a [BatchDigest]);
    let mut replicas: BTreeMap<u32, Vec<Held<'_>>> = BTreeMap::new();
    for e in &history.events {
        if let Event::Replica {
            node,
            partition,
            committed_end,
            batches,
            damage,
            ..
        } = e
        {
            if let Some(d) = damage {
                f.add(Check::Divergence, || {
                    format!("node {node} partition {partition}: damage in the committed prefix (end {committed_end}): {d}")
                });
            }
            // Batches must tile [0, committed_end) or a prefix of it without gaps.
            let mut next = batches.first().map_or(0, |b| b.base);
            for b in batches.iter() {
                if b.base != next || b.last < b.base {
                    f.add(Check::Divergence, || {
                        format!(
                            "node {node} partition {partition}: batch {}..={} where {next} was expected",
                            b.base, b.last
                        )
                    });
                    break;
                }
                next = b.last + 1;
            }
            let held = next.min(*committed_end);
            replicas
                .entry(*partition)
                .or_default()
                .push((*node, held, batches.as_slice()));
        }
    }
    for (p, reps) in replicas {
        for (i, (na, ea, ba)) in reps.iter().enumerate() {
            for (nb, eb, bb) in reps.iter().skip(i + 1) {
                let common = (*ea).min(*eb);
                // A replica that joined by a move (or was caught up from a snapshot) starts
                // its log later: compare from where both hold batches.
                let from = ba
                    .first()
                    .map_or(0, |d| d.base)
                    .max(bb.first().map_or(0, |d| d.base));
                let shared = |d: &&BatchDigest| d.base >= from && d.last < common;
                let a: Vec<&BatchDigest> = ba.iter().filter(shared).collect();
                let b: Vec<&BatchDigest> = bb.iter().filter(shared).collect();
                let first_diff = a
                    .iter()
                    .zip(b.iter())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| (**x, **y));
                if let Some((x, y)) = first_diff {
                    f.add(Check::Divergence, || {
                        format!(
                            "partition {p}: node {na} has {x:?}, node {nb} has {y:?} (common committed prefix {common})"
                        )
                    });
                } else if a.len() != b.len() {
                    f.add(Check::Divergence, || {
                        format!(
                            "partition {p}: nodes {na} and {nb} hold {} and {} batches below their common commit end {common}",
                            a.len(),
                            b.len()
                        )
                    });
                }
            }
        }
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Per fault: time to the next acknowledgement and the longest gap until the next fault.
fn availability(history: &History, ops: &BTreeMap<u64, Op>) -> Availability {
    let mut acks: Vec<u64> = ops
        .values()
        .filter_map(|o| match o.outcome {
            Outcome::Ok { t, .. } => Some(t),
            _ => None,
        })
        .collect();
    acks.sort_unstable();
    let first_invoke = ops.values().map(|o| o.invoked).min();
    let last_answer = history
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ok { t, .. } | Event::Fail { t, .. } | Event::Unknown { t, .. } => Some(*t),
            _ => None,
        })
        .max();
    let workload_end = history.events.iter().find_map(|e| match e {
        Event::Nemesis {
            t,
            phase: NemesisPhase::Info,
            fault,
            ..
        } if fault == WORKLOAD_END => Some(*t),
        _ => None,
    });
    let last_answer = match (workload_end, last_answer) {
        (Some(w), Some(a)) => Some(w.min(a)),
        (w, a) => a.or(w),
    };
    let (Some(start), Some(end)) = (first_invoke, last_answer) else {
        return Availability::default();
    };
    let gap = |from: u64, to: u64| -> u64 {
        let mut prev = from;
        let mut longest = 0;
        for &t in acks.iter().filter(|t| **t >= from && **t <= to) {
            longest = longest.max(t - prev);
            prev = t;
        }
        longest.max(to.saturating_sub(prev))
    };
    let starts: Vec<(u64, &str, &str)> = history
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Nemesis {
                t,
                phase: NemesisPhase::Start,
                fault,
                detail,
            } if *t < end => Some((*t, fault.as_str(), detail.as_str())),
            _ => None,
        })
        .collect();
    let faults = starts
        .iter()
        .enumerate()
        .map(|(i, (t, fault, detail))| {
            let until = starts.get(i + 1).map_or(end, |n| n.0).max(*t);
            let first = acks
                .iter()
                .find(|a| **a >= *t && **a <= until)
                .map(|a| secs(a - t));
            FaultAvailability {
                fault: (*fault).to_string(),
                detail: (*detail).to_string(),
                at_s: secs(*t),
                first_ok_after_s: first,
                longest_gap_s: secs(gap(*t, until)),
            }
        })
        .collect();
    let span = end.saturating_sub(start).max(1);
    Availability {
        faults,
        longest_gap_s: secs(gap(start, end)),
        ok_per_sec: acks.len() as f64 / secs(span),
    }
}

#[cfg(test)]
mod tests;

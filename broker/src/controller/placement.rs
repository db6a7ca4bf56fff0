//! Where replicas go: placement of a new topic and the rebalance plan.
//!
//! Placement lays the topic's `partitions × rf` replica slots over the eligible brokers
//! (sorted by id, starting at the least loaded) round-robin, partition by partition: slot `k`
//! goes to broker `(start + k) mod n`. So a partition's replicas are `rf ≤ n` consecutive
//! brokers (distinct), and per-broker replica counts differ by at most one. The preferred
//! leader of partition `p` is its replica number `(p / (n / g)) mod g`, `g = gcd(rf, n)`:
//! within every run of `n` partitions that picks each broker exactly once, so leader counts
//! differ by at most one too.

use std::collections::BTreeMap;

use floe_raft::NodeId;

use super::types::{PartitionAssignment, Reassignment, TopicRecord};

/// Replicas and preferred leaderships a broker holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerLoad {
    /// Replicas hosted.
    pub replicas: u32,
    /// Partitions it is the preferred leader of.
    pub leaders: u32,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Places `partitions` partitions of `rf` replicas on `eligible` (sorted, distinct,
/// `1 ≤ rf ≤ eligible.len()`), starting at the broker with the least load.
pub(super) fn place(
    eligible: &[NodeId],
    load: &BTreeMap<NodeId, BrokerLoad>,
    partitions: u32,
    rf: u16,
) -> Vec<PartitionAssignment> {
    let n = eligible.len();
    let r = usize::from(rf);
    if n == 0 || r == 0 || r > n {
        return Vec::new();
    }
    let start = (0..n)
        .min_by_key(|&i| (load.get(&eligible[i]).copied().unwrap_or_default(), i))
        .unwrap_or(0);
    let g = gcd(r, n);
    let block = n / g;
    (0..partitions as usize)
        .map(|p| {
            let mut replicas: Vec<NodeId> =
                (0..r).map(|j| eligible[(start + p * r + j) % n]).collect();
            let lead = (p / block) % g;
            replicas.rotate_left(lead);
            PartitionAssignment {
                preferred_leader: replicas[0],
                replicas,
                moves: 0,
            }
        })
        .collect()
}

/// Replica and leader counts of `live` brokers over `topics`.
pub(super) fn loads<'a>(
    live: &[NodeId],
    topics: impl Iterator<Item = &'a TopicRecord>,
) -> BTreeMap<NodeId, BrokerLoad> {
    let mut load: BTreeMap<NodeId, BrokerLoad> =
        live.iter().map(|&b| (b, BrokerLoad::default())).collect();
    for t in topics {
        for pa in &t.partitions {
            for b in &pa.replicas {
                if let Some(l) = load.get_mut(b) {
                    l.replicas += 1;
                }
            }
            if let Some(l) = load.get_mut(&pa.preferred_leader) {
                l.leaders += 1;
            }
        }
    }
    load
}

/// Moves replicas from the most to the least loaded live broker until replica counts differ
/// by at most one, moving preferred leaderships along when that evens them out.
pub(super) fn rebalance<'a>(
    live: &[NodeId],
    topics: impl Iterator<Item = &'a TopicRecord>,
) -> Vec<Reassignment> {
    let topics: Vec<&TopicRecord> = topics.collect();
    let mut load = loads(live, topics.iter().copied());
    let mut work: Vec<(&str, u32, Vec<NodeId>, NodeId)> = topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().enumerate().map(|(i, pa)| {
                (
                    t.name.as_str(),
                    i as u32,
                    pa.replicas.clone(),
                    pa.preferred_leader,
                )
            })
        })
        .collect();
    let total: usize = work.iter().map(|w| w.2.len()).sum();
    let mut plan = Vec::new();
    // Each move lowers the sum of squared counts, so this ends; the bound is belt and braces.
    for _ in 0..=total {
        let max = load
            .iter()
            .max_by_key(|(id, l)| (l.replicas, l.leaders, std::cmp::Reverse(**id)));
        let min = load
            .iter()
            .min_by_key(|(id, l)| (l.replicas, l.leaders, **id));
        let (Some((&hi, hl)), Some((&lo, ll))) = (max, min) else {
            break;
        };
        if hl.replicas <= ll.replicas + 1 {
            break;
        }
        let move_leader = hl.leaders > ll.leaders;
        let candidates = || {
            work.iter()
                .position(|w| w.2.contains(&hi) && !w.2.contains(&lo) && (w.3 == hi) == move_leader)
        };
        let fallback = || {
            work.iter()
                .position(|w| w.2.contains(&hi) && !w.2.contains(&lo))
        };
        let Some(i) = candidates().or_else(fallback) else {
            break;
        };
        let w = &mut work[i];
        for b in &mut w.2 {
            if *b == hi {
                *b = lo;
            }
        }
        let led = w.3 == hi;
        if led {
            w.3 = lo;
        }
        for (id, delta) in [(hi, -1i64), (lo, 1)] {
            if let Some(l) = load.get_mut(&id) {
                l.replicas = (i64::from(l.replicas) + delta) as u32;
                if led {
                    l.leaders = (i64::from(l.leaders) + delta) as u32;
                }
            }
        }
        plan.push(Reassignment {
            topic: w.0.to_string(),
            partition: w.1,
            from: hi,
            to: lo,
        });
    }
    plan
}

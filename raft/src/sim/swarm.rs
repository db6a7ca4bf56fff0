//! The fault mix of one seed ("swarm testing": each seed enables a random subset of faults).

use crate::rng::SplitMix64;

/// Fault probabilities and workload rates for one simulated run.
#[derive(Clone, Debug)]
pub struct Swarm {
    /// Founding voters (3..=7).
    pub voters: u64,
    /// Probability a message is dropped.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Longest message delay in ticks (>= 1); random delays reorder messages.
    pub delay_max: u64,
    /// Per-tick probability the partition layout changes.
    pub partition: f64,
    /// Per-tick probability a node crashes (losing unsynced state).
    pub crash: f64,
    /// Longest fsync delay in ticks.
    pub persist_delay_max: u64,
    /// Per-tick probability of a proposal.
    pub propose: f64,
    /// Per-tick probability of a membership change.
    pub membership: f64,
    /// Per-tick probability of a leadership transfer.
    pub transfer: f64,
    /// Per-tick probability of a ReadIndex read.
    pub read: f64,
    /// Per-tick probability a node compacts its log.
    pub compact: f64,
    /// Per-tick probability a node reports corruption.
    pub corrupt: f64,
    /// Per-node probability of ticking on a global tick (tick skew).
    pub tick_rate: Vec<f64>,
}

impl Swarm {
    /// The fault mix for `rng`'s seed.
    pub fn random(rng: &mut SplitMix64, max_nodes: u64) -> Swarm {
        let voters = [3, 3, 3, 4, 5, 5, 7][rng.below(7) as usize];
        let mut on = |p: f64| if rng.chance(0.6) { p } else { 0.0 };
        let (drop, duplicate, partition) = (on(0.2), on(0.05), on(0.03));
        let (crash, membership, transfer) = (on(0.01), on(0.02), on(0.01));
        let (read, compact, corrupt) = (on(0.05), on(0.02), on(0.003));
        let drop = drop * rng_frac(rng);
        // A damaged replica counts as a fault: with membership changes on top, the only
        // up-to-date voter may be the damaged one, and Raft alone cannot repair it.
        let corrupt = if membership > 0.0 { 0.0 } else { corrupt };
        Swarm {
            voters,
            drop,
            duplicate,
            delay_max: rng.range(1, 6),
            partition,
            crash,
            persist_delay_max: rng.range(0, 5),
            propose: 0.1 + 0.6 * rng_frac(rng),
            membership,
            transfer,
            read,
            compact,
            corrupt,
            tick_rate: (0..max_nodes).map(|_| 0.7 + 0.3 * rng_frac(rng)).collect(),
        }
    }
}

fn rng_frac(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

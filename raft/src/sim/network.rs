//! A simulated network: delay, drop, duplicate, reorder, partitions.

use std::collections::{BTreeMap, BTreeSet};

use crate::message::Message;
use crate::rng::SplitMix64;
use crate::types::NodeId;

/// Messages in flight, keyed by delivery tick and send order.
#[derive(Debug, Default)]
pub(crate) struct Network {
    in_flight: BTreeMap<(u64, u64), Message>,
    seq: u64,
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) drop: f64,
    pub(crate) duplicate: f64,
    pub(crate) delay_max: u64,
}

impl Network {
    pub(crate) fn new(drop: f64, duplicate: f64, delay_max: u64) -> Self {
        Network {
            drop,
            duplicate,
            delay_max,
            ..Network::default()
        }
    }

    pub(crate) fn send(&mut self, now: u64, msg: Message, rng: &mut SplitMix64) {
        if rng.chance(self.drop) {
            return;
        }
        if rng.chance(self.duplicate) {
            self.enqueue(now + rng.range(1, self.delay_max), msg.clone());
        }
        self.enqueue(now + rng.range(1, self.delay_max), msg);
    }

    fn enqueue(&mut self, at: u64, msg: Message) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), msg);
    }

    /// The next message due at or before `now` whose link is open (blocked ones are lost).
    pub(crate) fn next_due(&mut self, now: u64) -> Option<Message> {
        loop {
            let (&key, _) = self.in_flight.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let msg = self.in_flight.remove(&key)?;
            if !self.blocked.contains(&(msg.from, msg.to)) {
                return Some(msg);
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }

    /// A new random layout: heal, a symmetric split, or a one-way block.
    pub(crate) fn repartition(&mut self, nodes: &[NodeId], rng: &mut SplitMix64) {
        self.blocked.clear();
        match rng.below(3) {
            0 => {}
            1 => {
                let side: Vec<bool> = nodes.iter().map(|_| rng.chance(0.5)).collect();
                for (i, a) in nodes.iter().enumerate() {
                    for (j, b) in nodes.iter().enumerate() {
                        if side[i] != side[j] {
                            self.blocked.insert((*a, *b));
                        }
                    }
                }
            }
            _ => {
                let a = nodes[rng.below(nodes.len() as u64) as usize];
                for b in nodes {
                    if *b != a {
                        if rng.chance(0.5) {
                            self.blocked.insert((a, *b));
                        } else {
                            self.blocked.insert((*b, a));
                        }
                    }
                }
            }
        }
    }
}

//! A short trace of what happened (for failure reports) and a hash of all of it.

use std::collections::VecDeque;
use std::fmt;

use crate::types::{NodeId, Offset, Term};

const KEEP: usize = 60;

/// One traced event.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        term: Term,
        kind: &'static str,
    },
    Leader {
        node: NodeId,
        term: Term,
    },
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
    Propose {
        node: NodeId,
        first: Offset,
    },
    Partition,
    Change {
        node: NodeId,
        what: String,
    },
    Corrupt {
        node: NodeId,
        from: Offset,
    },
    Compact {
        node: NodeId,
        up_to: Offset,
    },
}

/// The last events and a hash of every event.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    last: VecDeque<(u64, Event)>,
    hash: u64,
}

impl Trace {
    pub(crate) fn record(&mut self, tick: u64, event: Event) {
        self.mix(tick);
        self.mix_event(&event);
        if self.last.len() == KEEP {
            self.last.pop_front();
        }
        self.last.push_back((tick, event));
    }

    fn mix_event(&mut self, event: &Event) {
        match event {
            Event::Deliver {
                from,
                to,
                term,
                kind,
            } => {
                self.mix(1);
                self.mix(from.0 << 32 | to.0);
                self.mix(term.0);
                self.mix(kind.len() as u64);
            }
            Event::Leader { node, term } => {
                self.mix(2);
                self.mix(node.0);
                self.mix(term.0);
            }
            Event::Propose { node, first } => {
                self.mix(3);
                self.mix(node.0);
                self.mix(first.0);
            }
            other => self.mix(4 + other.to_string().len() as u64),
        }
    }

    pub(crate) fn mix(&mut self, x: u64) {
        // FNV-1a over the 8 bytes.
        let mut h = if self.hash == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.hash
        };
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.hash = h;
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.last
            .iter()
            .map(|(t, e)| format!("tick {t}: {e}"))
            .collect()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Deliver {
                from,
                to,
                term,
                kind,
            } => write!(f, "{from} -> {to} {term} {kind}"),
            Event::Leader { node, term } => write!(f, "{node} leader in {term}"),
            Event::Crash { node } => write!(f, "{node} crashed"),
            Event::Restart { node } => write!(f, "{node} restarted"),
            Event::Propose { node, first } => write!(f, "{node} proposed at {first}"),
            Event::Partition => write!(f, "partition layout changed"),
            Event::Change { node, what } => write!(f, "{node}: {what}"),
            Event::Corrupt { node, from } => write!(f, "{node} corrupt from {from}"),
            Event::Compact { node, up_to } => write!(f, "{node} compacted to {up_to}"),
        }
    }
}

//! The invariants checked after every step.

use std::collections::BTreeMap;

use crate::engine::Role;
use crate::entry::{Entry, EntryKind};
use crate::log::Log;
use crate::types::{NodeId, Offset, Term};

use super::node::SimNode;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Two leaders in one term.
    #[error("election safety: {a} and {b} both leaders in {term}")]
    TwoLeaders {
        /// The term.
        term: Term,
        /// One leader.
        a: NodeId,
        /// The other.
        b: NodeId,
    },
    /// Two logs hold the same (offset, term) entry with different contents or histories.
    #[error("log matching: {a} and {b} differ at {at}")]
    LogMatching {
        /// One node.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// Where.
        at: Offset,
    },
    /// A new leader lacks a committed entry.
    #[error("leader completeness: {node} (leader in {term}) lacks committed entry at {at}")]
    LeaderCompleteness {
        /// The leader.
        node: NodeId,
        /// Its term.
        term: Term,
        /// The missing entry's offset.
        at: Offset,
    },
    /// A node applied something other than the canonical committed sequence.
    #[error("state machine safety: {node} applied a different entry at {at}")]
    StateMachine {
        /// The node.
        node: NodeId,
        /// Where.
        at: Offset,
    },
    /// A read was served from an index older than a commit that happened before it began.
    #[error("linearizability: {node} read at {index}, but {needed} was committed before")]
    StaleRead {
        /// The node.
        node: NodeId,
        /// The read index given.
        index: Offset,
        /// What was committed when the read started.
        needed: Offset,
    },
    /// The core returned a fatal error.
    #[error("core error on {node}: {error}")]
    Fatal {
        /// The node.
        node: NodeId,
        /// The error text.
        error: String,
    },
    /// Liveness: no leader committed new proposals within the bound after healing.
    #[error("liveness: no progress within {ticks} ticks after healing")]
    NoProgress {
        /// The bound.
        ticks: u64,
    },
}

/// A digest of an entry's identity and contents.
pub(crate) fn digest(e: &Entry) -> (u64, u64, u64) {
    let body = match e.kind() {
        EntryKind::Data { payload, records } => payload.iter().fold(*records, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(*b))
        }),
        EntryKind::Noop => 1,
        EntryKind::Config(m) => {
            m.members().fold(7u64, |h, n| h.wrapping_mul(131) ^ n.0)
                ^ (m.voters().len() as u64) << 40
        }
    };
    (e.term().0, e.end().0, body)
}

/// What every node agrees on: the committed sequence, and leaders by term.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) canonical: BTreeMap<u64, (u64, u64, u64)>,
    pub(crate) canonical_end: Offset,
    leaders: BTreeMap<Term, NodeId>,
}

impl Model {
    /// `node` applied `e`: it must extend or match the canonical sequence.
    pub(crate) fn applied(
        &mut self,
        node: NodeId,
        applied_end: &mut Offset,
        e: &Entry,
    ) -> Result<(), Violation> {
        let bad = Violation::StateMachine {
            node,
            at: e.first(),
        };
        if e.first() != *applied_end {
            return Err(bad);
        }
        let d = digest(e);
        match self.canonical.get(&e.first().0) {
            Some(c) if *c != d => return Err(bad),
            Some(_) => {}
            None if e.first() == self.canonical_end => {
                self.canonical.insert(e.first().0, d);
                self.canonical_end = e.end();
            }
            None => return Err(bad),
        }
        *applied_end = e.end();
        Ok(())
    }

    /// Election safety, and leader completeness for leaders seen for the first time.
    pub(crate) fn check_leaders(
        &mut self,
        nodes: &[&SimNode],
    ) -> Result<Vec<(NodeId, Term)>, Violation> {
        let mut new = Vec::new();
        for n in nodes {
            let Some(r) = n.raft.as_ref().filter(|r| r.role() == Role::Leader) else {
                continue;
            };
            match self.leaders.get(&r.term()) {
                Some(&other) if other != n.id => {
                    return Err(Violation::TwoLeaders {
                        term: r.term(),
                        a: other,
                        b: n.id,
                    });
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(r.term(), n.id);
                    self.check_complete(n)?;
                    new.push((n.id, r.term()));
                }
            }
        }
        Ok(new)
    }

    fn check_complete(&self, n: &SimNode) -> Result<(), Violation> {
        let Some(r) = n.raft.as_ref() else {
            return Ok(());
        };
        let log = r.log();
        let entries = log.all_entries();
        let miss = |at: u64| Violation::LeaderCompleteness {
            node: n.id,
            term: r.term(),
            at: Offset(at),
        };
        for (&first, d) in self.canonical.range(log.start().0..) {
            let i = entries.partition_point(|e| e.first().0 < first);
            match entries.get(i) {
                Some(e) if e.first().0 == first && digest(e) == *d => {}
                _ => return Err(miss(first)),
            }
        }
        Ok(())
    }
}

/// Log matching, incrementally: each node's last entry, if another node holds the same
/// (offset, term) entry, must be identical there, and so must the entry before it.
pub(crate) fn check_log_tails(nodes: &[&SimNode]) -> Result<(), Violation> {
    for a in nodes {
        let Some(ra) = a.raft.as_ref() else { continue };
        let ea = ra.log().all_entries();
        let Some(last) = ea.last() else { continue };
        for b in nodes {
            if a.id == b.id {
                continue;
            }
            let Some(rb) = b.raft.as_ref() else { continue };
            let eb = rb.log().all_entries();
            let j = eb.partition_point(|e| e.first() < last.first());
            let Some(other) = eb
                .get(j)
                .filter(|e| e.first() == last.first() && e.term() == last.term())
            else {
                continue;
            };
            let bad = Violation::LogMatching {
                a: a.id,
                b: b.id,
                at: last.first(),
            };
            if digest(other) != digest(last) {
                return Err(bad);
            }
            let prev_a = ea.len().checked_sub(2).map(|i| digest(&ea[i]));
            let prev_b = j.checked_sub(1).map(|i| digest(&eb[i]));
            if prev_a.is_some() && prev_b.is_some() && prev_a != prev_b {
                return Err(bad);
            }
        }
    }
    Ok(())
}

/// Log matching, fully: for each pair, everything up to the last shared (offset, term)
/// entry is identical.
pub(crate) fn check_logs_full(nodes: &[&SimNode]) -> Result<(), Violation> {
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            let (Some(ra), Some(rb)) = (a.raft.as_ref(), b.raft.as_ref()) else {
                continue;
            };
            let ma: BTreeMap<u64, (u64, u64, u64)> = ra
                .log()
                .all_entries()
                .iter()
                .map(|e| (e.first().0, digest(e)))
                .collect();
            let shared: Vec<(u64, bool)> = rb
                .log()
                .all_entries()
                .iter()
                .filter_map(|e| ma.get(&e.first().0).map(|d| (e.first().0, *d == digest(e))))
                .collect();
            let last_same_term = rb
                .log()
                .all_entries()
                .iter()
                .rev()
                .find(|e| ma.get(&e.first().0).is_some_and(|d| d.0 == e.term().0));
            let Some(last) = last_same_term else { continue };
            if let Some((at, _)) = shared
                .iter()
                .find(|(at, same)| *at <= last.first().0 && !same)
            {
                return Err(Violation::LogMatching {
                    a: a.id,
                    b: b.id,
                    at: Offset(*at),
                });
            }
        }
    }
    Ok(())
}

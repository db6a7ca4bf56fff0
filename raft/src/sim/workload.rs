//! The faults and the workload the simulator injects each tick.

use bytes::Bytes;

use super::check::Violation;
use super::node::SimNode;
use super::trace::Event;
use super::{MAX_NODE_ID, Sim, fatal};
use crate::log::Log;
use crate::membership::{ConfChange, Membership};
use crate::types::{NodeId, Offset};

impl Sim {
    pub(super) fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    fn pick(&mut self, ids: &[NodeId]) -> Option<NodeId> {
        if ids.is_empty() {
            return None;
        }
        Some(ids[self.rng.below(ids.len() as u64) as usize])
    }

    pub(super) fn inject_faults(&mut self) -> Result<(), Violation> {
        if self.rng.chance(self.swarm.partition) {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            self.net.repartition(&ids, &mut self.rng);
            self.trace.record(self.now, Event::Partition);
        }
        if self.rng.chance(self.swarm.crash) {
            // Half the time, crash at the worst moment: with writes not yet durable.
            let ups = self.up_nodes();
            let unsynced: Vec<NodeId> = ups
                .iter()
                .copied()
                .filter(|id| self.nodes[id].has_pending())
                .collect();
            let pool = if !unsynced.is_empty() && self.rng.chance(0.5) {
                unsynced
            } else {
                ups
            };
            if let Some(id) = self.pick(&pool) {
                let down_for = if self.rng.chance(0.3) {
                    self.rng.range(1, 4)
                } else {
                    self.rng.range(5, 60)
                };
                let restart = self.now + down_for;
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.crash(restart);
                }
                self.trace.record(self.now, Event::Crash { node: id });
            }
        }
        if self.rng.chance(self.swarm.corrupt) {
            self.corrupt()?;
        }
        if self.rng.chance(self.swarm.compact) {
            self.compact()?;
        }
        Ok(())
    }

    fn corrupt(&mut self) -> Result<(), Violation> {
        let any_corrupt = self
            .nodes
            .values()
            .any(|n| n.restart_at.is_some() || n.raft.as_ref().is_some_and(|r| r.is_corrupt()));
        let ups = self.up_nodes();
        let Some(id) = self.pick(&ups).filter(|_| !any_corrupt) else {
            return Ok(());
        };
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(());
        };
        let (start, end) = (raft.log().start().0, raft.log().end().0);
        if end <= start {
            return Ok(());
        }
        let from = Offset(self.rng.range(start, end - 1));
        raft.report_corruption(from).map_err(fatal(id))?;
        self.trace
            .record(self.now, Event::Corrupt { node: id, from });
        self.drain(id)
    }

    fn compact(&mut self) -> Result<(), Violation> {
        let ups = self.up_nodes();
        let Some(id) = self.pick(&ups) else {
            return Ok(());
        };
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let up_to = node.applied_end;
        let Some(raft) = node.raft.as_mut() else {
            return Ok(());
        };
        if up_to <= raft.log().start() || up_to > raft.log().end() {
            return Ok(());
        }
        let data = Bytes::copy_from_slice(&up_to.0.to_le_bytes());
        if raft.compact(up_to, data).is_ok() {
            self.trace
                .record(self.now, Event::Compact { node: id, up_to });
        }
        self.drain(id)
    }

    pub(super) fn workload(&mut self) -> Result<(), Violation> {
        if self.rng.chance(self.swarm.propose) {
            let target = if self.rng.chance(0.8) {
                self.leader()
            } else {
                let u = self.up_nodes();
                self.pick(&u)
            };
            if let Some(id) = target {
                self.propose_on(id)?;
            }
        }
        if self.rng.chance(self.swarm.read) {
            self.read()?;
        }
        if self.rng.chance(self.swarm.membership) {
            self.change_membership()?;
        }
        if self.rng.chance(self.swarm.transfer) {
            self.transfer()?;
        }
        Ok(())
    }

    /// Proposes a unique payload on `id`; the entry's end if accepted.
    pub(super) fn propose_on(&mut self, id: NodeId) -> Result<Option<Offset>, Violation> {
        self.payload_seq += 1;
        let payload = Bytes::copy_from_slice(&self.payload_seq.to_le_bytes());
        let records = self.rng.range(1, 4);
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(None);
        };
        let result = raft.propose(payload, records);
        let end = match result {
            Ok(meta) => {
                self.trace.record(
                    self.now,
                    Event::Propose {
                        node: id,
                        first: meta.first,
                    },
                );
                Some(meta.end)
            }
            Err(crate::ProposeError::Fatal(e)) => return Err(fatal(id)(e)),
            Err(_) => None,
        };
        self.drain(id)?;
        Ok(end)
    }

    /// A ReadIndex read on any node that believes it leads (possibly a deposed one).
    fn read(&mut self) -> Result<(), Violation> {
        let leaders: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| {
                n.raft
                    .as_ref()
                    .is_some_and(|r| r.role() == crate::Role::Leader)
            })
            .map(|n| n.id)
            .collect();
        let Some(id) = self.pick(&leaders) else {
            return Ok(());
        };
        let needed = self
            .nodes
            .values()
            .filter_map(|n| n.raft.as_ref())
            .map(|r| r.commit_end())
            .max();
        let ctx = self.payload_seq + 1_000_000_000;
        self.payload_seq += 1;
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(());
        };
        if raft.read_index(ctx).is_ok() {
            self.reads.insert(ctx, needed.unwrap_or(Offset(0)));
        }
        self.drain(id)
    }

    fn transfer(&mut self) -> Result<(), Violation> {
        let Some(id) = self.leader() else {
            return Ok(());
        };
        let Some(raft) = self.nodes.get(&id).and_then(|n| n.raft.as_ref()) else {
            return Ok(());
        };
        let voters: Vec<NodeId> = raft
            .membership()
            .voters()
            .iter()
            .copied()
            .filter(|v| *v != id)
            .collect();
        let Some(to) = self.pick(&voters) else {
            return Ok(());
        };
        if let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut())
            && raft.transfer_leadership(to).is_ok()
        {
            self.trace.record(
                self.now,
                Event::Change {
                    node: id,
                    what: format!("transfer to {to}"),
                },
            );
        }
        self.drain(id)
    }

    fn change_membership(&mut self) -> Result<(), Violation> {
        let Some(id) = self.leader() else {
            return Ok(());
        };
        let Some(raft) = self.nodes.get(&id).and_then(|n| n.raft.as_ref()) else {
            return Ok(());
        };
        let m = raft.membership().clone();
        let change = self.choose_change(&m);
        let Some(change) = change else { return Ok(()) };
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(());
        };
        match raft.change_membership(change) {
            Ok(_) => {
                self.trace.record(
                    self.now,
                    Event::Change {
                        node: id,
                        what: format!("{change:?}"),
                    },
                );
                if let ConfChange::AddLearner(new) = change {
                    self.next_id += 1;
                    let node = SimNode::new(new, Membership::default(), self.rng.next_u64())
                        .map_err(fatal(new))?;
                    self.nodes.insert(new, node);
                }
            }
            Err(crate::ChangeError::Fatal(e)) => return Err(fatal(id)(e)),
            Err(_) => {}
        }
        self.drain(id)
    }

    fn choose_change(&mut self, m: &Membership) -> Option<ConfChange> {
        let learners: Vec<NodeId> = m.learners().iter().copied().collect();
        let voters: Vec<NodeId> = m.voters().iter().copied().collect();
        match self.rng.below(3) {
            0 if !learners.is_empty() => self.pick(&learners).map(ConfChange::Promote),
            0 | 1 if self.next_id <= MAX_NODE_ID && learners.is_empty() => {
                Some(ConfChange::AddLearner(NodeId(self.next_id)))
            }
            _ if voters.len() > 3 => self.pick(&voters).map(ConfChange::Remove),
            _ => self.pick(&learners).map(ConfChange::Remove),
        }
    }
}

//! Group membership: voters and learners, and one-server-at-a-time changes.

use std::collections::BTreeSet;

use crate::types::{NodeId, Offset};

/// The members of a group: voters count toward elections and commit; learners only receive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

/// One membership change. Changes go one server at a time; a new server joins as a learner and
/// is promoted once it has caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a learner (receives the log, does not vote).
    AddLearner(NodeId),
    /// Make a caught-up learner a voter.
    Promote(NodeId),
    /// Remove a voter or learner (the leader itself may be removed).
    Remove(NodeId),
}

/// Why a membership change cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// The node is already a member.
    #[error("{node} is already a member")]
    AlreadyMember {
        /// The node.
        node: NodeId,
    },
    /// The node is not a learner, so cannot be promoted.
    #[error("{node} is not a learner")]
    NotLearner {
        /// The node.
        node: NodeId,
    },
    /// The node is not a member.
    #[error("{node} is not a member")]
    NotMember {
        /// The node.
        node: NodeId,
    },
    /// Removing the last voter would leave the group without a quorum.
    #[error("cannot remove the last voter {node}")]
    LastVoter {
        /// The node.
        node: NodeId,
    },
}

impl Membership {
    /// A membership from voters and learners (a node in both is a voter).
    pub fn new(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        let learners = learners
            .into_iter()
            .filter(|n| !voters.contains(n))
            .collect();
        Membership { voters, learners }
    }

    /// The voters.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The learners.
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// Is `id` a voter?
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Is `id` a voter or learner?
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// All members (voters then learners), in id order within each.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Votes needed for a majority of voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether the voters in `yes` form a majority.
    pub fn is_quorum<'a>(&self, yes: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let n = yes
            .into_iter()
            .filter(|id| self.voters.contains(id))
            .count();
        !self.voters.is_empty() && n >= self.quorum()
    }

    /// The largest position that a majority of voters have reached, given each voter's
    /// position. `Offset(0)` when there are no voters.
    pub fn quorum_position(&self, mut position: impl FnMut(NodeId) -> Offset) -> Offset {
        let mut ends: Vec<Offset> = self.voters.iter().map(|&id| position(id)).collect();
        if ends.is_empty() {
            return Offset(0);
        }
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends[self.quorum() - 1]
    }

    /// The membership after `change`.
    pub fn apply(&self, change: ConfChange) -> Result<Membership, ConfChangeError> {
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner(node) => {
                if self.contains(node) {
                    return Err(ConfChangeError::AlreadyMember { node });
                }
                next.learners.insert(node);
            }
            ConfChange::Promote(node) => {
                if !next.learners.remove(&node) {
                    return Err(ConfChangeError::NotLearner { node });
                }
                next.voters.insert(node);
            }
            ConfChange::Remove(node) => {
                if !self.contains(node) {
                    return Err(ConfChangeError::NotMember { node });
                }
                if self.voters.len() == 1 && self.is_voter(node) {
                    return Err(ConfChangeError::LastVoter { node });
                }
                next.voters.remove(&node);
                next.learners.remove(&node);
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[u64], l: &[u64]) -> Membership {
        Membership::new(v.iter().map(|&i| NodeId(i)), l.iter().map(|&i| NodeId(i)))
    }

    #[test]
    fn quorum_position_is_the_majority_median() {
        let c = m(&[1, 2, 3], &[4]);
        let pos = |id: NodeId| Offset([0, 10, 7, 3, 99][id.0 as usize]);
        assert_eq!(c.quorum_position(pos), Offset(7));
        let c5 = m(&[0, 1, 2, 3, 4], &[]);
        assert_eq!(c5.quorum_position(pos), Offset(7));
    }

    #[test]
    fn changes_go_through_learners() {
        let c = m(&[1, 2, 3], &[]);
        assert_eq!(
            c.apply(ConfChange::Promote(NodeId(4))),
            Err(ConfChangeError::NotLearner { node: NodeId(4) })
        );
        let c = c.apply(ConfChange::AddLearner(NodeId(4))).unwrap();
        let c = c.apply(ConfChange::Promote(NodeId(4))).unwrap();
        assert_eq!(c.voters().len(), 4);
        assert_eq!(c.quorum(), 3);
        let one = m(&[1], &[]);
        assert!(one.apply(ConfChange::Remove(NodeId(1))).is_err());
    }
}

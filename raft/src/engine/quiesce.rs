//! Support for the multi-raft host's quiescence: an idle group stops ticking and sending.

use super::{Raft, Role};
use crate::log::Log;

impl<L: Log> Raft<L> {
    /// Whether this group can stop ticking: as leader, everything is durable, replicated to
    /// every member, committed, and every follower knows the commit; nothing is pending. As
    /// follower, it has a leader and holds exactly what is committed.
    pub fn is_quiescable(&self) -> bool {
        let settled = self.is_idle() && self.commit_end == self.log.end() && self.corrupt.is_none();
        match self.role {
            Role::Leader => {
                settled
                    && self
                        .lead
                        .as_ref()
                        .is_some_and(|l| l.is_settled(self.commit_end))
            }
            Role::Follower => settled && self.leader.is_some(),
            _ => false,
        }
    }

    /// Resumes after quiescence: timers restart from zero and a leader presumes its followers
    /// alive, so the first check-quorum round after waking judges fresh evidence only.
    pub fn unquiesce(&mut self) {
        self.election.elapsed = 0;
        if let Some(lead) = self.lead.as_mut() {
            for pr in lead.progress.values_mut() {
                pr.recent_active = true;
            }
        }
    }
}

impl super::LeaderState {
    fn is_settled(&self, commit: crate::types::Offset) -> bool {
        self.transfer.is_none()
            && self.reads.is_empty()
            && self
                .progress
                .values()
                .all(|p| p.match_end == commit && p.commit_sent >= commit)
    }
}

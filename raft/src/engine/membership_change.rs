//! Membership changes, one server at a time, with the fix for the single-server bug: a leader
//! proposes a change only after committing an entry of its own term, and only one
//! configuration entry may be uncommitted. A removed leader steps down once the change commits.

use super::{Raft, Role};
use crate::entry::{Entry, EntryMeta};
use crate::error::ChangeError;
use crate::log::{Log, term_at};
use crate::membership::ConfChange;
use crate::message::Body;
use crate::types::{NodeId, Offset};

impl<L: Log> Raft<L> {
    /// Proposes a membership change. It takes effect as soon as it is in the log.
    pub fn change_membership(&mut self, change: ConfChange) -> Result<EntryMeta, ChangeError> {
        self.check_change_allowed(change)?;
        let next = self.membership().apply(change)?;
        let entry = Entry::config(self.log.end(), self.term, next);
        let meta = entry.meta();
        self.append_local(entry)?;
        self.sync_progress();
        self.broadcast_append()?;
        self.finish();
        Ok(meta)
    }

    fn check_change_allowed(&self, change: ConfChange) -> Result<(), ChangeError> {
        if self.role != Role::Leader {
            return Err(ChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer_target().is_some() {
            return Err(ChangeError::TransferInProgress);
        }
        if term_at(&self.log, self.commit_end).map_err(crate::RaftError::from)? != Some(self.term) {
            return Err(ChangeError::TermNotCommitted);
        }
        if let Some(at) = self
            .members
            .latest_offset()
            .filter(|&at| at >= self.commit_end)
        {
            return Err(ChangeError::InProgress { at });
        }
        if let ConfChange::Promote(node) = change {
            let match_end = self.match_end(node).unwrap_or(Offset(0));
            if self.membership().learners().contains(&node) && match_end < self.commit_end {
                return Err(ChangeError::NotCaughtUp {
                    node,
                    match_end,
                    commit_end: self.commit_end,
                });
            }
        }
        Ok(())
    }

    /// Makes the leader's progress map follow the membership.
    fn sync_progress(&mut self) {
        let peers = self.peers();
        let end = self.log.end();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        lead.progress.retain(|id, _| peers.contains(id));
        for id in peers {
            lead.progress
                .entry(id)
                .or_insert_with(|| super::Progress::new(end));
        }
    }

    /// After a commit: a leader no longer a voter in a committed configuration hands over to
    /// the most up-to-date voter and steps down.
    pub(super) fn maybe_step_down_removed(&mut self) {
        let committed = self
            .members
            .latest_offset()
            .is_none_or(|at| at < self.commit_end);
        if !committed || self.membership().is_voter(self.id) {
            return;
        }
        let best = self.best_voter();
        if let Some(to) = best {
            self.send_now(to, Body::TimeoutNow);
        }
        self.become_follower(self.term, None);
    }

    fn best_voter(&self) -> Option<NodeId> {
        let lead = self.lead.as_ref()?;
        self.membership()
            .voters()
            .iter()
            .filter_map(|id| lead.progress.get(id).map(|p| (p.match_end, *id)))
            .max()
            .map(|(_, id)| id)
    }
}

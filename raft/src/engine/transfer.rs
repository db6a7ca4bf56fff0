//! Leadership transfer: bring the target up to date, then tell it to campaign (TimeoutNow).

use super::{Raft, Role};
use crate::error::TransferError;
use crate::log::Log;
use crate::message::Body;
use crate::types::NodeId;

/// A transfer in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    to: NodeId,
    elapsed: u32,
    sent: bool,
}

impl<L: Log> Raft<L> {
    /// Hands leadership to voter `to`. Proposals are refused until it completes or times out
    /// (one election timeout).
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id {
            return Err(TransferError::ToSelf);
        }
        if !self.membership().is_voter(to) {
            return Err(TransferError::NotVoter { node: to });
        }
        if let Some(lead) = self.lead.as_mut() {
            lead.transfer = Some(Transfer {
                to,
                elapsed: 0,
                sent: false,
            });
        }
        self.on_follower_progress(to);
        if !self
            .lead
            .as_ref()
            .and_then(|l| l.transfer)
            .is_some_and(|t| t.sent)
        {
            // Not caught up yet: push entries (a failed send shows up on the next input).
            let _ = self.send_append(to, true);
        }
        self.finish();
        Ok(())
    }

    pub(super) fn transfer_target(&self) -> Option<NodeId> {
        self.lead.as_ref()?.transfer.map(|t| t.to)
    }

    /// `id` acknowledged more: if it is the transfer target and caught up, send TimeoutNow.
    pub(super) fn on_follower_progress(&mut self, id: NodeId) {
        let end = self.log.end();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let Some(t) = lead.transfer.as_mut() else {
            return;
        };
        let caught_up = lead.progress.get(&id).is_some_and(|p| p.match_end == end);
        if t.to == id && caught_up && !t.sent {
            t.sent = true;
            self.send_now(id, Body::TimeoutNow);
        }
    }

    pub(super) fn tick_transfer(&mut self) {
        let timeout = self.cfg.election_ticks;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if let Some(t) = lead.transfer.as_mut() {
            t.elapsed += 1;
            if t.elapsed >= timeout {
                lead.transfer = None;
            }
        }
    }
}

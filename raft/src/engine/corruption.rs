//! Protocol-aware recovery hooks: a replica whose storage found corruption drops the damaged
//! range, does not vote or campaign, and counts toward commit only for what it re-fetched.

use super::{Raft, Role};
use crate::error::RaftError;
use crate::log::Log;
use crate::types::Offset;

/// Damage not yet repaired: the log must be re-fetched up to `repair_until`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Corruption {
    repair_until: Offset,
}

impl<L: Log> Raft<L> {
    /// The storage found corruption at or after `from`. The log is cut at the entry holding
    /// `from` (even below the commit end), and the replica stays out of elections until it has
    /// re-fetched and persisted everything it held.
    pub fn report_corruption(&mut self, from: Offset) -> Result<(), RaftError> {
        let at = match self.log.entry_meta(from)? {
            Some(m) => m.first,
            None if from < self.log.start() => self.log.start(),
            None => return Ok(()),
        };
        let repair_until = self
            .corrupt
            .map_or(self.log.end(), |c| c.repair_until.max(self.log.end()));
        self.corrupt = Some(Corruption { repair_until });
        if self.role == Role::Leader {
            self.become_follower(self.term, None);
        }
        self.commit_end = self.commit_end.min(at);
        self.log.truncate_suffix(at)?;
        self.persist.on_truncate(at);
        self.members.truncate(at);
        self.finish();
        Ok(())
    }

    /// Clears the corruption mark once the lost range is durable again.
    pub(super) fn check_repaired(&mut self) {
        if let Some(c) = self.corrupt
            && self.persist.durable_end() >= c.repair_until
        {
            self.corrupt = None;
        }
    }
}

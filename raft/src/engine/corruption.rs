//! Protocol-aware recovery hooks: a replica whose storage found corruption drops the damaged
//! range, does not vote or campaign, and counts toward commit only for what it re-fetched.

use super::{Raft, Role};
use crate::error::RaftError;
use crate::log::Log;
use crate::types::{Offset, Term};

/// Damage not yet repaired: the log position (last term, end) held before the damage.
/// Votes are judged against it, so a damaged replica still only votes for candidates at least
/// as up to date as the log it acknowledged; it is repaired once its durable log reaches it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Corruption {
    last_term: Term,
    end: Offset,
}

impl Corruption {
    pub(crate) fn position(self) -> (Term, Offset) {
        (self.last_term, self.end)
    }

    pub(crate) fn from_position((last_term, end): (Term, Offset)) -> Self {
        Corruption { last_term, end }
    }
}

impl<L: Log> Raft<L> {
    /// The storage found corruption at or after `from`. The replica stops trusting the log
    /// from the entry holding `from` (even below the commit end): it steps down, does not
    /// campaign, ignores appends, and grants votes only to candidates at least as up to date as
    /// its pre-damage log. That damage mark goes into the [`HardState`]; only once it is durable
    /// is the log cut (so a crash can never leave a cut log without the mark). Then the range is
    /// re-fetched from the leader, and the mark clears once the log is durable where it was.
    /// After a restart with `hard_state.damaged` set, storage recovery must report the
    /// corruption again if the damaged range is still there.
    ///
    /// [`HardState`]: crate::HardState
    pub fn report_corruption(&mut self, from: Offset) -> Result<(), RaftError> {
        let at = match self.log.entry_meta(from)? {
            Some(m) => m.first,
            None if from < self.log.start() => self.log.start(),
            None => return Ok(()),
        };
        let (last_term, end) = self.vote_position();
        self.corrupt = Some(Corruption { last_term, end });
        self.persist.mark_hard_state();
        if self.role != Role::Follower {
            // A leader cannot serve a log with a hole; a candidate must not win with one.
            self.become_follower(self.term, None);
        }
        self.commit_end = self.commit_end.min(at);
        let at = self.pending_cut.map_or(at, |(_, earlier)| earlier.min(at));
        self.pending_cut = Some((self.persist.barrier(), at));
        self.finish();
        Ok(())
    }

    /// Cuts the log once the damage mark is durable.
    pub(super) fn apply_pending_cut(&mut self) -> Result<(), RaftError> {
        let Some((after, at)) = self.pending_cut else {
            return Ok(());
        };
        if self.persist.done() < after {
            return Ok(());
        }
        self.pending_cut = None;
        // The log may have been compacted meanwhile: cut at an entry boundary at or after the
        // log start.
        let at = match self.log.entry_meta(at.max(self.log.start()))? {
            Some(m) => m.first,
            None => at.max(self.log.start()).min(self.log.end()),
        };
        self.log.truncate_suffix(at)?;
        self.persist.on_truncate(at);
        self.members.truncate(at);
        Ok(())
    }

    /// The end of the log that may be trusted (before a pending cut).
    pub(super) fn usable_end(&self) -> Offset {
        self.pending_cut
            .map_or(self.log.end(), |(_, at)| at.min(self.log.end()))
    }

    /// Whether the log is waiting to be cut (appends are ignored meanwhile).
    pub(super) fn cut_pending(&self) -> bool {
        self.pending_cut.is_some()
    }

    /// Clears the corruption mark once the durable log is at least where it was.
    pub(super) fn check_repaired(&mut self) {
        let durable = self.persist.durable_end() == self.log.end() && self.pending_cut.is_none();
        if let Some(c) = self.corrupt
            && durable
            && (self.log.last_term(), self.log.end()) >= (c.last_term, c.end)
        {
            self.corrupt = None;
            self.persist.mark_hard_state();
        }
    }

    /// The log position votes are judged against: the pre-damage one while damaged.
    pub(super) fn vote_position(&self) -> (Term, Offset) {
        let now = (self.log.last_term(), self.log.end());
        self.corrupt.map_or(now, |c| now.max((c.last_term, c.end)))
    }
}

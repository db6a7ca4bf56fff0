//! What must be made durable, and the messages that wait for it.

use std::collections::VecDeque;

use crate::message::Message;
use crate::types::{NodeId, Offset, Term};

/// Term, vote and commit: the state that must survive a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The current term.
    pub term: Term,
    /// Who this replica voted for in `term`.
    pub vote: Option<NodeId>,
    /// The commit end known (persisting it is an optimisation, not needed for safety).
    pub commit_end: Offset,
    /// Set while the log is damaged (see [`crate::Raft::report_corruption`]): the (last term,
    /// end) the log had before, which votes are judged against until it is re-fetched.
    pub damaged: Option<(Term, Offset)>,
}

/// Identifies a persistence request; completions are reported in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub u64);

/// "Make this durable, then call [`crate::Raft::handle_persisted`] with `id`": fsync every log
/// write made so far (the log holds entries up to `log_end`) and, if present, write the hard
/// state atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRequest {
    /// The id to report back.
    pub id: PersistId,
    /// Hard state to write, when it changed.
    pub hard_state: Option<HardState>,
    /// The log's end when the request was made.
    pub log_end: Offset,
}

/// Tracks durability: dirty state, outstanding requests, and the durable log end.
#[derive(Debug, Default)]
pub(crate) struct Persist {
    last_issued: u64,
    done: u64,
    hard_state_dirty: bool,
    log_dirty: bool,
    written_commit: Offset,
    outstanding: VecDeque<(u64, Offset)>,
    durable_end: Offset,
    requests: VecDeque<PersistRequest>,
}

impl Persist {
    pub(crate) fn new(durable_end: Offset, commit: Offset) -> Self {
        Persist {
            durable_end,
            written_commit: commit,
            ..Persist::default()
        }
    }

    pub(crate) fn mark_hard_state(&mut self) {
        self.hard_state_dirty = true;
    }

    pub(crate) fn mark_log(&mut self) {
        self.log_dirty = true;
    }

    /// The request id a message that depends on current state must wait for.
    pub(crate) fn barrier(&self) -> u64 {
        if self.hard_state_dirty || self.log_dirty {
            self.last_issued + 1
        } else {
            self.last_issued
        }
    }

    pub(crate) fn done(&self) -> u64 {
        self.done
    }

    pub(crate) fn durable_end(&self) -> Offset {
        self.durable_end
    }

    /// Entries from `at` on are gone: they are no longer durable, whatever is outstanding.
    pub(crate) fn on_truncate(&mut self, at: Offset) {
        self.durable_end = self.durable_end.min(at);
        for (_, end) in &mut self.outstanding {
            *end = (*end).min(at);
        }
        self.log_dirty = true;
    }

    /// Issues a request if anything is dirty.
    pub(crate) fn flush(&mut self, hs: HardState, log_end: Offset) {
        if !self.hard_state_dirty && !self.log_dirty {
            return;
        }
        self.last_issued += 1;
        let write_hs = self.hard_state_dirty || hs.commit_end != self.written_commit;
        self.written_commit = hs.commit_end;
        self.requests.push_back(PersistRequest {
            id: PersistId(self.last_issued),
            hard_state: write_hs.then_some(hs),
            log_end,
        });
        self.outstanding.push_back((self.last_issued, log_end));
        self.hard_state_dirty = false;
        self.log_dirty = false;
    }

    pub(crate) fn poll(&mut self) -> Option<PersistRequest> {
        self.requests.pop_front()
    }

    /// Everything up to request `id` is durable. Returns whether anything changed.
    pub(crate) fn complete(&mut self, id: PersistId) -> bool {
        let id = id.0.min(self.last_issued);
        if id <= self.done {
            return false;
        }
        self.done = id;
        while let Some(&(rid, end)) = self.outstanding.front() {
            if rid > id {
                break;
            }
            self.durable_end = end;
            self.outstanding.pop_front();
        }
        true
    }
}

/// Outgoing messages, each held until the persistence request it depends on is done.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<(u64, Message)>,
}

impl Outbox {
    pub(crate) fn push(&mut self, after: u64, msg: Message) {
        self.queue.push_back((after, msg));
    }

    /// The next message that may be sent, dropping those stamped with a term older than
    /// `term` (as if lost).
    pub(crate) fn pop(&mut self, done: u64, term: Term) -> Option<Message> {
        while let Some((after, msg)) = self.queue.front() {
            if *after > done {
                return None;
            }
            let stale = msg.term < term;
            let (_, msg) = self.queue.pop_front()?;
            if !stale {
                return Some(msg);
            }
        }
        None
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_clamps_outstanding_requests() {
        let mut p = Persist::new(Offset(0), Offset(0));
        p.mark_log();
        p.flush(HardState::default(), Offset(10));
        p.on_truncate(Offset(5));
        p.flush(HardState::default(), Offset(8));
        assert!(p.complete(PersistId(1)));
        assert_eq!(p.durable_end(), Offset(5));
        assert!(p.complete(PersistId(2)));
        assert_eq!(p.durable_end(), Offset(8));
        assert!(!p.complete(PersistId(2)));
    }
}

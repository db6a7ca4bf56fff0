//! ReadIndex: linearizable reads confirmed by a heartbeat round instead of a log write.

use std::collections::{BTreeSet, VecDeque};

use super::{Raft, Role};
use crate::error::ReadError;
use crate::log::{Log, term_at};
use crate::types::{NodeId, Offset};

/// A read that is safe to serve once the state machine has applied up to `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyRead {
    /// The caller's context, as given to [`Raft::read_index`].
    pub ctx: u64,
    /// Serve the read from state applied at least up to this commit end.
    pub index: Offset,
}

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    index: Offset,
    seq: u64,
    acks: BTreeSet<NodeId>,
}

/// The leader's reads in progress.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    seq: u64,
    pending: VecDeque<PendingRead>,
    /// Reads asked before the leader committed an entry of its term.
    waiting: Vec<u64>,
}

impl ReadQueue {
    pub(crate) fn latest_seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.waiting.is_empty()
    }
}

impl<L: Log> Raft<L> {
    /// Starts a linearizable read tagged `ctx`. It comes out of [`Raft::poll_read`] once a
    /// quorum has confirmed this leader is still leader and the state machine has caught up.
    /// Reads not confirmed when the leader steps down come out of [`Raft::poll_failed_read`].
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        let committed_in_term =
            matches!(term_at(&self.log, self.commit_end), Ok(Some(t)) if t == self.term);
        if committed_in_term {
            self.start_read(ctx);
        } else if let Some(lead) = self.lead.as_mut() {
            lead.reads.waiting.push(ctx);
        }
        self.finish();
        Ok(())
    }

    fn start_read(&mut self, ctx: u64) {
        let index = self.commit_end;
        if self.membership().is_quorum([&self.id]) {
            self.ready_reads.push_back(super::ReadyRead { ctx, index });
            return;
        }
        let id = self.id;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        lead.reads.seq += 1;
        let seq = lead.reads.seq;
        lead.reads.pending.push_back(PendingRead {
            ctx,
            index,
            seq,
            acks: BTreeSet::from([id]),
        });
        self.broadcast_heartbeat();
    }

    /// The leader committed: reads waiting for its first commit can start.
    pub(super) fn release_waiting_reads(&mut self) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if lead.reads.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut lead.reads.waiting);
        for ctx in waiting {
            self.start_read(ctx);
        }
    }

    /// Leaves leadership: reads not yet confirmed fail.
    pub(super) fn drop_leader_state(&mut self) {
        let Some(lead) = self.lead.take() else { return };
        let reads = lead.reads;
        self.failed_reads.extend(reads.waiting);
        self.failed_reads
            .extend(reads.pending.into_iter().map(|r| r.ctx));
    }

    /// A heartbeat answer confirmed round `seq` (and all before it) from `from`.
    pub(super) fn ack_read(&mut self, from: NodeId, seq: u64) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        for r in lead.reads.pending.iter_mut().take_while(|r| r.seq <= seq) {
            r.acks.insert(from);
        }
        let members = self.members.current();
        while let Some(r) = lead.reads.pending.front() {
            if !members.is_quorum(&r.acks) {
                break;
            }
            self.ready_reads.push_back(ReadyRead {
                ctx: r.ctx,
                index: r.index,
            });
            lead.reads.pending.pop_front();
        }
    }
}

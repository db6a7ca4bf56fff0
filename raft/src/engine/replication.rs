//! Log replication: proposals, appends, acknowledgements, commit, heartbeats.

use bytes::Bytes;

use super::{Raft, Role};
use crate::entry::{Entry, EntryKind, EntryMeta};
use crate::error::{ProposeError, RaftError};
use crate::log::{Log, find_conflict_by_term, term_at};
use crate::message::{Append, AppendResponse, Body, Heartbeat, HeartbeatResponse};
use crate::types::{NodeId, Offset};

impl<L: Log> Raft<L> {
    /// Proposes a record batch of `records` records. On the leader it is appended at the log
    /// end, covering `[end, end + records)`; it is committed once `commit_end()` passes it.
    pub fn propose(&mut self, payload: Bytes, records: u64) -> Result<EntryMeta, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(to) = self.transfer_target() {
            return Err(ProposeError::TransferInProgress { to });
        }
        if records == 0 {
            return Err(ProposeError::EmptyBatch);
        }
        let entry = Entry::data(self.log.end(), self.term, payload, records);
        let meta = entry.meta();
        self.log
            .append(std::slice::from_ref(&entry))
            .map_err(RaftError::from)?;
        self.persist.mark_log();
        self.broadcast_append()?;
        self.finish();
        Ok(meta)
    }

    pub(super) fn broadcast_append(&mut self) -> Result<(), RaftError> {
        for to in self.peers() {
            while self.send_append(to, false)? {}
        }
        Ok(())
    }

    /// Sends the next append (or snapshot) to `to` if flow control allows. Returns whether
    /// something was sent that carried entries.
    pub(super) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> Result<bool, RaftError> {
        let (max_msgs, max_bytes) = (self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
        let Some(pr) = self.lead.as_ref().and_then(|l| l.progress.get(&to)) else {
            return Ok(false);
        };
        if pr.is_paused(max_msgs, max_bytes) {
            return Ok(false);
        }
        let next = pr.next_end;
        debug_assert_eq!(
            self.entry_start(next)?,
            next,
            "next_end must be an entry boundary"
        );
        let Some(prev_term) = term_at(&self.log, next)? else {
            return self.send_snapshot(to);
        };
        let entries = if next < self.log.end() {
            self.log.entries(next, self.cfg.max_append_bytes)?
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty {
            return Ok(false);
        }
        let end = entries.last().map_or(next, Entry::end);
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        let commit_end = self.commit_end;
        if let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&to)) {
            pr.sent(end, bytes);
            pr.commit_sent = pr.commit_sent.max(commit_end.min(end));
        }
        let carried = !entries.is_empty();
        let body = Body::Append(Append {
            prev_end: next,
            prev_term,
            entries,
            commit_end: self.commit_end,
        });
        self.send_now(to, body);
        Ok(carried)
    }

    /// Follower side of AppendEntries.
    pub(super) fn handle_append(&mut self, from: NodeId, app: Append) -> Result<(), RaftError> {
        if !is_contiguous(app.prev_end, &app.entries) || self.cut_pending() {
            return Ok(()); // malformed, or our damaged log is not cut yet: as if lost
        }
        self.follow(from);
        if app.prev_end < self.commit_end {
            let body = Body::AppendResponse(AppendResponse::Success {
                match_end: self.commit_end,
            });
            self.send_durable(from, self.term, body);
            return Ok(());
        }
        if term_at(&self.log, app.prev_end)? != Some(app.prev_term) {
            return self.reject_append(from, &app);
        }
        self.append_new(&app.entries)?;
        let last_new_end = app.entries.last().map_or(app.prev_end, Entry::end);
        let commit = app.commit_end.min(last_new_end);
        if commit > self.commit_end {
            self.commit_end = commit;
        }
        let body = Body::AppendResponse(AppendResponse::Success {
            match_end: last_new_end,
        });
        self.send_durable(from, self.term, body);
        Ok(())
    }

    /// Becomes (or stays) a follower of `leader` in the current term.
    pub(super) fn follow(&mut self, leader: NodeId) {
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(self.term, Some(leader));
        }
        self.election.elapsed = 0;
    }

    fn reject_append(&mut self, from: NodeId, app: &Append) -> Result<(), RaftError> {
        let (hint_end, hint_term) = if app.prev_end > self.log.end() {
            (self.log.end(), self.log.last_term())
        } else {
            find_conflict_by_term(&self.log, app.prev_end, app.prev_term)?
        };
        let body = Body::AppendResponse(AppendResponse::Reject {
            rejected_prev_end: app.prev_end,
            hint_end,
            hint_term,
        });
        self.send_now(from, body);
        Ok(())
    }

    /// Skips entries already held, truncates at the first conflict, appends the rest.
    fn append_new(&mut self, entries: &[Entry]) -> Result<(), RaftError> {
        let mut i = 0;
        while i < entries.len() && entries[i].first() < self.log.end() {
            let e = &entries[i];
            match self.log.entry_meta(e.first())? {
                Some(m) if m.first == e.first() && m.term == e.term() => i += 1,
                _ => {
                    self.truncate_from(e.first())?;
                    break;
                }
            }
        }
        if i == entries.len() {
            return Ok(());
        }
        for e in &entries[i..] {
            if let EntryKind::Config(m) = e.kind() {
                self.members.push(e.first(), m.clone());
            }
        }
        self.log.append(&entries[i..])?;
        self.persist.mark_log();
        Ok(())
    }

    pub(super) fn truncate_from(&mut self, at: Offset) -> Result<(), RaftError> {
        debug_assert!(
            self.role != Role::Leader,
            "a leader never overwrites its own log"
        );
        if at < self.commit_end {
            return Err(RaftError::TruncateCommitted {
                at,
                commit_end: self.commit_end,
            });
        }
        self.log.truncate_suffix(at)?;
        self.persist.on_truncate(at);
        self.members.truncate(at);
        Ok(())
    }

    /// Leader side of an append answer.
    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        resp: AppendResponse,
    ) -> Result<(), RaftError> {
        let log_end = self.log.end();
        let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&from)) else {
            return Ok(());
        };
        pr.recent_active = true;
        match resp {
            AppendResponse::Success { match_end } => {
                if match_end > log_end {
                    return Ok(());
                }
                if pr.ack(match_end) {
                    self.maybe_commit()?;
                    self.on_follower_progress(from);
                }
                while self.send_append(from, false)? {}
                self.maybe_send_commit(from);
            }
            AppendResponse::Reject {
                rejected_prev_end,
                hint_end,
                hint_term,
            } => {
                if pr.is_stale_reject(rejected_prev_end) {
                    return Ok(());
                }
                // Below our log start, or no entry of a term the follower could share at
                // our start: only a snapshot can catch it up.
                let (next, term) = if hint_end < self.log.start() {
                    (hint_end, hint_term)
                } else {
                    find_conflict_by_term(&self.log, hint_end, hint_term)?
                };
                let snapshot = hint_end < self.log.start() || term > hint_term;
                if let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&from)) {
                    pr.back_off(next);
                }
                if snapshot {
                    self.send_snapshot(from)?;
                } else {
                    self.send_append(from, true)?;
                }
            }
        }
        Ok(())
    }

    /// Advances the commit end to what a quorum holds, counting only entries of this term.
    pub(super) fn maybe_commit(&mut self) -> Result<(), RaftError> {
        let Some(lead) = self.lead.as_ref() else {
            return Ok(());
        };
        let own = self.persist.durable_end().min(self.log.end());
        let id = self.id;
        let quorum = self.members.current().quorum_position(|n| {
            if n == id {
                own
            } else {
                lead.progress.get(&n).map_or(Offset(0), |p| p.match_end)
            }
        });
        if quorum <= self.commit_end || term_at(&self.log, quorum)? != Some(self.term) {
            return Ok(());
        }
        self.commit_end = quorum;
        self.on_commit()
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        let peers: Vec<NodeId> = self
            .lead
            .as_ref()
            .map(|l| l.progress.keys().copied().collect())
            .unwrap_or_default();
        for to in peers {
            self.send_heartbeat(to);
        }
    }

    fn send_heartbeat(&mut self, to: NodeId) {
        let commit = self.commit_end;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let read_ctx = lead.reads.latest_seq();
        let Some(pr) = lead.progress.get_mut(&to) else {
            return;
        };
        let commit_end = commit.min(pr.match_end);
        pr.commit_sent = pr.commit_sent.max(commit_end);
        self.send_now(
            to,
            Body::Heartbeat(Heartbeat {
                commit_end,
                read_ctx,
            }),
        );
    }

    /// Tells a follower about a commit end it can use but has not heard of yet.
    fn maybe_send_commit(&mut self, to: NodeId) {
        let commit = self.commit_end;
        let behind = self
            .lead
            .as_ref()
            .and_then(|l| l.progress.get(&to))
            .is_some_and(|p| commit.min(p.match_end) > p.commit_sent);
        if behind {
            self.send_heartbeat(to);
        }
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, hb: Heartbeat) {
        self.follow(from);
        let commit = hb.commit_end.min(self.usable_end());
        if commit > self.commit_end {
            self.commit_end = commit;
        }
        let repair_from = self.corrupt.map(|_| self.usable_end());
        let body = Body::HeartbeatResponse(HeartbeatResponse {
            read_ctx: hb.read_ctx,
            repair_from,
        });
        self.send_now(from, body);
    }

    pub(super) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        resp: HeartbeatResponse,
    ) -> Result<(), RaftError> {
        let log_end = self.log.end();
        // The damaged replica's end need not be an entry boundary in our log.
        let repair = match resp.repair_from {
            Some(at) => Some(self.entry_start(at.min(log_end))?),
            None => None,
        };
        let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&from)) else {
            return Ok(());
        };
        pr.heard(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
        if let Some(at) = repair {
            pr.back_off(at);
        }
        let behind = pr.match_end < log_end || pr.next_end != pr.match_end;
        if resp.read_ctx > 0 {
            self.ack_read(from, resp.read_ctx);
        }
        if behind {
            self.send_append(from, true)?;
        }
        Ok(())
    }
}

impl<L: Log> Raft<L> {
    /// The first offset of the entry holding `at` (`at` itself at the log end or before the
    /// log start).
    fn entry_start(&self, at: Offset) -> Result<Offset, RaftError> {
        Ok(self.log.entry_meta(at)?.map_or(at, |m| m.first))
    }
}

/// Whether `entries` follow each other without gaps, starting at `prev_end`, with terms that
/// never decrease.
fn is_contiguous(prev_end: Offset, entries: &[Entry]) -> bool {
    let mut at = prev_end;
    let mut term = crate::types::Term(0);
    for e in entries {
        if e.first() != at || e.term() < term {
            return false;
        }
        at = e.end();
        term = e.term();
    }
    true
}

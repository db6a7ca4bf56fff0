//! Elections: timeouts, pre-vote, votes, becoming leader, check-quorum.

use std::collections::BTreeMap;

use super::{LeaderState, Raft, Role};
use crate::entry::Entry;
use crate::error::RaftError;
use crate::log::Log;
use crate::message::{Body, VoteRequest, VoteResponse};
use crate::types::{NodeId, Term};

impl<L: Log> Raft<L> {
    /// Starts a (pre-)campaign. A real campaign bumps the term and votes for itself; its vote
    /// requests wait until that is durable.
    pub(super) fn campaign(&mut self, pre_vote: bool, transfer: bool) -> Result<(), RaftError> {
        let target = if pre_vote {
            self.role = Role::PreCandidate;
            self.term.next()
        } else {
            self.term = self.term.next();
            self.vote = Some(self.id);
            self.persist.mark_hard_state();
            self.role = Role::Candidate;
            self.term
        };
        self.leader = None;
        self.drop_leader_state();
        self.reset_election_timer();
        self.election.votes = BTreeMap::from([(self.id, true)]);
        if self.membership().is_quorum([&self.id]) {
            return self.won(pre_vote);
        }
        let req = VoteRequest {
            pre_vote,
            last_end: self.log.end(),
            last_term: self.log.last_term(),
            transfer,
        };
        let voters: Vec<NodeId> = self
            .membership()
            .voters()
            .iter()
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        for to in voters {
            self.send_durable(to, target, Body::VoteRequest(req));
        }
        Ok(())
    }

    fn won(&mut self, pre_vote: bool) -> Result<(), RaftError> {
        if pre_vote {
            self.campaign(false, false)
        } else {
            self.become_leader()
        }
    }

    pub(super) fn handle_vote_request(&mut self, from: NodeId, term: Term, req: VoteRequest) {
        let up_to_date = (req.last_term, req.last_end) >= self.vote_position();
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (req.pre_vote && term > self.term);
        let grant = can_vote && up_to_date;
        if req.pre_vote {
            let reply_term = if grant { term } else { self.term };
            let body = Body::VoteResponse(VoteResponse {
                pre_vote: true,
                granted: grant,
            });
            self.outbox.push(
                0,
                crate::message::Message {
                    from: self.id,
                    to: from,
                    term: reply_term,
                    body,
                },
            );
            return;
        }
        if grant {
            self.vote = Some(from);
            self.persist.mark_hard_state();
            self.reset_election_timer();
        }
        let body = Body::VoteResponse(VoteResponse {
            pre_vote: false,
            granted: grant,
        });
        self.send_durable(from, self.term, body);
    }

    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        resp: VoteResponse,
    ) -> Result<(), RaftError> {
        let expected = if resp.pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        let stale_grant = resp.pre_vote && resp.granted && term != self.term.next();
        if self.role != expected
            || stale_grant
            || !self.membership().is_voter(from)
            || !self.promotable()
        {
            return Ok(());
        }
        self.election.votes.insert(from, resp.granted);
        let yes: Vec<NodeId> = self
            .election
            .votes
            .iter()
            .filter(|(_, g)| **g)
            .map(|(id, _)| *id)
            .collect();
        let no: Vec<NodeId> = self
            .election
            .votes
            .iter()
            .filter(|(_, g)| !**g)
            .map(|(id, _)| *id)
            .collect();
        if self.membership().is_quorum(&yes) {
            return self.won(resp.pre_vote);
        }
        if self.membership().is_quorum(&no) {
            self.become_follower(self.term, None);
        }
        Ok(())
    }

    pub(super) fn become_leader(&mut self) -> Result<(), RaftError> {
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.election.votes.clear();
        self.election.elapsed = 0;
        let end = self.log.end();
        let progress = self
            .peers()
            .into_iter()
            .map(|id| (id, super::Progress::new(end)))
            .collect();
        self.lead = Some(Box::new(LeaderState {
            progress,
            heartbeat_elapsed: 0,
            transfer: None,
            reads: Default::default(),
        }));
        self.append_local(Entry::noop(end, self.term))?;
        self.broadcast_append()
    }

    /// Leader ticks: heartbeats, check-quorum, transfer timeout.
    pub(super) fn tick_leader(&mut self) -> Result<(), RaftError> {
        let Some(lead) = self.lead.as_mut() else {
            return Ok(());
        };
        lead.heartbeat_elapsed += 1;
        let heartbeat = lead.heartbeat_elapsed >= self.cfg.heartbeat_ticks;
        if heartbeat {
            lead.heartbeat_elapsed = 0;
        }
        self.tick_transfer();
        if self.election.elapsed >= self.cfg.election_ticks {
            self.election.elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_active() {
                self.become_follower(self.term, None);
                return Ok(());
            }
        }
        if heartbeat {
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    /// Whether a quorum was heard from since the last check; resets the marks.
    fn quorum_active(&mut self) -> bool {
        let id = self.id;
        let Some(lead) = self.lead.as_mut() else {
            return false;
        };
        let mut active = vec![id];
        for (pid, pr) in &mut lead.progress {
            if pr.recent_active {
                active.push(*pid);
            }
            pr.recent_active = false;
        }
        self.members.current().is_quorum(&active)
    }

    /// A leadership transfer asks us to campaign now.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) -> Result<(), RaftError> {
        if self.leader == Some(from) && self.promotable() {
            self.campaign(false, true)?;
        }
        Ok(())
    }
}

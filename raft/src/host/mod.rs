//! The multi-raft host: many groups on one node, with coalesced heartbeats and quiescence.
//!
//! - One [`Transmit`] per peer node per poll round carries every group's messages; plain
//!   heartbeats and their answers are folded into compact [`Beat`]s.
//! - A group whose leader finds it settled ([`Raft::is_quiescable`]) sends a last beat with
//!   `quiesce` set and stops ticking; its followers stop too. Quiesced groups cost no ticks and
//!   no traffic. They wake on a proposal, on any message, or when the node-level heartbeat of
//!   a peer they depend on stops arriving (then elections proceed as usual).

mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

pub use wire::{Beat, BeatResponse, GroupId, GroupMessage, Transmit};

use crate::engine::{PersistId, PersistRequest, Raft, Role};
use crate::entry::EntryMeta;
use crate::error::{ProposeError, RaftError};
use crate::log::Log;
use crate::message::{Body, Heartbeat, HeartbeatResponse, Message};
use crate::types::NodeId;

/// Host timing, in ticks.
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// This node.
    pub node: NodeId,
    /// Node heartbeat interval.
    pub heartbeat_ticks: u64,
    /// A peer not heard from for this long is presumed down.
    pub peer_timeout_ticks: u64,
}

/// A group failed fatally.
#[derive(Debug, thiserror::Error)]
#[error("group {group:?} failed: {error}")]
pub struct GroupError {
    /// The group.
    pub group: GroupId,
    /// Why.
    #[source]
    pub error: RaftError,
}

#[derive(Debug)]
struct PeerState {
    last_heard: u64,
    down: bool,
}

/// Many Raft groups on one node. Drive it like a single core: `handle_*` in, `poll_*` out.
#[derive(Debug)]
pub struct Host<L: Log> {
    cfg: HostConfig,
    now: u64,
    groups: BTreeMap<GroupId, Raft<L>>,
    active: BTreeSet<GroupId>,
    peers: BTreeMap<NodeId, PeerState>,
    outgoing: BTreeMap<NodeId, Transmit>,
    persists: VecDeque<(GroupId, PersistRequest)>,
    ready: BTreeSet<GroupId>,
}

impl<L: Log> Host<L> {
    /// An empty host.
    pub fn new(cfg: HostConfig) -> Self {
        Host {
            cfg,
            now: 0,
            groups: BTreeMap::new(),
            active: BTreeSet::new(),
            peers: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            persists: VecDeque::new(),
            ready: BTreeSet::new(),
        }
    }

    /// Adds a group (active until it quiesces).
    pub fn add_group(&mut self, group: GroupId, raft: Raft<L>) {
        for id in raft.membership().members() {
            if id != self.cfg.node {
                self.peers.entry(id).or_insert(PeerState {
                    last_heard: self.now,
                    down: false,
                });
            }
        }
        self.groups.insert(group, raft);
        self.active.insert(group);
    }

    /// Removes a group, returning its core.
    pub fn remove_group(&mut self, group: GroupId) -> Option<Raft<L>> {
        self.active.remove(&group);
        self.groups.remove(&group)
    }

    /// A group's core.
    pub fn group(&self, group: GroupId) -> Option<&Raft<L>> {
        self.groups.get(&group)
    }

    /// A group's core, for reads, compaction or other inputs. Wakes the group; call
    /// [`Host::flush_group`] after feeding it inputs.
    pub fn group_mut(&mut self, group: GroupId) -> Option<&mut Raft<L>> {
        self.wake(group);
        self.groups.get_mut(&group)
    }

    /// A group's core for draining outputs and bookkeeping (`poll_committed`,
    /// `handle_applied`, `poll_read`, fsync through `log_mut`) without waking it. Anything that
    /// makes the group act (proposals, transfers, membership, reads) must use
    /// [`Host::group_mut`] or [`Host::propose`].
    pub fn group_mut_quiet(&mut self, group: GroupId) -> Option<&mut Raft<L>> {
        self.groups.get_mut(&group)
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether the host has no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Groups still ticking.
    pub fn active_groups(&self) -> usize {
        self.active.len()
    }

    /// Proposes to a group's leader.
    pub fn propose(
        &mut self,
        group: GroupId,
        payload: Bytes,
        records: u64,
    ) -> Result<EntryMeta, ProposeError> {
        self.wake(group);
        let Some(raft) = self.groups.get_mut(&group) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let meta = raft.propose(payload, records)?;
        self.flush_group(group);
        Ok(meta)
    }

    /// One tick: ticks active groups, quiesces settled ones, sends node heartbeats, wakes
    /// groups depending on peers gone quiet.
    pub fn handle_tick(&mut self) -> Result<(), GroupError> {
        self.now += 1;
        let active: Vec<GroupId> = self.active.iter().copied().collect();
        for group in active {
            if let Some(raft) = self.groups.get_mut(&group) {
                raft.handle_tick()
                    .map_err(|error| GroupError { group, error })?;
            }
            self.flush_group(group);
            self.maybe_quiesce(group);
        }
        self.check_peers();
        if self.now.is_multiple_of(self.cfg.heartbeat_ticks.max(1)) {
            let peers: Vec<NodeId> = self.peers.keys().copied().collect();
            for p in peers {
                self.transmit_to(p);
            }
        }
        Ok(())
    }

    /// What a peer sent.
    pub fn handle_transmit(&mut self, t: Transmit) -> Result<(), GroupError> {
        let from = t.from;
        let peer = self.peers.entry(from).or_insert(PeerState {
            last_heard: 0,
            down: false,
        });
        peer.last_heard = self.now;
        peer.down = false;
        for gm in t.messages {
            self.wake(gm.group);
            self.deliver(gm.group, gm.message)?;
        }
        for b in t.beats {
            let body = Body::Heartbeat(Heartbeat {
                commit_end: b.commit_end,
                read_ctx: b.read_ctx,
            });
            let msg = Message {
                from,
                to: self.cfg.node,
                term: b.term,
                body,
            };
            self.deliver(b.group, msg)?;
            self.follow_quiesce(b.group, from, b.quiesce);
        }
        for r in t.beat_responses {
            let body = Body::HeartbeatResponse(HeartbeatResponse {
                read_ctx: r.read_ctx,
                repair_from: r.repair_from,
            });
            self.deliver(
                r.group,
                Message {
                    from,
                    to: self.cfg.node,
                    term: r.term,
                    body,
                },
            )?;
        }
        Ok(())
    }

    fn deliver(&mut self, group: GroupId, msg: Message) -> Result<(), GroupError> {
        let Some(raft) = self.groups.get_mut(&group) else {
            return Ok(());
        };
        raft.handle_message(msg)
            .map_err(|error| GroupError { group, error })?;
        self.flush_group(group);
        Ok(())
    }

    /// The next durability request of some group.
    pub fn poll_persist(&mut self) -> Option<(GroupId, PersistRequest)> {
        self.persists.pop_front()
    }

    /// A group's durability request is done.
    pub fn handle_persisted(&mut self, group: GroupId, id: PersistId) -> Result<(), GroupError> {
        if let Some(raft) = self.groups.get_mut(&group) {
            raft.handle_persisted(id)
                .map_err(|error| GroupError { group, error })?;
        }
        self.flush_group(group);
        Ok(())
    }

    /// A group with committed entries, reads or a snapshot to take (use [`Host::group_mut`]
    /// and the core's `poll_*`).
    pub fn poll_ready(&mut self) -> Option<GroupId> {
        self.ready.pop_first()
    }

    /// The next transmit to a peer.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outgoing.pop_first().map(|(_, t)| t)
    }

    /// Moves a group's outputs to the host queues (after any input to it).
    pub fn flush_group(&mut self, group: GroupId) {
        let Some(raft) = self.groups.get_mut(&group) else {
            return;
        };
        while let Some(p) = raft.poll_persist() {
            self.persists.push_back((group, p));
        }
        while let Some(m) = raft.poll_message() {
            let now = self.now;
            self.peers.entry(m.to).or_insert(PeerState {
                last_heard: now,
                down: false,
            });
            let node = self.cfg.node;
            let t = self.outgoing.entry(m.to).or_insert_with(|| Transmit {
                from: node,
                to: m.to,
                ..Transmit::default()
            });
            push_message(t, group, m);
        }
        if raft.commit_end() > raft.applied_end() {
            self.ready.insert(group);
        }
    }

    fn transmit_to(&mut self, peer: NodeId) {
        let node = self.cfg.node;
        self.outgoing.entry(peer).or_insert_with(|| Transmit {
            from: node,
            to: peer,
            ..Transmit::default()
        });
    }

    fn wake(&mut self, group: GroupId) {
        if self.groups.contains_key(&group)
            && self.active.insert(group)
            && let Some(raft) = self.groups.get_mut(&group)
        {
            raft.unquiesce();
        }
    }

    /// A settled leader tells its followers to quiesce and stops ticking.
    fn maybe_quiesce(&mut self, group: GroupId) {
        let Some(raft) = self.groups.get(&group) else {
            return;
        };
        if raft.role() != Role::Leader || !raft.is_quiescable() {
            return;
        }
        let (term, commit_end) = (raft.term(), raft.commit_end());
        let peers: Vec<NodeId> = raft
            .membership()
            .members()
            .filter(|&p| p != self.cfg.node)
            .collect();
        let node = self.cfg.node;
        for p in peers {
            let t = self.outgoing.entry(p).or_insert_with(|| Transmit {
                from: node,
                to: p,
                ..Transmit::default()
            });
            t.beats.push(Beat {
                group,
                term,
                commit_end,
                read_ctx: 0,
                quiesce: true,
            });
        }
        self.active.remove(&group);
    }

    fn follow_quiesce(&mut self, group: GroupId, from: NodeId, quiesce: bool) {
        let Some(raft) = self.groups.get(&group) else {
            return;
        };
        if quiesce && raft.leader() == Some(from) && raft.is_quiescable() {
            self.active.remove(&group);
        }
    }

    /// Wakes quiesced groups that involve a peer that went quiet.
    fn check_peers(&mut self) {
        let now = self.now;
        let timeout = self.cfg.peer_timeout_ticks;
        let mut newly_down = Vec::new();
        for (id, p) in &mut self.peers {
            if !p.down && now.saturating_sub(p.last_heard) > timeout {
                p.down = true;
                newly_down.push(*id);
            }
        }
        if newly_down.is_empty() {
            return;
        }
        let me = self.cfg.node;
        let wake: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(g, _)| !self.active.contains(g))
            .filter(|(_, r)| {
                newly_down.iter().any(|d| {
                    r.leader() == Some(*d)
                        || (r.leader() == Some(me) && r.membership().contains(*d))
                })
            })
            .map(|(g, _)| *g)
            .collect();
        for g in wake {
            self.wake(g);
        }
    }
}

/// Folds heartbeats and their answers into beats; everything else goes as a group message.
fn push_message(t: &mut Transmit, group: GroupId, m: Message) {
    match m.body {
        Body::Heartbeat(h) => t.beats.push(Beat {
            group,
            term: m.term,
            commit_end: h.commit_end,
            read_ctx: h.read_ctx,
            quiesce: false,
        }),
        Body::HeartbeatResponse(r) => t.beat_responses.push(BeatResponse {
            group,
            term: m.term,
            read_ctx: r.read_ctx,
            repair_from: r.repair_from,
        }),
        _ => t.messages.push(GroupMessage { group, message: m }),
    }
}

//! A deterministic, single-threaded simulator of one Raft group under faults.
//!
//! Each seed draws a fault mix ([`Swarm`]): message drop, duplication, delay and reordering,
//! symmetric and one-way partitions, crashes that lose unsynced writes, restarts, tick skew,
//! membership changes, leadership transfers, ReadIndex reads, compaction (and so snapshot
//! catch-up) and reported corruption. After every tick it checks election safety, log matching,
//! leader completeness, state-machine safety and read linearizability. Then a liveness phase
//! heals everything and requires a leader to commit new proposals on every voter within a
//! bound. Same seed, same run: [`SimReport::trace_hash`] proves it.

mod check;
mod network;
mod node;
mod swarm;
mod trace;
mod workload;

use std::collections::BTreeMap;
use std::fmt;

pub use check::Violation;
pub use swarm::Swarm;

use crate::engine::Role;
use crate::error::RaftError;
use crate::log::Log;
use crate::membership::Membership;
use crate::message::{Body, Message};
use crate::rng::SplitMix64;
use crate::types::{NodeId, Offset};
use check::Model;
use network::Network;
use node::SimNode;
use trace::{Event, Trace};

/// Highest node id a membership change may add.
const MAX_NODE_ID: u64 = 9;

/// Lengths of the two phases.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// Ticks under faults.
    pub safety_ticks: u64,
    /// Ticks allowed after healing for a leader to commit on every voter.
    pub liveness_ticks: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            safety_ticks: 600,
            liveness_ticks: 400,
        }
    }
}

/// What a passing seed did.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Hash of every traced event: equal for equal seeds.
    pub trace_hash: u64,
    /// Offsets committed (canonical sequence end).
    pub committed_end: Offset,
    /// Distinct leader terms seen.
    pub leaders: usize,
    /// Messages delivered.
    pub delivered: u64,
}

/// A failing seed: the invariant and the last events before it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// The tick it failed at.
    pub tick: u64,
    /// What broke.
    pub violation: Violation,
    /// The last events.
    pub trace: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} failed at tick {}: {}",
            self.seed, self.tick, self.violation
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs one seed with default phase lengths.
pub fn run_seed(seed: u64) -> Result<SimReport, SimFailure> {
    run_with(seed, SimOptions::default())
}

/// Runs one seed.
pub fn run_with(seed: u64, opts: SimOptions) -> Result<SimReport, SimFailure> {
    let mut sim = match Sim::new(seed) {
        Ok(sim) => sim,
        Err(violation) => {
            return Err(SimFailure {
                seed,
                tick: 0,
                violation,
                trace: Vec::new(),
            });
        }
    };
    match sim.run(opts) {
        Ok(()) => Ok(SimReport {
            seed,
            trace_hash: sim.trace.hash(),
            committed_end: sim.model.canonical_end,
            leaders: sim.leader_terms,
            delivered: sim.delivered,
        }),
        Err(violation) => {
            let mut trace = sim.trace.lines();
            trace.extend(sim.state_lines());
            Err(SimFailure {
                seed,
                tick: sim.now,
                violation,
                trace,
            })
        }
    }
}

struct Sim {
    rng: SplitMix64,
    swarm: Swarm,
    now: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    net: Network,
    model: Model,
    trace: Trace,
    next_id: u64,
    payload_seq: u64,
    reads: BTreeMap<u64, Offset>,
    leader_terms: usize,
    delivered: u64,
    liveness: bool,
    /// Nodes to crash after this tick's deliveries, before their fsyncs complete.
    crash_soon: Vec<NodeId>,
}

fn fatal(node: NodeId) -> impl Fn(RaftError) -> Violation {
    move |e| Violation::Fatal {
        node,
        error: e.to_string(),
    }
}

impl Sim {
    fn new(seed: u64) -> Result<Sim, Violation> {
        let mut rng = SplitMix64::new(seed);
        let swarm = Swarm::random(&mut rng, MAX_NODE_ID + 1);
        let voters: Vec<NodeId> = (1..=swarm.voters).map(NodeId).collect();
        let bootstrap = Membership::new(voters.iter().copied(), []);
        let mut nodes = BTreeMap::new();
        for &id in &voters {
            nodes.insert(
                id,
                SimNode::new(id, bootstrap.clone(), seed).map_err(fatal(id))?,
            );
        }
        let net = Network::new(swarm.drop, swarm.duplicate, swarm.delay_max);
        Ok(Sim {
            rng,
            next_id: swarm.voters + 1,
            swarm,
            now: 0,
            nodes,
            net,
            model: Model::default(),
            trace: Trace::default(),
            payload_seq: 0,
            reads: BTreeMap::new(),
            leader_terms: 0,
            delivered: 0,
            liveness: false,
            crash_soon: Vec::new(),
        })
    }

    fn run(&mut self, opts: SimOptions) -> Result<(), Violation> {
        for _ in 0..opts.safety_ticks {
            self.step()?;
        }
        self.heal();
        let start = self.now;
        let mut marker: Option<(NodeId, Offset)> = None;
        while self.now - start < opts.liveness_ticks {
            self.step()?;
            if self.liveness_progress(&mut marker)? == Some(true) {
                return self.final_checks();
            }
        }
        Err(Violation::NoProgress {
            ticks: opts.liveness_ticks,
        })
    }

    fn state_lines(&self) -> Vec<String> {
        let mut out = vec![format!("swarm: {:?}", self.swarm)];
        for n in self.nodes.values() {
            let line = match n.raft.as_ref() {
                None => format!("{}: down", n.id),
                Some(r) => format!(
                    "{}: {:?} {} leader {:?} commit {} applied {} log {}..{} durable {} corrupt {} {:?}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.leader(),
                    r.commit_end(),
                    n.applied_end,
                    r.log().start(),
                    r.log().end(),
                    r.durable_end(),
                    r.is_corrupt(),
                    r.membership(),
                ),
            };
            out.push(line);
        }
        out
    }

    fn heal(&mut self) {
        self.liveness = true;
        self.net.heal();
        self.net.drop = 0.0;
        self.net.duplicate = 0.0;
        for node in self.nodes.values_mut() {
            if !node.is_up() {
                node.restart_at = Some(self.now);
            }
        }
    }

    /// Proposes a marker on the current leader; `Some(true)` once every voter applied it.
    fn liveness_progress(
        &mut self,
        marker: &mut Option<(NodeId, Offset)>,
    ) -> Result<Option<bool>, Violation> {
        let Some(leader) = self.leader() else {
            return Ok(None);
        };
        let needs_new = marker.is_none_or(|(n, _)| n != leader) || self.now.is_multiple_of(25);
        if needs_new && let Some(end) = self.propose_on(leader)? {
            *marker = Some((leader, end));
        }
        let Some((_, end)) = *marker else {
            return Ok(None);
        };
        let Some(raft) = self.nodes.get(&leader).and_then(|n| n.raft.as_ref()) else {
            return Ok(None);
        };
        let voters = raft.membership().voters().clone();
        let all = voters
            .iter()
            .all(|v| self.nodes.get(v).is_some_and(|n| n.applied_end >= end));
        Ok(Some(all))
    }

    fn final_checks(&mut self) -> Result<(), Violation> {
        let nodes: Vec<&SimNode> = self.nodes.values().collect();
        check::check_logs_full(&nodes)
    }

    /// The up node that is leader in the highest term.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| {
                n.raft
                    .as_ref()
                    .filter(|r| r.role() == Role::Leader)
                    .map(|r| (r.term(), n.id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn step(&mut self) -> Result<(), Violation> {
        self.now += 1;
        if !self.liveness {
            self.inject_faults()?;
            self.workload()?;
        }
        self.restart_due()?;
        self.tick_nodes()?;
        self.deliver()?;
        self.crash_targeted();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.complete_persists(self.now).map_err(fatal(id))?;
            }
            self.drain(id)?;
        }
        self.check()
    }

    fn crash_targeted(&mut self) {
        for id in std::mem::take(&mut self.crash_soon) {
            let restart = self.now + self.rng.range(1, 3);
            if let Some(n) = self.nodes.get_mut(&id).filter(|n| n.is_up()) {
                n.crash(restart);
                self.trace.record(self.now, Event::Crash { node: id });
            }
        }
    }

    fn tick_nodes(&mut self) -> Result<(), Violation> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let rate = self.swarm.tick_rate[id.0 as usize];
            if !self.rng.chance(rate) {
                continue;
            }
            if let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
                raft.handle_tick().map_err(fatal(id))?;
            }
            self.drain(id)?;
        }
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), Violation> {
        while let Some(msg) = self.net.next_due(self.now) {
            let to = msg.to;
            self.trace.record(
                self.now,
                Event::Deliver {
                    from: msg.from,
                    to,
                    term: msg.term,
                    kind: kind(&msg),
                },
            );
            self.delivered += 1;
            if let Some(raft) = self.nodes.get_mut(&to).and_then(|n| n.raft.as_mut()) {
                raft.handle_message(msg).map_err(fatal(to))?;
                self.drain(to)?;
            }
        }
        Ok(())
    }

    /// Carries out everything node `id` asks for.
    fn drain(&mut self, id: NodeId) -> Result<(), Violation> {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            let Some(raft) = node.raft.as_mut() else {
                return Ok(());
            };
            let mut moved = false;
            let mut immediate = Vec::new();
            let reqs: Vec<_> = std::iter::from_fn(|| raft.poll_persist()).collect();
            for req in reqs {
                moved = true;
                let delay = self.rng.range(0, self.swarm.persist_delay_max);
                if delay == 0 && !node.has_pending() && immediate.is_empty() {
                    immediate.push(req);
                } else {
                    // Crash at the worst moment: term or vote written, not yet durable.
                    let targeted = !self.liveness && req.hard_state.is_some();
                    if targeted && self.rng.chance(self.swarm.crash * 20.0) {
                        self.crash_soon.push(id);
                    }
                    node.queue_persist(self.now + delay, req);
                }
            }
            for req in immediate {
                node.persist_now(&req).map_err(fatal(id))?;
            }
            let Some(raft) = node.raft.as_mut() else {
                return Ok(());
            };
            while let Some(m) = raft.poll_message() {
                moved = true;
                self.net.send(self.now, m, &mut self.rng);
            }
            if let Some(snap) = raft.poll_snapshot().map_err(fatal(id))? {
                if snap.meta.end > self.model.canonical_end {
                    return Err(Violation::StateMachine {
                        node: id,
                        at: snap.meta.end,
                    });
                }
                node.applied_end = snap.meta.end;
                raft.handle_applied(snap.meta.end);
                moved = true;
            }
            let committed = raft.poll_committed(4096).map_err(fatal(id))?;
            for e in &committed {
                self.model.applied(id, &mut node.applied_end, e)?;
            }
            if let Some(last) = committed.last() {
                raft.handle_applied(last.end());
                moved = true;
            }
            while let Some(ctx) = raft.poll_failed_read() {
                self.reads.remove(&ctx);
            }
            while let Some(read) = raft.poll_read() {
                let needed = self.reads.remove(&read.ctx).unwrap_or(Offset(0));
                if read.index < needed {
                    return Err(Violation::StaleRead {
                        node: id,
                        index: read.index,
                        needed,
                    });
                }
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn check(&mut self) -> Result<(), Violation> {
        let nodes: Vec<&SimNode> = self.nodes.values().collect();
        let new = self.model.check_leaders(&nodes)?;
        check::check_log_tails(&nodes)?;
        if self.now.is_multiple_of(100) {
            check::check_logs_full(&nodes)?;
        }
        for (node, term) in new {
            self.leader_terms += 1;
            self.trace.record(self.now, Event::Leader { node, term });
        }
        Ok(())
    }

    fn restart_due(&mut self) -> Result<(), Violation> {
        let now = self.now;
        let due: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.restart_at.is_some_and(|t| t <= now))
            .map(|n| n.id)
            .collect();
        for id in due {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.start().map_err(fatal(id))?;
                self.trace.record(now, Event::Restart { node: id });
            }
            self.drain(id)?;
        }
        Ok(())
    }
}

fn kind(msg: &Message) -> &'static str {
    match &msg.body {
        Body::VoteRequest(r) if r.pre_vote => "PreVote",
        Body::VoteRequest(_) => "Vote",
        Body::VoteResponse(r) if r.pre_vote => "PreVoteResp",
        Body::VoteResponse(_) => "VoteResp",
        Body::Append(a) if a.entries.is_empty() => "Append(empty)",
        Body::Append(_) => "Append",
        Body::AppendResponse(_) => "AppendResp",
        Body::Heartbeat(_) => "Heartbeat",
        Body::HeartbeatResponse(_) => "HeartbeatResp",
        Body::TimeoutNow => "TimeoutNow",
        Body::InstallSnapshot(_) => "InstallSnapshot",
    }
}

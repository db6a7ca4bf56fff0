//! One simulated replica: the core, its storage model, and its pending fsyncs.

use std::collections::VecDeque;

use crate::config::Config;
use crate::engine::{HardState, PersistRequest, Raft};
use crate::error::RaftError;
use crate::log::{Log, MemLog};
use crate::membership::Membership;
use crate::types::{NodeId, Offset};

/// A replica that can crash (losing whatever was not synced) and restart.
#[derive(Debug)]
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Option<Raft<MemLog>>,
    stored_log: Option<MemLog>,
    durable_hs: HardState,
    bootstrap: Membership,
    pending: VecDeque<(u64, PersistRequest)>,
    pub(crate) applied_end: Offset,
    pub(crate) restart_at: Option<u64>,
    restarts: u64,
    seed: u64,
}

impl SimNode {
    pub(crate) fn new(id: NodeId, bootstrap: Membership, seed: u64) -> Result<Self, RaftError> {
        let mut node = SimNode {
            id,
            raft: None,
            stored_log: Some(MemLog::new()),
            durable_hs: HardState::default(),
            bootstrap,
            pending: VecDeque::new(),
            applied_end: Offset(0),
            restart_at: None,
            restarts: 0,
            seed,
        };
        node.start()?;
        Ok(node)
    }

    pub(crate) fn config(id: NodeId, seed: u64) -> Config {
        let mut cfg = Config::new(id);
        cfg.seed = seed;
        cfg.max_inflight_msgs = 8;
        cfg.max_inflight_bytes = 4096;
        cfg.max_append_bytes = 512;
        cfg
    }

    pub(crate) fn start(&mut self) -> Result<(), RaftError> {
        let log = self.stored_log.take().unwrap_or_default();
        self.restarts += 1;
        let seed = self.seed ^ (self.id.0 << 48) ^ self.restarts.wrapping_mul(0x9E37_79B9);
        let cfg = SimNode::config(self.id, seed);
        let raft = Raft::new(cfg, log, self.durable_hs, self.bootstrap.clone())?;
        self.applied_end = raft.log().start();
        self.raft = Some(raft);
        self.restart_at = None;
        Ok(())
    }

    pub(crate) fn crash(&mut self, restart_at: u64) {
        if let Some(raft) = self.raft.take() {
            let mut log = raft.into_log();
            log.crash();
            self.stored_log = Some(log);
        }
        self.pending.clear();
        self.restart_at = Some(restart_at);
    }

    pub(crate) fn is_up(&self) -> bool {
        self.raft.is_some()
    }

    pub(crate) fn queue_persist(&mut self, due: u64, req: PersistRequest) {
        self.pending.push_back((due, req));
    }

    /// Completes every fsync due by `now`.
    pub(crate) fn complete_persists(&mut self, now: u64) -> Result<(), RaftError> {
        while let Some((due, _)) = self.pending.front() {
            if *due > now {
                break;
            }
            let Some((_, req)) = self.pending.pop_front() else {
                break;
            };
            self.persist_now(&req)?;
        }
        Ok(())
    }

    pub(crate) fn persist_now(&mut self, req: &PersistRequest) -> Result<(), RaftError> {
        let Some(raft) = self.raft.as_mut() else {
            return Ok(());
        };
        raft.log_mut().sync();
        if let Some(hs) = req.hard_state {
            self.durable_hs = hs;
        }
        raft.handle_persisted(req.id)
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

//! A distributed lock on a 3-node in-process Raft cluster (the seed talks' demo).
//!
//! Lock by s1 succeeds; lock and unlock by s2 fail while s1 holds it; unlock by s1 succeeds;
//! then lock by s2 succeeds. Prints each step; exits 0 when all of that held.

use std::collections::VecDeque;
use std::process::ExitCode;

use bytes::Bytes;
use floe_raft::{
    Applier, Config, HardState, MemLog, Membership, Message, NodeId, Offset, Raft, RaftError, Role,
    StateMachine,
};

/// The lock: who holds it, if anyone.
#[derive(Debug, Default)]
struct Lock {
    holder: Option<String>,
}

impl StateMachine for Lock {
    type Output = Result<(), String>;

    fn apply(&mut self, _first: Offset, command: &Bytes) -> Self::Output {
        let text = String::from_utf8_lossy(command);
        let (verb, client) = text.split_once(' ').unwrap_or((&text, ""));
        match (verb, &self.holder) {
            ("lock", None) => {
                self.holder = Some(client.to_string());
                Ok(())
            }
            ("lock", Some(h)) => Err(format!("held by {h}")),
            ("unlock", Some(h)) if h == client => {
                self.holder = None;
                Ok(())
            }
            ("unlock", Some(h)) => Err(format!("held by {h}")),
            ("unlock", None) => Err("not locked".to_string()),
            _ => Err(format!("unknown command {verb:?}")),
        }
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.holder.clone().unwrap_or_default())
    }

    fn restore(&mut self, snapshot: &Bytes) {
        let s = String::from_utf8_lossy(snapshot).to_string();
        self.holder = (!s.is_empty()).then_some(s);
    }
}

struct Server {
    raft: Raft<MemLog>,
    lock: Applier<Lock>,
    results: Vec<(Offset, Result<(), String>)>,
}

struct Cluster {
    servers: Vec<Server>,
}

impl Cluster {
    fn new() -> Result<Cluster, RaftError> {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let members = Membership::new(ids, []);
        let mut servers = Vec::new();
        for id in ids {
            let raft = Raft::new(
                Config::new(id),
                MemLog::new(),
                HardState::default(),
                members.clone(),
            )?;
            servers.push(Server {
                raft,
                lock: Applier::new(Lock::default()),
                results: Vec::new(),
            });
        }
        Ok(Cluster { servers })
    }

    /// Delivers everything (instant network, instant fsync) until nothing moves.
    fn pump(&mut self) -> Result<(), RaftError> {
        let mut wire: VecDeque<Message> = VecDeque::new();
        loop {
            for s in &mut self.servers {
                while let Some(req) = s.raft.poll_persist() {
                    s.raft.log_mut().sync();
                    s.raft.handle_persisted(req.id)?;
                }
                wire.extend(std::iter::from_fn(|| s.raft.poll_message()));
                let out = s.lock.apply_committed(&mut s.raft)?;
                s.results.extend(out);
            }
            let Some(msg) = wire.pop_front() else {
                return Ok(());
            };
            let to = msg.to.0 as usize - 1;
            self.servers[to].raft.handle_message(msg)?;
        }
    }

    fn leader(&mut self) -> Result<usize, RaftError> {
        for _ in 0..1000 {
            if let Some(i) = self
                .servers
                .iter()
                .position(|s| s.raft.role() == Role::Leader)
            {
                return Ok(i);
            }
            for s in &mut self.servers {
                s.raft.handle_tick()?;
            }
            self.pump()?;
        }
        Err(RaftError::Log(floe_raft::LogError::Unavailable {
            offset: Offset(0),
        }))
    }

    /// Runs `command` through Raft and returns the leader's result for it.
    fn submit(&mut self, command: &str) -> Result<Result<(), String>, Box<dyn std::error::Error>> {
        let leader = self.leader()?;
        let meta = self.servers[leader]
            .raft
            .propose(Bytes::from(command.to_string()), 1)?;
        self.pump()?;
        let server = &self.servers[leader];
        let result = server.results.iter().find(|(at, _)| *at == meta.first);
        Ok(result.map(|(_, r)| r.clone()).ok_or("not applied")?)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lock example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let mut cluster = Cluster::new()?;
    let leader = cluster.leader()?;
    println!("3-node cluster up; leader is n{}", leader + 1);
    let steps = [
        ("lock s1", true),
        ("lock s2", false),
        ("unlock s2", false),
        ("unlock s1", true),
        ("lock s2", true),
    ];
    let mut all_ok = true;
    for (command, should_succeed) in steps {
        let result = cluster.submit(command)?;
        let shown = match &result {
            Ok(()) => "ok".to_string(),
            Err(why) => format!("refused ({why})"),
        };
        let as_expected = result.is_ok() == should_succeed;
        all_ok &= as_expected;
        println!(
            "{command:<10} -> {shown}{}",
            if as_expected { "" } else { "  UNEXPECTED" }
        );
    }
    let holders: Vec<Option<String>> = cluster
        .servers
        .iter()
        .map(|s| s.lock.machine().holder.clone())
        .collect();
    println!("holder on every replica: {holders:?}");
    all_ok &= holders.iter().all(|h| h.as_deref() == Some("s2"));
    Ok(all_ok)
}

//! Scripted scenarios (datadriven, etcd-raft style) in `tests/testdata/*.txt`.
//! `REWRITE=1 cargo test -p floe-raft --test scenarios` regenerates the expected output.
//!
//! Directives:
//! - `cluster voters=(1,2,3) [prevote]`: fresh replicas, one entry per append; pre-vote and
//!   check-quorum only with `prevote`
//! - `tick node=N [count=K]`: K ticks on N
//! - `log node=N term=T` with input `1 1 4x2 ...`: replace N's log (entry terms; `x` = records)
//! - `campaign node=N`: tick N until it campaigns
//! - `campaign-now node=N`: `Raft::campaign_now` on N (no ticks)
//! - `deliver [count=K]`: deliver the first K queued messages (default: until quiet)
//! - `propose node=N [records=R]`, `isolate node=N`, `heal`, `crash node=N`, `restart node=N`
//! - `transfer node=N to=M`, `change node=N (add-learner|promote|remove)=M`, `add-node node=N`
//! - `status`: role, term, commit, membership and log of every replica

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write;

use bytes::Bytes;
use datadriven::TestCase;
use floe_raft::message::Body;
use floe_raft::{
    ConfChange, Config, Entry, EntryKind, HardState, Log, MemLog, Membership, Message, NodeId,
    Offset, Raft, Role, Term,
};

struct Node {
    raft: Option<Raft<MemLog>>,
    stored: Option<MemLog>,
    hs: HardState,
}

#[derive(Default)]
struct Harness {
    members: Membership,
    pre_vote: bool,
    nodes: BTreeMap<NodeId, Node>,
    wire: VecDeque<Message>,
    isolated: BTreeSet<NodeId>,
}

fn config(id: NodeId, pre_vote: bool) -> Config {
    let mut cfg = Config::new(id);
    cfg.pre_vote = pre_vote;
    cfg.check_quorum = pre_vote;
    cfg.max_append_bytes = 1;
    cfg
}

fn arg<T: std::str::FromStr>(tc: &TestCase, key: &str) -> Option<T> {
    tc.args
        .get(key)
        .and_then(|v| v.first())
        .and_then(|s| s.parse().ok())
}

fn node_arg(tc: &TestCase) -> NodeId {
    NodeId(arg(tc, "node").expect("node=N"))
}

impl Harness {
    fn start(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        let log = node.stored.take().unwrap_or_default();
        let cfg = config(id, self.pre_vote);
        let raft = Raft::new(cfg, log, node.hs, self.members.clone()).expect("start");
        node.raft = Some(raft);
    }

    fn raft(&mut self, id: NodeId) -> &mut Raft<MemLog> {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.raft.as_mut())
            .expect("node is up")
    }

    /// Persists everything at once and queues what every node sends.
    fn collect(&mut self) {
        for node in self.nodes.values_mut() {
            let Some(raft) = node.raft.as_mut() else {
                continue;
            };
            while let Some(req) = raft.poll_persist() {
                raft.log_mut().sync();
                if let Some(hs) = req.hard_state {
                    node.hs = hs;
                }
                raft.handle_persisted(req.id).expect("persisted");
            }
            while let Some(m) = raft.poll_message() {
                self.wire.push_back(m);
            }
            while !raft.poll_committed(1 << 20).expect("committed").is_empty() {}
            raft.handle_applied(raft.commit_end());
        }
    }

    fn deliver(&mut self, count: Option<usize>, out: &mut String) {
        self.collect();
        let mut n = 0;
        while count.is_none_or(|c| n < c) {
            let Some(m) = self.wire.pop_front() else {
                break;
            };
            n += 1;
            let cut = self.isolated.contains(&m.from) || self.isolated.contains(&m.to);
            let up = self.nodes.get(&m.to).is_some_and(|n| n.raft.is_some());
            let fate = if cut || !up { " (dropped)" } else { "" };
            let _ = writeln!(out, "{}{fate}", show_message(&m));
            if fate.is_empty() {
                let to = m.to;
                self.raft(to).handle_message(m).expect("handle");
            }
            self.collect();
        }
    }

    fn status(&self) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let Some(r) = node.raft.as_ref() else {
                let _ = writeln!(out, "{id}: down");
                continue;
            };
            let _ = writeln!(
                out,
                "{id}: {:?} {} commit={} voters={:?} learners={:?} log={}",
                r.role(),
                r.term(),
                r.commit_end(),
                r.membership()
                    .voters()
                    .iter()
                    .map(|n| n.0)
                    .collect::<Vec<_>>(),
                r.membership()
                    .learners()
                    .iter()
                    .map(|n| n.0)
                    .collect::<Vec<_>>(),
                show_log(r.log().all_entries())
            );
        }
        out
    }

    fn run(&mut self, tc: &TestCase) -> String {
        let mut out = String::new();
        match tc.directive.as_str() {
            "cluster" => self.cluster(tc),
            "log" => self.set_log(tc),
            "campaign" => {
                let id = node_arg(tc);
                let before = self.raft(id).term();
                for _ in 0..1000 {
                    let r = self.raft(id);
                    let started = r.role() != Role::Follower && r.term() > before;
                    if r.role() == Role::PreCandidate || started {
                        break;
                    }
                    r.handle_tick().expect("tick");
                }
                self.collect();
            }
            "campaign-now" => {
                let id = node_arg(tc);
                self.raft(id).campaign_now().expect("campaign now");
                self.collect();
            }
            "deliver" => self.deliver(arg(tc, "count"), &mut out),
            "tick" => {
                let id = node_arg(tc);
                for _ in 0..arg(tc, "count").unwrap_or(1) {
                    if self.nodes[&id].raft.is_some() {
                        self.raft(id).handle_tick().expect("tick");
                    }
                }
                self.collect();
            }
            "propose" => {
                let id = node_arg(tc);
                let records = arg(tc, "records").unwrap_or(1);
                match self.raft(id).propose(Bytes::from_static(b"x"), records) {
                    Ok(meta) => {
                        let _ = writeln!(out, "ok: [{}..{}) {}", meta.first, meta.end, meta.term);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "error: {e}");
                    }
                }
                self.collect();
            }
            "transfer" => {
                let to = NodeId(arg(tc, "to").expect("to=N"));
                let r = self.raft(node_arg(tc)).transfer_leadership(to);
                let _ = writeln!(out, "{r:?}");
                self.collect();
            }
            "change" => {
                let id = node_arg(tc);
                let change = if let Some(n) = arg(tc, "add-learner") {
                    ConfChange::AddLearner(NodeId(n))
                } else if let Some(n) = arg(tc, "promote") {
                    ConfChange::Promote(NodeId(n))
                } else {
                    ConfChange::Remove(NodeId(arg(tc, "remove").expect("remove=N")))
                };
                match self.raft(id).change_membership(change) {
                    Ok(meta) => {
                        let _ = writeln!(out, "ok: config at {}", meta.first);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "error: {e}");
                    }
                }
                self.collect();
            }
            "add-node" => {
                let id = node_arg(tc);
                let hs = HardState::default();
                self.nodes.insert(
                    id,
                    Node {
                        raft: None,
                        stored: None,
                        hs,
                    },
                );
                let raft = Raft::new(
                    config(id, self.pre_vote),
                    MemLog::new(),
                    hs,
                    Membership::default(),
                )
                .expect("start");
                self.nodes.get_mut(&id).expect("node").raft = Some(raft);
            }
            "isolate" => {
                self.isolated.insert(node_arg(tc));
            }
            "heal" => self.isolated.clear(),
            "crash" => {
                let id = node_arg(tc);
                let node = self.nodes.get_mut(&id).expect("node");
                if let Some(raft) = node.raft.take() {
                    let mut log = raft.into_log();
                    log.crash();
                    node.stored = Some(log);
                }
                self.wire.retain(|m| m.from != id);
            }
            "restart" => self.start(node_arg(tc)),
            "status" => out = self.status(),
            other => panic!("unknown directive {other}"),
        }
        if out.is_empty() {
            "ok\n".to_string()
        } else {
            out
        }
    }

    fn cluster(&mut self, tc: &TestCase) {
        let voters: Vec<NodeId> = tc.args["voters"]
            .iter()
            .map(|v| NodeId(v.parse().unwrap()))
            .collect();
        self.members = Membership::new(voters.iter().copied(), []);
        self.pre_vote = tc.args.contains_key("prevote");
        for id in voters {
            self.nodes.insert(
                id,
                Node {
                    raft: None,
                    stored: None,
                    hs: HardState::default(),
                },
            );
            self.start(id);
        }
    }

    fn set_log(&mut self, tc: &TestCase) {
        let id = node_arg(tc);
        let term = Term(arg(tc, "term").unwrap_or(0));
        let mut log = MemLog::new();
        for word in tc.input.split_whitespace() {
            let (t, n) = word.split_once('x').unwrap_or((word, "1"));
            let e = Entry::data(
                log.end(),
                Term(t.parse().unwrap()),
                Bytes::from_static(b"x"),
                n.parse().unwrap(),
            );
            log.append(&[e]).unwrap();
        }
        log.sync();
        let node = self.nodes.get_mut(&id).expect("node");
        node.raft = None;
        node.stored = Some(log);
        node.hs = HardState {
            term,
            vote: None,
            commit_end: Offset(0),
            damaged: None,
        };
        self.start(id);
    }
}

fn show_log(entries: &[Entry]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|e| {
            let kind = match e.kind() {
                EntryKind::Data { .. } => "",
                EntryKind::Noop => "noop",
                EntryKind::Config(_) => "conf",
            };
            if e.len() == 1 {
                format!("{}@{}{kind}", e.first(), e.term().0)
            } else {
                format!("{}-{}@{}{kind}", e.first(), e.last(), e.term().0)
            }
        })
        .collect();
    format!("[{}]", parts.join(" "))
}

fn show_message(m: &Message) -> String {
    let body = match &m.body {
        Body::VoteRequest(r) => {
            let kind = if r.pre_vote { "PreVote" } else { "Vote" };
            format!("{kind} last={}/{}", r.last_end, r.last_term)
        }
        Body::VoteResponse(r) => {
            let kind = if r.pre_vote {
                "PreVoteResp"
            } else {
                "VoteResp"
            };
            format!("{kind} granted={}", r.granted)
        }
        Body::Append(a) => format!(
            "Append prev={}/{} entries={} commit={}",
            a.prev_end,
            a.prev_term,
            show_log(&a.entries),
            a.commit_end
        ),
        Body::AppendResponse(r) => format!("AppendResp {r:?}"),
        Body::Heartbeat(h) => format!("Heartbeat commit={}", h.commit_end),
        Body::HeartbeatResponse(_) => "HeartbeatResp".to_string(),
        Body::TimeoutNow => "TimeoutNow".to_string(),
        Body::InstallSnapshot(s) => format!("InstallSnapshot end={}", s.meta.end),
    };
    format!("{}->{} {} {body}", m.from, m.to, m.term)
}

#[test]
fn scenarios() {
    datadriven::walk("tests/testdata", |f| {
        let mut h = Harness::default();
        f.run(|tc| h.run(tc));
    });
}

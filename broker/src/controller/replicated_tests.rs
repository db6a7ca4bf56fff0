//! Three in-process floe-raft replicas applying the same controller log reach the same state.

use std::collections::VecDeque;

use bytes::Bytes;
use floe_raft::{
    Applier, Config, HardState, MemLog, Membership, Message, NodeId, Offset, Raft, Role,
    StateMachine,
};

use super::*;

struct Node {
    raft: Raft<MemLog>,
    applier: Applier<ControllerState>,
    results: Vec<(Offset, Result<Applied, ControllerError>)>,
}

struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    fn new() -> Cluster {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let members = Membership::new(ids, []);
        let nodes = ids
            .iter()
            .map(|&id| Node {
                raft: Raft::new(
                    Config::new(id),
                    MemLog::new(),
                    HardState::default(),
                    members.clone(),
                )
                .unwrap(),
                applier: Applier::new(ControllerState::new()),
                results: Vec::new(),
            })
            .collect();
        Cluster { nodes }
    }

    /// Instant network and fsync, until nothing moves.
    fn pump(&mut self) {
        let mut wire: VecDeque<Message> = VecDeque::new();
        loop {
            for n in &mut self.nodes {
                while let Some(req) = n.raft.poll_persist() {
                    n.raft.log_mut().sync();
                    n.raft.handle_persisted(req.id).unwrap();
                }
                wire.extend(std::iter::from_fn(|| n.raft.poll_message()));
                let out = n.applier.apply_committed(&mut n.raft).unwrap();
                n.results.extend(out);
            }
            let Some(msg) = wire.pop_front() else {
                return;
            };
            let to = msg.to.0 as usize - 1;
            self.nodes[to].raft.handle_message(msg).unwrap();
        }
    }

    fn leader(&mut self) -> usize {
        for _ in 0..1000 {
            if let Some(i) = self
                .nodes
                .iter()
                .position(|n| n.raft.role() == Role::Leader)
            {
                return i;
            }
            for n in &mut self.nodes {
                n.raft.handle_tick().unwrap();
            }
            self.pump();
        }
        panic!("no leader elected");
    }

    fn submit(&mut self, payload: Bytes) -> Result<Applied, ControllerError> {
        let leader = self.leader();
        let meta = self.nodes[leader].raft.propose(payload, 1).unwrap();
        self.pump();
        let node = &self.nodes[leader];
        let (_, result) = node
            .results
            .iter()
            .find(|(at, _)| *at == meta.first)
            .expect("command applied on the leader");
        result.clone()
    }
}

#[test]
fn three_replicas_apply_the_same_commands_to_the_same_state() {
    let mut cluster = Cluster::new();
    let mut reference = ControllerState::new();
    let mut payloads: Vec<Bytes> = Vec::new();
    for id in 1..=4u64 {
        payloads.push(
            Command::RegisterBroker {
                broker: NodeId(id),
                client_addr: format!("n{id}:9092"),
                peer_addr: format!("n{id}:9093"),
                rack: None,
                term: 1,
                tick: id,
            }
            .encode(),
        );
    }
    let more = [
        Command::CreateTopic {
            name: "orders".into(),
            partitions: 8,
            replication_factor: 3,
            configs: vec![("retention.ms".into(), "3600000".into())],
        },
        Command::CreateTopic {
            name: "orders".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Vec::new(),
        },
        Command::AllocateProducerIds {
            broker: NodeId(2),
            count: 1000,
        },
        Command::BrokerHeartbeat {
            broker: NodeId(3),
            epoch: 3,
            term: 2,
            tick: 50,
        },
        Command::FenceBroker {
            broker: NodeId(4),
            epoch: 4,
        },
        Command::AlterTopicConfig {
            name: "orders".into(),
            configs: vec![("fsync".into(), "never".into())],
        },
    ];
    payloads.extend(more.iter().map(Command::encode));
    payloads.push(Bytes::from_static(b"\x01\x63garbage"));
    for payload in payloads {
        let replicated = cluster.submit(payload.clone());
        let direct = reference.apply(Offset(0), &payload);
        assert_eq!(replicated, direct);
    }
    // Rebalance moves proposed from one replica's view, applied through the log.
    let plan = cluster.nodes[0].applier.machine().rebalance_plan();
    let moves = plan.len() as u64;
    for mv in plan {
        let payload = mv.to_command().encode();
        assert_eq!(
            cluster.submit(payload.clone()),
            Ok(Applied::PartitionReassigned)
        );
        reference.apply(Offset(0), &payload).unwrap();
    }
    let snapshots: Vec<Bytes> = cluster
        .nodes
        .iter()
        .map(|n| n.applier.machine().snapshot())
        .collect();
    assert_eq!(snapshots[0], snapshots[1]);
    assert_eq!(snapshots[1], snapshots[2]);
    assert_eq!(snapshots[0], reference.snapshot());
    let state = cluster.nodes[2].applier.machine();
    assert_eq!(state.topic("orders").unwrap().partitions.len(), 8);
    assert_eq!(state.next_producer_id(), 1000);
    assert!(state.broker(NodeId(4)).unwrap().fenced);
    // 4 registrations + create + allocate + heartbeat + fence + alter applied; the duplicate
    // create and the garbage payload did not.
    assert_eq!(state.version(), 9 + moves);
}

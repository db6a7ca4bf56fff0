//! The Raft core's step cost: a 3-node group in one thread with instant network and
//! persistence, proposing entries on the leader and pumping every message until all three
//! have committed them (propose → append → replicate → acknowledge → commit → apply).
//!
//! `cargo bench -p floe-raft --bench step` (CI: `-- --test`, each once)

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use floe_raft::{Config, HardState, MemLog, Membership, Message, NodeId, Raft, Role};

/// Entries proposed per measured step (one burst, as a broker's group commit delivers them).
const BURST: u64 = 64;

fn pump(nodes: &mut [Raft<MemLog>], wire: &mut VecDeque<Message>) {
    loop {
        for r in nodes.iter_mut() {
            while let Some(p) = r.poll_persist() {
                r.handle_persisted(p.id).expect("persisted");
            }
            wire.extend(std::iter::from_fn(|| r.poll_message()));
            loop {
                let done = r.poll_committed(1 << 22).expect("committed");
                let Some(last) = done.last() else { break };
                r.handle_applied(last.end());
            }
        }
        let Some(m) = wire.pop_front() else { return };
        let to = m.to.0 as usize - 1;
        nodes[to].handle_message(m).expect("message");
    }
}

fn group() -> (Vec<Raft<MemLog>>, usize) {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut nodes: Vec<Raft<MemLog>> = ids
        .iter()
        .map(|&id| {
            let mut c = Config::new(id);
            c.max_inflight_msgs = 256;
            c.max_inflight_bytes = 64 << 20;
            Raft::new(
                c,
                MemLog::new(),
                HardState::default(),
                Membership::new(ids, []),
            )
            .expect("raft")
        })
        .collect();
    let mut wire = VecDeque::new();
    // Elections are randomised within bounds; a bounded number of ticks elects a leader.
    for _ in 0..10_000 {
        if nodes.iter().any(|r| r.role() == Role::Leader) {
            break;
        }
        for r in nodes.iter_mut() {
            r.handle_tick().expect("tick");
        }
        pump(&mut nodes, &mut wire);
    }
    let leader = nodes
        .iter()
        .position(|r| r.role() == Role::Leader)
        .expect("a leader within 10000 ticks");
    (nodes, leader)
}

fn step(c: &mut Criterion) {
    let mut g = c.benchmark_group("raft step");
    for size in [64usize, 1024, 65536] {
        let (mut nodes, leader) = group();
        let mut wire = VecDeque::new();
        let payload = Bytes::from(vec![7u8; size]);
        g.throughput(Throughput::Elements(BURST));
        g.bench_function(
            format!("3 nodes, {BURST} x {size} B entries to commit"),
            |b| {
                b.iter(|| {
                    let mut end = None;
                    for _ in 0..BURST {
                        end = Some(
                            nodes[leader]
                                .propose(payload.clone(), 1)
                                .expect("propose")
                                .end,
                        );
                    }
                    pump(&mut nodes, &mut wire);
                    let end = end.expect("proposed");
                    assert!(nodes.iter().all(|r| r.commit_end() >= end));
                    black_box(end)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);

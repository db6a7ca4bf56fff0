//! Raft core throughput without I/O: a 3-node group in one thread, instant network and fsync.
//!
//! `cargo run --release -p floe-raft --example throughput -- --entries 200000 --bytes 1024`

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use floe_raft::{Config, HardState, MemLog, Membership, Message, NodeId, Raft, Role};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries = arg(&args, "--entries", 200_000);
    let size = arg(&args, "--bytes", 1024) as usize;
    let records = arg(&args, "--records", 10);
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
    while !nodes.iter().any(|r| r.role() == Role::Leader) {
        for r in nodes.iter_mut() {
            r.handle_tick().expect("tick");
        }
        pump(&mut nodes, &mut wire);
    }
    let leader = nodes
        .iter()
        .position(|r| r.role() == Role::Leader)
        .expect("leader");
    let payload = Bytes::from(vec![7u8; size]);
    let start = Instant::now();
    let base = nodes[leader].commit_end();
    let mut last_end = base;
    for i in 0..entries {
        let meta = nodes[leader]
            .propose(payload.clone(), records)
            .expect("propose");
        last_end = meta.end;
        if i % 64 == 63 {
            pump(&mut nodes, &mut wire);
        }
    }
    pump(&mut nodes, &mut wire);
    let secs = start.elapsed().as_secs_f64();
    assert!(
        nodes.iter().all(|r| r.commit_end() >= last_end),
        "all committed"
    );
    println!(
        "3-node group, no I/O: {entries} entries ({} records, {size} B each) committed on all nodes in {secs:.3}s: {:.0} entries/s, {:.0} records/s, {:.1} MB/s",
        last_end.0 - base.0,
        entries as f64 / secs,
        (last_end.0 - base.0) as f64 / secs,
        (entries as f64 * size as f64) / secs / 1e6
    );
}

//! Idle cost of many groups: 3 in-process hosts with N groups each (default 10,000), run until
//! every group has a leader and has quiesced, then measure host 1's CPU per tick and the
//! memory held per group (live heap bytes, via a counting allocator).
//!
//! `cargo run --release -p floe-raft --example idle_groups -- --groups 10000`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use floe_raft::host::{GroupId, Host, HostConfig, Transmit};
use floe_raft::{Config, HardState, MemLog, Membership, NodeId, Raft, Role};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn pump(hosts: &mut [Host<MemLog>]) {
    loop {
        let mut wire: Vec<Transmit> = Vec::new();
        for h in hosts.iter_mut() {
            while let Some((g, p)) = h.poll_persist() {
                let r = h.group_mut_quiet(g).expect("group");
                r.log_mut().sync();
                h.handle_persisted(g, p.id).expect("persisted");
            }
            while let Some(g) = h.poll_ready() {
                let r = h.group_mut_quiet(g).expect("group");
                while !r.poll_committed(1 << 20).expect("committed").is_empty() {}
                let c = r.commit_end();
                r.handle_applied(c);
            }
            wire.extend(std::iter::from_fn(|| h.poll_transmit()));
        }
        if wire.is_empty() {
            return;
        }
        for t in wire {
            let to = t.to.0 as usize - 1;
            hosts[to].handle_transmit(t).expect("transmit");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let groups: u64 = args
        .iter()
        .position(|a| a == "--groups")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let before = LIVE.load(Ordering::Relaxed);
    let mut hosts: Vec<Host<MemLog>> = ids
        .iter()
        .map(|&id| {
            Host::new(HostConfig {
                node: id,
                heartbeat_ticks: 1,
                peer_timeout_ticks: 20,
            })
        })
        .collect();
    for (h, &id) in hosts.iter_mut().zip(&ids) {
        for g in 0..groups {
            let mut c = Config::new(id);
            c.seed = g.wrapping_mul(0x9E37_79B9) ^ id.0;
            let raft = Raft::new(
                c,
                MemLog::new(),
                HardState::default(),
                Membership::new(ids, []),
            )
            .expect("raft");
            h.add_group(GroupId(g), raft);
        }
    }
    let mut ticks = 0;
    while hosts.iter().any(|h| h.active_groups() > 0) && ticks < 2000 {
        for h in hosts.iter_mut() {
            h.handle_tick().expect("tick");
        }
        pump(&mut hosts);
        ticks += 1;
    }
    let leaders: usize = hosts
        .iter()
        .map(|h| {
            (0..groups)
                .filter(|g| {
                    h.group(GroupId(*g))
                        .is_some_and(|r| r.role() == Role::Leader)
                })
                .count()
        })
        .sum();
    let per_host: Vec<usize> = hosts
        .iter()
        .map(|h| {
            (0..groups)
                .filter(|g| {
                    h.group(GroupId(*g))
                        .is_some_and(|r| r.role() == Role::Leader)
                })
                .count()
        })
        .collect();
    let live = LIVE.load(Ordering::Relaxed) - before;
    let bytes_per_group = live as f64 / (3 * groups) as f64;
    println!(
        "{groups} groups x 3 nodes: all quiet after {ticks} ticks; {leaders} leaders {per_host:?}"
    );
    println!(
        "memory: {:.0} bytes per group replica ({:.1} MiB per node for {groups} groups)",
        bytes_per_group,
        live as f64 / 3.0 / (1 << 20) as f64
    );
    let rounds = 2000;
    let start = Instant::now();
    for _ in 0..rounds {
        for h in hosts.iter_mut() {
            h.handle_tick().expect("tick");
        }
        pump(&mut hosts);
    }
    let per_tick = start.elapsed().as_secs_f64() / f64::from(rounds) / 3.0;
    let active: usize = hosts.iter().map(Host::active_groups).sum();
    println!(
        "idle tick: {:.2} us per node per tick ({active} groups active); at 10 ticks/s that is {:.4}% of a core",
        per_tick * 1e6,
        per_tick * 10.0 * 100.0
    );
}

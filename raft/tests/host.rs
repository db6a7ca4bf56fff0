//! The multi-raft host: coalesced heartbeats, quiescence, waking on proposals and failures.

use std::collections::BTreeSet;

use bytes::Bytes;
use floe_raft::host::{GroupId, Host, HostConfig, Transmit};
use floe_raft::{Config, HardState, MemLog, Membership, NodeId, Raft, Role};

const GROUPS: u64 = 40;

struct Cluster {
    hosts: Vec<Host<MemLog>>,
    down: BTreeSet<usize>,
    transmits: usize,
}

impl Cluster {
    fn new() -> Cluster {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let mut hosts = Vec::new();
        for id in ids {
            let cfg = HostConfig {
                node: id,
                heartbeat_ticks: 1,
                peer_timeout_ticks: 10,
            };
            let mut host = Host::new(cfg);
            for g in 0..GROUPS {
                let mut c = Config::new(id);
                c.seed = g * 7 + id.0;
                let raft = Raft::new(
                    c,
                    MemLog::new(),
                    HardState::default(),
                    Membership::new(ids, []),
                )
                .unwrap();
                host.add_group(GroupId(g), raft);
            }
            hosts.push(host);
        }
        Cluster {
            hosts,
            down: BTreeSet::new(),
            transmits: 0,
        }
    }

    fn pump(&mut self) {
        loop {
            let mut wire: Vec<Transmit> = Vec::new();
            for (i, h) in self.hosts.iter_mut().enumerate() {
                while let Some((g, p)) = h.poll_persist() {
                    h.group_mut_quiet(g).unwrap().log_mut().sync();
                    h.handle_persisted(g, p.id).unwrap();
                }
                while let Some(g) = h.poll_ready() {
                    let r = h.group_mut_quiet(g).unwrap();
                    while !r.poll_committed(1 << 20).unwrap().is_empty() {}
                    let c = r.commit_end();
                    r.handle_applied(c);
                }
                while let Some(t) = h.poll_transmit() {
                    if !self.down.contains(&i) {
                        wire.push(t);
                    }
                }
            }
            if wire.is_empty() {
                return;
            }
            for t in wire {
                let to = t.to.0 as usize - 1;
                self.transmits += 1;
                if !self.down.contains(&to) {
                    self.hosts[to].handle_transmit(t).unwrap();
                }
            }
        }
    }

    fn tick(&mut self) {
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if !self.down.contains(&i) {
                h.handle_tick().unwrap();
            }
        }
        self.pump();
    }

    fn leaders(&self) -> usize {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.down.contains(i))
            .flat_map(|(_, h)| {
                (0..GROUPS).filter(move |g| h.group(GroupId(*g)).unwrap().role() == Role::Leader)
            })
            .count()
    }
}

#[test]
fn idle_groups_quiesce_and_only_node_heartbeats_remain() {
    let mut c = Cluster::new();
    for _ in 0..300 {
        c.tick();
    }
    assert_eq!(c.leaders(), GROUPS as usize);
    assert!(c.hosts.iter().all(|h| h.active_groups() == 0), "all quiet");
    c.transmits = 0;
    for _ in 0..10 {
        c.tick();
    }
    assert_eq!(
        c.transmits,
        10 * 6,
        "one node heartbeat per peer pair per tick, whatever the group count"
    );
}

#[test]
fn a_proposal_wakes_its_group_only_and_commits() {
    let mut c = Cluster::new();
    for _ in 0..300 {
        c.tick();
    }
    let (h, g) = (0..3)
        .flat_map(|h| (0..GROUPS).map(move |g| (h, g)))
        .find(|(h, g)| c.hosts[*h].group(GroupId(*g)).unwrap().role() == Role::Leader)
        .unwrap();
    let meta = c.hosts[h]
        .propose(GroupId(g), Bytes::from_static(b"hello"), 3)
        .unwrap();
    c.pump();
    assert!(
        c.hosts
            .iter()
            .all(|x| x.group(GroupId(g)).unwrap().commit_end() >= meta.end)
    );
    assert!(c.hosts[h].active_groups() <= 1);
    for _ in 0..20 {
        c.tick();
    }
    assert!(
        c.hosts.iter().all(|x| x.active_groups() == 0),
        "quiet again"
    );
}

#[test]
fn groups_led_by_a_dead_node_wake_and_elect() {
    let mut c = Cluster::new();
    for _ in 0..300 {
        c.tick();
    }
    c.down.insert(1);
    for _ in 0..200 {
        c.tick();
    }
    let alive_leaders: usize = [0, 2]
        .iter()
        .map(|&h| {
            (0..GROUPS)
                .filter(|g| c.hosts[h].group(GroupId(*g)).unwrap().role() == Role::Leader)
                .count()
        })
        .sum();
    assert_eq!(
        alive_leaders, GROUPS as usize,
        "every group has a leader on the live nodes"
    );
}

/// Random transmit loss, node outages and proposals over many groups: per group, at most one
/// leader per term and one committed history; after healing, every group elects and commits.
#[test]
fn quiescence_survives_loss_and_outages() {
    use floe_raft::rng::SplitMix64;
    use std::collections::BTreeMap;

    for seed in 1..=6u64 {
        let mut rng = SplitMix64::new(seed);
        let mut c = Cluster::new();
        let mut leaders: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for tick in 0..600 {
            if tick < 450 && rng.chance(0.02) {
                let n = rng.below(3) as usize;
                if !c.down.remove(&n) && c.down.is_empty() {
                    c.down.insert(n);
                }
            }
            if tick == 450 {
                c.down.clear();
            }
            if rng.chance(0.3) {
                let g = GroupId(rng.below(GROUPS));
                for h in 0..3 {
                    if !c.down.contains(&h) && c.hosts[h].group(g).unwrap().role() == Role::Leader {
                        let _ = c.hosts[h].propose(g, Bytes::from_static(b"p"), 2);
                    }
                }
            }
            c.tick_lossy(&mut rng, if tick < 450 { 0.1 } else { 0.0 });
            for (h, host) in c.hosts.iter().enumerate() {
                for g in 0..GROUPS {
                    let r = host.group(GroupId(g)).unwrap();
                    if r.role() == Role::Leader {
                        let who = leaders.entry((g, r.term().0)).or_insert(h);
                        assert_eq!(
                            *who,
                            h,
                            "seed {seed}: two leaders for group {g} in {:?}",
                            r.term()
                        );
                    }
                }
            }
        }
        for g in 0..GROUPS {
            let lead =
                (0..3).filter(|h| c.hosts[*h].group(GroupId(g)).unwrap().role() == Role::Leader);
            assert!(
                lead.count() >= 1,
                "seed {seed}: group {g} has no leader after healing"
            );
            let logs: Vec<Vec<(u64, u64)>> = (0..3)
                .map(|h| {
                    let r = c.hosts[h].group(GroupId(g)).unwrap();
                    r.log()
                        .all_entries()
                        .iter()
                        .filter(|e| e.end() <= r.commit_end())
                        .map(|e| (e.first().0, e.term().0))
                        .collect()
                })
                .collect();
            let longest = logs.iter().max_by_key(|l| l.len()).unwrap();
            for l in &logs {
                assert_eq!(
                    &longest[..l.len()],
                    &l[..],
                    "seed {seed}: group {g} committed histories differ"
                );
            }
        }
    }
}

impl Cluster {
    /// Like `tick`, but each transmit is lost with probability `loss`.
    fn tick_lossy(&mut self, rng: &mut floe_raft::rng::SplitMix64, loss: f64) {
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if !self.down.contains(&i) {
                h.handle_tick().unwrap();
            }
        }
        loop {
            let mut wire: Vec<Transmit> = Vec::new();
            for (i, h) in self.hosts.iter_mut().enumerate() {
                while let Some((g, p)) = h.poll_persist() {
                    h.group_mut_quiet(g).unwrap().log_mut().sync();
                    h.handle_persisted(g, p.id).unwrap();
                }
                while let Some(g) = h.poll_ready() {
                    let r = h.group_mut_quiet(g).unwrap();
                    while !r.poll_committed(1 << 20).unwrap().is_empty() {}
                    let c = r.commit_end();
                    r.handle_applied(c);
                }
                while let Some(t) = h.poll_transmit() {
                    if !self.down.contains(&i) && !rng.chance(loss) {
                        wire.push(t);
                    }
                }
            }
            if wire.is_empty() {
                return;
            }
            for t in wire {
                let to = t.to.0 as usize - 1;
                if !self.down.contains(&to) {
                    self.hosts[to].handle_transmit(t).unwrap();
                }
            }
        }
    }
}

#[test]
fn read_index_rounds_ride_the_coalesced_beats() {
    let mut c = Cluster::new();
    for _ in 0..300 {
        c.tick();
    }
    let (h, g) = (0..3)
        .flat_map(|h| (0..GROUPS).map(move |g| (h, g)))
        .find(|(h, g)| c.hosts[*h].group(GroupId(*g)).unwrap().role() == Role::Leader)
        .unwrap();
    c.hosts[h]
        .group_mut(GroupId(g))
        .unwrap()
        .read_index(42)
        .unwrap();
    c.hosts[h].flush_group(GroupId(g));
    let mut beats_with_ctx = 0;
    let mut wire: Vec<Transmit> = std::iter::from_fn(|| c.hosts[h].poll_transmit()).collect();
    for t in &wire {
        beats_with_ctx += t.beats.iter().filter(|b| b.read_ctx > 0).count();
        assert!(t.messages.is_empty(), "no per-group heartbeat messages");
    }
    assert_eq!(beats_with_ctx, 2);
    for t in wire.drain(..) {
        let to = t.to.0 as usize - 1;
        c.hosts[to].handle_transmit(t).unwrap();
    }
    c.pump();
    let read = c.hosts[h].group_mut_quiet(GroupId(g)).unwrap().poll_read();
    assert_eq!(read.map(|r| r.ctx), Some(42));
}

//! The nemesis: a fault schedule drawn from the seed (printed before the run), and the faults
//! themselves — `kill -9` and restart, SIGSTOP/SIGCONT, network partitions and a flaky network
//! through [`crate::proxy`], disk damage done to a stopped node's partition directory, and
//! replica moves (a partition reassigned off a node and back, through the Admin API).
//!
//! One fault at a time: each step waits a quiet interval, starts its fault, holds it, heals it.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use floe_broker::log_inspect;

use crate::rng::Rng;

/// A kind of fault, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `kill -9`, then restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Network partitions and a flaky network between the brokers.
    Partition,
    /// Disk damage while a node is stopped.
    Disk,
    /// A partition's replica moved off a node (the replica set shrinks to the others), then
    /// back (the node rejoins as a new replica that catches up from the leader).
    Move,
}

impl Kind {
    /// Every kind (`--nemesis all`).
    pub const ALL: [Kind; 5] = [
        Kind::Kill,
        Kind::Pause,
        Kind::Partition,
        Kind::Disk,
        Kind::Move,
    ];

    /// Parses `all`, `none` or a comma-separated list of kinds.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
        match s.trim() {
            "all" => return Ok(Kind::ALL.to_vec()),
            "none" => return Ok(Vec::new()),
            _ => {}
        }
        let mut out = Vec::new();
        for part in s.split(',') {
            let k = match part.trim() {
                "kill" => Kind::Kill,
                "pause" => Kind::Pause,
                "partition" => Kind::Partition,
                "disk" => Kind::Disk,
                "move" => Kind::Move,
                other => {
                    return Err(format!(
                        "unknown nemesis {other:?} (kill, pause, partition, disk, move, all, none)"
                    ));
                }
            };
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// The name in histories.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Disk => "disk",
            Kind::Move => "move",
        }
    }
}

/// Which node a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Node(u64),
    /// Whichever node leads this partition when the fault starts.
    LeaderOf(u32),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(n) => write!(f, "node {n}"),
            Target::LeaderOf(p) => write!(f, "the leader of partition {p}"),
        }
    }
}

/// A network fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Net {
    /// Cut the target off from every other node (the majority/minority split of 3 nodes).
    Isolate(Target),
    /// The target's packets to the others are dropped; theirs still reach it.
    OneWayOut(Target),
    /// The others' packets to the target are dropped; its own still go out.
    OneWayIn(Target),
    /// Every link drops, duplicates and delays (reorders) a share of datagrams.
    Flaky {
        /// Share dropped.
        drop: f64,
        /// Share duplicated.
        duplicate: f64,
        /// Largest delay, ms.
        delay_max_ms: u64,
    },
}

/// Damage done to one partition directory of a stopped node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Disk {
    /// Cut the active segment in the middle of one of its last batches.
    TruncateTail,
    /// Flip one bit inside a batch of a sealed segment (the active one if none is sealed).
    FlipBit,
    /// Delete a segment's index file.
    DeleteIndex,
}

impl Disk {
    /// Every kind (`--disk-faults all`).
    pub const ALL: [Disk; 3] = [Disk::TruncateTail, Disk::FlipBit, Disk::DeleteIndex];

    /// Parses `all` or a comma-separated list of `truncate`, `flip`, `index`.
    pub fn parse_list(s: &str) -> Result<Vec<Disk>, String> {
        if s.trim() == "all" {
            return Ok(Disk::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',') {
            let d = match part.trim() {
                "truncate" => Disk::TruncateTail,
                "flip" => Disk::FlipBit,
                "index" => Disk::DeleteIndex,
                other => {
                    return Err(format!(
                        "unknown disk fault {other:?} (truncate, flip, index, all)"
                    ));
                }
            };
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// `kill -9` the target, restart it after the hold.
    Kill(Target),
    /// SIGSTOP the target, SIGCONT after the hold.
    Pause(Target),
    /// A network fault for the hold.
    Partition(Net),
    /// `kill -9` the target, damage its log of `partition`, restart it after the hold.
    Disk(Target, Disk, u32),
    /// Reassign `partition` to every node but the target; after the hold (and once the
    /// target's replica has left the group), back to every node.
    Move(Target, u32),
}

impl Fault {
    /// The fault's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill(_) => Kind::Kill,
            Fault::Pause(_) => Kind::Pause,
            Fault::Partition(_) => Kind::Partition,
            Fault::Disk(..) => Kind::Disk,
            Fault::Move(..) => Kind::Move,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(t) => write!(f, "kill -9 {t}, then restart it"),
            Fault::Pause(t) => write!(f, "SIGSTOP {t}, then SIGCONT"),
            Fault::Partition(Net::Isolate(t)) => write!(f, "isolate {t} from the others"),
            Fault::Partition(Net::OneWayOut(t)) => write!(f, "drop packets from {t} to the others"),
            Fault::Partition(Net::OneWayIn(t)) => write!(f, "drop packets from the others to {t}"),
            Fault::Partition(Net::Flaky {
                drop,
                duplicate,
                delay_max_ms,
            }) => write!(
                f,
                "flaky network: drop {:.0}%, duplicate {:.0}%, delay 0-{delay_max_ms} ms",
                drop * 100.0,
                duplicate * 100.0
            ),
            Fault::Disk(t, d, p) => write!(f, "kill -9 {t}, {d:?} in its partition {p}, restart"),
            Fault::Move(t, p) => write!(f, "move partition {p}'s replica off {t}, then back"),
        }
    }
}

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Quiet time before the fault.
    pub quiet: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long it is held before healing.
    pub hold: Duration,
}

/// Draws a schedule for `kinds` (disk faults among `disks`) that fits in `time_limit`
/// (leaving a few quiet seconds at the end). The same arguments give the same schedule.
pub fn schedule(
    seed: u64,
    kinds: &[Kind],
    disks: &[Disk],
    nodes: u64,
    partitions: u32,
    time_limit: Duration,
) -> Vec<Step> {
    let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
    let mut out = Vec::new();
    let kinds: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|k| *k != Kind::Disk || !disks.is_empty())
        .collect();
    if kinds.is_empty() || nodes == 0 || partitions == 0 {
        return out;
    }
    let budget = time_limit.saturating_sub(Duration::from_secs(3));
    let mut used = Duration::ZERO;
    loop {
        let quiet = Duration::from_millis(rng.between(2_000, 6_000));
        let hold = Duration::from_millis(rng.between(3_000, 10_000));
        if used + quiet + hold > budget {
            return out;
        }
        used += quiet + hold;
        let target = if rng.chance(0.5) {
            Target::LeaderOf(rng.below(u64::from(partitions)) as u32)
        } else {
            Target::Node(rng.between(1, nodes))
        };
        let fault = match rng.pick(&kinds) {
            Kind::Kill => Fault::Kill(target),
            Kind::Pause => Fault::Pause(target),
            Kind::Partition => Fault::Partition(match rng.below(4) {
                0 => Net::Isolate(target),
                1 => Net::OneWayOut(target),
                2 => Net::OneWayIn(target),
                _ => Net::Flaky {
                    drop: rng.between(5, 30) as f64 / 100.0,
                    duplicate: rng.between(0, 20) as f64 / 100.0,
                    delay_max_ms: rng.between(0, 50),
                },
            }),
            Kind::Disk => {
                let d = *rng.pick(disks);
                Fault::Disk(target, d, rng.below(u64::from(partitions)) as u32)
            }
            Kind::Move => Fault::Move(target, rng.below(u64::from(partitions)) as u32),
        };
        out.push(Step { quiet, fault, hold });
    }
}

/// Damages the partition log in `dir` (its node is stopped) and says what was done.
pub fn damage(dir: &Path, disk: Disk, rng: &mut Rng) -> Result<String, String> {
    let report = log_inspect::inspect(dir).map_err(|e| e.to_string())?;
    let with_batches: Vec<&log_inspect::SegmentReport> = report
        .segments
        .iter()
        .filter(|s| !s.batches.is_empty())
        .collect();
    match disk {
        Disk::TruncateTail => {
            let Some(seg) = with_batches.last() else {
                return Ok("nothing to truncate (no batches)".into());
            };
            let n = seg.batches.len() as u64;
            let k = rng.between(1, n.min(3));
            let b = seg.batches[(n - k) as usize];
            let cut = b.position + rng.between(1, u64::from(b.header.batch_len).max(2) - 1);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(|e| e.to_string())?;
            f.set_len(cut).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            Ok(format!(
                "truncated {} to {cut} bytes: the last {k} batches (from offset {}) cut",
                seg.path.display(),
                b.header.base_offset
            ))
        }
        Disk::FlipBit => {
            // A sealed segment if there is one (every segment but the last is sealed).
            let sealed: Vec<_> = with_batches
                .iter()
                .take(report.segments.len().saturating_sub(1))
                .collect();
            let seg = match (sealed.is_empty(), with_batches.last()) {
                (false, _) => **rng.pick(&sealed),
                (true, Some(last)) => *last,
                (true, None) => return Ok("no batches to damage".into()),
            };
            let b = *rng.pick(&seg.batches);
            let at = b.position + rng.below(u64::from(b.header.batch_len));
            let bit = rng.below(8) as u8;
            flip(&seg.path, at, bit)?;
            Ok(format!(
                "flipped bit {bit} of byte {at} in {} (batch at offset {}{})",
                seg.path.display(),
                b.header.base_offset,
                if sealed.is_empty() {
                    ", active segment: none is sealed"
                } else {
                    ", sealed segment"
                }
            ))
        }
        Disk::DeleteIndex => {
            let mut indexes: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "index"))
                .collect();
            indexes.sort();
            if indexes.is_empty() {
                return Ok("no index file to delete".into());
            }
            let victim = rng.pick(&indexes).clone();
            std::fs::remove_file(&victim).map_err(|e| e.to_string())?;
            Ok(format!("deleted {}", victim.display()))
        }
    }
}

fn flip(path: &Path, at: u64, bit: u8) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).map_err(|e| e.to_string())?;
    byte[0] ^= 1 << bit;
    f.write_all_at(&byte, at).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse() {
        assert_eq!(Kind::parse_list("all").expect("all"), Kind::ALL.to_vec());
        assert_eq!(
            Kind::parse_list("kill, disk,kill").expect("list"),
            vec![Kind::Kill, Kind::Disk]
        );
        assert!(Kind::parse_list("none").expect("none").is_empty());
        assert!(Kind::parse_list("kill,flood").is_err());
    }

    #[test]
    fn schedules_replay_from_the_seed_and_fit_the_time_limit() {
        let limit = Duration::from_secs(120);
        let a = schedule(5, &Kind::ALL, &Disk::ALL, 3, 3, limit);
        assert_eq!(a, schedule(5, &Kind::ALL, &Disk::ALL, 3, 3, limit));
        assert_ne!(a, schedule(6, &Kind::ALL, &Disk::ALL, 3, 3, limit));
        assert!(a.len() >= 5, "{a:?}");
        let total: Duration = a.iter().map(|s| s.quiet + s.hold).sum();
        assert!(total <= limit, "{total:?}");
        let kinds: std::collections::BTreeSet<Kind> = a.iter().map(|s| s.fault.kind()).collect();
        assert!(kinds.len() >= 3, "a mix of faults: {kinds:?}");
        for s in &a {
            match s.fault {
                Fault::Kill(Target::Node(n)) | Fault::Pause(Target::Node(n)) => {
                    assert!((1..=3).contains(&n))
                }
                Fault::Disk(_, _, p) => assert!(p < 3),
                _ => {}
            }
        }
        let moves = schedule(7, &[Kind::Move], &Disk::ALL, 3, 3, limit);
        assert!(!moves.is_empty());
        for s in &moves {
            match s.fault {
                Fault::Move(Target::Node(n), p) => assert!((1..=3).contains(&n) && p < 3),
                Fault::Move(Target::LeaderOf(p), q) => assert!(p < 3 && q < 3),
                f => panic!("not a move: {f:?}"),
            }
        }
        assert_eq!(Kind::parse_list("move").expect("move"), vec![Kind::Move]);
        let only_kill = schedule(5, &[Kind::Kill], &Disk::ALL, 3, 3, limit);
        assert!(only_kill.iter().all(|s| s.fault.kind() == Kind::Kill));
        assert!(schedule(5, &[], &Disk::ALL, 3, 3, limit).is_empty());
        let no_flips = schedule(5, &Kind::ALL, &[Disk::TruncateTail], 3, 3, limit);
        assert!(
            no_flips
                .iter()
                .all(|s| !matches!(s.fault, Fault::Disk(_, d, _) if d != Disk::TruncateTail))
        );
        assert!(
            schedule(5, &[Kind::Disk], &[], 3, 3, limit).is_empty(),
            "disk with no disk faults is nothing"
        );
        assert_eq!(
            Disk::parse_list("truncate,index").expect("list"),
            vec![Disk::TruncateTail, Disk::DeleteIndex]
        );
        assert!(Disk::parse_list("shred").is_err());
    }
}

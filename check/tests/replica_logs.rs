//! The offline replica reader and the disk nemesis against logs written by floe-storage:
//! a Raft truncation's leftovers are not read as data, a prefix longer than the log is
//! reported, and every kind of disk damage changes what the reader sees (or is reported).

use std::path::Path;
use std::sync::Arc;

use floe_check::nemesis::{Disk, damage};
use floe_check::replica::{Prefix, read_prefix};
use floe_check::rng::Rng;
use floe_protocol::batch::{BatchBuilder, CompressionCodec};
use floe_storage::backend::FileDir;
use floe_storage::{Log, LogConfig, OpenOptions};

fn open(dir: &Path) -> Log {
    let config = LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    };
    Log::open(
        Arc::new(FileDir::open(dir).expect("dir")),
        config,
        OpenOptions::default(),
    )
    .expect("open")
}

fn batch(value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(CompressionCodec::None);
    b.append(1_000, None, Some(value.as_bytes()), &[])
        .expect("append");
    b.finish().expect("finish").to_vec()
}

/// Values 0..n, one batch each, term 1, rolled into a new segment every `per_segment`.
fn write(dir: &Path, n: u64, per_segment: u64) {
    let mut log = open(dir);
    for i in 0..n {
        log.append(&mut batch(&format!("v{i}")), 1, 0)
            .expect("append");
        if (i + 1) % per_segment == 0 && i + 1 < n {
            log.sync().expect("sync");
            log.roll().expect("roll");
        }
    }
    log.sync().expect("sync");
}

#[test]
fn a_raft_truncation_leftover_is_not_read_as_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    for v in ["a", "b", "c"] {
        log.append(&mut batch(v), 1, 0).expect("append");
    }
    log.sync().expect("sync");
    log.truncate_suffix(1).expect("truncate");
    for v in ["B", "C"] {
        log.append(&mut batch(v), 2, 0).expect("append");
    }
    log.sync().expect("sync");
    drop(log);

    let p = read_prefix(dir.path(), 3);
    assert_eq!(p.damage, None);
    let terms: Vec<(u64, u64)> = p.batches.iter().map(|b| (b.base, b.term)).collect();
    assert_eq!(terms, vec![(0, 1), (1, 2), (2, 2)]);
    assert_eq!(
        p.records,
        vec![(0, "a".to_string()), (1, "B".into()), (2, "C".into())]
    );
    // Cut at the commit end.
    assert_eq!(read_prefix(dir.path(), 2).records.len(), 2);
    assert_eq!(read_prefix(dir.path(), 0), Prefix::default());
}

#[test]
fn a_log_shorter_than_its_commit_end_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 5, 100);
    let p = read_prefix(dir.path(), 9);
    assert_eq!(p.records.len(), 5);
    let d = p.damage.expect("reported");
    assert!(d.contains("up to 5, below its commit end 9"), "{d}");
}

#[test]
fn a_damaged_batch_in_the_middle_is_damage_not_a_shorter_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 30, 10);
    // Flip a bit inside the records of the first batch of the first (sealed) segment.
    let seg = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[70] ^= 0x10;
    std::fs::write(&seg, bytes).expect("write");
    let p = read_prefix(dir.path(), 30);
    let d = p.damage.expect("damage reported");
    assert!(d.contains("expected a batch at 0, found 10"), "{d}");
}

#[test]
fn every_disk_fault_is_visible_or_harmless() {
    for seed in 0..20 {
        for disk in [Disk::TruncateTail, Disk::FlipBit] {
            let dir = tempfile::tempdir().expect("tempdir");
            write(dir.path(), 30, 10);
            let before = read_prefix(dir.path(), 30);
            assert_eq!(before.damage, None);
            let what = damage(dir.path(), disk, &mut Rng::new(seed)).expect("damage");
            let after = read_prefix(dir.path(), 30);
            // Damage either stops the scan (reported) or changes a stamped field (a different
            // digest): it never reads back as the same log.
            assert_ne!(after, before, "seed {seed}, {disk:?}: {what}");
            if disk == Disk::FlipBit {
                assert!(what.contains("sealed segment"), "{what}");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 30, 10);
        let count = |d: &Path| {
            std::fs::read_dir(d)
                .expect("dir")
                .filter(|e| {
                    e.as_ref()
                        .expect("entry")
                        .path()
                        .extension()
                        .is_some_and(|x| x == "index")
                })
                .count()
        };
        let n = count(dir.path());
        let what = damage(dir.path(), Disk::DeleteIndex, &mut Rng::new(seed)).expect("damage");
        assert_eq!(count(dir.path()), n - 1, "{what}");
        // Index files are not data: the prefix reads the same.
        assert_eq!(read_prefix(dir.path(), 30).damage, None);
    }
}

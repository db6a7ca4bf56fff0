//! Shared test helpers.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use floe_protocol::batch::{BatchHeader, validate_batch};
use floe_storage::backend::Directory;
use floe_storage::{Log, LogConfig, OpenOptions};

/// A small-segment config so tests roll often.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        index_interval_bytes: 256,
        max_batch_bytes: 64 * 1024,
        preallocate: true,
        checkpoint_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Payload `len` bytes, deterministic from `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

/// A batch of `records` records with a seeded payload.
pub fn batch(seed: u64, records: u32, len: usize, ts: i64) -> Vec<u8> {
    floe_storage::testing::batch(records, &payload(seed, len), ts)
}

pub fn open(dir: &Arc<dyn Directory>, config: &LogConfig) -> Log {
    Log::open(dir.clone(), config.clone(), OpenOptions::default()).expect("open")
}

/// All batches from `from` to the end, as (header, bytes).
pub fn read_all(log: &Log, from: u64) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < log.log_end() {
        let r = log.read(at, 1 << 20).expect("read");
        assert!(r.next_offset > at, "read made progress");
        for b in r.batches() {
            let h = validate_batch(&b, u32::MAX).expect("served batches are valid");
            out.push((h, b.to_vec()));
        }
        at = r.next_offset;
    }
    out
}

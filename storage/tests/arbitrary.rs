//! Arbitrary bytes as a segment (and index) file: recovery never panics, returns a valid
//! prefix, and is idempotent.

mod common;

use std::sync::Arc;

use common::*;
use floe_storage::backend::{CrashMode, Directory, FaultDir};
use floe_storage::testing::stamped_batch;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Chunk {
    /// A valid batch continuing the offsets (`records`, payload length).
    Batch(u32, usize),
    /// A valid batch with a wrong base offset.
    Misplaced(u32, usize),
    /// Random bytes.
    Noise(Vec<u8>),
    /// Zeros.
    Zeros(usize),
    /// A valid batch with one flipped bit.
    Flipped(u32, usize, usize),
}

fn chunk() -> impl Strategy<Value = Chunk> {
    prop_oneof![
        6 => (1u32..4, 0usize..200).prop_map(|(r, l)| Chunk::Batch(r, l)),
        1 => (1u32..4, 0usize..200).prop_map(|(r, l)| Chunk::Misplaced(r, l)),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Chunk::Noise),
        1 => (1usize..300).prop_map(Chunk::Zeros),
        1 => (1u32..4, 0usize..200, any::<usize>()).prop_map(|(r, l, b)| Chunk::Flipped(r, l, b)),
    ]
}

/// Builds the file: valid batches until the first bad chunk, which ends the file. Returns the
/// file and the end offset of its valid prefix.
fn build(base: u64, chunks: &[Chunk]) -> (Vec<u8>, u64) {
    let mut file = Vec::new();
    let mut next = base;
    for (i, c) in chunks.iter().enumerate() {
        let seed = i as u64;
        let bad = match c {
            Chunk::Batch(r, l) => {
                file.extend_from_slice(&stamped_batch(next, 1, *r, &payload(seed, *l), 0));
                next += u64::from(*r);
                continue;
            }
            Chunk::Misplaced(r, l) => stamped_batch(next + 7, 1, *r, &payload(seed, *l), 0),
            Chunk::Noise(b) => b.clone(),
            Chunk::Zeros(n) => vec![0; *n],
            Chunk::Flipped(r, l, bit) => {
                let mut b = stamped_batch(next, 1, *r, &payload(seed, *l), 0);
                // Flip a bit the CRC covers (it does not cover base offset and term).
                let at = 25 + bit % (b.len() - 25);
                b[at] ^= 1 << (bit % 8);
                b
            }
        };
        file.extend_from_slice(&bad);
        break;
    }
    (file, next)
}

fn check(base: u64, chunks: Vec<Chunk>, index_noise: Option<Vec<u8>>) {
    let cfg = small_config();
    let (bytes, expect_end) = build(base, &chunks);
    let dir = FaultDir::new();
    dir.put_durable(&format!("{base:020}.log"), &bytes);
    if let Some(noise) = index_noise {
        dir.put_durable(&format!("{base:020}.index"), &noise);
    }
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let log = open(&d, &cfg);
    assert_eq!(log.log_start(), base);
    let end = log.log_end();
    // The recovered end is exactly the valid prefix.
    assert_eq!(end, expect_end, "file of {} bytes", bytes.len());
    let got = read_all(&log, base);
    let mut at = base;
    for (h, _) in &got {
        assert_eq!(h.base_offset, at, "dense offsets");
        at = h.next_offset();
    }
    assert_eq!(at, end);
    // Idempotent: recover the recovered directory again (as after another crash).
    drop(log);
    let again_dir: Arc<dyn Directory> = Arc::new(dir.crash(CrashMode::DropUnsynced));
    let again = open(&again_dir, &cfg);
    assert_eq!(again.log_end(), end);
    assert_eq!(read_all(&again, base), got);
    assert!(again.recovery_report().torn_tail.is_none());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_segment_recovers_valid_prefix(
        base in prop_oneof![Just(0u64), 0u64..1_000_000],
        chunks in prop::collection::vec(chunk(), 0..12),
        index_noise in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    ) {
        check(base, chunks, index_noise);
    }

    #[test]
    fn pure_noise_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let dir = FaultDir::new();
        dir.put_durable("00000000000000000000.log", &bytes);
        dir.put_durable("00000000000000000000.index", &bytes[..bytes.len() / 3]);
        dir.put_durable("log.meta", &bytes[..bytes.len().min(20)]);
        let d: Arc<dyn Directory> = Arc::new(dir.clone());
        let log = open(&d, &small_config());
        let got = read_all(&log, log.log_start());
        let end = log.log_end();
        drop(log);
        let d2: Arc<dyn Directory> = Arc::new(dir.crash(CrashMode::KeepAll));
        let again = open(&d2, &small_config());
        prop_assert_eq!(again.log_end(), end);
        prop_assert_eq!(read_all(&again, again.log_start()), got);
    }
}

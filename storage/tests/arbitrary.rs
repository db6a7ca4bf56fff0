//! Arbitrary bytes as a segment (and index) file: recovery never panics, returns a valid
//! prefix, and is idempotent. Arbitrary bytes (or arbitrary well-formed entries) as the term
//! history file: no panic, a typed outcome.

mod common;

use std::sync::Arc;

use common::*;
use floe_storage::backend::{CrashMode, Directory, FaultDir};
use floe_storage::testing::stamped_batch;
use floe_storage::{Error, Log, TermHistoryRecovery};
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

/// A log of terms 1, 1, 2 over two segments, closed cleanly. Returns it and its end.
fn three_batches() -> (FaultDir, u64) {
    let dir = FaultDir::new();
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let mut log = open(&d, &small_config());
    for (i, term) in [1, 1, 2].into_iter().enumerate() {
        log.append(&mut batch(i as u64, 2, 100, 0), term, 0)
            .unwrap();
        if i == 0 {
            log.roll().unwrap();
        }
    }
    let end = log.log_end();
    log.close().unwrap();
    (dir, end)
}

/// A well-formed history file (FORMAT.md, "Term history") holding `entries`.
fn history_file(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut out = b"FLTM\x01\0\0\0".to_vec();
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for (term, start) in entries {
        out.extend_from_slice(&term.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Every read either serves batches whose terms agree with `term_at`, or is a typed error.
fn reads_are_typed(log: &mut Log) {
    for off in log.log_start()..log.log_end() {
        match log.read(off, 1 << 20) {
            Ok(r) => {
                for b in r.batches() {
                    let h = floe_protocol::batch::BatchHeader::parse(&b).unwrap();
                    assert_eq!(log.term_at(h.base_offset).unwrap(), h.term);
                }
            }
            Err(Error::Corruption { .. }) => {}
            Err(e) => panic!("untyped outcome {e:?}"),
        }
        assert!(matches!(
            log.term_at(off),
            Ok(_) | Err(Error::Corruption { .. })
        ));
    }
    log.verify().unwrap();
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

    #[test]
    fn arbitrary_term_history_bytes_are_rebuilt(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let (dir, end) = three_batches();
        dir.put_durable("log.terms", &bytes);
        let d: Arc<dyn Directory> = Arc::new(dir.clone());
        let mut log = open(&d, &small_config());
        prop_assert_eq!(
            log.recovery_report().term_history,
            TermHistoryRecovery::Rebuilt { damaged: true }
        );
        prop_assert_eq!(log.log_end(), end);
        prop_assert_eq!(log.term_history(), vec![(1, 0), (2, 4)]);
        prop_assert_eq!(log.last_term(), 2);
        prop_assert_eq!(read_all(&log, 0).len(), 3);
        reads_are_typed(&mut log);
    }

    #[test]
    fn arbitrary_well_formed_history_is_typed(
        entries in prop_oneof![
            1 => Just(vec![(1u64, 0u64), (2, 4)]),
            4 => prop::collection::vec((0u64..5, 0u64..8), 0..5),
        ],
    ) {
        let (dir, _) = three_batches();
        dir.put_durable("log.terms", &history_file(&entries));
        let d: Arc<dyn Directory> = Arc::new(dir.clone());
        let mut log = open(&d, &small_config());
        reads_are_typed(&mut log);
        // A history that agrees with the batches serves all of them.
        if log.recovery_report().term_history == TermHistoryRecovery::Loaded
            && entries == [(1, 0), (2, 4)]
        {
            prop_assert_eq!(read_all(&log, 0).len(), 3);
        }
        drop(log);
        let d2: Arc<dyn Directory> = Arc::new(dir.crash(CrashMode::DropUnsynced));
        let mut again = open(&d2, &small_config());
        reads_are_typed(&mut again);
    }
}

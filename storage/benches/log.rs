//! The partition log's hot paths: append (validate, stamp, copy into the mapped segment,
//! index) on the memory and the file backend, and the index lookup behind every fetch and
//! every Raft `term(index)`.
//!
//! `cargo bench -p floe-storage --bench log` (CI: `-- --test`, each once)
//!
//! Appends are measured without fsync: the fsync is the disk's, measured by `floe-bench
//! storage` beside a raw-disk baseline; here it is the CPU cost per batch byte.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use floe_storage::backend::{FileDir, MemDir};
use floe_storage::{FsyncPolicy, Log, LogConfig, OpenOptions, testing};

/// A batch of 64 records of 1000 bytes (the payload is opaque to storage).
const RECORDS: u32 = 64;
const PAYLOAD: usize = 64 * 1000;
/// Trim the file-backed log once it holds this much, so a long run does not fill the disk.
const TRIM_AT: u64 = 256 << 20;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 20,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    let mut batch = testing::batch(RECORDS, &vec![0x5au8; PAYLOAD], 1_700_000_000_000);
    g.throughput(Throughput::Bytes(batch.len() as u64));

    let mut mem =
        Log::open(Arc::new(MemDir::new()), config(), OpenOptions::default()).expect("memory log");
    g.bench_function("memory backend, 64 KB batch", |b| {
        b.iter(|| {
            black_box(mem.append(&mut batch, 1, 0).expect("append"));
            if mem.size_bytes() > TRIM_AT {
                mem.truncate_prefix(mem.log_end()).expect("trim");
            }
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = Log::open(
        Arc::new(FileDir::open(dir.path()).expect("dir")),
        config(),
        OpenOptions::default(),
    )
    .expect("file log");
    g.bench_function("file backend (mmap, no fsync), 64 KB batch", |b| {
        b.iter(|| {
            black_box(file.append(&mut batch, 1, 0).expect("append"));
            if file.size_bytes() > TRIM_AT {
                file.truncate_prefix(file.log_end()).expect("trim");
            }
        })
    });
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("index lookup");
    // 20000 small batches over several segments, so a lookup picks a segment, then an index
    // entry, then scans a little.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(
        Arc::new(FileDir::open(dir.path()).expect("dir")),
        LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        },
        OpenOptions::default(),
    )
    .expect("file log");
    let mut batch = testing::batch(10, &[7u8; 200], 1_700_000_000_000);
    for _ in 0..20_000 {
        log.append(&mut batch, 1, 0).expect("append");
    }
    log.sync().expect("sync");
    let end = log.log_end();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % end
    };
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_offset (random)", |b| {
        b.iter_batched(
            &mut next,
            |o| black_box(log.lookup_offset(o).expect("lookup")),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("read 64 KB at a random offset", |b| {
        b.iter_batched(
            &mut next,
            |o| black_box(log.read(o, 64 * 1024).expect("read")),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, append, index_lookup);
criterion_main!(benches);

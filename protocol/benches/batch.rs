//! Batch build, validate (header checks + CRC) and iterate, beside crc32fast alone over the same
//! bytes so the validate/CRC ratio is measured in one run.
//!
//! `cargo bench -p floe-protocol --bench batch -- --warm-up-time 1 --measurement-time 3`
//!
//! Throughput is per uncompressed batch byte (about 1 MiB) for every bench, lz4 ones included.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use floe_protocol::batch::{BatchBuilder, BatchLimits, BatchView, CRC_START, CompressionCodec};
use std::hint::black_box;

const RECORD_LEN: usize = 1000;
const BATCH_TARGET: usize = 1 << 20;

fn values() -> Vec<Vec<u8>> {
    // A quarter pseudo-random, the rest repetitive text: lz4 gets roughly 3:1.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BATCH_TARGET / RECORD_LEN)
        .map(|_| {
            (0..RECORD_LEN)
                .map(|j| {
                    if j < RECORD_LEN / 4 {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    } else {
                        b'a' + (j % 26) as u8
                    }
                })
                .collect()
        })
        .collect()
}

fn build(codec: CompressionCodec, values: &[Vec<u8>]) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_producer(1, 0, 0);
    b.reserve(BATCH_TARGET + 16 * 1024);
    for (i, v) in values.iter().enumerate() {
        b.append(
            1_700_000_000_000 + i as i64,
            Some(b"key-0001"),
            Some(v),
            &[],
        )
        .expect("fits");
    }
    b.finish().expect("non-empty")
}

fn benches(c: &mut Criterion) {
    let values = values();
    let plain = build(CompressionCodec::None, &values);
    let lz4 = build(CompressionCodec::Lz4, &values);
    let limits = BatchLimits::default();
    eprintln!(
        "batch: {} records of {RECORD_LEN} B, {} B uncompressed, {} B lz4",
        values.len(),
        plain.len(),
        lz4.len()
    );

    let mut g = c.benchmark_group("batch_1MiB");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("build_none", |b| {
        b.iter(|| build(CompressionCodec::None, black_box(&values)))
    });
    g.bench_function("build_lz4", |b| {
        b.iter(|| build(CompressionCodec::Lz4, black_box(&values)))
    });
    g.bench_function("crc32fast_only", |b| {
        b.iter(|| crc32fast::hash(black_box(&plain[CRC_START..])))
    });
    g.bench_function("validate", |b| {
        b.iter(|| BatchView::parse(black_box(plain.clone()), limits).expect("valid"))
    });
    g.bench_function("validate_lz4_compressed", |b| {
        b.iter(|| BatchView::parse(black_box(lz4.clone()), limits).expect("valid"))
    });
    let view = BatchView::parse(plain.clone(), limits).expect("valid");
    g.bench_function("iterate_none", |b| {
        b.iter(|| {
            let records = view.records().expect("records");
            let mut sum = 0usize;
            for r in records.iter() {
                sum += r.expect("record").value.map_or(0, <[u8]>::len);
            }
            sum
        })
    });
    let view_lz4 = BatchView::parse(lz4.clone(), limits).expect("valid");
    g.bench_function("decompress_iterate_lz4", |b| {
        b.iter(|| {
            let records = view_lz4.records().expect("records");
            records.iter().filter(Result::is_ok).count()
        })
    });
    g.finish();
}

criterion_group!(batch, benches);
criterion_main!(batch);

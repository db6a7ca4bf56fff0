//! `floe-bench storage`: one partition log on the real file backend.
//!
//! Every phase starts after a `sync` (untimed), so none pays for another's write-back.
//!
//! 1. A same-run baseline: the same number of bytes written like `dd bs=1M` to the page
//!    cache, best of two runs.
//! 2. Appends of `batch_records`-record batches until `total_bytes` of record values:
//!    `--fsync never` on one thread with `Log::append` (no fsync at all); `--fsync always`
//!    from `--producers` threads through the group-committing `LogWriter`, each append
//!    acknowledged only once fsynced. Latency is per append (call, or until acknowledged).
//! 3. With `--fsync always`: the cost of one fsync per single-record append, measured on its
//!    own log, so the group-commit gain is a ratio from the same run.
//! 4. The log is closed, reopened (recovery) and scanned from start to end with CRC checks,
//!    beside a `dd if=FILE of=/dev/null bs=1M`-like read of a cached file of the same size
//!    (best of two).
//!
//! `bytes` counts batch bytes as stored (headers and record framing included: what the disk
//! sees), so the ratios against raw writes compare like with like; `payload_bytes` counts
//! record values alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use floe_protocol::batch::{BatchBuilder, BatchHeader, CompressionCodec};
use floe_storage::backend::FileDir;
use floe_storage::{FsyncPolicy, Log, LogConfig, LogWriter, OpenOptions, system_now_ms};

use crate::report::{LatencyRecorder, Report};
use crate::{FsyncArg, StorageArgs, raw};

/// Largest batch the benchmark will build (the log's default limit is 8 MiB).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Read budget per `Log::read` in the scan, like a consumer's fetch size.
const READ_BUDGET: usize = 1 << 20;

pub(crate) fn run(args: &StorageArgs) -> anyhow::Result<Report> {
    ensure!(args.message_size > 0, "--message-size must be > 0");
    ensure!(args.batch_records > 0, "--batch-records must be > 0");
    ensure!(args.producers > 0, "--producers must be > 0");
    ensure!(
        args.total_bytes >= args.message_size as u64,
        "--total-bytes is below one message"
    );
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let log_dir = args.dir.join("log");
    if log_dir.exists() {
        bail!("{} already exists: give an empty --dir", log_dir.display());
    }

    let template = build_batch(args.message_size, args.batch_records)?;
    let records_total = args.total_bytes / args.message_size as u64;
    let batches = records_total.div_ceil(args.batch_records as u64);
    let stored_bytes = batches * template.len() as u64;

    let raw_file = args.dir.join("raw-baseline.tmp");
    // Best of two, so the ratios are against the disk at its best in this run (conservative).
    raw::settle()?;
    let first = raw::write_like_dd(&raw_file, stored_bytes)?;
    raw::settle()?;
    let raw_write = first.min(raw::write_like_dd(&raw_file, stored_bytes)?);

    let defaults = LogConfig::default();
    let config = LogConfig {
        fsync: match args.fsync {
            FsyncArg::Always => FsyncPolicy::Always,
            FsyncArg::Never => FsyncPolicy::Never,
        },
        max_batch_bytes: MAX_BATCH_BYTES as u32,
        segment_bytes: args.segment_bytes.unwrap_or(defaults.segment_bytes),
        ..defaults
    };
    let log = open_log(&log_dir, config.clone())?;
    raw::settle()?;
    let (elapsed, latency, fsyncs) = match args.fsync {
        FsyncArg::Never => append_one_thread(log, &template, batches)?,
        FsyncArg::Always => append_group_commit(log, &template, batches, args.producers)?,
    };
    let records = batches * args.batch_records as u64;

    let mut report = Report {
        name: "storage",
        records,
        bytes: stored_bytes,
        elapsed,
        latency: latency.summary(),
        latency_label: "append latency ",
        extras: Vec::new(),
    };
    let write_mb = report.mb_per_sec();
    let raw_write_mb = mb_per_sec(stored_bytes, raw_write);
    report.extra("payload_bytes", records * args.message_size as u64);
    report.extra("fsync", format!("{:?}", args.fsync).to_lowercase());
    report.extra("batch_records", args.batch_records as u64);
    report.extra("segment_bytes", config.segment_bytes);
    report.extra("raw_write_mb_per_sec", raw_write_mb);
    report.extra("write_vs_raw", write_mb / raw_write_mb);
    if args.fsync == FsyncArg::Always {
        report.extra("producers", args.producers as u64);
        report.extra("appends_per_fsync", batches as f64 / fsyncs.max(1) as f64);
        let base = fsync_per_append_baseline(&args.dir.join("baseline"), args, &config)?;
        report.extra("fsync_per_append_records_per_sec", base);
        let raw_file = args.dir.join("raw-fsync.tmp");
        let n = args.baseline_appends.max(1);
        let raw_fsync = raw::fsync_each_write(&raw_file, args.message_size, n)?;
        std::fs::remove_file(&raw_file).ok();
        report.extra(
            "raw_fsync_per_write_per_sec",
            n as f64 / raw_fsync.as_secs_f64().max(1e-9),
        );
        report.extra("group_commit_speedup", report.records_per_sec() / base);
    }

    raw::settle()?;
    let reopen_start = Instant::now();
    let log = open_log(&log_dir, config)?;
    report.extra("recovery_seconds", reopen_start.elapsed().as_secs_f64());
    let (scanned, scan) = scan(&log, records)?;
    let raw_files = std::slice::from_ref(&raw_file);
    let (raw_read_bytes, first) = raw::read_like_dd(raw_files)?;
    let raw_read = first.min(raw::read_like_dd(raw_files)?.1);
    std::fs::remove_file(&raw_file).ok();
    let read_mb = mb_per_sec(scanned, scan);
    let raw_read_mb = mb_per_sec(raw_read_bytes, raw_read);
    report.extra("read_mb_per_sec", read_mb);
    report.extra("raw_read_mb_per_sec", raw_read_mb);
    report.extra("read_vs_raw", read_mb / raw_read_mb);
    Ok(report)
}

fn mb_per_sec(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn open_log(dir: &Path, config: LogConfig) -> anyhow::Result<Log> {
    let backend = FileDir::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let opts = OpenOptions {
        now_ms: system_now_ms(),
        durable_floor: None,
    };
    let log = Log::open(Arc::new(backend), config, opts)?;
    ensure!(
        log.corruption().is_empty(),
        "log reports corruption: {:?}",
        log.corruption()
    );
    Ok(log)
}

/// A batch of `records` records of `size`-byte values (a non-repeating byte pattern, so the
/// figures would not flatter a compressing disk).
fn build_batch(size: usize, records: usize) -> anyhow::Result<Vec<u8>> {
    let mut value = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut value {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let now = system_now_ms() as i64;
    let mut builder = BatchBuilder::new(CompressionCodec::None).with_max_len(MAX_BATCH_BYTES);
    for _ in 0..records {
        builder
            .append(now, None, Some(&value), &[])
            .context("--message-size × --batch-records exceeds the 8 MiB batch limit")?;
    }
    Ok(builder.finish()?.to_vec())
}

type AppendResult = (Duration, LatencyRecorder, u64);

fn append_one_thread(mut log: Log, template: &[u8], batches: u64) -> anyhow::Result<AppendResult> {
    let mut batch = template.to_vec();
    let mut latency = LatencyRecorder::new();
    let now = system_now_ms();
    let start = Instant::now();
    for _ in 0..batches {
        let t = Instant::now();
        log.append(&mut batch, 1, now)?;
        latency.record(t.elapsed());
    }
    let elapsed = start.elapsed();
    // Leave the data durable for the read-back, outside the timed region.
    log.sync()?;
    Ok((elapsed, latency, 0))
}

fn append_group_commit(
    log: Log,
    template: &[u8],
    batches: u64,
    producers: usize,
) -> anyhow::Result<AppendResult> {
    let writer = LogWriter::spawn(log);
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let per_thread = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<(LatencyRecorder, Vec<u64>)> {
                    let mut latency = LatencyRecorder::new();
                    let mut durable_ends = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < batches {
                        let t = Instant::now();
                        let done = writer.append(template.to_vec(), 1)?;
                        ensure!(
                            done.durable_end >= done.info.next_offset,
                            "acknowledged before durable"
                        );
                        latency.record(t.elapsed());
                        durable_ends.push(done.durable_end);
                    }
                    Ok((latency, durable_ends))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("producer thread panicked"))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    let mut latency = LatencyRecorder::new();
    // Every append acknowledged by one fsync carries the same durable end, so the number of
    // distinct durable ends is the number of fsync groups.
    let mut durable_ends = Vec::new();
    for r in per_thread {
        let (l, ends) = r?;
        latency.merge(&l);
        durable_ends.extend(ends);
    }
    ensure!(
        latency.len() == batches,
        "{} of {batches} appends acknowledged",
        latency.len()
    );
    durable_ends.sort_unstable();
    durable_ends.dedup();
    writer.shutdown()?;
    Ok((elapsed, latency, durable_ends.len() as u64))
}

/// Records per second when every single-record append is fsynced before the next.
fn fsync_per_append_baseline(
    dir: &Path,
    args: &StorageArgs,
    config: &LogConfig,
) -> anyhow::Result<f64> {
    let mut log = open_log(dir, config.clone())?;
    let mut batch = build_batch(args.message_size, 1)?;
    let n = args.baseline_appends.max(1);
    let start = Instant::now();
    for _ in 0..n {
        log.append(&mut batch, 1, 0)?;
        log.sync()?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
    drop(log);
    std::fs::remove_dir_all(dir).ok();
    Ok(rate)
}

/// Reads the whole log through `Log::read` (every batch CRC-checked by the log) and checks
/// offsets are dense and the record count is right. Returns (bytes, time).
fn scan(log: &Log, records: u64) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let mut offset = log.log_start();
    let mut bytes = 0u64;
    while offset < log.log_end() {
        let read = log.read(offset, READ_BUDGET)?;
        ensure!(
            read.next_offset > offset,
            "read at {offset} made no progress"
        );
        for batch in read.batches() {
            let h = BatchHeader::parse(&batch)?;
            ensure!(
                h.base_offset == offset,
                "gap: expected {offset}, found {}",
                h.base_offset
            );
            offset = h.next_offset();
            bytes += batch.len() as u64;
        }
    }
    let elapsed = start.elapsed();
    ensure!(
        offset == records,
        "scanned {offset} records, appended {records}"
    );
    Ok((bytes, elapsed))
}

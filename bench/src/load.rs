//! `floe-bench produce | consume | e2e`: load through the real client against a cluster (given
//! with `--brokers`, or started with `--local`).
//!
//! Honesty rules, all enforced here:
//! * Only acknowledged records count, and any failed record fails the run.
//! * Latency is measured from each record's *intended* send time. Under `--rate` the schedule
//!   is fixed (record i of a producer is due at start + i / rate) and a record that waits
//!   behind a slow broker — for buffer room, or because the loop fell behind — carries that
//!   wait in its latency (no coordinated omission). Without `--rate` the intended time is when
//!   the producer tried to send it.
//! * Every record's value carries (run id, producer, sequence, intended send time); consumers
//!   verify each record was read exactly once and, per partition, in producer order, and that
//!   nothing acknowledged is missing ([`crate::verify`]). Any problem exits non-zero.
//! * `--producers K` / `--consumers K` are K tasks with K separate clients (connections).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use floe_client::{
    Acks, Client, Compression, Consumer, ErrorCode, NewTopic, Producer, ProducerRecord, StartFrom,
    TopicPartition,
};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::{self, LocalCluster, TopicSpec};
use crate::meter::{Clock, Meter, Sample, Ticker, merge_totals};
use crate::report::{LatencyRecorder, Report};
use crate::value::{HEADER_LEN, ValueFactory, ValueHeader};
use crate::verify::{ProducerKey, Verifier};
use crate::{AcksArg, CompressionArg, FsyncArg, LoadArgs, LocalTopics};

/// Which sub-command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Produce,
    Consume,
    E2e,
}

/// How long the cluster gets to answer and elect leaders for the topic.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Records produced by default (`--count` and `--duration` both absent).
const DEFAULT_COUNT: u64 = 100_000;
/// Times a consumer resubscribes after its stream failed before the run fails.
const MAX_RESUBSCRIBES: u32 = 5;
/// Largest `--keys`: the keys are made up front.
const MAX_KEYS: u32 = 10_000_000;

pub(crate) fn run(kind: Kind, args: &LoadArgs) -> anyhow::Result<Report> {
    validate(kind, args)?;
    let mut local = if args.local {
        let floe = cluster::floe_binary(args.floe_bin.as_deref())?;
        let spec = TopicSpec {
            name: args.topic.clone(),
            partitions: args.partitions,
            replicas: args.replicas,
        };
        let c = LocalCluster::start(
            &floe,
            &spec,
            args.local_dir.as_deref(),
            args.local_topics == LocalTopics::Static,
        )?;
        if !args.quiet {
            eprintln!(
                "floe-bench: local cluster in {} (node pids {:?})",
                c.dir().display(),
                c.pids()
            );
        }
        Some(c)
    } else {
        None
    };
    let (brokers, ca) = match &local {
        Some(c) => (c.brokers.clone(), c.ca_cert.clone()),
        None => (
            args.brokers.clone(),
            args.ca_cert.clone().context("--ca-cert is required")?,
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let conn = Conn {
        brokers: &brokers,
        ca: &ca,
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run_async(kind, args, &conn) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    // Tasks still running (after an error or Ctrl-C) must not hold the process.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let mut report = result?;
    if let Some(c) = local.as_mut() {
        // The numbers stand either way; an unclean stop is a broker finding worth seeing.
        if let Err(e) = c.stop() {
            eprintln!("floe-bench: warning: {e:#}");
            report.extra("cluster_stop", format!("{e:#}"));
        }
    }
    Ok(report)
}

fn validate(kind: Kind, args: &LoadArgs) -> anyhow::Result<()> {
    ensure!(
        args.message_size >= HEADER_LEN,
        "--message-size must be at least {HEADER_LEN} (the verified header)"
    );
    ensure!(
        args.message_size <= 1 << 20,
        "--message-size above 1 MiB is beyond the producer's request limit"
    );
    ensure!(
        args.producers > 0 && args.producers <= 1024,
        "--producers must be 1..=1024"
    );
    ensure!(
        args.consumers > 0 && args.consumers <= 1024,
        "--consumers must be 1..=1024"
    );
    ensure!(args.partitions > 0, "--partitions must be > 0");
    ensure!(args.replicas > 0, "--replicas must be > 0");
    ensure!(args.batch_size > 0, "--batch-size must be > 0");
    ensure!(
        args.buffer_memory >= args.batch_size,
        "--buffer-memory must be at least --batch-size"
    );
    if let Some(r) = args.rate {
        ensure!(r.is_finite() && r > 0.0, "--rate must be > 0");
    }
    if let Some(c) = args.count {
        ensure!(c > 0, "--count must be > 0");
    }
    if let Some(d) = args.duration {
        ensure!(d.is_finite() && d > 0.0, "--duration must be > 0");
    }
    ensure!(
        args.warmup.is_finite() && args.warmup >= 0.0,
        "--warmup must be >= 0"
    );
    if let Some(k) = args.keys {
        ensure!(k > 0 && k <= MAX_KEYS, "--keys must be 1..={MAX_KEYS}");
    }
    if args.local && args.fsync == FsyncArg::Never {
        bail!(
            "--fsync never: floe's brokers have no fsync setting yet (they fsync every write), \
             so a --local cluster cannot run without fsync"
        );
    }
    if kind == Kind::Consume && args.rate.is_some() {
        bail!("--rate applies to produce and e2e");
    }
    Ok(())
}

/// Where the cluster is.
#[derive(Debug, Clone, Copy)]
struct Conn<'a> {
    brokers: &'a [String],
    ca: &'a Path,
}

/// Connects, retrying while the brokers come up.
async fn connect(conn: &Conn<'_>) -> anyhow::Result<Client> {
    let Conn { brokers, ca } = *conn;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match Client::builder()
            .brokers(brokers.iter().cloned())
            .ca_cert(ca)
            .build()
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context(format!("connecting to {}", brokers.join(","))),
        }
    }
}

/// Waits until the cluster reports `n` registered brokers.
async fn wait_for_brokers(client: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match client.admin().describe_cluster().await {
            Ok(c) if c.brokers.len() >= n => return Ok(()),
            Ok(c) => format!("{} of {n} brokers registered", c.brokers.len()),
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => return Err(e).context("describing the cluster"),
        };
        if Instant::now() >= deadline {
            bail!("cluster not ready after {READY_TIMEOUT:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The topic as found (or created): partitions and replication factor.
#[derive(Debug, Clone, Copy)]
struct TopicInfo {
    partitions: u32,
    replicas: usize,
}

/// Uses the topic if it exists (warning when its shape differs from the flags), creates it
/// with the Admin API if not, and waits until every partition has a leader.
async fn setup_topic(client: &Client, args: &LoadArgs) -> anyhow::Result<TopicInfo> {
    let admin = client.admin();
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut created = false;
    let mut warned = false;
    loop {
        let last = match admin.describe_topics(&[args.topic.as_str()]).await {
            Ok(mut d) if !d.is_empty() => {
                let t = d.swap_remove(0);
                let info = TopicInfo {
                    partitions: t.partitions.len() as u32,
                    replicas: t.replication_factor(),
                };
                if !warned
                    && (info.partitions != args.partitions
                        || info.replicas != usize::from(args.replicas))
                {
                    warned = true;
                    eprintln!(
                        "floe-bench: topic {} exists with {} partitions x {} replicas \
                         (asked: {} x {}); using it as it is",
                        args.topic, info.partitions, info.replicas, args.partitions, args.replicas
                    );
                }
                let leaderless = t.partitions.iter().filter(|p| p.leader.is_none()).count();
                if leaderless == 0 && info.partitions > 0 {
                    return Ok(info);
                }
                format!(
                    "{leaderless} of {} partitions have no leader",
                    info.partitions
                )
            }
            Ok(_) => "empty topic description".to_string(),
            Err(e) if e.code() == Some(ErrorCode::UnknownTopicOrPartition) && !created => {
                let topic = NewTopic::new(&args.topic, args.partitions, args.replicas)
                    .config("fsync", args.fsync.as_str());
                match admin.create_topic(topic).await {
                    Ok(()) => created = true,
                    Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => created = true,
                    Err(e) => {
                        return Err(e).context(format!(
                            "topic {} does not exist and creating it failed (for --local, \
                             --local-topics static lists it in the nodes' topic table instead)",
                            args.topic
                        ));
                    }
                }
                continue;
            }
            Err(e) if e.is_retryable() || e.code() == Some(ErrorCode::UnknownTopicOrPartition) => {
                e.to_string()
            }
            Err(e) => return Err(e).context(format!("describing topic {}", args.topic)),
        };
        if Instant::now() >= deadline {
            bail!(
                "topic {} not ready after {READY_TIMEOUT:?}: {last}",
                args.topic
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What every producer task shares.
#[derive(Debug)]
struct Plan {
    run_id: u64,
    topic: String,
    clock: Clock,
    start: Instant,
    warmup_end: Instant,
    /// Duration mode: no record is due at or after this.
    end: Option<Instant>,
    /// Per-producer interval between intended send times (`--rate`).
    interval: Option<Duration>,
    factory: ValueFactory,
    keys: Option<Vec<Bytes>>,
    stop: AtomicBool,
}

/// The records one producer sent (all acknowledged unless its meter counts failures).
#[derive(Debug, Clone, Copy)]
struct Sent {
    producer: u32,
    records: u64,
}

async fn producer_task(
    client: Client,
    args: LoadArgs,
    plan: Arc<Plan>,
    idx: u32,
    measured_count: Option<u64>,
    meter: Arc<Meter>,
) -> anyhow::Result<Sent> {
    let producer = Producer::builder(&client)
        .acks(match args.acks {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
        })
        .linger(Duration::from_millis(args.linger_ms))
        .batch_size(args.batch_size)
        .buffer_memory(args.buffer_memory)
        .compression(match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Lz4 => Compression::Lz4,
        })
        .build()
        .await
        .context("starting a producer")?;
    // Spread the producers' schedules so K producers at rate R/K are one even stream.
    let offset = plan
        .interval
        .map_or(Duration::ZERO, |iv| iv * idx / args.producers);
    let mut seq: u64 = 0;
    let mut measured_sent: u64 = 0;
    // Everyone starts at the plan's start, so no record is due before it.
    tokio::time::sleep_until(plan.start.into()).await;
    loop {
        if plan.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let intended = match plan.interval {
            Some(iv) => {
                let due = plan.start + offset + iv.mul_f64(seq as f64);
                if due > now + Duration::from_micros(500) {
                    tokio::time::sleep_until(due.into()).await;
                }
                due
            }
            None => now,
        };
        let measured = intended >= plan.warmup_end;
        if let Some(end) = plan.end
            && intended >= end
        {
            break;
        }
        if let Some(n) = measured_count
            && measured
            && measured_sent >= n
        {
            break;
        }
        let value = plan.factory.make(ValueHeader {
            run_id: plan.run_id,
            producer: idx,
            seq,
            intended_ns: plan.clock.epoch_ns(intended),
        });
        let mut size = value.len() as u64;
        let mut record = ProducerRecord::new(plan.topic.clone(), value);
        if let Some(keys) = &plan.keys {
            let key = keys[(seq % keys.len() as u64) as usize].clone();
            size += key.len() as u64;
            record = record.key(key);
        }
        let m = meter.clone();
        producer
            .send_with_callback(record, move |result| match result {
                Ok(_) => m.record(intended.elapsed(), size, measured, Instant::now()),
                Err(e) => m.fail(e.to_string()),
            })
            .await
            .context("producing")?;
        seq += 1;
        if measured {
            measured_sent += 1;
        }
    }
    producer.flush().await.context("flushing the producer")?;
    producer.close().await.context("closing the producer")?;
    client.close().await;
    Ok(Sent {
        producer: idx,
        records: seq,
    })
}

/// What the consumers share, and how each decides it is done.
#[derive(Debug)]
struct ConsumeControl {
    topic: String,
    /// Where each partition's reading starts.
    start: StartFrom,
    /// Only this run's records are accepted (e2e).
    run_filter: Option<u64>,
    /// Records read by all consumers.
    consumed: AtomicU64,
    /// Stop once `consumed` reaches this (set by e2e when the producers are done).
    target: watch::Sender<Option<u64>>,
    /// Give up after this long without a record (once a target is set, or always for
    /// `consume` without --count).
    idle: Duration,
    idle_before_target: bool,
    clock: Clock,
    /// Records due (e2e) or read (consume) before this are not measured.
    warmup_end: Instant,
    /// e2e: the producers' warm-up end in epoch ns (set once their schedule is made).
    warmup_end_ns: AtomicU64,
    /// e2e: latency from the record's intended send time; consume: gap between records.
    end_to_end: bool,
    /// Resubscriptions after a failed stream, over all consumers (reported in the JSON).
    resubscribes: AtomicU64,
}

async fn consumer_task(
    client: Client,
    partitions: Vec<u32>,
    ctl: Arc<ConsumeControl>,
    meter: Arc<Meter>,
    assigned: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Verifier> {
    let consumer = Consumer::builder(&client)
        .build()
        .context("starting a consumer")?;
    let topic = &ctl.topic;
    for p in partitions {
        consumer
            .assign(TopicPartition::new(topic.clone(), p), ctl.start)
            .await
            .with_context(|| format!("assigning {topic}/{p}"))?;
    }
    let _ = assigned.send(());
    let mut verifier = Verifier::new(ctl.run_filter);
    let mut stream = consumer.stream();
    let mut target = ctl.target.subscribe();
    let mut last_read = Instant::now();
    let mut resubscribes = 0;
    loop {
        if let Some(t) = *target.borrow_and_update()
            && ctl.consumed.load(Ordering::Relaxed) >= t
        {
            break;
        }
        let idle_applies = ctl.idle_before_target || target.borrow().is_some();
        let next = tokio::select! {
            n = tokio::time::timeout(Duration::from_millis(100), stream.next()) => n,
            _ = target.changed() => continue,
        };
        match next {
            Ok(Some(Ok(rec))) => {
                let now = Instant::now();
                let bytes = rec.value.as_ref().map_or(0, Bytes::len) as u64
                    + rec.key.as_ref().map_or(0, Bytes::len) as u64;
                let header = verifier.check(rec.partition, rec.offset, rec.value.as_deref());
                if ctl.end_to_end {
                    if let Some(h) = header {
                        let measured = h.intended_ns >= ctl.warmup_end_ns.load(Ordering::Relaxed);
                        meter.record(ctl.clock.since(h.intended_ns, now), bytes, measured, now);
                    }
                } else {
                    let measured = now >= ctl.warmup_end;
                    meter.record(now.duration_since(last_read), bytes, measured, now);
                }
                last_read = now;
                ctl.consumed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Err(e))) if resubscribes < MAX_RESUBSCRIBES => {
                // A partition whose subscription failed is no longer read (the client gives
                // up on it). The verifier makes resuming from the consumer's own position
                // safe: a duplicate or a gap would fail the run.
                resubscribes += 1;
                ctl.resubscribes.fetch_add(1, Ordering::Relaxed);
                eprintln!("floe-bench: warning: consumer: {e}; resubscribing from its positions");
                for tp in consumer.assignment() {
                    let at = consumer.position(&tp)?;
                    consumer.seek(&tp, at)?;
                }
            }
            Ok(Some(Err(e))) => return Err(e).context("consuming"),
            Ok(None) => break,
            Err(_) => {
                if idle_applies && last_read.elapsed() >= ctl.idle {
                    break;
                }
            }
        }
    }
    consumer.close();
    client.close().await;
    Ok(verifier)
}

/// Records per producer for `total`, the remainder to the first ones.
fn split(total: u64, parts: u32) -> Vec<u64> {
    let parts = u64::from(parts);
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

fn new_run_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Mix in the pid so two runs started in the same nanosecond still differ.
    (t ^ (u64::from(std::process::id()) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The produce side of a run.
struct ProduceOutcome {
    meters: Vec<Arc<Meter>>,
    samples: Vec<Sample>,
    /// Where the samples' time axis starts.
    origin: Instant,
    sent: Vec<Sent>,
    plan: Arc<Plan>,
}

impl ProduceOutcome {
    /// Records acknowledged per producer; fails if any record failed.
    fn acknowledged(&self) -> anyhow::Result<HashMap<ProducerKey, u64>> {
        let totals = merge_totals(&self.meters);
        if totals.failures > 0 {
            bail!(
                "{} records were not acknowledged; first error: {}",
                totals.failures,
                totals.first_failure.unwrap_or_default()
            );
        }
        Ok(self
            .sent
            .iter()
            .map(|s| ((self.plan.run_id, s.producer), s.records))
            .collect())
    }
}

/// One produce phase.
#[derive(Debug)]
struct ProduceRun<'a> {
    /// Measured records (None: `--duration`).
    count: Option<u64>,
    /// Show a progress bar (unless --quiet).
    show: bool,
    label: &'static str,
    run_id: u64,
    clock: Clock,
    /// Where to publish the warm-up end (epoch ns) once the schedule is made.
    warmup_sink: Option<&'a AtomicU64>,
}

/// Starts the producers; returns once they are all done.
async fn produce(
    args: &LoadArgs,
    conn: &Conn<'_>,
    run: ProduceRun<'_>,
) -> anyhow::Result<ProduceOutcome> {
    let ProduceRun {
        count,
        show,
        label,
        run_id,
        clock,
        warmup_sink,
    } = run;
    let mut clients = Vec::new();
    for _ in 0..args.producers {
        clients.push(connect(conn).await?);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let warmup_end = start + Duration::from_secs_f64(args.warmup);
    let plan = Arc::new(Plan {
        run_id,
        topic: args.topic.clone(),
        clock,
        start,
        warmup_end,
        end: args
            .duration
            .filter(|_| count.is_none())
            .map(|d| warmup_end + Duration::from_secs_f64(d)),
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(f64::from(args.producers) / r)),
        factory: ValueFactory::new(
            args.message_size,
            0x5eed ^ start.elapsed().as_nanos() as u64,
        ),
        keys: args
            .keys
            .map(|n| (0..n).map(|i| Bytes::from(format!("key-{i:08}"))).collect()),
        stop: AtomicBool::new(false),
    });
    if let Some(sink) = warmup_sink {
        sink.store(plan.clock.epoch_ns(warmup_end), Ordering::Relaxed);
    }
    let counts: Vec<Option<u64>> = match count {
        Some(n) => split(n, args.producers).into_iter().map(Some).collect(),
        None => vec![None; args.producers as usize],
    };
    let meters: Vec<Arc<Meter>> = (0..args.producers).map(|_| Meter::new()).collect();
    let ticker = Ticker::start(
        label,
        meters.clone(),
        count,
        args.quiet || !show,
        Duration::from_secs(1),
    );
    let origin = ticker.origin();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(producer_task(
            client,
            args.clone(),
            plan.clone(),
            i as u32,
            counts[i],
            meters[i].clone(),
        )));
    }
    let mut sent = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => sent.push(s),
            Ok(Err(e)) => {
                plan.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                plan.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(anyhow!("producer task failed: {e}"));
            }
        }
    }
    let samples = ticker.finish().await;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(ProduceOutcome {
        meters,
        samples,
        origin,
        sent,
        plan,
    })
}

/// Starts `args.consumers` consumer tasks over the topic's partitions; returns once all are
/// assigned (so an e2e run's producers start after the consumers are positioned).
async fn start_consumers(
    args: &LoadArgs,
    conn: &Conn<'_>,
    partitions: u32,
    ctl: Arc<ConsumeControl>,
) -> anyhow::Result<(
    Vec<Arc<Meter>>,
    Vec<tokio::task::JoinHandle<anyhow::Result<Verifier>>>,
)> {
    let k = args.consumers.min(partitions).max(1);
    let mut meters = Vec::new();
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for i in 0..k {
        let client = connect(conn).await?;
        let mine: Vec<u32> = (0..partitions).filter(|p| p % k == i).collect();
        let meter = Meter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        tasks.push(tokio::spawn(consumer_task(
            client,
            mine,
            ctl.clone(),
            meter.clone(),
            tx,
        )));
        meters.push(meter);
    }
    for rx in ready {
        // An Err means the task ended before assigning: its error comes out of the join.
        let _ = rx.await;
    }
    Ok((meters, tasks))
}

async fn join_consumers(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Verifier>>>,
) -> anyhow::Result<Verifier> {
    let mut all = Verifier::default();
    for t in tasks {
        let v = t
            .await
            .map_err(|e| anyhow!("consumer task failed: {e}"))??;
        all.merge(v);
    }
    Ok(all)
}

fn load_avg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn settings(report: &mut Report, args: &LoadArgs, info: TopicInfo) {
    report.extra("topic", args.topic.as_str());
    report.extra("partitions", info.partitions);
    report.extra("replicas", info.replicas as u64);
    report.extra("message_size", args.message_size as u64);
    report.extra("fsync", args.fsync.as_str());
}

fn producer_settings(report: &mut Report, args: &LoadArgs) {
    report.extra(
        "acks",
        match args.acks {
            AcksArg::All => "all",
            AcksArg::Leader => "leader",
        },
    );
    report.extra("producers", args.producers);
    report.extra("batch_size", args.batch_size as u64);
    report.extra("linger_ms", args.linger_ms);
    if let Some(r) = args.rate {
        report.extra("offered_records_per_sec", r);
        report.extra("offered_mb_per_sec", r * args.message_size as f64 / 1e6);
    }
    if let Some(k) = args.keys {
        report.extra("keys", k);
    }
}

fn elapsed(from: Instant, last: Option<Instant>) -> Duration {
    last.map_or(Duration::ZERO, |l| l.saturating_duration_since(from))
}

async fn run_async(kind: Kind, args: &LoadArgs, conn: &Conn<'_>) -> anyhow::Result<Report> {
    let load_before = load_avg();
    let admin_client = connect(conn).await?;
    if args.local {
        // The controller places replicas over registered brokers only: creating an R3 topic
        // before all three nodes registered would be refused as too wide.
        wait_for_brokers(&admin_client, cluster::NODES as usize).await?;
    }
    let info = setup_topic(&admin_client, args).await?;
    let show = !args.quiet;
    let mut report = match kind {
        Kind::Produce => {
            let count = match (args.count, args.duration) {
                (None, None) => Some(DEFAULT_COUNT),
                (c, _) => c,
            };
            let out = produce(
                args,
                conn,
                ProduceRun {
                    count,
                    show,
                    label: "produce",
                    run_id: new_run_id(),
                    clock: Clock::new(),
                    warmup_sink: None,
                },
            )
            .await?;
            out.acknowledged()?;
            let totals = merge_totals(&out.meters);
            let mut report = Report {
                name: "produce",
                records: totals.records,
                bytes: totals.bytes,
                elapsed: elapsed(out.plan.warmup_end, totals.last),
                latency: totals.latency.summary(),
                latency_label: "produce-ack latency ",
                extras: Vec::new(),
            };
            settings(&mut report, args, info);
            producer_settings(&mut report, args);
            report.extra("warmup_records", totals.all_records - totals.records);
            plot(
                args,
                "produce",
                &[("acknowledged", &out.samples)],
                &[("produce-ack", &totals.latency)],
            )?;
            report
        }
        Kind::Consume => {
            let fill = args
                .fill
                .or_else(|| args.local.then(|| args.count.unwrap_or(DEFAULT_COUNT)));
            let mut expected = None;
            if let Some(n) = fill {
                let mut fill_args = args.clone();
                fill_args.warmup = 0.0;
                fill_args.rate = None;
                let out = produce(
                    &fill_args,
                    conn,
                    ProduceRun {
                        count: Some(n),
                        show,
                        label: "fill",
                        run_id: new_run_id(),
                        clock: Clock::new(),
                        warmup_sink: None,
                    },
                )
                .await?;
                expected = Some(out.acknowledged()?);
            }
            let ctl = Arc::new(ConsumeControl {
                topic: args.topic.clone(),
                start: StartFrom::Earliest,
                run_filter: None,
                consumed: AtomicU64::new(0),
                target: watch::channel(args.count).0,
                idle: Duration::from_millis(args.idle_ms),
                idle_before_target: true,
                clock: Clock::new(),
                warmup_end: Instant::now() + Duration::from_secs_f64(args.warmup),
                warmup_end_ns: AtomicU64::new(0),
                end_to_end: false,
                resubscribes: AtomicU64::new(0),
            });
            let started = Instant::now();
            let (meters, tasks) = start_consumers(args, conn, info.partitions, ctl.clone()).await?;
            let ticker = Ticker::start(
                "consume",
                meters.clone(),
                args.count.or(fill),
                args.quiet,
                Duration::from_secs(1),
            );
            let verifier = join_consumers(tasks).await;
            let samples = ticker.finish().await;
            let verifier = verifier?;
            let read = verifier.records();
            if let Some(n) = args.count {
                ensure!(read >= n, "read {read} of --count {n} records");
            }
            // Only a full read can show a missing record of the fill.
            let expected = expected.filter(|_| args.count.is_none());
            let verdict = verifier.finish(expected.as_ref())?;
            let totals = merge_totals(&meters);
            let from = started.max(ctl.warmup_end);
            let mut report = Report {
                name: "consume",
                records: totals.records,
                bytes: totals.bytes,
                elapsed: elapsed(from, totals.last),
                latency: totals.latency.summary(),
                latency_label: "gap between records read ",
                extras: Vec::new(),
            };
            settings(&mut report, args, info);
            report.extra("consumers", args.consumers.min(info.partitions));
            report.extra("verified_records", verdict.records);
            report.extra(
                "consumer_resubscribes",
                ctl.resubscribes.load(Ordering::Relaxed),
            );
            plot(
                args,
                "consume",
                &[("consumed", &samples)],
                &[("gap between records", &totals.latency)],
            )?;
            report
        }
        Kind::E2e => {
            let count = match (args.count, args.duration) {
                (None, None) => Some(DEFAULT_COUNT),
                (c, _) => c,
            };
            let clock = Clock::new();
            let run_id = new_run_id();
            // The producers' schedule is made after the consumers are positioned; they
            // publish its warm-up end into `warmup_end_ns` (the shared clock relates both).
            let ctl = Arc::new(ConsumeControl {
                topic: args.topic.clone(),
                start: StartFrom::Latest,
                run_filter: Some(run_id),
                consumed: AtomicU64::new(0),
                target: watch::channel(None).0,
                idle: Duration::from_millis(args.idle_ms),
                idle_before_target: false,
                clock,
                warmup_end: Instant::now(),
                warmup_end_ns: AtomicU64::new(u64::MAX),
                end_to_end: true,
                resubscribes: AtomicU64::new(0),
            });
            let (cmeters, ctasks) =
                start_consumers(args, conn, info.partitions, ctl.clone()).await?;
            let cticker = Ticker::start(
                "e2e consumed",
                cmeters.clone(),
                None,
                true,
                Duration::from_secs(1),
            );
            let produced = produce(
                args,
                conn,
                ProduceRun {
                    count,
                    show,
                    label: "e2e",
                    run_id,
                    clock,
                    warmup_sink: Some(&ctl.warmup_end_ns),
                },
            )
            .await;
            let produced = match produced {
                Ok(p) => p,
                Err(e) => {
                    let _ = ctl.target.send(Some(0));
                    return Err(e);
                }
            };
            let expected = produced.acknowledged();
            let total: u64 = produced.sent.iter().map(|s| s.records).sum();
            let _ = ctl.target.send(Some(total));
            let verifier = join_consumers(ctasks).await;
            let corigin = cticker.origin();
            let samples = cticker.finish().await;
            // One time axis for both lines: the consumers' ticker started first.
            let shift = produced
                .origin
                .saturating_duration_since(corigin)
                .as_secs_f64();
            let produced_samples: Vec<Sample> = produced
                .samples
                .iter()
                .map(|s| Sample {
                    t: s.t + shift,
                    ..*s
                })
                .collect();
            let expected = expected?;
            let verifier = verifier?;
            let verdict = verifier.finish(Some(&expected))?;
            let ctotals = merge_totals(&cmeters);
            let ptotals = merge_totals(&produced.meters);
            let mut report = Report {
                name: "e2e",
                records: ctotals.records,
                bytes: ctotals.bytes,
                elapsed: elapsed(produced.plan.warmup_end, ctotals.last),
                latency: ctotals.latency.summary(),
                latency_label: "end-to-end latency ",
                extras: Vec::new(),
            };
            settings(&mut report, args, info);
            producer_settings(&mut report, args);
            report.extra("consumers", args.consumers.min(info.partitions));
            report.extra("verified_records", verdict.records);
            report.extra(
                "consumer_resubscribes",
                ctl.resubscribes.load(Ordering::Relaxed),
            );
            report.extra(
                "produce_latency_us",
                serde_json::to_value(ptotals.latency.summary()).expect("plain struct"),
            );
            let pelapsed = elapsed(produced.plan.warmup_end, ptotals.last);
            report.extra(
                "produce_mb_per_sec",
                ptotals.bytes as f64 / 1e6 / pelapsed.as_secs_f64().max(1e-9),
            );
            plot(
                args,
                "e2e",
                &[("produced", &produced_samples), ("consumed", &samples)],
                &[
                    ("end-to-end", &ctotals.latency),
                    ("produce-ack", &ptotals.latency),
                ],
            )?;
            report
        }
    };
    admin_client.close().await;
    if let Some(l) = load_before {
        report.extra("load_avg_before", l);
    }
    report.extra(
        "cluster",
        if args.local {
            json!(format!("local, {} nodes", cluster::NODES))
        } else {
            json!(conn.brokers.join(","))
        },
    );
    Ok(report)
}

fn plot(
    args: &LoadArgs,
    title: &str,
    series: &[(&str, &Vec<Sample>)],
    latencies: &[(&str, &LatencyRecorder)],
) -> anyhow::Result<()> {
    let Some(path) = &args.plot else {
        return Ok(());
    };
    let series: Vec<(&str, &[Sample])> = series.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    crate::plot::write_svg(path, title, &series, latencies)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_spreads_the_remainder() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 3), vec![1, 1, 0]);
        assert_eq!(split(9, 1), vec![9]);
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id(), new_run_id());
    }
}

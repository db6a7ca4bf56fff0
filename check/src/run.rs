//! One run: a fresh cluster, the workload under the nemesis for the time limit, healing, the
//! final read, each replica's committed prefix, the verdict; all written under the results
//! directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checker::{self, Verdict};
use crate::cluster::{Cluster, ClusterError, ReplicaGauges, TOPIC, scrape};
use crate::history::{Event, HistoryError, NemesisPhase, WORKLOAD_END};
use crate::nemesis::{self, Disk, Fault, Kind, Net, Step, Target};
use crate::proxy::{Faults, Network};
use crate::replica::read_prefix;
use crate::rng::Rng;
use crate::workload::{self, Recorder};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The `floe` binary.
    pub floe: PathBuf,
    /// Where `<timestamp>-<seed>/` is created.
    pub results: PathBuf,
    /// The seed of the schedule and of the workload's choices.
    pub seed: u64,
    /// The fault kinds the nemesis draws from.
    pub nemesis: Vec<Kind>,
    /// The disk faults the `disk` nemesis draws from.
    pub disk_faults: Vec<Disk>,
    /// How long the workload runs under faults.
    pub time_limit: Duration,
    /// Brokers (all replicas of every partition).
    pub nodes: u64,
    /// Partitions of the topic.
    pub partitions: u32,
    /// Producer clients.
    pub producers: u32,
    /// Consumer clients.
    pub consumers: u32,
    /// Examples per check in the verdict.
    pub examples: usize,
    /// Keep the nodes' data directories even when the run is valid.
    pub keep_data: bool,
}

/// Why a run could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Setting up or driving the cluster failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The results could not be written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A results file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster never became ready before any fault.
    #[error("the cluster did not elect a leader for every partition within {0:?}")]
    NotReady(Duration),
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    /// Its results directory.
    pub dir: PathBuf,
    /// The verdict.
    pub verdict: Verdict,
}

/// `verdict.json`.
#[derive(Debug, Serialize)]
struct VerdictFile<'a> {
    seed: u64,
    nemesis: Vec<&'static str>,
    time_limit_s: f64,
    schedule: Vec<String>,
    /// What the nemesis noted besides its faults (crashes, failed restarts, an incomplete
    /// final read).
    notes: Vec<String>,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// `YYYYMMDDTHHMMSSZ`, UTC.
pub fn timestamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn say(start: Instant, msg: impl AsRef<str>) {
    println!("[{:7.1}s] {}", start.elapsed().as_secs_f64(), msg.as_ref());
}

/// Scrapes every running node: per node, its gauges.
async fn scrape_all(
    cluster: &Cluster,
) -> Vec<(u64, std::collections::BTreeMap<u32, ReplicaGauges>)> {
    let mut out = Vec::new();
    for n in &cluster.nodes {
        if n.is_running()
            && !n.is_paused()
            && let Some(g) = scrape(n.metrics_addr).await
        {
            out.push((n.id, g));
        }
    }
    out
}

/// The node leading `partition` now (highest term among those claiming it), if any.
async fn leader_of(cluster: &Cluster, partition: u32) -> Option<u64> {
    scrape_all(cluster)
        .await
        .into_iter()
        .filter_map(|(id, g)| {
            g.get(&partition)
                .filter(|g| g.is_leader)
                .map(|g| (g.term, id))
        })
        .max()
        .map(|(_, id)| id)
}

async fn resolve(cluster: &Cluster, target: Target, nodes: u64) -> u64 {
    match target {
        Target::Node(n) => n,
        Target::LeaderOf(p) => leader_of(cluster, p)
            .await
            .unwrap_or(u64::from(p) % nodes + 1),
    }
}

/// Starts node `id`, retrying a few times if it exits at once. Returns whether it runs.
async fn restart(cluster: &mut Cluster, id: u64, rec: &Recorder) -> bool {
    for _ in 0..3 {
        if let Err(e) = cluster.start(id) {
            let detail = format!("node {id} cannot be started: {e}");
            rec.push(|t| info(t, "restart", detail));
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        match cluster.exited(id) {
            None => return true,
            Some(status) => {
                let detail = format!("node {id} exited after a restart: {status}");
                rec.push(|t| info(t, "restart", detail));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    false
}

fn info(t: u64, fault: &str, detail: String) -> Event {
    Event::Nemesis {
        t,
        phase: NemesisPhase::Info,
        fault: fault.into(),
        detail,
    }
}

/// Runs one step's fault: start, hold, heal.
async fn apply(
    step: &Step,
    cluster: &mut Cluster,
    net: &Network,
    rec: &Recorder,
    rng: &mut Rng,
    nodes: u64,
) -> String {
    let all: Vec<u64> = (1..=nodes).collect();
    let start = |detail: &str| {
        let d = detail.to_string();
        let kind = step.fault.kind().name();
        rec.push(|t| Event::Nemesis {
            t,
            phase: NemesisPhase::Start,
            fault: kind.into(),
            detail: d,
        });
    };
    let detail = match step.fault {
        Fault::Kill(target) => {
            let n = resolve(cluster, target, nodes).await;
            let d = format!("kill -9 node {n} ({target})");
            start(&d);
            cluster.kill(n);
            tokio::time::sleep(step.hold).await;
            restart(cluster, n, rec).await;
            d
        }
        Fault::Pause(target) => {
            let n = resolve(cluster, target, nodes).await;
            let d = format!("SIGSTOP node {n} ({target})");
            start(&d);
            if let Err(e) = cluster.pause(n) {
                rec.push(|t| info(t, "pause", e.to_string()));
            }
            tokio::time::sleep(step.hold).await;
            if let Err(e) = cluster.resume(n) {
                rec.push(|t| info(t, "pause", e.to_string()));
            }
            d
        }
        Fault::Partition(netf) => {
            let mut faults = Faults::default();
            let d = match netf {
                Net::Isolate(target) => {
                    let n = resolve(cluster, target, nodes).await;
                    faults.isolate(n, all.iter().copied().filter(|m| *m != n));
                    format!("isolate node {n} ({target})")
                }
                Net::OneWayOut(target) => {
                    let n = resolve(cluster, target, nodes).await;
                    for m in all.iter().filter(|m| **m != n) {
                        faults.cut.insert((n, *m));
                    }
                    format!("drop node {n}'s packets to the others ({target})")
                }
                Net::OneWayIn(target) => {
                    let n = resolve(cluster, target, nodes).await;
                    for m in all.iter().filter(|m| **m != n) {
                        faults.cut.insert((*m, n));
                    }
                    format!("drop the others' packets to node {n} ({target})")
                }
                Net::Flaky {
                    drop,
                    duplicate,
                    delay_max_ms,
                } => {
                    faults.drop = drop;
                    faults.duplicate = duplicate;
                    faults.delay_max_ms = delay_max_ms;
                    step.fault.to_string()
                }
            };
            start(&d);
            net.set(faults);
            tokio::time::sleep(step.hold).await;
            net.heal();
            d
        }
        Fault::Move(target, partition) => {
            let n = resolve(cluster, target, nodes).await;
            let others: Vec<u64> = all.iter().copied().filter(|m| *m != n).collect();
            let d = format!("move partition {partition}'s replica off node {n} ({target})");
            start(&d);
            let client_target = workload::Target {
                brokers: cluster.brokers(),
                ca_cert: cluster.ca_cert.clone(),
                partitions: partition + 1,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let Some(client) = workload::connect(&client_target, deadline).await else {
                rec.push(|t| info(t, "move", "no client connection: nothing moved".into()));
                return d;
            };
            let moved_off = reassign(&client, partition, &others, rec).await;
            tokio::time::sleep(step.hold).await;
            if moved_off {
                // Back only once the node's replica has left the group (its directory is
                // deleted then), bounded: a replica still in the group keeps its data and
                // simply stays, so moving back early is safe too, just not a rejoin.
                let gone_by = Instant::now() + Duration::from_secs(30);
                let node = &cluster.nodes[(n - 1) as usize];
                while node.partition_dir(partition).exists() && Instant::now() < gone_by {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if node.partition_dir(partition).exists() {
                    let detail = format!(
                        "node {n}'s replica of partition {partition} had not left after 30 s"
                    );
                    rec.push(|t| info(t, "move", detail));
                }
                let mut back = others.clone();
                back.push(n);
                reassign(&client, partition, &back, rec).await;
            }
            tokio::time::timeout(Duration::from_secs(3), client.close())
                .await
                .ok();
            d
        }
        Fault::Disk(target, disk, partition) => {
            let n = resolve(cluster, target, nodes).await;
            cluster.kill(n);
            let dir = cluster.nodes[(n - 1) as usize].partition_dir(partition);
            let what = match nemesis::damage(&dir, disk, rng) {
                Ok(what) => what,
                Err(e) => format!("{disk:?} failed: {e}"),
            };
            let d = format!("kill -9 node {n} ({target}); {what}");
            start(&d);
            tokio::time::sleep(step.hold).await;
            restart(cluster, n, rec).await;
            d
        }
    };
    let kind = step.fault.kind().name();
    let d2 = detail.clone();
    rec.push(|t| Event::Nemesis {
        t,
        phase: NemesisPhase::Stop,
        fault: kind.into(),
        detail: d2,
    });
    detail
}

/// Sets `partition`'s replicas through the Admin API, retrying for a while (a broker that
/// was just restarted may be fenced until its next heartbeat); whether it was recorded.
async fn reassign(
    client: &floe_client::Client,
    partition: u32,
    replicas: &[u64],
    rec: &Recorder,
) -> bool {
    let admin = client.admin();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let call = admin.alter_partition_replicas(TOPIC, partition, replicas);
        let result = tokio::time::timeout(Duration::from_secs(10), call).await;
        let error = match result {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if Instant::now() >= deadline {
            let detail = format!("partition {partition} to {replicas:?} refused: {error}");
            rec.push(|t| info(t, "move", detail));
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|source| RunError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Runs one whole run and writes `history.jsonl`, `verdict.json` and `schedule.txt` under
/// `results/<timestamp>-<seed>/` (the nodes' logs and data under `cluster/`).
pub async fn run(cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    let t0 = Instant::now();
    let dir = cfg
        .results
        .join(format!("{}-{}", timestamp(SystemTime::now()), cfg.seed));
    let cluster_dir = dir.join("cluster");
    std::fs::create_dir_all(&cluster_dir).map_err(|source| RunError::Write {
        path: cluster_dir.clone(),
        source,
    })?;
    let steps = nemesis::schedule(
        cfg.seed,
        &cfg.nemesis,
        &cfg.disk_faults,
        cfg.nodes,
        cfg.partitions,
        cfg.time_limit,
    );
    let names: Vec<&'static str> = cfg.nemesis.iter().map(|k| k.name()).collect();
    let mut schedule_text = Vec::new();
    let mut at = Duration::ZERO;
    for s in &steps {
        at += s.quiet;
        schedule_text.push(format!(
            "at {:6.1}s for {:4.1}s: {}",
            at.as_secs_f64(),
            s.hold.as_secs_f64(),
            s.fault
        ));
        at += s.hold;
    }
    println!(
        "floe-check: seed {}, nemesis {}, time limit {:?}, {} nodes, {} partitions; results in {}",
        cfg.seed,
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(",")
        },
        cfg.time_limit,
        cfg.nodes,
        cfg.partitions,
        dir.display()
    );
    println!("schedule ({} faults):", steps.len());
    for line in &schedule_text {
        println!("  {line}");
    }
    write(
        &dir.join("schedule.txt"),
        (schedule_text.join("\n") + "\n").as_bytes(),
    )?;

    let net = Network::new(cfg.seed);
    let mut cluster = Cluster::create(&cfg.floe, &cluster_dir, cfg.nodes, cfg.partitions, &net)?;
    cluster.start_all()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in 1..=cfg.nodes {
        cluster.expect_running(id)?;
    }
    let ready_in = Duration::from_secs(60);
    let ready_deadline = Instant::now() + ready_in;
    loop {
        let mut led = 0;
        for p in 0..cfg.partitions {
            if leader_of(&cluster, p).await.is_some() {
                led += 1;
            }
        }
        if led == cfg.partitions {
            break;
        }
        if Instant::now() >= ready_deadline {
            return Err(RunError::NotReady(ready_in));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(t0, "cluster ready: every partition has a leader");

    let target = workload::Target {
        brokers: cluster.brokers(),
        ca_cert: cluster.ca_cert.clone(),
        partitions: cfg.partitions,
    };
    let rec = Recorder::new();
    let (stop_producers, producers_stop) = watch::channel(false);
    let (stop_consumers, consumers_stop) = watch::channel(false);
    let mut producer_tasks: Vec<JoinHandle<()>> = Vec::new();
    for p in 0..cfg.producers {
        producer_tasks.push(tokio::spawn(workload::producer(
            p,
            target.clone(),
            rec.clone(),
            cfg.seed,
            producers_stop.clone(),
        )));
    }
    let mut progress = Vec::new();
    let mut consumer_tasks = Vec::new();
    for c in 0..cfg.consumers {
        let prog = Arc::new(Mutex::new(vec![0u64; cfg.partitions as usize]));
        progress.push(prog.clone());
        consumer_tasks.push(tokio::spawn(workload::consumer(
            c,
            target.clone(),
            rec.clone(),
            prog,
            consumers_stop.clone(),
        )));
    }

    // The nemesis, one fault at a time, within the time limit.
    let started = Instant::now();
    let mut rng = Rng::new(cfg.seed ^ 0x6469_736b);
    for step in &steps {
        tokio::time::sleep(step.quiet).await;
        if started.elapsed() + step.hold > cfg.time_limit {
            break;
        }
        let what = apply(step, &mut cluster, &net, &rec, &mut rng, cfg.nodes).await;
        say(
            t0,
            format!("{what}: healed; {} acknowledged so far", rec.count_ok()),
        );
        // A node that died without being killed crashed (or refused to start after damage):
        // worth a line, and a restart so the run goes on with every node.
        for id in 1..=cfg.nodes {
            if let Some(status) = cluster.exited(id) {
                let detail = format!("node {id} exited by itself: {status}");
                say(t0, &detail);
                rec.push(|t| info(t, "crash", detail));
                restart(&mut cluster, id, &rec).await;
            }
        }
    }
    if let Some(left) = cfg.time_limit.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }

    // Heal everything, stop the producers, and write one last record (a fence) to each
    // partition: the final read reads up to it.
    net.heal();
    for id in 1..=cfg.nodes {
        let node = &cluster.nodes[(id - 1) as usize];
        if node.is_paused() {
            let _ = cluster.resume(id);
        }
        if cluster.exited(id).is_some() || !cluster.nodes[(id - 1) as usize].is_running() {
            restart(&mut cluster, id, &rec).await;
        }
    }
    rec.push(|t| Event::Nemesis {
        t,
        phase: NemesisPhase::Info,
        fault: WORKLOAD_END.into(),
        detail: "every fault healed; producers stop".into(),
    });
    let _ = stop_producers.send(true);
    for t in producer_tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    say(
        t0,
        format!(
            "healed; producers stopped after {} acknowledgements",
            rec.count_ok()
        ),
    );

    let fence_deadline = Instant::now() + Duration::from_secs(90);
    let mut fences: Vec<Option<u64>> = vec![None; cfg.partitions as usize];
    if let Some(client) = workload::connect(&target, fence_deadline).await {
        let mut k = 0;
        'fences: while Instant::now() < fence_deadline {
            let built = floe_client::Producer::builder(&client).build();
            let Ok(Ok(producer)) = tokio::time::timeout(Duration::from_secs(10), built).await
            else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            for p in 0..cfg.partitions {
                while fences[p as usize].is_none() {
                    if Instant::now() >= fence_deadline {
                        break 'fences;
                    }
                    k += 1;
                    let got = workload::produce_one(
                        &rec,
                        &producer,
                        u32::MAX,
                        p,
                        format!("fence-{p}-{k}"),
                    )
                    .await;
                    match got {
                        Some((_, offset)) => fences[p as usize] = Some(offset),
                        None => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue 'fences;
                        }
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
            break;
        }
        tokio::time::timeout(Duration::from_secs(3), client.close())
            .await
            .ok();
    }

    // Consumers catch up to the fences (or time out), then stop.
    let catch_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < catch_up {
        let caught = progress.iter().all(|prog| {
            let prog = prog
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            fences
                .iter()
                .enumerate()
                .all(|(p, f)| f.is_none_or(|f| prog[p] > f))
        });
        if caught {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_consumers.send(true);
    for t in consumer_tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    // The final read.
    let until: Vec<u64> = fences.iter().map(|f| f.unwrap_or(u64::MAX)).collect();
    let read = if fences.iter().all(Option::is_some) {
        workload::final_read(&target, &until, Instant::now() + Duration::from_secs(90)).await
    } else {
        vec![None; fences.len()]
    };
    for (p, r) in read.into_iter().enumerate() {
        match (r, fences[p]) {
            (Some(records), Some(f)) => rec.push(|t| Event::FinalRead {
                t,
                partition: p as u32,
                high_watermark: f + 1,
                records,
            }),
            (_, fence) => {
                let detail = match fence {
                    None => format!("partition {p}: no fence write was acknowledged after healing"),
                    Some(f) => {
                        format!("partition {p}: the final read did not reach the fence at {f}")
                    }
                };
                rec.push(|t| info(t, "final-read", detail));
            }
        }
    }
    say(t0, "final read done");

    // Replicas converge on the fences; then stop them and read their logs.
    let mut commit_ends: Vec<Vec<u64>> = vec![vec![0; cfg.partitions as usize]; cfg.nodes as usize];
    let converge = Instant::now() + Duration::from_secs(60);
    loop {
        for (id, gauges) in scrape_all(&cluster).await {
            for (p, g) in gauges {
                if let Some(c) = commit_ends[(id - 1) as usize].get_mut(p as usize) {
                    *c = g.commit_end;
                }
            }
        }
        let done = commit_ends.iter().all(|ends| {
            ends.iter()
                .zip(&fences)
                .all(|(c, f)| f.is_none_or(|f| *c > f))
        });
        if done || Instant::now() >= converge {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for id in 1..=cfg.nodes {
        if !cluster.stop(id, Duration::from_secs(20)).await {
            let detail = format!("node {id} did not stop within 20 s of SIGTERM (killed)");
            rec.push(|t| info(t, "stop", detail));
        }
    }
    for node in &cluster.nodes {
        for p in 0..cfg.partitions {
            let end = commit_ends[(node.id - 1) as usize][p as usize];
            let dir = node.partition_dir(p);
            if !dir.exists() {
                // Not a replica of it at the end (a move that was not undone): nothing to
                // compare; the others' logs are still checked against each other.
                let detail = format!("node {} holds no replica of partition {p}", node.id);
                rec.push(|t| info(t, "replica", detail));
                continue;
            }
            let prefix = read_prefix(&dir, end);
            rec.push(|_| Event::Replica {
                node: node.id,
                partition: p,
                committed_end: end,
                batches: prefix.batches,
                records: prefix.records,
                damage: prefix.damage,
            });
        }
    }

    let history = rec.history();
    history.write_jsonl(&dir.join("history.jsonl"))?;
    let verdict = checker::check(&history, cfg.examples);
    let notes: Vec<String> = history
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Nemesis {
                t,
                phase: NemesisPhase::Info,
                fault,
                detail,
            } => Some(format!("{:.1}s {fault}: {detail}", *t as f64 / 1e6)),
            _ => None,
        })
        .collect();
    for n in &notes {
        println!("note: {n}");
    }
    let file = VerdictFile {
        notes,
        seed: cfg.seed,
        nemesis: names,
        time_limit_s: cfg.time_limit.as_secs_f64(),
        schedule: schedule_text,
        verdict: &verdict,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| RunError::Write {
        path: dir.join("verdict.json"),
        source: e.into(),
    })?;
    write(&dir.join("verdict.json"), &json)?;
    if verdict.valid && !cfg.keep_data {
        for node in &cluster.nodes {
            // Logs stay; the data (up to hundreds of MB of preallocated segments) goes.
            let _ = std::fs::remove_dir_all(&node.data_dir);
        }
    }
    drop(cluster);
    Ok(RunOutcome { dir, verdict })
}

/// The human summary of a verdict.
pub fn summary(v: &Verdict) -> String {
    let mut s = String::new();
    let o = &v.ops;
    s.push_str(&format!(
        "ops: {} invoked, {} ok, {} failed, {} unknown ({} of them in the final log), {} pending; {} records read by consumers; {} in the final read\n",
        o.invoked, o.ok, o.failed, o.unknown, o.unknown_found, o.pending, o.reads, o.final_records
    ));
    for c in &v.checks {
        if c.valid {
            s.push_str(&format!("  {:<22} ok\n", c.check.name()));
        } else {
            s.push_str(&format!(
                "  {:<22} FAIL ({} found)\n",
                c.check.name(),
                c.count
            ));
            for e in &c.examples {
                s.push_str(&format!("      {e}\n"));
            }
        }
    }
    let a = &v.availability;
    s.push_str(&format!(
        "availability: {:.1} acknowledged produces/s; longest stretch without one: {:.2} s\n",
        a.ok_per_sec, a.longest_gap_s
    ));
    for f in &a.faults {
        s.push_str(&format!(
            "  at {:6.1}s {:<9} first ok after {}, longest gap {:.2} s  ({})\n",
            f.at_s,
            f.fault,
            f.first_ok_after_s
                .map_or("none".to_string(), |x| format!("{x:.2} s")),
            f.longest_gap_s,
            f.detail
        ));
    }
    s.push_str(if v.valid {
        "verdict: VALID\n"
    } else {
        "verdict: INVALID\n"
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(timestamp(t), "20261118T110640Z");
        // A leap day's last second.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(timestamp(t), "20000229T235959Z");
    }
}

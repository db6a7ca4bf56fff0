//! `floe dev`: a local N-node cluster on loopback in one command.
//!
//! It makes (once) a cluster CA and one certificate per node in `DATA_DIR/ca/`, writes the
//! bootstrap file `DATA_DIR/bootstrap.toml`, starts N `floe serve` child processes (this same
//! binary) with their data in `DATA_DIR/node-N/` and their output appended to
//! `DATA_DIR/node-N.log`, waits until every node answers a client, and prints how to reach
//! the cluster. SIGINT or SIGTERM is passed on to the nodes as SIGTERM (a graceful stop; a
//! second signal kills them); a node that exits on its own is reported. Running `floe dev`
//! again on the same directory restarts the same cluster with its data.
//!
//! Ports: node N (from 1) listens for clients on `BASE + 10 (N - 1)`, for peers on the next
//! port and serves metrics on the one after (7410, 7411, 7412 for node 1 by default). The
//! first three nodes are the controller voters; any further node joins as a broker only.
//!
//! If `floe dev` itself is killed with SIGKILL its nodes keep running; stop them by their
//! process ids (`pgrep -f "floe serve"` shows them).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use floe_client::{Client, ErrorCode};
use rustix::process::{Pid, Signal, kill_process};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::certs::{self, CertError, IssueRequest};

/// How many nodes are controller voters; the rest are brokers only.
const MAX_VOTERS: u16 = 3;
/// How long nodes get to answer after starting (a cold start on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long nodes get to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long killed nodes get to be reaped before `floe dev` gives up on them.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// `floe dev` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Nodes to run; the first three are controller voters, the others brokers only.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub(crate) nodes: u16,
    /// Where the CA, certificates, node data and node logs live (kept across runs).
    #[arg(long, value_name = "DIR", default_value = "/tmp/floe-dev")]
    pub(crate) data_dir: PathBuf,
    /// Node N's client port is BASE+10(N-1); its peer and metrics ports are the next two.
    #[arg(long, value_name = "PORT", default_value_t = 7410,
          value_parser = clap::value_parser!(u16).range(1024..))]
    pub(crate) base_port: u16,
    /// A topic to create at start, NAME:PARTITIONS:REPLICAS (repeatable; kept if it exists).
    #[arg(long = "topic", value_name = "NAME:P:R", value_parser = parse_topic)]
    pub(crate) topics: Vec<DevTopic>,
}

/// A `--topic NAME:P:R`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevTopic {
    name: String,
    partitions: u32,
    replicas: u16,
}

fn parse_topic(s: &str) -> Result<DevTopic, String> {
    let bad = || format!("{s:?} is not NAME:PARTITIONS:REPLICAS (e.g. orders:3:3)");
    let mut parts = s.split(':');
    let (Some(name), Some(p), Some(r), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let valid_name = !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    match (valid_name, p.parse::<u32>(), r.parse::<u16>()) {
        (true, Ok(partitions @ 1..), Ok(replicas @ 1..)) => Ok(DevTopic {
            name: name.to_string(),
            partitions,
            replicas,
        }),
        _ => Err(bad()),
    }
}

/// Why `floe dev` could not start or run the cluster.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DevError {
    /// The ports do not fit below 65536.
    #[error("--base-port {base} leaves no room for {nodes} nodes (10 ports each)")]
    Ports {
        /// `--base-port`.
        base: u16,
        /// `--nodes`.
        nodes: u16,
    },
    /// A `--topic` wants more replicas than there are nodes.
    #[error("--topic {name}: {replicas} replicas but only {nodes} nodes")]
    TooFewNodes {
        /// The topic.
        name: String,
        /// Its replicas.
        replicas: u16,
        /// `--nodes`.
        nodes: u16,
    },
    /// Making the CA or a node certificate failed.
    #[error("certificates in {}: {source}", dir.display())]
    Certs {
        /// The CA directory.
        dir: PathBuf,
        /// Why.
        source: CertError,
    },
    /// A file or directory could not be made.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A node process could not be started.
    #[error("starting node {node}: {source}")]
    Spawn {
        /// The node.
        node: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A node exited while the cluster was starting.
    #[error("node {node} exited while starting ({status}): {last_line} (log: {})", log.display())]
    Exited {
        /// The node.
        node: u16,
        /// How it exited.
        status: ExitStatus,
        /// The last line of its log.
        last_line: String,
        /// Its log.
        log: PathBuf,
    },
    /// A node did not answer in time.
    #[error("node {node} did not answer within {}s (log: {})", after.as_secs(), log.display())]
    NotReady {
        /// The node.
        node: u16,
        /// The wait.
        after: Duration,
        /// Its log.
        log: PathBuf,
    },
    /// Every node exited on its own.
    #[error("every node has exited (logs in {})", dir.display())]
    AllExited {
        /// The data directory.
        dir: PathBuf,
    },
    /// Installing a signal handler failed.
    #[error("installing a signal handler: {0}")]
    Signal(std::io::Error),
}

/// One node's addresses and files.
#[derive(Debug, Clone)]
struct NodePlan {
    id: u16,
    client: String,
    peer: String,
    metrics: String,
    dir: PathBuf,
    log: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// The whole cluster's layout.
#[derive(Debug)]
struct Plan {
    dir: PathBuf,
    ca_dir: PathBuf,
    nodes: Vec<NodePlan>,
    voters: String,
    bootstrap: PathBuf,
}

impl Plan {
    fn new(args: &DevArgs, dir: PathBuf) -> Result<Plan, DevError> {
        let last = u32::from(args.base_port) + 10 * (u32::from(args.nodes) - 1) + 2;
        if last > u32::from(u16::MAX) {
            return Err(DevError::Ports {
                base: args.base_port,
                nodes: args.nodes,
            });
        }
        if let Some(t) = args.topics.iter().find(|t| t.replicas > args.nodes) {
            return Err(DevError::TooFewNodes {
                name: t.name.clone(),
                replicas: t.replicas,
                nodes: args.nodes,
            });
        }
        let ca_dir = dir.join("ca");
        let nodes: Vec<NodePlan> = (1..=args.nodes)
            .map(|id| {
                let port = |k: u16| args.base_port + 10 * (id - 1) + k;
                NodePlan {
                    id,
                    client: format!("127.0.0.1:{}", port(0)),
                    peer: format!("127.0.0.1:{}", port(1)),
                    metrics: format!("127.0.0.1:{}", port(2)),
                    dir: dir.join(format!("node-{id}")),
                    log: dir.join(format!("node-{id}.log")),
                    cert: ca_dir.join(format!("node-{id}.pem")),
                    key: ca_dir.join(format!("node-{id}.key")),
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .take(usize::from(MAX_VOTERS))
            .map(|n| format!("{}@{}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Plan {
            bootstrap: dir.join("bootstrap.toml"),
            dir,
            ca_dir,
            nodes,
            voters,
        })
    }

    fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn ca_cert(&self) -> PathBuf {
        self.ca_dir.join(certs::CA_CERT_FILE)
    }

    /// The CA and node certificates, made only where missing (so a restart keeps them).
    fn ensure_certs(&self) -> Result<(), DevError> {
        let wrap = |source| DevError::Certs {
            dir: self.ca_dir.clone(),
            source,
        };
        if !self.ca_cert().exists() {
            certs::init_ca(&self.ca_dir).map_err(wrap)?;
        }
        for n in &self.nodes {
            if n.cert.exists() && n.key.exists() {
                continue;
            }
            let request = IssueRequest::new(&format!("node-{}", n.id))
                .and_then(|r| r.dns("localhost"))
                .map_err(wrap)?
                .ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            certs::issue(&self.ca_dir, &request, &self.ca_dir).map_err(wrap)?;
        }
        Ok(())
    }

    /// The bootstrap table every node reads: the voters' client addresses and `--topic`s.
    fn write_bootstrap(&self, topics: &[DevTopic]) -> Result<(), DevError> {
        let mut text = String::from(
            "# Written by `floe dev` at every start: the voters' client addresses and the\n\
             # topics given with --topic.\n",
        );
        for n in self.nodes.iter().take(usize::from(MAX_VOTERS)) {
            let _ = write!(
                text,
                "\n[[broker]]\nid = {}\nclient-addr = \"{}\"\n",
                n.id, n.client
            );
        }
        for t in topics {
            let _ = write!(
                text,
                "\n[[topic]]\nname = \"{}\"\npartitions = {}\nreplication-factor = {}\n",
                t.name, t.partitions, t.replicas
            );
        }
        std::fs::write(&self.bootstrap, text).map_err(|source| DevError::Io {
            what: "writing",
            path: self.bootstrap.clone(),
            source,
        })
    }
}

/// A started node: its id, pid (None once its exit has been seen) and log.
#[derive(Debug)]
struct Running {
    pid: Option<Pid>,
    log: PathBuf,
}

/// Runs `floe dev` until the nodes stop.
pub(crate) fn run(args: DevArgs) -> Result<ExitCode, super::CliError> {
    std::fs::create_dir_all(&args.data_dir).map_err(|source| DevError::Io {
        what: "creating",
        path: args.data_dir.clone(),
        source,
    })?;
    let dir = std::fs::canonicalize(&args.data_dir).map_err(|source| DevError::Io {
        what: "resolving",
        path: args.data_dir.clone(),
        source,
    })?;
    let plan = Plan::new(&args, dir)?;
    plan.ensure_certs()?;
    plan.write_bootstrap(&args.topics)?;
    let runtime = super::runtime()?;
    runtime.block_on(supervise(&plan, &args))
}

async fn supervise(plan: &Plan, args: &DevArgs) -> Result<ExitCode, super::CliError> {
    // Handlers first: a Ctrl-C during start-up stops the nodes started so far.
    let mut term = signal(SignalKind::terminate()).map_err(DevError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DevError::Signal)?;
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<(u16, std::io::Result<ExitStatus>)>();
    let mut running: HashMap<u16, Running> = HashMap::new();
    println!(
        "floe dev: starting {} node{} in {}",
        plan.nodes.len(),
        if plan.nodes.len() == 1 { "" } else { "s" },
        plan.dir.display()
    );
    let started = async {
        for n in &plan.nodes {
            let mut child = spawn(plan, n)?;
            running.insert(
                n.id,
                Running {
                    pid: child.id().and_then(|id| Pid::from_raw(id as i32)),
                    log: n.log.clone(),
                },
            );
            let tx = exits_tx.clone();
            let id = n.id;
            tokio::spawn(async move {
                let status = child.wait().await;
                let _ = tx.send((id, status));
            });
        }
        wait_ready(plan, args, &mut exits, &mut running).await
    };
    let ready = tokio::select! {
        r = started => r,
        _ = term.recv() => Ok(false),
        _ = int.recv() => Ok(false),
    };
    match ready {
        Ok(true) => print_banner(plan, args),
        Ok(false) => {
            eprintln!("floe dev: interrupted while starting; stopping the nodes");
            return stop(&mut running, &mut exits, &mut term, &mut int).await;
        }
        Err(e) => {
            let _ = stop(&mut running, &mut exits, &mut term, &mut int).await;
            return Err(e.into());
        }
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some((id, status)) = exits.recv() => {
                if let Some(r) = running.get_mut(&id) {
                    r.pid = None;
                    eprintln!(
                        "floe dev: node {id} exited ({}); its log: {}",
                        describe_status(&status),
                        r.log.display()
                    );
                }
                if running.values().all(|r| r.pid.is_none()) {
                    return Err(DevError::AllExited { dir: plan.dir.clone() }.into());
                }
            }
        }
    }
    eprintln!("floe dev: stopping the nodes");
    stop(&mut running, &mut exits, &mut term, &mut int).await
}

fn describe_status(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// Starts node `n` as `floe serve`, its output appended to its log.
fn spawn(plan: &Plan, n: &NodePlan) -> Result<tokio::process::Child, DevError> {
    let exe = std::env::current_exe().map_err(|source| DevError::Spawn { node: n.id, source })?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .map_err(|source| DevError::Io {
            what: "opening",
            path: n.log.clone(),
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| DevError::Io {
        what: "opening",
        path: n.log.clone(),
        source,
    })?;
    let path = |p: &Path| p.as_os_str().to_owned();
    tokio::process::Command::new(exe)
        .arg("serve")
        .args(["--node-id", &n.id.to_string()])
        .arg("--data-dir")
        .arg(path(&n.dir))
        .args(["--client-addr", &n.client])
        .args(["--peer-addr", &n.peer])
        .args(["--metrics-addr", &n.metrics])
        .args(["--voters", &plan.voters])
        .arg("--tls-cert")
        .arg(path(&n.cert))
        .arg("--tls-key")
        .arg(path(&n.key))
        .arg("--ca-cert")
        .arg(path(&plan.ca_cert()))
        .arg("--topics")
        .arg(path(&plan.bootstrap))
        // A config file meant for another node must not leak into this one.
        .env_remove("FLOE_CONFIG")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|source| DevError::Spawn { node: n.id, source })
}

/// Waits until every node answers a client, the controller has a leader and every
/// `--topic` partition has one.
/// `Ok(false)` never happens here; the caller's select handles signals.
async fn wait_ready(
    plan: &Plan,
    args: &DevArgs,
    exits: &mut mpsc::UnboundedReceiver<(u16, std::io::Result<ExitStatus>)>,
    running: &mut HashMap<u16, Running>,
) -> Result<bool, DevError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let ca = plan.ca_cert();
    let mut first: Option<Client> = None;
    for n in &plan.nodes {
        loop {
            if let Ok((id, status)) = exits.try_recv() {
                let log = match running.get_mut(&id) {
                    Some(r) => {
                        r.pid = None;
                        r.log.clone()
                    }
                    None => plan.dir.clone(),
                };
                return Err(DevError::Exited {
                    node: id,
                    status: status.unwrap_or_default(),
                    last_line: last_line(&log),
                    log,
                });
            }
            let attempt = Client::builder()
                .brokers([n.client.clone()])
                .ca_cert(&ca)
                .request_timeout(Duration::from_secs(1))
                .retries(0, Duration::from_millis(50))
                .build();
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                match &first {
                    None => first = Some(client),
                    Some(_) => client.close().await,
                }
                break;
            }
            if Instant::now() >= deadline {
                return Err(DevError::NotReady {
                    node: n.id,
                    after: READY_TIMEOUT,
                    log: n.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A controller leader and the --topic partitions' leaders, so the printed commands work
    // at once; a slow election is only a warning.
    if let Some(client) = first {
        loop {
            let controller = client.admin().describe_cluster().await.ok();
            if controller.is_some_and(|c| c.controller.is_some()) {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("floe dev: warning: no controller leader yet");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let names: Vec<&str> = args.topics.iter().map(|t| t.name.as_str()).collect();
        while !names.is_empty() {
            let led = match client.admin().describe_topics(&names).await {
                Ok(ts) => ts
                    .iter()
                    .all(|t| t.partitions.iter().all(|p| p.leader.is_some())),
                // Not there yet (a controller creates them after its election).
                Err(e) if e.code() == Some(ErrorCode::UnknownTopicOrPartition) => false,
                Err(_) => false,
            };
            if led {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("floe dev: warning: some partitions have no leader yet");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        client.close().await;
    }
    Ok(true)
}

/// The last non-empty line of a log (why a node failed to start).
fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no output".to_string())
}

fn print_banner(plan: &Plan, args: &DevArgs) {
    let mut out = String::new();
    let n = plan.nodes.len();
    let _ = writeln!(
        out,
        "floe dev: {n} node{} up (data and logs in {})",
        if n == 1 { "" } else { "s" },
        plan.dir.display()
    );
    for node in &plan.nodes {
        let role = if node.id <= MAX_VOTERS {
            "voter"
        } else {
            "broker"
        };
        let _ = writeln!(
            out,
            "  node {} ({role}): clients {}  peers {}  metrics http://{}/metrics  log {}",
            node.id,
            node.client,
            node.peer,
            node.metrics,
            node.log.display()
        );
    }
    let ca = plan.ca_cert();
    let _ = writeln!(out, "  brokers: {}", plan.brokers());
    let _ = writeln!(out, "  CA:      {}", ca.display());
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "floe".to_string());
    let replicas = n.min(usize::from(MAX_VOTERS));
    let topic = args.topics.first().map(|t| t.name.as_str());
    let _ = writeln!(out, "\nIn another shell:");
    let _ = writeln!(
        out,
        "  export FLOE_BROKERS={} FLOE_CA_CERT={}",
        plan.brokers(),
        ca.display()
    );
    let _ = writeln!(out, "  alias floe={exe}");
    let name = match topic {
        Some(t) => t,
        None => {
            let _ = writeln!(
                out,
                "  floe topic create orders --partitions 3 --replicas {replicas}"
            );
            "orders"
        }
    };
    let _ = writeln!(out, "  seq 1 1000 | floe produce {name}");
    let _ = writeln!(
        out,
        "  floe consume {name} --from-beginning --count 1000 --format '%p/%o %v'"
    );
    let _ = writeln!(out, "  floe cluster status");
    let _ = writeln!(
        out,
        "  curl -s http://{}/metrics | grep floe_produce",
        plan.nodes[0].metrics
    );
    let _ = writeln!(
        out,
        "Ctrl-C stops the cluster; `floe dev` again restarts it with its data."
    );
    print!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

/// SIGTERM to every live node, then waits for them (SIGKILL after [`STOP_TIMEOUT`] or on a
/// second signal). Success when every node stopped cleanly.
async fn stop(
    running: &mut HashMap<u16, Running>,
    exits: &mut mpsc::UnboundedReceiver<(u16, std::io::Result<ExitStatus>)>,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Result<ExitCode, super::CliError> {
    signal_all(running, Signal::TERM);
    let deadline = tokio::time::sleep(STOP_TIMEOUT);
    tokio::pin!(deadline);
    let mut clean = true;
    let mut killed = false;
    let mut kill_deadline = Instant::now() + STOP_TIMEOUT + KILL_TIMEOUT;
    while running.values().any(|r| r.pid.is_some()) {
        if killed && Instant::now() >= kill_deadline {
            eprintln!("floe dev: giving up waiting for killed nodes");
            return Ok(ExitCode::FAILURE);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(kill_deadline), if killed => {}
            exit = exits.recv() => {
                let Some((id, status)) = exit else { break };
                if let Some(r) = running.get_mut(&id) {
                    r.pid = None;
                }
                let ok = matches!(&status, Ok(s) if s.success());
                if !ok {
                    clean = false;
                    eprintln!("floe dev: node {id} exited ({})", describe_status(&status));
                }
            }
            _ = &mut deadline, if !killed => {
                eprintln!("floe dev: nodes still running after {}s; killing them", STOP_TIMEOUT.as_secs());
                signal_all(running, Signal::KILL);
                (killed, clean, kill_deadline) = (true, false, Instant::now() + KILL_TIMEOUT);
            }
            _ = term.recv(), if !killed => {
                signal_all(running, Signal::KILL);
                (killed, clean, kill_deadline) = (true, false, Instant::now() + KILL_TIMEOUT);
            }
            _ = int.recv(), if !killed => {
                signal_all(running, Signal::KILL);
                (killed, clean, kill_deadline) = (true, false, Instant::now() + KILL_TIMEOUT);
            }
        }
    }
    if clean {
        eprintln!("floe dev: all nodes stopped");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Signals every node whose exit has not been seen yet (an unseen exit is still a zombie
/// child of ours, so its pid cannot have been reused).
fn signal_all(running: &HashMap<u16, Running>, sig: Signal) {
    for r in running.values() {
        if let Some(pid) = r.pid {
            // Gone already: its exit is on the way.
            let _ = kill_process(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u16, base_port: u16) -> DevArgs {
        DevArgs {
            nodes,
            data_dir: PathBuf::from("/tmp/x"),
            base_port,
            topics: vec![],
        }
    }

    #[test]
    fn topics_are_name_partitions_replicas() {
        assert_eq!(
            parse_topic("orders:3:2"),
            Ok(DevTopic {
                name: "orders".into(),
                partitions: 3,
                replicas: 2
            })
        );
        for bad in [
            "orders", "orders:3", "o:0:1", "o:1:0", "o r:1:1", ":1:1", "o:1:1:1",
        ] {
            assert!(parse_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_voters_and_layout() {
        let plan = Plan::new(&args(4, 7410), PathBuf::from("/d")).expect("plan");
        assert_eq!(
            plan.voters,
            "1@127.0.0.1:7411,2@127.0.0.1:7421,3@127.0.0.1:7431"
        );
        assert_eq!(
            plan.brokers(),
            "127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430,127.0.0.1:7440"
        );
        assert_eq!(plan.nodes[3].metrics, "127.0.0.1:7442");
        assert_eq!(plan.nodes[1].dir, PathBuf::from("/d/node-2"));
        assert_eq!(plan.ca_cert(), PathBuf::from("/d/ca/ca.pem"));
        assert!(matches!(
            Plan::new(&args(3, 65_520), PathBuf::from("/d")),
            Err(DevError::Ports { .. })
        ));
        let mut a = args(2, 7410);
        a.topics.push(parse_topic("t:1:3").expect("valid"));
        assert!(matches!(
            Plan::new(&a, PathBuf::from("/d")),
            Err(DevError::TooFewNodes { .. })
        ));
    }
}

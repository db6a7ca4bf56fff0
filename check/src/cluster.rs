//! A cluster of real `floe serve` processes on loopback: certificates from `floe cert`, free
//! ephemeral ports, a static topic table, and each node's peer addresses pointed at the
//! [`crate::proxy`] links so the nemesis can cut or degrade the network between them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::Network;

/// Why the cluster could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `floe` command exited non-zero.
    #[error("`floe {args}` failed: {stderr}")]
    Floe {
        /// The arguments.
        args: String,
        /// Its stderr.
        stderr: String,
    },
    /// A node exited right after it was started.
    #[error("node {node} exited at start ({status}); last log lines: {log}")]
    NodeExited {
        /// The node.
        node: u64,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// The partition log segment size the nodes run with (`--segment-bytes`).
pub const SEGMENT_BYTES: u64 = 64 << 10;

/// The name of the topic the workload uses.
pub const TOPIC: &str = "check";

/// One broker process and its addresses.
#[derive(Debug)]
pub struct Node {
    /// Node id (1-based).
    pub id: u64,
    /// Client listener.
    pub client_addr: SocketAddr,
    /// Peer listener (the real one; other nodes reach it through proxies).
    pub peer_addr: SocketAddr,
    /// Prometheus listener.
    pub metrics_addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// Whether its process is running (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The directory of one partition's log: `partitions/<topic>-<partition>@<topic id>`
    /// (the highest topic id if the topic was ever recreated), or the older layout without
    /// the id.
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        let parent = self.data_dir.join("partitions");
        let plain = format!("{TOPIC}-{partition}");
        let prefix = format!("{plain}@");
        let best = std::fs::read_dir(&parent)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
                Some((id, name))
            })
            .max();
        parent.join(best.map_or(plain, |(_, name)| name))
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    floe: PathBuf,
    /// The nodes, by index (node id - 1).
    pub nodes: Vec<Node>,
    /// The cluster CA certificate (for clients).
    pub ca_cert: PathBuf,
    /// Partitions of [`TOPIC`].
    pub partitions: u32,
}

fn free_udp() -> Result<SocketAddr, ClusterError> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(io("picking a free UDP port"))
}

fn free_tcp() -> Result<SocketAddr, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(io("picking a free TCP port"))
}

fn run_floe(floe: &Path, args: &[&str]) -> Result<(), ClusterError> {
    let out = Command::new(floe)
        .args(args)
        .output()
        .map_err(io(format!("running {}", floe.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Floe {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

impl Cluster {
    /// Sets up `nodes` nodes under `dir` (certificates, topic table, data directories) with
    /// peer links through `network`, without starting them.
    pub fn create(
        floe: &Path,
        dir: &Path,
        nodes: u64,
        partitions: u32,
        network: &Network,
    ) -> Result<Cluster, ClusterError> {
        let ca_dir = dir.join("ca");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        run_floe(floe, &["cert", "init", "--out", &s(&ca_dir)])?;
        for n in 1..=nodes {
            run_floe(
                floe,
                &[
                    "cert",
                    "issue",
                    "--ca",
                    &s(&ca_dir),
                    "--name",
                    &format!("node-{n}"),
                    "--out",
                    &s(&ca_dir),
                    "--ip",
                    "127.0.0.1",
                ],
            )?;
        }
        let mut addrs = Vec::new();
        for _ in 1..=nodes {
            addrs.push((free_udp()?, free_udp()?, free_tcp()?));
        }
        // The table is the same on every node: the client addresses and the topic.
        let mut table = String::new();
        for (i, (client, _, _)) in addrs.iter().enumerate() {
            table.push_str(&format!(
                "[[broker]]\nid = {}\nclient-addr = \"{client}\"\n\n",
                i + 1
            ));
        }
        table.push_str(&format!(
            "[[topic]]\nname = \"{TOPIC}\"\npartitions = {partitions}\nreplication-factor = {nodes}\n"
        ));
        let topics = dir.join("topics.toml");
        std::fs::write(&topics, table).map_err(io("writing topics.toml"))?;

        let peers: Vec<SocketAddr> = addrs.iter().map(|a| a.1).collect();
        let mut out = Vec::new();
        for (i, (client, peer, metrics)) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            // This node's view of the voters: itself at its real address, every other node
            // through the proxy of the link from this node to it.
            let mut voters = Vec::new();
            for j in 1..=nodes {
                let addr = if j == id {
                    *peer
                } else {
                    network
                        .link(id, j, peers[(j - 1) as usize])
                        .map_err(io(format!("starting the proxy of link {id}->{j}")))?
                };
                voters.push(format!("{j}@{addr}"));
            }
            let data_dir = dir.join(format!("node-{id}"));
            let args = vec![
                "serve".to_string(),
                "--node-id".into(),
                id.to_string(),
                "--data-dir".into(),
                s(&data_dir),
                "--client-addr".into(),
                client.to_string(),
                "--peer-addr".into(),
                peer.to_string(),
                "--metrics-addr".into(),
                metrics.to_string(),
                "--voters".into(),
                voters.join(","),
                "--tls-cert".into(),
                s(&ca_dir.join(format!("node-{id}.pem"))),
                "--tls-key".into(),
                s(&ca_dir.join(format!("node-{id}.key"))),
                "--ca-cert".into(),
                s(&ca_dir.join("ca.pem")),
                "--topics".into(),
                s(&topics),
                // Small segments, so runs roll and seal many of them: the disk nemesis then
                // damages sealed data too, and recovery works across segment boundaries.
                "--segment-bytes".into(),
                SEGMENT_BYTES.to_string(),
            ];
            out.push(Node {
                id,
                client_addr: *client,
                peer_addr: *peer,
                metrics_addr: *metrics,
                data_dir,
                args,
                log: dir.join(format!("node-{id}.log")),
                child: None,
                paused: false,
            });
        }
        Ok(Cluster {
            floe: floe.to_owned(),
            nodes: out,
            ca_cert: ca_dir.join("ca.pem"),
            partitions,
        })
    }

    /// The client addresses of every node.
    pub fn brokers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.client_addr.to_string())
            .collect()
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Starts node `id` (no-op if running). Its output is appended to `node-N.log`.
    pub fn start(&mut self, id: u64) -> Result<(), ClusterError> {
        let floe = self.floe.clone();
        let node = self.node_mut(id);
        if node.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(io(format!("opening {}", node.log.display())))?;
        let err = log.try_clone().map_err(io("duplicating a log handle"))?;
        let child = Command::new(&floe)
            .args(&node.args)
            .env_remove("FLOE_CONFIG")
            .env_remove("FLOE_TOPICS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {}", floe.display())))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> Result<(), ClusterError> {
        for id in 1..=self.nodes.len() as u64 {
            self.start(id)?;
        }
        Ok(())
    }

    /// Whether node `id`'s process exited by itself; reaps it and returns the status.
    pub fn exited(&mut self, id: u64) -> Option<String> {
        let node = self.node_mut(id);
        let child = node.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                node.child = None;
                node.paused = false;
                Some(format!("{status}; log: {}", tail(&node.log, 3)))
            }
            _ => None,
        }
    }

    /// Checks that node `id` is still running after a start; an error names why not.
    pub fn expect_running(&mut self, id: u64) -> Result<(), ClusterError> {
        match self.exited(id) {
            None => Ok(()),
            Some(status) => Err(ClusterError::NodeExited {
                node: id,
                status,
                log: tail(&self.nodes[(id - 1) as usize].log, 5),
            }),
        }
    }

    /// `kill -9` node `id` and reaps it (no-op if not running).
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            // Kill fails only if it already exited; wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    fn signal(&mut self, id: u64, sig: &str) -> Result<(), ClusterError> {
        let node = self.node_mut(id);
        let Some(child) = &node.child else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .map_err(io("running kill"))?;
        if !status.success() {
            return Err(ClusterError::Floe {
                args: format!("(kill {sig} of node {id})"),
                stderr: status.to_string(),
            });
        }
        Ok(())
    }

    /// SIGSTOP node `id`.
    pub fn pause(&mut self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, "-STOP")?;
        let node = self.node_mut(id);
        node.paused = node.child.is_some();
        Ok(())
    }

    /// SIGCONT node `id`.
    pub fn resume(&mut self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, "-CONT")?;
        self.node_mut(id).paused = false;
        Ok(())
    }

    /// SIGTERM node `id` (resuming it first) and waits up to `grace` for it to exit, then
    /// kills it. Returns whether it exited by itself.
    pub async fn stop(&mut self, id: u64, grace: Duration) -> bool {
        if self.nodes[(id - 1) as usize].paused {
            let _ = self.resume(id);
        }
        if self.signal(id, "-TERM").is_err() {
            self.kill(id);
            return false;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            let node = self.node_mut(id);
            match node.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) => {
                    node.child = None;
                    return true;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.kill(id);
        false
    }

    /// Kills whatever still runs (also on drop).
    pub fn kill_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            if self.nodes[(id - 1) as usize].paused {
                let _ = self.resume(id);
            }
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// One partition's replica gauges as a node reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaGauges {
    /// `floe_raft_commit_end`.
    pub commit_end: u64,
    /// `floe_raft_is_leader`.
    pub is_leader: bool,
    /// `floe_raft_term`.
    pub term: u64,
}

/// Scrapes `/metrics` at `addr` and returns the gauges of [`TOPIC`]'s partitions.
pub async fn scrape(addr: SocketAddr) -> Option<BTreeMap<u32, ReplicaGauges>> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        Some(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()??;
    Some(parse_gauges(&text))
}

/// Parses the replica gauges of [`TOPIC`] out of Prometheus text.
pub fn parse_gauges(text: &str) -> BTreeMap<u32, ReplicaGauges> {
    let mut out: BTreeMap<u32, ReplicaGauges> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let mut topic = None;
        let mut partition = None;
        for kv in labels.split(',') {
            if let Some((k, v)) = kv.split_once('=') {
                let v = v.trim_matches('"');
                match k.trim() {
                    "topic" => topic = Some(v),
                    "partition" => partition = v.parse::<u32>().ok(),
                    _ => {}
                }
            }
        }
        let (Some(TOPIC), Some(p)) = (topic, partition) else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let g = out.entry(p).or_default();
        match name {
            "floe_raft_commit_end" => g.commit_end = value as u64,
            "floe_raft_is_leader" => g.is_leader = value >= 1.0,
            "floe_raft_term" => g.term = value as u64,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dirs_are_found_with_or_without_a_topic_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Node {
            id: 1,
            client_addr: "127.0.0.1:1".parse().expect("addr"),
            peer_addr: "127.0.0.1:2".parse().expect("addr"),
            metrics_addr: "127.0.0.1:3".parse().expect("addr"),
            data_dir: dir.path().to_owned(),
            args: Vec::new(),
            log: dir.path().join("log"),
            child: None,
            paused: false,
        };
        let parts = dir.path().join("partitions");
        assert_eq!(node.partition_dir(1), parts.join("check-1"));
        for d in ["check-1@3", "check-1@12", "check-10@40", "other-1@50"] {
            std::fs::create_dir_all(parts.join(d)).expect("mkdir");
        }
        assert_eq!(node.partition_dir(1), parts.join("check-1@12"));
        assert_eq!(node.partition_dir(10), parts.join("check-10@40"));
        assert_eq!(node.partition_dir(2), parts.join("check-2"));
    }

    #[test]
    fn gauges_are_parsed_from_prometheus_text() {
        let text = "# TYPE floe_raft_commit_end gauge\n\
            floe_raft_commit_end{topic=\"check\",partition=\"1\"} 42\n\
            floe_raft_is_leader{partition=\"1\",topic=\"check\"} 1\n\
            floe_raft_term{topic=\"check\",partition=\"1\"} 3\n\
            floe_raft_commit_end{topic=\"other\",partition=\"1\"} 7\n\
            floe_raft_commit_end{topic=\"check\",partition=\"0\"} 5\n";
        let g = parse_gauges(text);
        assert_eq!(
            g[&1],
            ReplicaGauges {
                commit_end: 42,
                is_leader: true,
                term: 3
            }
        );
        assert_eq!(g[&0].commit_end, 5);
        assert!(!g[&0].is_leader);
        assert_eq!(g.len(), 2);
    }
}

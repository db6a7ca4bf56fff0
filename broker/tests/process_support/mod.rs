//! Real `floe serve` processes for the fault tests: certificates from `floe_broker::certs`, a
//! static topic table, ephemeral ports, one child process per node (so a test can `kill -9`
//! one or SIGTERM it and start it again), extra `floe serve` flags, and the node's metrics and
//! readiness over HTTP.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use floe_broker::certs::{self, IssueRequest};
use floe_client::{Client, EndpointOptions};
use tokio::time::timeout;

/// Generous: a loaded 2-core machine runs several clusters at once.
pub const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Proc {
    pub child: Option<Child>,
    pub client_addr: String,
    pub peer_addr: String,
    pub metrics_addr: String,
}

/// A cluster of `floe serve` processes. Dropping it kills every node left.
#[derive(Debug)]
pub struct Procs {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Proc>,
    voters: String,
    extra: Vec<String>,
}

fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.local_addr().expect("addr").port()
}

fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

impl Procs {
    /// Starts nodes 1..=n serving `topics` ((name, partitions, replication)), each with the
    /// `extra` flags of `floe serve`.
    pub fn start(n: u64, topics: &[(&str, u32, u16)], extra: &[&str]) -> Procs {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs_dir = dir.path().join("certs");
        certs::init_ca(&certs_dir).expect("ca");
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let req = IssueRequest::new(&format!("node-{id}"))
                .expect("name")
                .ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            certs::issue(&certs_dir, &req, &certs_dir).expect("issue");
            nodes.insert(
                id,
                Proc {
                    child: None,
                    client_addr: format!("127.0.0.1:{}", free_udp_port()),
                    peer_addr: format!("127.0.0.1:{}", free_udp_port()),
                    metrics_addr: format!("127.0.0.1:{}", free_tcp_port()),
                },
            );
        }
        let mut table = String::new();
        for (id, p) in &nodes {
            table.push_str(&format!(
                "[[broker]]\nid = {id}\nclient-addr = \"{}\"\n",
                p.client_addr
            ));
        }
        for (name, partitions, rf) in topics {
            table.push_str(&format!(
                "[[topic]]\nname = \"{name}\"\npartitions = {partitions}\nreplication-factor = {rf}\n"
            ));
        }
        std::fs::write(dir.path().join("topics.toml"), table).expect("write topics");
        let voters = nodes
            .iter()
            .map(|(id, p)| format!("{id}@{}", p.peer_addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Procs {
            dir,
            nodes,
            voters,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        for id in 1..=n {
            procs.spawn(id);
        }
        procs
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn ca(&self) -> PathBuf {
        self.certs_dir().join("ca.pem")
    }

    /// Starts node `id` (again: same addresses, same data directory).
    pub fn spawn(&mut self, id: u64) {
        let dir = self.dir.path().to_path_buf();
        let certs_dir = self.certs_dir();
        let p = self.nodes.get_mut(&id).expect("node");
        assert!(p.child.is_none(), "node {id} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node-{id}.log")))
            .expect("log file");
        let mut args: Vec<String> = [
            "serve",
            "--node-id",
            &id.to_string(),
            "--data-dir",
            s(&dir.join(format!("data-{id}"))),
            "--client-addr",
            &p.client_addr,
            "--peer-addr",
            &p.peer_addr,
            "--metrics-addr",
            &p.metrics_addr,
            "--voters",
            &self.voters,
            "--tls-cert",
            s(&certs_dir.join(format!("node-{id}.pem"))),
            "--tls-key",
            s(&certs_dir.join(format!("node-{id}.key"))),
            "--ca-cert",
            s(&certs_dir.join("ca.pem")),
            "--topics",
            s(&dir.join("topics.toml")),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(self.extra.iter().cloned());
        let child = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(&args)
            .env_remove("FLOE_CONFIG")
            .env_remove("FLOE_TOPICS")
            .env("FLOE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn floe serve");
        p.child = Some(child);
    }

    /// `kill -9` node `id` and reap it.
    pub fn kill(&mut self, id: u64) {
        let mut child = self
            .nodes
            .get_mut(&id)
            .and_then(|p| p.child.take())
            .expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// SIGTERM node `id` and wait (bounded) for it to exit; its exit status.
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        let mut child = self
            .nodes
            .get_mut(&id)
            .and_then(|p| p.child.take())
            .expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success(), "kill -TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} did not stop on SIGTERM; log:\n{}", self.log(id));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        self.nodes
            .keys()
            .map(|id| format!("--- node {id}:\n{}", self.log(*id)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn running(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes
            .iter()
            .filter(|(_, p)| p.child.is_some())
            .map(|(id, _)| *id)
    }

    /// A client of every node, once they answer.
    pub async fn client(&self) -> Client {
        let addrs: Vec<String> = self.nodes.values().map(|p| p.client_addr.clone()).collect();
        let build = async {
            loop {
                let b = Client::builder()
                    .brokers(addrs.clone())
                    .ca_cert(self.ca())
                    .endpoint_options(EndpointOptions::loopback())
                    .request_timeout(Duration::from_secs(2))
                    .metadata_max_age(Duration::from_millis(300))
                    .retries(50, Duration::from_millis(20))
                    .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200));
                match b.build().await {
                    Ok(c) => return c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        timeout(WAIT, build).await.expect("client connects in time")
    }

    /// `GET path` on node `id`'s metrics listener: (status, body), or `None` if it does not
    /// answer.
    pub fn http(&self, id: u64, path: &str) -> Option<(u16, String)> {
        let addr = self.nodes[&id].metrics_addr.parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.get(9..12)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    /// The value of the sample `name{labels...}` (labels as written, in order) on node `id`.
    pub fn metric(&self, id: u64, name_and_labels: &str) -> Option<f64> {
        let (status, body) = self.http(id, "/metrics")?;
        if status != 200 {
            return None;
        }
        body.lines()
            .filter_map(|l| l.strip_prefix(name_and_labels))
            .find_map(|rest| rest.trim().parse::<f64>().ok())
    }

    /// A partition gauge of node `id`: `name{topic="T",partition="P"}`.
    pub fn gauge(&self, id: u64, name: &str, topic: &str, partition: u32) -> Option<f64> {
        self.metric(
            id,
            &format!("{name}{{topic=\"{topic}\",partition=\"{partition}\"}}"),
        )
    }

    /// The running node every running node's metrics name as leader of `topic`/`partition`
    /// (exactly one `floe_raft_is_leader` = 1), waiting for it.
    pub async fn leader(&self, topic: &str, partition: u32) -> u64 {
        let wait = async {
            loop {
                let leaders: Vec<u64> = self
                    .running()
                    .filter(|&id| {
                        self.gauge(id, "floe_raft_is_leader", topic, partition) == Some(1.0)
                    })
                    .collect();
                if let [l] = leaders[..] {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("a leader of {topic}/{partition}; logs:\n{}", self.logs()))
    }

    /// Waits until node `id` answers `/ready` with 200.
    pub async fn ready(&self, id: u64) {
        let wait = async {
            while self.http(id, "/ready").map(|r| r.0) != Some(200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("node {id} ready; log:\n{}", self.log(id)));
    }

    /// Waits until node `id`'s replica of `topic`/`partition` has a commit end of at least
    /// `at_least`.
    pub async fn caught_up(&self, id: u64, topic: &str, partition: u32, at_least: f64) {
        let wait = async {
            while self
                .gauge(id, "floe_raft_commit_end", topic, partition)
                .is_none_or(|v| v < at_least)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(WAIT, wait).await.unwrap_or_else(|_| {
            panic!("node {id} catches up to {at_least}; log:\n{}", self.log(id))
        });
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.nodes.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

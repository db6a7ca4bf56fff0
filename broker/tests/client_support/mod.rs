//! Real `floe serve` processes on loopback for the client end-to-end tests: certificates from
//! `floe_broker::certs`, one child process per node (so a test can `kill -9` one), clients
//! that trust the cluster CA, and topics created through the client's `Admin`.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use floe_broker::certs::{self, IssueRequest};
use floe_client::{Client, EndpointOptions, NewTopic, TopicPartition};
use tokio::time::timeout;

/// Generous: a loaded 2-core machine runs several clusters at once.
pub const WAIT: Duration = Duration::from_secs(30);

/// One node: its process and addresses.
#[derive(Debug)]
pub struct Proc {
    pub child: Option<Child>,
    pub client_addr: String,
    pub peer_addr: String,
    pub metrics_addr: String,
}

/// A cluster of real `floe serve` processes. Dropping it kills every node left.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Proc>,
    voters: String,
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

impl Cluster {
    /// Starts `nodes` nodes (ids 1..=n), every one a controller voter; no topics yet (see
    /// [`create_topics`](Self::create_topics)).
    pub fn start(nodes: u64) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs_dir = dir.path().join("certs");
        certs::init_ca(&certs_dir).expect("ca");
        let mut procs = BTreeMap::new();
        for id in 1..=nodes {
            let req = IssueRequest::new(&format!("node-{id}"))
                .expect("name")
                .ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            certs::issue(&certs_dir, &req, &certs_dir).expect("issue");
            procs.insert(
                id,
                Proc {
                    child: None,
                    client_addr: format!("127.0.0.1:{}", free_udp_port()),
                    peer_addr: format!("127.0.0.1:{}", free_udp_port()),
                    metrics_addr: format!("127.0.0.1:{}", free_tcp_port()),
                },
            );
        }
        let voters = procs
            .iter()
            .map(|(id, p)| format!("{id}@{}", p.peer_addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir,
            nodes: procs,
            voters,
        };
        for id in 1..=nodes {
            cluster.spawn(id);
        }
        cluster
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Starts node `id` (again, on its old addresses and data directory).
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
        let child = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args([
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
            ])
            .env_remove("FLOE_CONFIG")
            .env_remove("FLOE_TOPICS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn floe serve");
        p.child = Some(child);
    }

    /// `kill -9` node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        let p = self.nodes.get_mut(&id).expect("node");
        let mut child = p.child.take().expect("node running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// What node `id` logged (for failure messages).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    pub fn client_addrs(&self) -> Vec<String> {
        self.nodes.values().map(|p| p.client_addr.clone()).collect()
    }

    /// A client of the whole cluster, once the nodes answer (retrying while they start).
    pub async fn client(&self) -> Client {
        self.client_with(|b| b).await
    }

    /// Like [`client`](Self::client), with extra builder settings.
    pub async fn client_with(
        &self,
        tune: impl Fn(floe_client::ClientBuilder) -> floe_client::ClientBuilder,
    ) -> Client {
        let build = async {
            loop {
                let b = Client::builder()
                    .brokers(self.client_addrs())
                    .ca_cert(self.certs_dir().join("ca.pem"))
                    .endpoint_options(EndpointOptions::loopback())
                    .request_timeout(Duration::from_secs(2))
                    .metadata_max_age(Duration::from_millis(500))
                    .retries(50, Duration::from_millis(20))
                    .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200));
                match tune(b).build().await {
                    Ok(c) => return c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        timeout(WAIT, build).await.expect("client connects in time")
    }

    /// Creates `topics` (name, partitions, replication factor) with `Admin::create_topic`
    /// once every node has registered, and waits until each partition has a leader.
    pub async fn create_topics(&self, client: &Client, topics: &[(&str, u32, u16)]) {
        let admin = client.admin();
        let registered = async {
            loop {
                if let Ok(d) = admin.describe_cluster().await
                    && d.brokers.len() == self.nodes.len()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(WAIT, registered)
            .await
            .unwrap_or_else(|_| panic!("every node registers in time; logs:\n{}", self.logs()));
        for (name, partitions, rf) in topics {
            timeout(
                WAIT,
                admin.create_topic(NewTopic::new(*name, *partitions, *rf)),
            )
            .await
            .expect("create_topic in time")
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        }
        for (name, partitions, _) in topics {
            self.leaders(client, name, *partitions).await;
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .keys()
            .map(|id| format!("node {id}: {}", self.log(*id)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every partition of `topic` (of `partitions`) has a leader among the
    /// running nodes, as `client` sees it; returns the leaders.
    pub async fn leaders(&self, client: &Client, topic: &str, partitions: u32) -> Vec<u64> {
        let wait = async {
            loop {
                let described = client.admin().describe_topics(&[topic]).await;
                let leaders: Vec<Option<u64>> = (0..partitions)
                    .map(|p| {
                        let d = described.as_ref().ok()?;
                        let info = d.first()?.partitions.iter().find(|i| i.partition == p)?;
                        info.leader
                            .filter(|l| self.nodes.get(l).is_some_and(|n| n.child.is_some()))
                    })
                    .collect();
                if leaders.iter().all(Option::is_some) {
                    return leaders.into_iter().flatten().collect::<Vec<u64>>();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("leaders of {topic} in time; logs:\n{}", self.logs()))
    }

    /// The leader of `tp` once the running nodes agree on one.
    pub async fn leader(&self, client: &Client, tp: &TopicPartition) -> u64 {
        let n = tp.partition + 1;
        self.leaders(client, &tp.topic, n).await[tp.partition as usize]
    }

    /// `GET /metrics` of node `id`: the Prometheus text.
    pub fn scrape(&self, id: u64) -> String {
        let addr = self.nodes[&id].metrics_addr.clone();
        let mut s = TcpStream::connect(&addr).expect("metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        raw
    }

    /// A counter's value in node `id`'s metrics (0 when absent): `line_prefix` is the metric
    /// name with its labels, for example `floe_fetch_bytes_total{topic="t",partition="0",api="subscribe"}`.
    pub fn metric(&self, id: u64, line_prefix: &str) -> f64 {
        self.scrape(id)
            .lines()
            .filter_map(|l| l.strip_prefix(line_prefix))
            .filter_map(|rest| rest.trim().parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.nodes.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

//! `--local`: a 3-node floe cluster on loopback in a temporary directory, for one run.
//!
//! Certificates come from `floe cert init/issue` and ports are free ephemeral ones. The nodes
//! learn each other's client addresses from a `floe serve --topics` table (the format of
//! broker/src/node/table.rs); the benchmark topic is either created by the caller through the
//! Admin API (the default) or listed in that table, which the controller bootstraps. Every node is
//! stopped with SIGTERM and waited for when the cluster is dropped, on errors too; Ctrl-C
//! reaches the nodes directly (same process group) and they stop gracefully.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Nodes in a local cluster.
pub(crate) const NODES: u64 = 3;
/// How long a node gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The benchmark topic to put in the static table.
#[derive(Debug, Clone)]
pub(crate) struct TopicSpec {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) replicas: u16,
}

/// A running local cluster.
#[derive(Debug)]
pub(crate) struct LocalCluster {
    /// Client addresses, one per node.
    pub(crate) brokers: Vec<String>,
    /// The cluster CA certificate.
    pub(crate) ca_cert: PathBuf,
    nodes: Vec<(u64, Child)>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// Where the `floe` binary is: `explicit`, else next to this executable.
pub(crate) fn floe_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating floe-bench's own executable")?
            .with_file_name("floe"),
    };
    ensure!(
        path.is_file(),
        "no floe binary at {} (build it with `cargo build --release -p floe-broker`, or give --floe-bin)",
        path.display()
    );
    Ok(path)
}

/// A free loopback port for UDP (QUIC) or TCP, held until the returned guard is dropped so two
/// picks never collide.
enum PortGuard {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

impl PortGuard {
    fn udp() -> anyhow::Result<Self> {
        Ok(PortGuard::Udp(UdpSocket::bind("127.0.0.1:0")?))
    }
    fn tcp() -> anyhow::Result<Self> {
        Ok(PortGuard::Tcp(TcpListener::bind("127.0.0.1:0")?))
    }
    fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(match self {
            PortGuard::Udp(s) => s.local_addr()?,
            PortGuard::Tcp(s) => s.local_addr()?,
        })
    }
}

fn run_tool(floe: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(floe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", floe.display(), args.join(" ")))?;
    ensure!(
        out.status.success(),
        "{} {} failed: {}",
        floe.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The static table naming the nodes (whose client addresses are `clients`) and, if given,
/// the benchmark topic.
pub(crate) fn topic_table(clients: &[SocketAddr], topic: Option<&TopicSpec>) -> String {
    let mut s = String::new();
    for (i, addr) in clients.iter().enumerate() {
        let _ = writeln!(s, "[[broker]]\nid = {}\nclient-addr = \"{addr}\"\n", i + 1);
    }
    let Some(topic) = topic else {
        return s;
    };
    let _ = writeln!(
        s,
        "[[topic]]\nname = \"{}\"\npartitions = {}\nreplication-factor = {}",
        topic.name.replace('\\', "\\\\").replace('"', "\\\""),
        topic.partitions,
        topic.replicas
    );
    s
}

impl LocalCluster {
    /// Makes certificates and starts the nodes in `keep_dir` (kept) or a temporary directory.
    /// Returns once every node process runs; the caller waits for leaders.
    /// With `static_table` the topic is in the `--topics` file; without, the nodes start with
    /// no topic and the caller creates it through the Admin API.
    pub(crate) fn start(
        floe: &Path,
        topic: &TopicSpec,
        keep_dir: Option<&Path>,
        static_table: bool,
    ) -> anyhow::Result<Self> {
        ensure!(
            u64::from(topic.replicas) <= NODES && topic.replicas > 0,
            "--replicas {} does not fit a --local cluster (at most {NODES} nodes)",
            topic.replicas
        );
        let nodes = NODES;
        let (temp, dir) = match keep_dir {
            Some(d) => {
                ensure!(!d.exists(), "--local-dir {} already exists", d.display());
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                (None, d.to_path_buf())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("floe-bench-")
                    .tempdir()
                    .context("creating a temporary directory")?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let ca = dir.join("ca");
        let ca_s = ca.to_str().context("non-UTF-8 temporary path")?;
        run_tool(floe, &["cert", "init", "--out", ca_s])?;
        for n in 1..=nodes {
            let name = format!("node-{n}");
            run_tool(
                floe,
                &[
                    "cert",
                    "issue",
                    "--ca",
                    ca_s,
                    "--name",
                    &name,
                    "--out",
                    ca_s,
                    "--ip",
                    "127.0.0.1",
                ],
            )?;
        }

        let mut guards = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..nodes {
            let (c, p, m) = (PortGuard::udp()?, PortGuard::udp()?, PortGuard::tcp()?);
            addrs.push((c.addr()?, p.addr()?, m.addr()?));
            guards.extend([c, p, m]);
        }
        let clients: Vec<SocketAddr> = addrs.iter().map(|a| a.0).collect();
        let voters = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}@{}", i + 1, a.1))
            .collect::<Vec<_>>()
            .join(",");
        // The nodes learn each other's client addresses from the table either way.
        let topics = dir.join("topics.toml");
        std::fs::write(
            &topics,
            topic_table(&clients, static_table.then_some(topic)),
        )
        .with_context(|| format!("writing {}", topics.display()))?;
        drop(guards);

        let mut cluster = LocalCluster {
            brokers: clients.iter().map(ToString::to_string).collect(),
            ca_cert: ca.join("ca.pem"),
            nodes: Vec::new(),
            dir: dir.clone(),
            _temp: temp,
        };
        for (i, (client, peer, metrics)) in addrs.iter().enumerate() {
            let n = i as u64 + 1;
            let log = File::create(dir.join(format!("node-{n}.log")))?;
            let child = Command::new(floe)
                .arg("serve")
                .arg("--topics")
                .arg(&topics)
                .args(["--node-id", &n.to_string()])
                .arg("--data-dir")
                .arg(dir.join(format!("node-{n}")))
                .args(["--client-addr", &client.to_string()])
                .args(["--peer-addr", &peer.to_string()])
                .args(["--metrics-addr", &metrics.to_string()])
                .args(["--voters", &voters])
                .arg("--tls-cert")
                .arg(ca.join(format!("node-{n}.pem")))
                .arg("--tls-key")
                .arg(ca.join(format!("node-{n}.key")))
                .arg("--ca-cert")
                .arg(ca.join("ca.pem"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {} serve", floe.display()))?;
            cluster.nodes.push((n, child));
        }
        cluster.check_alive()?;
        Ok(cluster)
    }

    /// The node processes' ids (for `perf record -p`).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|(_, c)| c.id()).collect()
    }

    /// The directory holding data, certificates and node logs.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fails (with the node's log tail) if a node has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for (n, child) in &mut self.nodes {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join(format!("node-{n}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "local node {n} exited ({status}): {}",
                    tail.join(" | ").trim()
                );
            }
        }
        Ok(())
    }

    /// SIGTERM every node and wait for each (killing it after [`STOP_TIMEOUT`]).
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        for (_, child) in &self.nodes {
            if let Some(pid) = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                // Already gone is fine: we reap it below.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut unclean = Vec::new();
        for (n, mut child) in self.nodes.drain(..) {
            loop {
                match child.try_wait()? {
                    Some(status) => {
                        if !status.success() {
                            unclean.push(format!("node {n}: {status}"));
                        }
                        break;
                    }
                    None if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        unclean.push(format!("node {n}: killed after {STOP_TIMEOUT:?}"));
                        break;
                    }
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        ensure!(
            unclean.is_empty(),
            "local cluster did not stop cleanly: {}",
            unclean.join(", ")
        );
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.nodes.is_empty()
            && let Err(e) = self.stop()
        {
            eprintln!("floe-bench: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_table_names_every_broker_and_the_topic() {
        let clients: Vec<SocketAddr> = vec![
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:2000".parse().unwrap(),
        ];
        let t = topic_table(
            &clients,
            Some(&TopicSpec {
                name: "bench\"x".into(),
                partitions: 4,
                replicas: 2,
            }),
        );
        assert!(!topic_table(&clients, None).contains("[[topic]]"));
        assert!(
            t.contains("id = 2\nclient-addr = \"127.0.0.1:2000\""),
            "{t}"
        );
        assert!(
            t.contains("name = \"bench\\\"x\"\npartitions = 4\nreplication-factor = 2"),
            "{t}"
        );
    }

    #[test]
    fn a_missing_floe_binary_is_an_error_naming_the_fix() {
        let e = floe_binary(Some(Path::new("/nonexistent/floe"))).unwrap_err();
        assert!(e.to_string().contains("--floe-bin"), "{e}");
    }
}

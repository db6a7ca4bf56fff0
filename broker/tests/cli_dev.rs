//! `floe dev` and the client verbs end to end, as a user runs them: a three-node `floe dev`
//! cluster (child processes, ports picked free), then `floe topic`, `floe produce`,
//! `floe consume`, `floe cluster status` and `floe group` against it (topics from the
//! `--topic` bootstrap and from `floe topic create`), their error exits,
//! a graceful stop on SIGTERM and a restart on the same data directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Cold start of three debug-build nodes on a loaded 2-core machine.
const START: Duration = Duration::from_secs(90);
const STOP: Duration = Duration::from_secs(60);
/// Longest one client verb may take on a loaded machine.
const COMMAND: Duration = Duration::from_secs(120);

fn floe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    for var in [
        "FLOE_BROKERS",
        "FLOE_CA_CERT",
        "FLOE_TIMEOUT",
        "FLOE_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}

/// A base port with the nine ports of three nodes free (client and peer are UDP, metrics
/// TCP). Below the kernel's ephemeral range, so the `:0` binds of other tests never race it.
fn free_base_port() -> u16 {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for i in 0..500u64 {
        let base = 12_000 + ((seed.wrapping_mul(7919) + i * 37) % 1_800) as u16 * 10;
        let all_free = (0..3).all(|n| {
            let p = base + 10 * n;
            UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no free base port");
}

/// A running `floe dev`, stopped (SIGTERM, then SIGKILL) if the test ends early.
struct Dev {
    child: Option<Child>,
    banner: String,
    stderr: PathBuf,
}

impl Dev {
    fn start(dir: &Path, base: u16, extra: &[&str]) -> Dev {
        let stderr = dir.join(format!("dev-{}.err", Instant::now().elapsed().as_nanos()));
        let mut child = floe()
            .args(["dev", "--nodes", "3", "--base-port", &base.to_string()])
            .arg("--data-dir")
            .arg(dir.join("cluster"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn floe dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading to the end, so floe dev never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut dev = Dev {
            child: Some(child),
            banner: String::new(),
            stderr,
        };
        let deadline = Instant::now() + START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    dev.banner.push_str(&line);
                    dev.banner.push('\n');
                    if line.starts_with("Ctrl-C stops the cluster") {
                        return dev;
                    }
                }
                Err(_) => panic!(
                    "floe dev did not come up within {START:?}; stdout: {}; stderr: {}",
                    dev.banner,
                    std::fs::read_to_string(&dev.stderr).unwrap_or_default()
                ),
            }
        }
    }

    /// SIGTERM, then the exit status and stderr.
    fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let pid = Pid::from_child(&child);
        kill_process(pid, Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + STOP;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "floe dev did not stop in {STOP:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        (
            status,
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_child(&child);
            let _ = kill_process(pid, Signal::TERM);
            let deadline = Instant::now() + STOP;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The connection flags of a cluster.
struct Target {
    brokers: String,
    ca: PathBuf,
}

impl Target {
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = floe();
        c.args(args)
            .env("FLOE_BROKERS", &self.brokers)
            .env("FLOE_CA_CERT", &self.ca)
            .env("FLOE_TIMEOUT", "30")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn floe");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
        drop(input);
        // Bounded: a verb that hangs (say a consume waiting for records that never come)
        // fails the test with its command line instead of stalling it.
        let pid = Pid::from_child(&child);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if done_rx.recv_timeout(COMMAND).is_err() {
                let _ = kill_process(pid, Signal::KILL);
                return true;
            }
            false
        });
        let out = child.wait_with_output().expect("floe output");
        let _ = done_tx.send(());
        let timed_out = watchdog.join().expect("watchdog");
        assert!(
            !timed_out,
            "floe {args:?} did not finish within {COMMAND:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs and expects success; stdout.
    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "floe {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }
}

/// Runs and expects failure with exactly one line on stderr; that line.
fn fails(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} succeeded");
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: one line: {err:?}"
    );
    assert!(err.starts_with("floe: "), "{what}: {err}");
    err
}

#[test]
fn dev_cluster_serves_every_verb_stops_on_sigterm_and_restarts_with_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base_port();
    let mut dev = Dev::start(dir.path(), base, &["--topic", "orders:3:3"]);
    let brokers = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        base,
        base + 10,
        base + 20
    );
    let ca = dir.path().join("cluster/ca/ca.pem");
    // The banner says how to reach the cluster.
    assert!(dev.banner.contains("3 nodes up"), "{}", dev.banner);
    assert!(
        dev.banner.contains(&format!(
            "export FLOE_BROKERS={brokers} FLOE_CA_CERT={}",
            std::fs::canonicalize(&ca).expect("ca").display()
        )),
        "{}",
        dev.banner
    );
    assert!(
        dev.banner
            .contains(&format!("http://127.0.0.1:{}/metrics", base + 2)),
        "{}",
        dev.banner
    );
    let t = Target { brokers, ca };

    // Topics: table and JSON.
    let list = t.ok(&["topic", "list"], None);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().eq(["orders", "3", "3"])),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(&["topic", "list", "--output", "json"], None)).expect("json");
    assert_eq!(json[0]["name"], "orders");
    assert_eq!(json[0]["partitions"], 3);
    assert_eq!(json[0]["replication_factor"], 3);
    let described = t.ok(&["topic", "describe", "orders"], None);
    assert!(
        described.starts_with("topic orders: 3 partitions, replication factor 3"),
        "{described}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(&["topic", "describe", "orders", "--output", "json"], None))
            .expect("json");
    let parts = json["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 3);
    for p in parts {
        assert_eq!(p["replicas"].as_array().expect("replicas").len(), 3);
    }

    // Produce 300 lines spread over the partitions, then 50 keyed ones into partition 1.
    let lines: String = (0..300).map(|i| format!("line-{i:03}\n")).collect();
    let out = t.run(&["produce", "orders"], Some(lines.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8(out.stderr).expect("utf8");
    assert!(
        summary.contains("produced 300 records, 2400 bytes"),
        "{summary}"
    );
    let keyed: String = (0..50).map(|i| format!("k-{i:02}\r\n")).collect();
    t.ok(
        &[
            "produce",
            "orders",
            "--partition",
            "1",
            "--key",
            "user-7",
            "--acks",
            "leader",
        ],
        Some(keyed.as_bytes()),
    );

    // Everything back, in order within each partition.
    let all = t.ok(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--count",
            "350",
            "--format",
            "%p %o %v",
        ],
        None,
    );
    let mut by_partition: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for line in all.lines() {
        let mut f = line.splitn(3, ' ');
        let (p, o, v) = (f.next(), f.next(), f.next());
        let p: u32 = p.and_then(|p| p.parse().ok()).expect(line);
        let o: u64 = o.and_then(|o| o.parse().ok()).expect(line);
        by_partition
            .entry(p)
            .or_default()
            .push((o, v.expect(line).to_string()));
    }
    assert_eq!(by_partition.values().map(Vec::len).sum::<usize>(), 350);
    let mut unkeyed = Vec::new();
    for (p, records) in &by_partition {
        assert!(
            records.windows(2).all(|w| w[0].0 < w[1].0),
            "offsets of partition {p} out of order"
        );
        let values: Vec<&String> = records.iter().map(|(_, v)| v).collect();
        let mine: Vec<&&String> = values.iter().filter(|v| v.starts_with("line-")).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "partition {p} order");
        unkeyed.extend(mine.into_iter().map(|v| v.to_string()));
        let k: Vec<&&String> = values.iter().filter(|v| v.starts_with("k-")).collect();
        if *p == 1 {
            let want: Vec<String> = (0..50).map(|i| format!("k-{i:02}")).collect();
            assert_eq!(k.iter().map(|v| v.as_str()).collect::<Vec<_>>(), want);
        } else {
            assert!(k.is_empty(), "keyed records outside partition 1");
        }
    }
    unkeyed.sort();
    let want: Vec<String> = (0..300).map(|i| format!("line-{i:03}")).collect();
    assert_eq!(unkeyed, want);

    // One partition, from an offset, with every placeholder.
    let p1 = &by_partition[&1];
    let (second_offset, second_value) = &p1[1];
    let one = t.ok(
        &[
            "consume",
            "orders",
            "--partition",
            "1",
            "--offset",
            &second_offset.to_string(),
            "--count",
            "1",
            "--format",
            "%T/%p@%o key=%k value=%v ts=%t",
        ],
        None,
    );
    let prefix = format!("orders/1@{second_offset} key=");
    assert!(one.starts_with(&prefix), "{one}");
    assert!(one.contains(&format!(" value={second_value} ts=")), "{one}");
    let ts: i64 = one
        .trim_end()
        .rsplit("ts=")
        .next()
        .and_then(|t| t.parse().ok())
        .expect(&one);
    assert!(ts > 1_600_000_000_000, "{one}");
    let (first_keyed, _) = p1
        .iter()
        .find(|(_, v)| v.starts_with("k-"))
        .expect("keyed records in partition 1");
    let keyed_line = t.ok(
        &[
            "consume",
            "orders",
            "--partition",
            "1",
            "--offset",
            &first_keyed.to_string(),
            "--count",
            "1",
            "--format",
            "%k|%v",
        ],
        None,
    );
    assert_eq!(keyed_line, "user-7|k-00\n");

    // Cluster status: three nodes up, a controller leader, every partition led, nothing
    // under-replicated.
    let status = t.ok(&["cluster", "status"], None);
    assert!(status.contains("controller leader: node "), "{status}");
    assert_eq!(status.matches("  up").count(), 3, "{status}");
    assert!(
        status.contains("under-replicated partitions: none"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(&["cluster", "status", "--output", "json"], None))
            .expect("json");
    assert_eq!(json["nodes"].as_array().expect("nodes").len(), 3);
    assert!(
        json["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["reachable"] == true)
    );
    assert_eq!(json["topics"][0]["name"], "orders");

    // Topics on demand through the controller: create with a setting, refuse a duplicate and
    // a too-wide one, use, delete.
    let created = t.ok(
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "2",
            "--replicas",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
        None,
    );
    assert!(created.contains("created topic events"), "{created}");
    let described = t.ok(&["topic", "describe", "events"], None);
    assert!(
        described.starts_with("topic events: 2 partitions, replication factor 3"),
        "{described}"
    );
    assert!(described.contains("retention.ms=86400000"), "{described}");
    let e = fails(
        t.run(
            &[
                "topic",
                "create",
                "events",
                "--partitions",
                "2",
                "--replicas",
                "3",
            ],
            None,
        ),
        "duplicate create",
    );
    assert!(e.contains("TopicAlreadyExists"), "{e}");
    let e = fails(
        t.run(
            &[
                "topic",
                "create",
                "wide",
                "--partitions",
                "1",
                "--replicas",
                "5",
            ],
            None,
        ),
        "too wide",
    );
    assert!(e.contains("InvalidReplicationFactor"), "{e}");
    t.ok(&["produce", "events"], Some(b"a\nb\nc\n"));
    let mut got: Vec<String> = t
        .ok(
            &["consume", "events", "--from-beginning", "--count", "3"],
            None,
        )
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
    let list = t.ok(&["topic", "list"], None);
    assert!(list.contains("events") && list.contains("orders"), "{list}");
    // A partition moved (here: shrunk to one replica on node 2), recorded at once; invalid
    // replica sets refused with the controller's typed error, one line each.
    let moved = t.ok(
        &[
            "topic",
            "reassign",
            "events",
            "--partition",
            "1",
            "--replicas",
            "2",
        ],
        None,
    );
    assert!(
        moved.contains("reassigning events/1 to replicas 2"),
        "{moved}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(&["topic", "describe", "events", "--output", "json"], None))
            .expect("json");
    assert_eq!(
        json["partitions"][1]["replicas"],
        serde_json::json!([2]),
        "{json}"
    );
    let e = fails(
        t.run(
            &[
                "topic",
                "reassign",
                "events",
                "--partition",
                "0",
                "--replicas",
                "1,1",
            ],
            None,
        ),
        "duplicate replica",
    );
    assert!(
        e.contains("InvalidRequest") && e.contains("named twice"),
        "{e}"
    );
    let e = fails(
        t.run(
            &[
                "topic",
                "reassign",
                "events",
                "--partition",
                "0",
                "--replicas",
                "1,9",
            ],
            None,
        ),
        "unknown broker",
    );
    assert!(e.contains("BrokerNotAvailable"), "{e}");
    let deleted = t.ok(&["topic", "delete", "events"], None);
    assert!(deleted.contains("deleted topic events"), "{deleted}");
    let e = fails(
        t.run(&["topic", "describe", "events"], None),
        "describe deleted",
    );
    assert!(e.contains("unknown topic events"), "{e}");
    let e = fails(t.run(&["topic", "delete", "events"], None), "delete again");
    assert!(e.contains("events"), "{e}");

    // Error exits, each one line.
    let e = fails(t.run(&["produce", "nope"], Some(b"x\n")), "produce to nope");
    assert!(e.contains("unknown topic nope"), "{e}");
    let e = fails(
        t.run(&["consume", "nope", "--count", "1"], None),
        "consume nope",
    );
    assert!(e.contains("unknown topic nope"), "{e}");
    let e = fails(t.run(&["topic", "describe", "nope"], None), "describe nope");
    assert!(e.contains("unknown topic nope"), "{e}");
    let e = fails(
        t.run(
            &["consume", "orders", "--partition", "7", "--count", "1"],
            None,
        ),
        "partition 7",
    );
    assert!(
        e.contains("partition 7") && e.contains("3 partitions"),
        "{e}"
    );
    let e = fails(t.run(&["group", "list"], None), "group list");
    assert!(e.contains("not supported"), "{e}");
    // Another cluster's CA: the brokers' certificates are refused.
    let other = dir.path().join("other-ca");
    floe_broker::certs::init_ca(&other).expect("ca");
    let wrong = Target {
        brokers: t.brokers.clone(),
        ca: other.join("ca.pem"),
    };
    let e = fails(
        wrong.run(&["topic", "list", "--timeout", "5"], None),
        "wrong CA",
    );
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // SIGTERM stops every node gracefully; then nothing answers.
    let (status, stderr) = dev.stop();
    assert!(status.success(), "floe dev exited with {status}: {stderr}");
    assert!(stderr.contains("all nodes stopped"), "{stderr}");
    let e = fails(
        t.run(&["topic", "list", "--timeout", "2"], None),
        "list on a stopped cluster",
    );
    assert!(e.contains("no broker reachable"), "{e}");

    // Again on the same directory: the same certificates and the same records.
    let ca_before = std::fs::read(&t.ca).expect("ca");
    let mut dev = Dev::start(dir.path(), base, &["--topic", "orders:3:3"]);
    assert_eq!(std::fs::read(&t.ca).expect("ca"), ca_before);
    let again = t.ok(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--count",
            "350",
            "--format",
            "%p %o %v",
        ],
        None,
    );
    let mut a: Vec<&str> = all.lines().collect();
    let mut b: Vec<&str> = again.lines().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let (status, stderr) = dev.stop();
    assert!(status.success(), "floe dev exited with {status}: {stderr}");
}

#[test]
fn client_verbs_fail_with_one_line_reasons_without_a_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    floe_broker::certs::init_ca(dir.path()).expect("ca");
    let ca = dir.path().join("ca.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    // Nobody listens here (a bound UDP socket that never answers).
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let nowhere = silent.local_addr().expect("addr").to_string();
    let run = |args: &[&str]| floe().args(args).output().expect("run floe");
    let s = |p: &Path| p.to_str().expect("utf8").to_string();

    let e = fails(
        run(&[
            "topic",
            "list",
            "--brokers",
            &nowhere,
            "--ca-cert",
            &s(&ca),
            "--timeout",
            "2",
        ]),
        "unreachable",
    );
    assert!(
        e.contains("no broker reachable") && e.contains(&nowhere),
        "{e}"
    );
    let e = fails(
        run(&[
            "topic",
            "list",
            "--brokers",
            &nowhere,
            "--ca-cert",
            &s(&garbage),
        ]),
        "garbage CA",
    );
    assert!(
        e.contains("bad CA file") && e.contains("garbage.pem"),
        "{e}"
    );
    let e = fails(
        run(&[
            "topic",
            "list",
            "--brokers",
            &nowhere,
            "--ca-cert",
            &s(&dir.path().join("missing.pem")),
        ]),
        "missing CA",
    );
    assert!(
        e.contains("bad CA file") && e.contains("missing.pem"),
        "{e}"
    );
    let e = fails(
        run(&["cluster", "status", "--ca-cert", &s(&ca)]),
        "no brokers",
    );
    assert!(e.contains("FLOE_BROKERS"), "{e}");
    let e = fails(run(&["cluster", "status", "--brokers", &nowhere]), "no CA");
    assert!(e.contains("FLOE_CA_CERT"), "{e}");
    // Bad arguments: clap's reason on one line, before anything connects.
    let e = fails(run(&["produce", "t", "--acks", "most"]), "bad --acks");
    assert!(e.contains("--acks") && e.contains("all, leader"), "{e}");
    let e = fails(run(&["produce"]), "no topic");
    assert!(e.contains("<TOPIC>"), "{e}");
    let e = fails(
        run(&["consume", "t", "--from-beginning", "--offset", "3"]),
        "two starts",
    );
    assert!(e.contains("--offset"), "{e}");
    let e = fails(run(&["consume", "t", "--format", "%q"]), "bad format");
    assert!(e.contains("--format") && e.contains("%q"), "{e}");
    let e = fails(
        run(&[
            "topic",
            "create",
            "t",
            "--partitions",
            "1",
            "--replicas",
            "1",
            "--config",
            "x",
        ]),
        "bad --config",
    );
    assert!(e.contains("--config") && e.contains("KEY=VALUE"), "{e}");
    let e = fails(run(&["dev", "--nodes", "0"]), "no nodes");
    assert!(e.contains("--nodes"), "{e}");
    let e = fails(run(&["dev", "--topic", "orders"]), "bad --topic");
    assert!(e.contains("NAME:PARTITIONS:REPLICAS"), "{e}");
    // Help is not an error.
    let help = run(&["consume", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("utf8");
    assert!(
        help.contains("%v value") && help.contains("FLOE_BROKERS"),
        "{help}"
    );
}

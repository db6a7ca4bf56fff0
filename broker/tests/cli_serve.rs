//! `floe serve`: a bad setting exits non-zero with one line naming it; a real single-node
//! server (child process, TLS from `floe cert`) serves the real client, answers Prometheus
//! scrapes on `--metrics-addr` `/metrics`, and stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use floe_broker::certs::{self, IssueRequest};
use floe_client::{Acks, Client, Consumer, Producer, ProducerRecord, StartFrom, TopicPartition};
use floe_net::EndpointOptions;
use futures_util::StreamExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn floe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .env_remove("FLOE_CONFIG")
        .env_remove("FLOE_TOPICS")
        .output()
        .expect("run floe")
}

/// Runs `floe serve ARGS`, expects failure, returns the single stderr line.
fn fails(args: &[&str]) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let out = floe(&all);
    assert!(!out.status.success(), "floe {all:?} succeeded");
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.local_addr().expect("addr").port()
}

fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `GET /metrics` over HTTP/1.0: the whole answer, status line included.
fn scrape(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw)
}

#[test]
fn bad_serve_settings_exit_non_zero_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = s(dir.path());
    let base = [
        "--data-dir",
        d,
        "--voters",
        "1@127.0.0.1:7401",
        "--tls-cert",
        "n.pem",
        "--tls-key",
        "n.key",
        "--ca-cert",
        "ca.pem",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        fails(&v)
    };
    let e = with(&["--node-id", "0"]);
    assert!(e.contains("--node-id"), "{e}");
    let e = with(&["--node-id", "one"]);
    assert!(e.contains("--node-id") && e.contains("one"), "{e}");
    let e = with(&["--node-id", "1", "--client-addr", "nowhere"]);
    assert!(e.contains("--client-addr"), "{e}");
    let e = fails(&["--node-id", "1"]);
    assert!(e.contains("--data-dir") || e.contains("--voters"), "{e}");
    // Certificates that do not exist: named.
    let e = with(&["--node-id", "1"]);
    assert!(e.contains("--tls-cert") || e.contains("n.pem"), "{e}");
    // A topic table asking for more replicas than there are brokers.
    let topics = dir.path().join("topics.toml");
    std::fs::write(
        &topics,
        "[[topic]]\nname = \"t\"\npartitions = 1\nreplication-factor = 3\n",
    )
    .expect("write");
    let e = with(&["--node-id", "1", "--topics", s(&topics)]);
    assert!(
        e.contains("--topics") && e.contains("replication factor"),
        "{e}"
    );
    // A typo in the table: named, on one line.
    std::fs::write(&topics, "[[topic]]\nnam = \"t\"\n").expect("write");
    let e = with(&["--node-id", "1", "--topics", s(&topics)]);
    assert!(e.contains("--topics") && e.contains("nam"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_node_that_the_client_uses_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_dir = dir.path().join("certs");
    certs::init_ca(&certs_dir).expect("ca");
    let req = IssueRequest::new("node-1")
        .expect("name")
        .ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    certs::issue(&certs_dir, &req, &certs_dir).expect("issue");
    let topics = dir.path().join("topics.toml");
    std::fs::write(
        &topics,
        "[[topic]]\nname = \"t\"\npartitions = 2\nreplication-factor = 1\n",
    )
    .expect("write");
    let (client_port, peer_port) = (free_udp_port(), free_udp_port());
    let client_addr = format!("127.0.0.1:{client_port}");
    let metrics_addr = format!("127.0.0.1:{}", free_tcp_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "serve",
            "--node-id",
            "1",
            "--data-dir",
            s(&dir.path().join("data")),
            "--client-addr",
            &client_addr,
            "--peer-addr",
            &format!("127.0.0.1:{peer_port}"),
            "--metrics-addr",
            &metrics_addr,
            "--voters",
            &format!("1@127.0.0.1:{peer_port}"),
            "--tls-cert",
            s(&certs_dir.join("node-1.pem")),
            "--tls-key",
            s(&certs_dir.join("node-1.key")),
            "--ca-cert",
            s(&certs_dir.join("ca.pem")),
            "--topics",
            s(&topics),
        ])
        .env_remove("FLOE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe serve");

    let run = async {
        let client = loop {
            let build = Client::builder()
                .brokers([client_addr.clone()])
                .ca_cert(certs_dir.join("ca.pem"))
                .endpoint_options(EndpointOptions::loopback())
                .request_timeout(Duration::from_secs(1))
                .retries(20, Duration::from_millis(20))
                .build()
                .await;
            match build {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        // The --topics table is bootstrapped through the controller after the node starts
        // serving: wait (bounded) until the topic has leaders.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let led = client.admin().describe_topics(&["t"]).await.is_ok_and(|d| {
                d.iter().all(|t| {
                    !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader.is_some())
                })
            });
            if led {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "topic t has no leaders"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let producer = Producer::builder(&client)
            .acks(Acks::All)
            .idempotence(false)
            .build()
            .await
            .expect("producer");
        for i in 0..20u32 {
            let r = ProducerRecord::new("t", format!("r{i}").into_bytes()).partition(i % 2);
            producer.send(r).await.expect("acknowledged");
        }
        let consumer = Consumer::builder(&client).build().expect("consumer");
        consumer
            .assign(TopicPartition::new("t", 1), StartFrom::Earliest)
            .await
            .expect("assign");
        let mut stream = consumer.stream();
        let mut got = Vec::new();
        while got.len() < 10 {
            let r = stream.next().await.expect("open").expect("record");
            got.push(String::from_utf8(r.value.expect("value").to_vec()).expect("utf8"));
        }
        let want: Vec<String> = (0..20)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("r{i}"))
            .collect();
        assert_eq!(got, want);
        // Every acknowledged record is counted, per partition, on the metrics listener.
        let addr = metrics_addr.clone();
        let text = tokio::task::spawn_blocking(move || scrape(&addr))
            .await
            .expect("join")
            .expect("scrape /metrics");
        assert!(
            text.starts_with("HTTP/1.") && text.contains(" 200 "),
            "{text}"
        );
        for p in 0..2 {
            let line = format!("floe_produce_records_total{{topic=\"t\",partition=\"{p}\"}} 10");
            assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
        }
        consumer.close();
        producer.close().await.expect("close");
        client.close().await;
    };
    let result = timeout(WAIT, run).await;
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < WAIT,
            "floe serve did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    result.expect("client work in time");
    assert!(status.success(), "floe serve exited with {status}");
}

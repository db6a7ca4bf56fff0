//! The Prometheus exporter (its own test binary: a process installs the global recorder once):
//! produces, a fetch and a metadata request through one node move the documented metrics, with their labels,
//! as scraped over plain HTTP from `/metrics`; every name METRICS.md documents is exported;
//! `/health` and `/ready` answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use floe_protocol::ErrorCode;
use floe_protocol::client::*;

mod common;
use common::{LOCAL, WAIT, call, produce};

fn free_tcp_port() -> u16 {
    let l = TcpListener::bind((LOCAL, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// `GET path` over HTTP/1.0 (the server closes after the body): the status code and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("status line: {head}")))?;
    Ok((status, body.to_owned()))
}

/// `GET /metrics`: the body (an error unless 200).
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    match get(addr, "/metrics")? {
        (200, body) => Ok(body),
        (status, _) => Err(std::io::Error::other(format!("status {status}"))),
    }
}

/// Every metric name METRICS.md documents (first column of its tables).
fn documented_names() -> Vec<String> {
    let doc = include_str!("../METRICS.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `floe_"))
        .filter_map(|l| l.split_once('`'))
        .map(|(rest, _)| format!("floe_{rest}"))
        .collect()
}

/// The value of the sample `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let have: Vec<&str> = set.split(',').collect();
        labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
            .then(|| value.trim().parse().ok())?
    })
}

fn produce_error(r: Response) -> ErrorCode {
    let Response::Produce(r) = r else {
        panic!("not a produce response: {r:?}")
    };
    r.topics[0].partitions[0].error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_and_fetches_move_the_exported_metrics() {
    let metrics_addr = SocketAddr::new(LOCAL, free_tcp_port());
    floe_broker::telemetry::install_prometheus(metrics_addr).expect("install exporter");
    // Once per process.
    assert!(floe_broker::telemetry::install_prometheus(SocketAddr::new(LOCAL, 0)).is_err());

    // Bind every field: the temp dir and the client endpoint must live to the end.
    let common::One {
        node,
        conn,
        _dir: _keep_dir,
        _client: _keep_client,
    } = common::start().await;

    // Two produces to t/0 (3 + 2 records), one to an unknown topic.
    let (b1, b2) = (
        common::batch(&["a", "b", "c"], 1_000),
        common::batch(&["d", "e"], 1_000),
    );
    let produced_bytes = (b1.len() + b2.len()) as f64;
    assert_eq!(
        produce_error(call(&conn, produce("t", 0, b1)).await),
        ErrorCode::None
    );
    assert_eq!(
        produce_error(call(&conn, produce("t", 0, b2)).await),
        ErrorCode::None
    );
    let unknown =
        produce_error(call(&conn, produce("nope", 0, common::batch(&["x"], 1_000))).await);
    assert_eq!(unknown, ErrorCode::UnknownTopicOrPartition);
    // Metadata for a known and an unknown topic: one topic error.
    let Response::Metadata(m) = call(
        &conn,
        MetadataRequest {
            topics: Some(vec!["t".into(), "nope".into()]),
        },
    )
    .await
    else {
        panic!("not metadata")
    };
    assert_eq!(m.topics[1].error, ErrorCode::UnknownTopicOrPartition);
    // One fetch of t/0 from the start.
    let Response::Fetch(f) = call(
        &conn,
        FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    max_bytes: 1 << 20,
                }],
            }],
        },
    )
    .await
    else {
        panic!("not a fetch response")
    };
    let fetched = &f.topics[0].partitions[0];
    assert_eq!(fetched.error, ErrorCode::None);
    let fetched_bytes = fetched.batches.len() as f64;
    assert!(fetched_bytes >= produced_bytes, "the fetch read everything");
    let hw = node.high_watermark("t", 0).expect("hosted") as f64;

    let t0 = [("topic", "t"), ("partition", "0")];
    let check = |m: &str| -> Result<(), String> {
        let expect = |name: &str, labels: &[(&str, &str)], ok: &dyn Fn(f64) -> bool| match sample(
            m, name, labels,
        ) {
            Some(v) if ok(v) => Ok(()),
            other => Err(format!("{name}{labels:?} = {other:?}")),
        };
        expect("floe_produce_records_total", &t0, &|v| v == 5.0)?;
        expect("floe_produce_bytes_total", &t0, &|v| v == produced_bytes)?;
        let fetch = [t0[0], t0[1], ("api", "fetch")];
        expect("floe_fetch_bytes_total", &fetch, &|v| v == fetched_bytes)?;
        let code = ErrorCode::UnknownTopicOrPartition.name();
        let err = [("api", "produce"), ("code", code)];
        expect("floe_request_errors_total", &err, &|v| v == 1.0)?;
        let err = [("api", "metadata"), ("code", code)];
        expect("floe_request_errors_total", &err, &|v| v == 1.0)?;
        let produce = [("api", "produce")];
        expect("floe_request_latency_seconds_count", &produce, &|v| {
            v == 3.0
        })?;
        let inf = [("api", "produce"), ("le", "+Inf")];
        expect("floe_request_latency_seconds_bucket", &inf, &|v| v == 3.0)?;
        let fetch_api = [("api", "fetch")];
        expect("floe_request_latency_seconds_count", &fetch_api, &|v| {
            v == 1.0
        })?;
        expect("floe_raft_is_leader", &t0, &|v| v == 1.0)?;
        expect("floe_raft_commit_end", &t0, &|v| v == hw && v >= 5.0)?;
        expect("floe_raft_term", &t0, &|v| v >= 1.0)?;
        expect("floe_raft_leader_changes_total", &t0, &|v| v == 1.0)?;
        expect("floe_partition_failed", &t0, &|v| v == 0.0)?;
        expect("floe_storage_fsync_latency_seconds_count", &t0, &|v| {
            v >= 2.0
        })?;
        // Partition 1 has its own series.
        let t1 = [("topic", "t"), ("partition", "1")];
        expect("floe_raft_is_leader", &t1, &|v| v == 1.0)?;
        // Sampled once per tick: the node campaigned once per partition, holds its log.
        expect("floe_raft_elections_total", &t0, &|v| v == 1.0)?;
        expect("floe_raft_commit_lag_records", &t0, &|v| v == 0.0)?;
        expect("floe_partition_under_replicated", &t0, &|v| v == 0.0)?;
        expect("floe_storage_log_bytes", &t0, &|v| v >= produced_bytes)?;
        expect("floe_storage_log_segments", &t0, &|v| v >= 1.0)?;
        expect("floe_raft_shutdown_handovers_total", &t0, &|v| v == 0.0)?;
        // Sampled once a second: our connection and its round-trip time.
        expect("floe_net_connections", &[("endpoint", "client")], &|v| {
            v >= 1.0
        })?;
        expect("floe_net_connections", &[("endpoint", "peer")], &|v| {
            v == 0.0
        })?;
        expect(
            "floe_net_rtt_seconds_count",
            &[("endpoint", "client")],
            &|v| v >= 1.0,
        )?;
        // Every documented name is exported (histograms as their `_count` series).
        for name in documented_names() {
            let present = m.lines().any(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with(['{', ' ']) || r.starts_with("_count"))
            });
            if !present {
                return Err(format!("{name} (documented in METRICS.md) is not exported"));
            }
        }
        Ok(())
    };
    assert!(
        documented_names().len() >= 15,
        "METRICS.md lists the metrics"
    );
    // The latency of an answer and the status gauges are recorded just after the client
    // sees the answer: scrape until they show.
    let started = Instant::now();
    loop {
        let text = tokio::task::spawn_blocking(move || scrape(metrics_addr))
            .await
            .expect("join");
        let failure = match text {
            Ok(text) => match check(&text) {
                Ok(()) => break,
                Err(e) => format!("{e}\n{text}"),
            },
            Err(e) => format!("scrape: {e}"),
        };
        assert!(started.elapsed() < WAIT, "metrics never matched: {failure}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Health: liveness, readiness (every hosted partition has its leader), unknown paths.
    let probe = |path: &'static str| {
        tokio::task::spawn_blocking(move || get(metrics_addr, path).expect(path))
    };
    assert_eq!(probe("/health").await.expect("join"), (200, "ok\n".into()));
    assert_eq!(
        probe("/ready").await.expect("join"),
        (200, "ready\n".into())
    );
    assert_eq!(probe("/health?ready").await.expect("join").0, 200);
    assert_eq!(probe("/nope").await.expect("join").0, 404);
    conn.close(0u32.into(), b"done");
    node.shutdown().await;
    // The node is gone: not ready any more, still alive.
    let (status, body) = probe("/ready").await.expect("join");
    assert_eq!(status, 503, "{body}");
    assert_eq!(probe("/health").await.expect("join").0, 200);
}

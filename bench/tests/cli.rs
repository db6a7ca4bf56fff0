//! `floe-bench storage` end to end: the JSON contract, and one-line errors.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_floe-bench"))
        .args(args)
        .output()
        .expect("running floe-bench")
}

#[test]
fn storage_run_writes_the_json_contract() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = bench(&[
        "storage",
        "--dir",
        dir.path().join("run").to_str().unwrap(),
        "--total-bytes",
        "200000",
        "--message-size",
        "100",
        "--batch-records",
        "10",
        "--fsync",
        "always",
        "--producers",
        "2",
        "--baseline-appends",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // 200000 bytes of 100-byte values = 2000 records in 200 batches of 10.
    assert_eq!(v["records"], 2000);
    assert_eq!(v["payload_bytes"], 200_000);
    for key in [
        "bytes",
        "seconds",
        "records_per_sec",
        "mb_per_sec",
        "read_mb_per_sec",
        "group_commit_speedup",
    ] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {}", v[key]);
    }
    for key in ["p50", "p99", "p999", "max"] {
        assert!(v["latency_us"][key].is_u64(), "latency_us.{key}");
    }
    // Every append is acknowledged by some fsync, and no fsync acknowledges nothing.
    let per_fsync = v["appends_per_fsync"].as_f64().unwrap();
    assert!((1.0..=200.0).contains(&per_fsync), "{per_fsync}");
}

#[test]
fn a_used_directory_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    let out = bench(&[
        "storage",
        "--dir",
        dir.path().to_str().unwrap(),
        "--total-bytes",
        "1000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("floe-bench: ") && stderr.contains("already exists"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The `floe` binary beside floe-bench. A workspace run (CI) builds it for the broker's own
/// tests, with the workspace's features; with `-p floe-bench` alone it may be missing, and
/// is built here (building it unconditionally would rebuild the broker with floe-broker's
/// features alone, minutes on this machine). A stale one from an older checkout is used as
/// it is: rebuild it by hand after pulling broker changes.
fn floe_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_floe-bench")).with_file_name("floe");
    if !path.is_file() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "floe-broker", "--bin", "floe"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building floe failed");
    }
    path
}

#[test]
fn e2e_on_a_local_cluster_verifies_every_record_and_stops_the_nodes() {
    let floe = floe_binary();
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let json = dir.path().join("e2e.json");
    let plot = dir.path().join("e2e.svg");
    let out = bench(&[
        "e2e",
        "--local",
        "--floe-bin",
        floe.to_str().unwrap(),
        "--local-dir",
        cluster_dir.to_str().unwrap(),
        "--replicas",
        "3",
        "--partitions",
        "2",
        "--count",
        "2000",
        "--message-size",
        "100",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--keys",
        "7",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["records"], 2000);
    assert_eq!(v["verified_records"], 2000);
    // 100-byte values plus 12-byte keys ("key-0000000N").
    assert_eq!(v["bytes"], 2000 * 112);
    assert_eq!(v["replicas"], 3);
    assert_eq!(v["partitions"], 2);
    assert!(v["produce_mb_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v.get("cluster_stop").is_none(), "{}", v["cluster_stop"]);
    let l = &v["latency_us"];
    assert!(l["p50"].as_u64().unwrap() <= l["max"].as_u64().unwrap());
    assert!(
        std::fs::read_to_string(&plot)
            .unwrap()
            .contains("latency by percentile")
    );
    // Every node wrote its log and stopped on SIGTERM ("stopping" is its last word).
    for n in 1..=3 {
        let log = std::fs::read_to_string(cluster_dir.join(format!("node-{n}.log"))).unwrap();
        assert!(log.contains("stopping"), "node {n}: {log}");
    }
}

#[test]
fn bad_load_flags_are_one_line_errors() {
    for (args, says) in [
        (
            &["produce", "--local", "--message-size", "10"][..],
            "--message-size",
        ),
        (
            &["produce", "--local", "--replicas", "5"][..],
            "--replicas 5",
        ),
        (&["e2e", "--local", "--fsync", "never"][..], "fsync"),
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("floe-bench: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn compare_prints_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(&a, r#"{"mb_per_sec": 200.0, "latency_us": {"p99": 1000}}"#).unwrap();
    std::fs::write(&b, r#"{"mb_per_sec": 100.0, "latency_us": {"p99": 3000}}"#).unwrap();
    let out = bench(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("mb_per_sec") && l.ends_with("0.500")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("latency_us.p99") && l.ends_with("3.000")),
        "{text}"
    );
}

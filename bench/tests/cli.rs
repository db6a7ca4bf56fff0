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

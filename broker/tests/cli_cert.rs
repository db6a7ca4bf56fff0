//! `floe cert init|issue` as an operator runs them, and the files they write used for real:
//! QUIC with mutual TLS between two nodes, and refusals for a certificate of another CA.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity, IncomingRequest};
use floe_protocol::ErrorCode;
use floe_protocol::FrameLimits;
use floe_protocol::peer::{PeerHello, PeerHelloResponse, PeerRequest, PeerResponse};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn floe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .output()
        .expect("running floe")
}

fn ok(args: &[&str]) {
    let out = floe(args);
    assert!(
        out.status.success(),
        "floe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command that must fail and returns its one-line stderr.
fn fails(args: &[&str]) -> String {
    let out = floe(args);
    assert!(!out.status.success(), "floe {args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("floe: "), "{stderr}");
    stderr
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_and_issue_write_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let nodes = dir.path().join("nodes");
    ok(&["cert", "init", "--out", s(&ca)]);
    assert!(ca.join("ca.pem").is_file());
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    ok(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--name",
        "node-1",
        "--out",
        s(&nodes),
        "--ip",
        "127.0.0.1",
        "--ip",
        "::1",
        "--dns",
        "node-1.example",
    ]);
    let pem = std::fs::read_to_string(nodes.join("node-1.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(mode(&nodes.join("node-1.key")), 0o600);
    // rustls (through floe-net) takes them.
    Identity::from_pem_files(nodes.join("node-1.pem"), nodes.join("node-1.key")).unwrap();
    assert_eq!(CaCerts::from_pem_file(ca.join("ca.pem")).unwrap().len(), 1);
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca");
    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&missing),
        "--name",
        "n1",
        "--out",
        s(dir.path()),
    ]);
    assert!(err.contains("does not exist"), "{err}");

    let ca = dir.path().join("ca");
    ok(&["cert", "init", "--out", s(&ca)]);
    let err = fails(&["cert", "init", "--out", s(&ca)]);
    assert!(err.contains("already exists"), "{err}");

    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--name",
        "../evil",
        "--out",
        s(dir.path()),
    ]);
    assert!(err.contains("not a valid DNS name"), "{err}");
    assert!(!dir.path().join("evil.key").exists());

    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--name",
        "n1",
        "--out",
        s(dir.path()),
        "--dns",
        "bad_name",
    ]);
    assert!(err.contains("bad_name"), "{err}");

    // clap rejects a malformed IP before anything is written.
    let out = floe(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--name",
        "n1",
        "--out",
        s(dir.path()),
        "--ip",
        "300.1.1.1",
    ]);
    assert!(!out.status.success());
    assert!(!dir.path().join("n1.key").exists());
}

fn hello(node_id: u64) -> PeerRequest {
    PeerRequest::from(PeerHello {
        cluster_id: "c".into(),
        node_id,
        apis: vec![],
    })
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn issued_certificates_secure_peer_links_and_foreign_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other_ca, certs) = (
        dir.path().join("ca"),
        dir.path().join("other"),
        dir.path().join("certs"),
    );
    ok(&["cert", "init", "--out", s(&ca)]);
    ok(&["cert", "init", "--out", s(&other_ca)]);
    for (from, name) in [(&ca, "node-1"), (&ca, "node-2"), (&other_ca, "rogue")] {
        ok(&[
            "cert",
            "issue",
            "--ca",
            s(from),
            "--name",
            name,
            "--out",
            s(&certs),
            "--ip",
            "127.0.0.1",
        ]);
    }
    let identity = |name: &str| {
        Identity::from_pem_files(
            certs.join(format!("{name}.pem")),
            certs.join(format!("{name}.key")),
        )
        .unwrap()
    };
    let trust = CaCerts::from_pem_file(ca.join("ca.pem")).unwrap();
    let opts = EndpointOptions::loopback();

    let node1 = Endpoint::peer(local(), &identity("node-1"), &trust, &opts).unwrap();
    let handler = floe_net::handler_fn(|req: IncomingRequest| async move {
        let response = PeerResponse::from(PeerHelloResponse {
            error: ErrorCode::None,
            node_id: 1,
            apis: vec![],
        });
        let _ = req
            .responder
            .respond(&mut response.encode_frame_chunks(req.header.correlation_id))
            .await;
    });
    tokio::spawn(floe_net::serve(
        node1.clone(),
        Arc::new(handler),
        Default::default(),
    ));
    let addr = node1.local_addr().unwrap();

    // node-2 (same CA) talks to node-1 over mutual TLS, by DNS name and by IP.
    let node2 = Endpoint::peer(local(), &identity("node-2"), &trust, &opts).unwrap();
    for server_name in ["node-1", "127.0.0.1"] {
        let conn = timeout(WAIT, node2.connect(addr, server_name))
            .await
            .unwrap()
            .unwrap();
        let r = timeout(
            WAIT,
            floe_net::call_peer(&conn, &hello(2), 1, FrameLimits::default()),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            matches!(r, PeerResponse::Hello(ref h) if h.node_id == 1),
            "{r:?}"
        );
    }

    // A node whose certificate comes from another CA is refused by node-1, even though it
    // trusts node-1's CA.
    let rogue = Endpoint::peer(local(), &identity("rogue"), &trust, &opts).unwrap();
    match timeout(WAIT, rogue.connect(addr, "node-1")).await.unwrap() {
        Err(e) => assert!(e.tls_alert().is_some(), "{e:?}"),
        Ok(conn) => {
            // TLS 1.3: the client may finish before the server has checked its certificate.
            let r = timeout(
                WAIT,
                floe_net::call_peer(&conn, &hello(9), 1, FrameLimits::default()),
            )
            .await
            .unwrap();
            assert!(r.is_err(), "the rogue node was served: {r:?}");
        }
    }

    // And a client that trusts only the other CA refuses node-1.
    let other_trust = CaCerts::from_pem_file(other_ca.join("ca.pem")).unwrap();
    let client = Endpoint::client(local(), &other_trust, &opts).unwrap();
    let listener = Endpoint::client_listener(local(), &identity("node-1"), &opts).unwrap();
    let err = timeout(
        WAIT,
        client.connect(listener.local_addr().unwrap(), "node-1"),
    );
    let accept = tokio::spawn(async move {
        let incoming = listener.accept().await.unwrap();
        listener.establish(incoming).await.map(|_| ())
    });
    let err = err.await.unwrap().unwrap_err();
    assert!(err.tls_alert().is_some() && !err.is_retryable(), "{err:?}");
    assert!(timeout(WAIT, accept).await.unwrap().unwrap().is_err());
}

//! Precedence, `--voters` parsing, and bad or missing settings.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use super::*;

fn full_args() -> ServeArgs {
    ServeArgs {
        node_id: Some("1".into()),
        data_dir: Some("/data/flag".into()),
        voters: Some("1@127.0.0.1:7401".into()),
        tls_cert: Some("flag.pem".into()),
        tls_key: Some("flag.key".into()),
        ca_cert: Some("ca-flag.pem".into()),
        ..ServeArgs::default()
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

const FULL_FILE: &str = r#"
node-id = 3
data-dir = "/data/file"
client-addr = "10.0.0.3:9000"
peer-addr = "10.0.0.3:9001"
metrics-addr = "10.0.0.3:9002"
voters = ["1@n1:7401", "2@n2:7401", "3@n3:7401"]
tls-cert = "file.pem"
tls-key = "file.key"
ca-cert = "ca-file.pem"
"#;

#[test]
fn defaults_fill_the_listeners() {
    let cfg = ServeConfig::load(&full_args(), |_| None).expect("config");
    assert_eq!(cfg.client_addr, DEFAULT_CLIENT_ADDR.parse().expect("addr"));
    assert_eq!(cfg.peer_addr, DEFAULT_PEER_ADDR.parse().expect("addr"));
    assert_eq!(
        cfg.metrics_addr,
        DEFAULT_METRICS_ADDR.parse().expect("addr")
    );
    assert_eq!(cfg.data_dir, PathBuf::from("/data/flag"));
    assert!(cfg.is_voter());
}

#[test]
fn a_file_alone_is_enough() {
    let f = write_file(FULL_FILE);
    let args = ServeArgs {
        config: Some(f.path().to_owned()),
        ..ServeArgs::default()
    };
    let cfg = ServeConfig::load(&args, |_| None).expect("config");
    assert_eq!(cfg.node_id, 3);
    assert_eq!(cfg.client_addr, "10.0.0.3:9000".parse().expect("addr"));
    assert_eq!(cfg.metrics_addr, "10.0.0.3:9002".parse().expect("addr"));
    assert_eq!(cfg.voters.len(), 3);
    assert_eq!(cfg.voters[2].addr.host, "n3");
    assert_eq!(cfg.ca_cert, PathBuf::from("ca-file.pem"));
    assert!(cfg.is_voter());
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let f = write_file(FULL_FILE);
    let args = ServeArgs {
        config: Some(f.path().to_owned()),
        node_id: Some("7".into()),
        client_addr: Some("127.0.0.1:1".into()),
        ..ServeArgs::default()
    };
    let env = env_of(&[
        ("FLOE_NODE_ID", "8"),
        ("FLOE_CLIENT_ADDR", "127.0.0.1:2"),
        ("FLOE_PEER_ADDR", "127.0.0.1:3"),
        ("FLOE_TLS_KEY", "env.key"),
    ]);
    let cfg = ServeConfig::load(&args, env).expect("config");
    assert_eq!(cfg.node_id, 7, "flag over env and file");
    assert_eq!(cfg.client_addr.port(), 1, "flag over env and file");
    assert_eq!(cfg.peer_addr.port(), 3, "env over file");
    assert_eq!(cfg.tls_key, PathBuf::from("env.key"), "env over file");
    assert_eq!(cfg.metrics_addr.port(), 9002, "file over default");
    assert_eq!(cfg.tls_cert, PathBuf::from("file.pem"), "file alone");
    assert!(!cfg.is_voter(), "node 7 is not among the voters");
}

#[test]
fn the_config_file_can_come_from_the_environment() {
    let f = write_file(FULL_FILE);
    let path = f.path().to_str().expect("utf-8 path").to_owned();
    let cfg = ServeConfig::load(&ServeArgs::default(), env_of(&[("FLOE_CONFIG", &path)]))
        .expect("config");
    assert_eq!(cfg.node_id, 3);
}

#[test]
fn a_missing_setting_is_named() {
    let mut args = full_args();
    args.voters = None;
    let err = ServeConfig::load(&args, |_| None).expect_err("no voters");
    assert!(matches!(
        err,
        ConfigError::Missing {
            setting: Setting::Voters
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("--voters") && msg.contains("FLOE_VOTERS"),
        "{msg}"
    );

    let err = ServeConfig::load(&ServeArgs::default(), |_| None).expect_err("nothing set");
    assert!(matches!(
        err,
        ConfigError::Missing {
            setting: Setting::NodeId
        }
    ));
}

#[test]
fn bad_values_name_setting_and_origin() {
    let env = env_of(&[("FLOE_NODE_ID", "one")]);
    let mut args = full_args();
    args.node_id = None;
    match ServeConfig::load(&args, env) {
        Err(ConfigError::Invalid {
            setting: Setting::NodeId,
            origin: Origin::Env,
            value,
            why: Invalid::NotANumber,
        }) => assert_eq!(value, "one"),
        other => panic!("expected a bad node id from the environment, got {other:?}"),
    }

    let mut args = full_args();
    args.node_id = Some("0".into());
    assert!(matches!(
        ServeConfig::load(&args, |_| None),
        Err(ConfigError::Invalid {
            why: Invalid::ZeroId,
            origin: Origin::Flag,
            ..
        })
    ));

    let mut args = full_args();
    args.peer_addr = Some("localhost".into());
    assert!(matches!(
        ServeConfig::load(&args, |_| None),
        Err(ConfigError::Invalid {
            setting: Setting::PeerAddr,
            why: Invalid::BadSocketAddr,
            ..
        })
    ));

    let mut args = full_args();
    args.data_dir = Some(PathBuf::new());
    assert!(matches!(
        ServeConfig::load(&args, |_| None),
        Err(ConfigError::Invalid {
            setting: Setting::DataDir,
            why: Invalid::Empty,
            ..
        })
    ));
}

#[test]
fn bad_files_are_typed_errors() {
    let mut args = full_args();
    args.config = Some("/nonexistent/floe.toml".into());
    assert!(matches!(
        ServeConfig::load(&args, |_| None),
        Err(ConfigError::ReadFile { .. })
    ));

    for text in [
        "node-idd = 1\n",         // unknown key (typo)
        "node-id = \"one\"\n",    // wrong type
        "voters = 5\n",           // neither a string nor an array
        "node-id = 1\nnode-id\n", // not TOML
    ] {
        let f = write_file(text);
        args.config = Some(f.path().to_owned());
        match ServeConfig::load(&args, |_| None) {
            Err(ConfigError::ParseFile { path, .. }) => assert_eq!(path, f.path()),
            other => panic!("{text:?}: expected a parse error, got {other:?}"),
        }
    }

    let f = write_file("metrics-addr = \"nope\"\n");
    args.config = Some(f.path().to_owned());
    assert!(matches!(
        ServeConfig::load(&args, |_| None),
        Err(ConfigError::Invalid {
            setting: Setting::MetricsAddr,
            origin: Origin::File,
            ..
        })
    ));
}

#[test]
fn voters_parse() {
    let v = parse_voters("1@127.0.0.1:7401,2@host-b:7402 , 3@[fe80::1]:7403").expect("voters");
    let got: Vec<(u64, &str, u16)> = v
        .iter()
        .map(|v| (v.id, v.addr.host.as_str(), v.addr.port))
        .collect();
    assert_eq!(
        got,
        [
            (1, "127.0.0.1", 7401),
            (2, "host-b", 7402),
            (3, "fe80::1", 7403)
        ]
    );
    assert_eq!(v[2].addr.to_string(), "[fe80::1]:7403");
    assert_eq!(parse_voters("9@h:1,").expect("trailing comma").len(), 1);
}

#[test]
fn bad_voters_are_rejected() {
    for bad in [
        "1@h",
        "@h:1",
        "x@h:1",
        "0@h:1",
        "1@h:0",
        "1@h:99999",
        "1@:1",
        "1@::1:7",
        "1@[::1:7",
        "1h:7",
        "1@h h:7",
    ] {
        assert_eq!(
            parse_voters(bad),
            Err(Invalid::BadVoter {
                entry: bad.to_owned()
            }),
            "{bad}"
        );
    }
    assert_eq!(
        parse_voters("1@a:1,2@b:1,1@c:1"),
        Err(Invalid::DuplicateVoter { id: 1 })
    );
    assert_eq!(parse_voters(" , "), Err(Invalid::NoVoters));
    assert_eq!(parse_voters(""), Err(Invalid::NoVoters));
}

#[test]
fn connection_and_stream_limits_resolve_per_layer_and_are_bounded() {
    let cfg = ServeConfig::load(&full_args(), |_| None).expect("config");
    assert_eq!(cfg.max_connections_per_ip, DEFAULT_MAX_CONNECTIONS_PER_IP);
    assert_eq!(
        cfg.max_streams_per_connection,
        DEFAULT_MAX_STREAMS_PER_CONNECTION
    );

    let f = write_file(&format!(
        "{FULL_FILE}max-connections-per-ip = 5\nmax-streams-per-connection = 7\n"
    ));
    let args = ServeArgs {
        config: Some(f.path().to_owned()),
        max_streams_per_connection: Some("9".into()),
        ..ServeArgs::default()
    };
    let cfg =
        ServeConfig::load(&args, env_of(&[("FLOE_MAX_CONNECTIONS_PER_IP", "0")])).expect("config");
    assert_eq!(
        cfg.max_connections_per_ip, 0,
        "env over file; 0 is no limit"
    );
    assert_eq!(cfg.max_streams_per_connection, 9, "flag over file");

    let args = ServeArgs {
        max_streams_per_connection: Some("0".into()),
        ..full_args()
    };
    let err = ServeConfig::load(&args, |_| None).expect_err("0 streams");
    assert!(matches!(
        err,
        ConfigError::Invalid {
            setting: Setting::MaxStreamsPerConnection,
            origin: Origin::Flag,
            why: Invalid::OutOfRange { min: 1, .. },
            ..
        }
    ));
    let err = ServeConfig::load(
        &full_args(),
        env_of(&[("FLOE_MAX_CONNECTIONS_PER_IP", "x")]),
    )
    .expect_err("not a number");
    assert!(matches!(
        err,
        ConfigError::Invalid {
            setting: Setting::MaxConnectionsPerIp,
            origin: Origin::Env,
            why: Invalid::NotANumber,
            ..
        }
    ));
}

#[test]
fn log_settings_default_to_keeping_everything_and_are_bounded() {
    let cfg = ServeConfig::load(&full_args(), |_| None).expect("config");
    assert_eq!(cfg.segment_bytes, DEFAULT_SEGMENT_BYTES);
    assert_eq!((cfg.retention_bytes, cfg.retention_ms), (None, None));
    let f = write_file(&format!("{FULL_FILE}retention-ms = 60000\n"));
    let args = ServeArgs {
        config: Some(f.path().to_owned()),
        segment_bytes: Some("65536".into()),
        ..ServeArgs::default()
    };
    let cfg =
        ServeConfig::load(&args, env_of(&[("FLOE_RETENTION_BYTES", "1000000")])).expect("config");
    assert_eq!(cfg.segment_bytes, 65536);
    assert_eq!(cfg.retention_bytes, Some(1_000_000));
    assert_eq!(cfg.retention_ms, Some(60_000));
    let args = ServeArgs {
        segment_bytes: Some("100".into()),
        ..full_args()
    };
    let err = ServeConfig::load(&args, |_| None).expect_err("tiny segments");
    assert!(matches!(
        err,
        ConfigError::Invalid {
            setting: Setting::SegmentBytes,
            why: Invalid::OutOfRange { min: 1024, .. },
            ..
        }
    ));
}

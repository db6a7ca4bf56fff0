//! Metrics: the names the broker records through the `metrics` facade, and the Prometheus
//! exporter `floe serve` installs (`GET http://<metrics-addr>/metrics`).
//!
//! Code records through the facade only, so a [`crate::node::Node`] works without a recorder
//! (every metric is a no-op then; in-process tests run many nodes that way). A process
//! installs the global recorder at most once ([`install_prometheus`]), **before** starting
//! its node: per-partition handles are resolved when the node opens its partitions.
//! Every metric, its type, labels and meaning is listed in `broker/METRICS.md`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Records produced (acknowledged), by topic and partition. Counter.
pub const PRODUCE_RECORDS: &str = "floe_produce_records_total";
/// Bytes of record batches produced (acknowledged), by topic and partition. Counter.
pub const PRODUCE_BYTES: &str = "floe_produce_bytes_total";
/// Bytes of record batches served to consumers, by topic, partition and api (`fetch` or
/// `subscribe`). Counter.
pub const FETCH_BYTES: &str = "floe_fetch_bytes_total";
/// Time from a decoded request to its answer, by api. Histogram, seconds.
pub const REQUEST_LATENCY: &str = "floe_request_latency_seconds";
/// Error answers, by api and error code (one per failed partition in multi-partition
/// requests). Counter.
pub const REQUEST_ERRORS: &str = "floe_request_errors_total";
/// The replica's current Raft term, by topic and partition. Gauge.
pub const RAFT_TERM: &str = "floe_raft_term";
/// The replica's commit end (high watermark), by topic and partition. Gauge.
pub const RAFT_COMMIT_END: &str = "floe_raft_commit_end";
/// The replica's log start (first offset retention kept), by topic and partition. Gauge.
pub const RAFT_LOG_START: &str = "floe_raft_log_start";
/// 1 while this replica leads its partition, else 0. Gauge.
pub const RAFT_IS_LEADER: &str = "floe_raft_is_leader";
/// Leaders this replica has learned of for a new term, by topic and partition. Counter.
pub const RAFT_LEADER_CHANGES: &str = "floe_raft_leader_changes_total";
/// Duration of persisting `Replica::process()` rounds, by topic and partition. Histogram,
/// seconds.
pub const STORAGE_FSYNC_LATENCY: &str = "floe_storage_fsync_latency_seconds";
/// 1 once the replica failed (it serves nothing until the node restarts), else 0. Gauge.
pub const PARTITION_FAILED: &str = "floe_partition_failed";

/// Elections this replica started (campaigns in a new term, after a pre-vote if enabled),
/// by topic and partition. Counter.
pub const RAFT_ELECTIONS: &str = "floe_raft_elections_total";
/// Entries this replica holds that it does not know committed yet (log end − commit end), by
/// topic and partition. Gauge, records (offsets).
pub const RAFT_COMMIT_LAG: &str = "floe_raft_commit_lag_records";
/// Leaderships this replica handed to a follower while stopping, by topic and partition.
/// Counter.
pub const RAFT_SHUTDOWN_HANDOVERS: &str = "floe_raft_shutdown_handovers_total";
/// 1 on the leader while some follower is out of sync (has not held everything committed,
/// or not been heard from, for 5 s), else 0; by topic and partition. Gauge.
pub const PARTITION_UNDER_REPLICATED: &str = "floe_partition_under_replicated";
/// Bytes of record batches in the replica's log (every segment), by topic and partition. Gauge.
pub const STORAGE_LOG_BYTES: &str = "floe_storage_log_bytes";
/// Segments of the replica's log, by topic and partition. Gauge.
pub const STORAGE_LOG_SEGMENTS: &str = "floe_storage_log_segments";
/// Bytes of sealed segments the background scrub checked (CRCs), by topic and partition.
/// Counter.
pub const STORAGE_SCRUBBED_BYTES: &str = "floe_storage_scrubbed_bytes_total";
/// Damaged ranges the background scrub found (each reported to Raft and repaired from the
/// leader), by topic and partition. Counter.
pub const STORAGE_SCRUB_DAMAGE: &str = "floe_storage_scrub_damage_total";

/// QUIC connections open on the node's endpoint, by `endpoint` (`client`, `peer`). Gauge.
pub const NET_CONNECTIONS: &str = "floe_net_connections";
/// Round-trip time estimates of the connections the node serves, sampled once a second per
/// connection, by `endpoint` (`client`, `peer`). Histogram, seconds.
pub const NET_RTT: &str = "floe_net_rtt_seconds";

/// Histogram buckets (seconds) of every `_seconds` metric: 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The listener could not be bound or the recorder built.
    #[error("serving metrics on {addr}: {source}")]
    Build {
        /// The metrics address.
        addr: SocketAddr,
        /// Why.
        source: BuildError,
    },
    /// The listener could not be bound.
    #[error("serving metrics on {addr}: {source}")]
    Bind {
        /// The metrics address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A global recorder was already installed in this process.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

/// Installs the process-wide Prometheus recorder and serves it over HTTP on `addr` from
/// tasks of the current tokio runtime: `GET /metrics` (Prometheus text), `GET /health`
/// (liveness: 200 while the process serves) and `GET /ready` (also `/health?ready`:
/// readiness, 200 once the node's check passes, see [`set_readiness`]; 503 with the reason
/// before). Other paths are 404. Call once per process, inside a tokio runtime, before
/// starting the node.
pub fn install_prometheus(addr: SocketAddr) -> Result<(), TelemetryError> {
    let build = |source| TelemetryError::Build { addr, source };
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(build)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    // Histograms are drained into their buckets by upkeep; without an exporter-run listener
    // that is ours to schedule.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(http::serve(listener, handle));
    describe();
    Ok(())
}

/// Sends the process's `tracing` events (and `log` records of dependencies) to stderr,
/// filtered by `FLOE_LOG` (the env-filter syntax: `info`, `floe_broker=debug,quinn=warn`, ...;
/// default `info`). Call once, early; a second call does nothing.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// How often the recorder's upkeep runs.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The readiness check `/ready` answers with: `Err(reason)` while not ready.
type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

static READINESS: RwLock<Option<ReadinessCheck>> = RwLock::new(None);

/// Sets what `GET /ready` consults (the node calls it when it starts: ready once every
/// hosted partition knows a leader and none failed). Until set, `/ready` answers 503. One
/// node per process is the norm; with several, the last one started is the one checked.
pub fn set_readiness(check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
    let mut r = READINESS.write().unwrap_or_else(|e| e.into_inner());
    *r = Some(Arc::new(check));
}

fn readiness() -> Result<(), String> {
    let check = READINESS.read().unwrap_or_else(|e| e.into_inner()).clone();
    match check {
        Some(check) => check(),
        None => Err("the node has not started".into()),
    }
}

/// Samples the node's QUIC endpoints once a second until the task is aborted: open
/// connections (gauge) and the round-trip time of each served connection (histogram), by
/// endpoint kind.
pub(crate) async fn sample_endpoints(client: floe_net::Endpoint, peer: floe_net::Endpoint) {
    let kinds = [("client", client), ("peer", peer)].map(|(kind, endpoint)| {
        let labels = [("endpoint", kind)];
        (
            endpoint,
            metrics::gauge!(NET_CONNECTIONS, &labels),
            metrics::histogram!(NET_RTT, &labels),
        )
    });
    loop {
        for (endpoint, open, rtt) in &kinds {
            open.set(endpoint.open_connections() as f64);
            for r in endpoint.served_rtts() {
                rtt.record(r.as_secs_f64());
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The metrics listener: a minimal HTTP/1.x server (one request per connection).
mod http {
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusHandle;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Longest request head read; anything longer is refused.
    const MAX_HEAD: usize = 8 * 1024;
    /// Time a client has to send its request head.
    const READ_TIMEOUT: Duration = Duration::from_secs(5);

    pub(super) async fn serve(listener: TcpListener, handle: PrometheusHandle) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(READ_TIMEOUT * 2, answer(stream, &handle)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        let read = async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let line = head
            .split(|&b| b == b'\n')
            .next()
            .and_then(|l| std::str::from_utf8(l).ok())
            .unwrap_or("");
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, content_type, body) = route(method, target, handle);
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        if method != "HEAD" {
            stream.write_all(body.as_bytes()).await?;
        }
        stream.shutdown().await
    }

    fn route(
        method: &str,
        target: &str,
        handle: &PrometheusHandle,
    ) -> (&'static str, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != "GET" && method != "HEAD" {
            return ("405 Method Not Allowed", TEXT, "only GET\n".into());
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match (path, query) {
            ("/metrics", _) => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            ),
            ("/ready", _) | ("/health", "ready") => match super::readiness() {
                Ok(()) => ("200 OK", TEXT, "ready\n".into()),
                Err(why) => (
                    "503 Service Unavailable",
                    TEXT,
                    format!("not ready: {why}\n"),
                ),
            },
            ("/health", _) => ("200 OK", TEXT, "ok\n".into()),
            _ => (
                "404 Not Found",
                TEXT,
                "paths: /metrics, /health, /ready\n".into(),
            ),
        }
    }
}

/// Registers every metric's help text and unit with the installed recorder.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        PRODUCE_RECORDS,
        Unit::Count,
        "Records acknowledged to producers"
    );
    describe_counter!(
        PRODUCE_BYTES,
        Unit::Bytes,
        "Bytes of record batches acknowledged to producers"
    );
    describe_counter!(
        FETCH_BYTES,
        Unit::Bytes,
        "Bytes of committed record batches served by fetch and subscribe"
    );
    describe_histogram!(
        REQUEST_LATENCY,
        Unit::Seconds,
        "Time from a decoded client request to its answer (subscribe: to its first answer)"
    );
    describe_counter!(
        REQUEST_ERRORS,
        Unit::Count,
        "Error answers to client requests, per failed partition"
    );
    describe_gauge!(RAFT_TERM, "The replica's current Raft term");
    describe_gauge!(
        RAFT_COMMIT_END,
        "The replica's commit end (high watermark): every offset below is committed"
    );
    describe_gauge!(
        RAFT_LOG_START,
        "The replica's log start: the first offset retention kept"
    );
    describe_gauge!(RAFT_IS_LEADER, "1 while this replica leads its partition");
    describe_counter!(
        RAFT_LEADER_CHANGES,
        Unit::Count,
        "Leaders this replica learned of for a new term"
    );
    describe_histogram!(
        STORAGE_FSYNC_LATENCY,
        Unit::Seconds,
        "Duration of Replica::process() rounds that made new entries or a new term durable"
    );
    describe_counter!(
        RAFT_ELECTIONS,
        Unit::Count,
        "Elections this replica started (campaigns in a new term)"
    );
    describe_gauge!(
        RAFT_COMMIT_LAG,
        Unit::Count,
        "Entries (offsets) this replica holds but does not know committed: log end - commit end"
    );
    describe_counter!(
        RAFT_SHUTDOWN_HANDOVERS,
        Unit::Count,
        "Leaderships handed to a follower while the node stopped"
    );
    describe_gauge!(
        PARTITION_UNDER_REPLICATED,
        "1 on the leader while some follower is out of sync for 5 s (behind the commit end or silent)"
    );
    describe_gauge!(
        STORAGE_LOG_BYTES,
        Unit::Bytes,
        "Bytes of record batches in the replica's log, every segment"
    );
    describe_gauge!(
        STORAGE_LOG_SEGMENTS,
        Unit::Count,
        "Segments of the replica's log"
    );
    describe_counter!(
        STORAGE_SCRUBBED_BYTES,
        Unit::Bytes,
        "Bytes of sealed segments the background scrub checked"
    );
    describe_counter!(
        STORAGE_SCRUB_DAMAGE,
        Unit::Count,
        "Damaged ranges the background scrub found (reported to Raft, repaired from the leader)"
    );
    describe_gauge!(
        NET_CONNECTIONS,
        Unit::Count,
        "QUIC connections open on the node's endpoint (client or peer)"
    );
    describe_histogram!(
        NET_RTT,
        Unit::Seconds,
        "Round-trip time of each served QUIC connection, sampled once a second"
    );
    describe_gauge!(
        PARTITION_FAILED,
        "1 once the replica failed (fsync error, damage) until the node restarts"
    );
}

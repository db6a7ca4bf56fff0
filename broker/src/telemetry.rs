//! Metrics: the names the broker records through the `metrics` facade, and the Prometheus
//! exporter `floe serve` installs (`GET http://<metrics-addr>/metrics`).
//!
//! Code records through the facade only, so a [`crate::node::Node`] works without a recorder
//! (every metric is a no-op then; in-process tests run many nodes that way). A process
//! installs the global recorder at most once ([`install_prometheus`]), **before** starting
//! its node: per-partition handles are resolved when the node opens its partitions.
//! Every metric, its type, labels and meaning is listed in `broker/METRICS.md`.

use std::net::SocketAddr;

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
/// 1 while this replica leads its partition, else 0. Gauge.
pub const RAFT_IS_LEADER: &str = "floe_raft_is_leader";
/// Leaders this replica has learned of for a new term, by topic and partition. Counter.
pub const RAFT_LEADER_CHANGES: &str = "floe_raft_leader_changes_total";
/// Duration of persisting `Replica::process()` rounds, by topic and partition. Histogram,
/// seconds.
pub const STORAGE_FSYNC_LATENCY: &str = "floe_storage_fsync_latency_seconds";
/// 1 once the replica failed (it serves nothing until the node restarts), else 0. Gauge.
pub const PARTITION_FAILED: &str = "floe_partition_failed";

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
    /// A global recorder was already installed in this process.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

/// Installs the process-wide Prometheus recorder and serves its text format over HTTP on
/// `addr` (any path answers; `/metrics` by convention) from a task of the current tokio
/// runtime. Call once per process, inside a tokio runtime, before starting the node.
pub fn install_prometheus(addr: SocketAddr) -> Result<(), TelemetryError> {
    let build = |source| TelemetryError::Build { addr, source };
    let (recorder, exporter) = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(build)?
        .with_http_listener(addr)
        .build()
        .map_err(build)?;
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(%addr, error = ?e, "the metrics listener stopped");
        }
    });
    describe();
    Ok(())
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
    describe_gauge!(
        PARTITION_FAILED,
        "1 once the replica failed (fsync error, damage) until the node restarts"
    );
}

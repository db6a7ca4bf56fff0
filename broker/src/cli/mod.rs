//! The `floe` verbs that run or talk to a cluster: `floe dev` (a local cluster of child
//! processes), `floe topic`, `floe produce`, `floe consume`, `floe cluster` and `floe group`.
//!
//! The client verbs go through floe-client (`Admin`, `Producer`, `Consumer`) like any other
//! application; they share [`ClientArgs`] (`--brokers`/`FLOE_BROKERS`, `--ca-cert`/
//! `FLOE_CA_CERT`, `--timeout`) and [`CliError`], whose messages are the one-line reasons
//! `floe` prints on stderr before exiting non-zero.

pub(crate) mod cluster;
pub(crate) mod consume;
pub(crate) mod dev;
pub(crate) mod output;
pub(crate) mod produce;
pub(crate) mod topic;

use std::path::PathBuf;
use std::time::Duration;

use floe_client::{CaCerts, Client, ErrorCode};

/// Connection settings shared by every client verb. `global`, so they may come before or
/// after the sub-command (`floe topic --brokers X list` or `floe topic list --brokers X`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    /// Brokers to start from, HOST:PORT,... (any one reachable broker is enough).
    #[arg(
        long,
        env = "FLOE_BROKERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        global = true
    )]
    pub(crate) brokers: Vec<String>,
    /// The cluster CA certificate (PEM) the brokers' certificates are checked against
    /// (`floe dev` prints it; `floe cert init` makes one).
    #[arg(long, env = "FLOE_CA_CERT", value_name = "FILE", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Seconds to wait for the cluster: to connect, and for each request.
    #[arg(
        long,
        env = "FLOE_TIMEOUT",
        value_name = "SECS",
        default_value = "10",
        value_parser = parse_secs,
        global = true
    )]
    pub(crate) timeout: Duration,
}

/// `--timeout`: positive seconds, fractions allowed.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s} is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Why a client verb failed. Each message is the one line `floe` prints.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Neither `--brokers` nor `FLOE_BROKERS`.
    #[error("no brokers given: pass --brokers HOST:PORT,... or set FLOE_BROKERS")]
    NoBrokers,
    /// Neither `--ca-cert` nor `FLOE_CA_CERT`.
    #[error(
        "no CA certificate given: pass --ca-cert FILE or set FLOE_CA_CERT (floe always uses TLS)"
    )]
    NoCaCert,
    /// The CA file cannot be used.
    #[error("bad CA file {}: {source}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: floe_net::TlsError,
    },
    /// No bootstrap broker answered in time.
    #[error("no broker reachable at {brokers} within {}s{}", after.as_secs_f64(), last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Unreachable {
        /// The bootstrap list.
        brokers: String,
        /// The timeout.
        after: Duration,
        /// The last error seen, if any came before the timeout.
        last: Option<floe_client::Error>,
    },
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// `--partition` beyond the topic's partitions.
    #[error("unknown partition {partition}: topic {topic} has {partitions} partitions")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many there are.
        partitions: u32,
    },
    /// Consumer groups have no protocol support yet.
    #[error("consumer groups are not supported yet (consume with --partition / --offset instead)")]
    GroupsUnsupported,
    /// A `--format` that cannot be used.
    #[error("bad --format: {0}")]
    Format(#[from] consume::FormatError),
    /// A `--config` that is not `KEY=VALUE`.
    #[error("bad --config {0:?}: expected KEY=VALUE")]
    ConfigEntry(String),
    /// A broker refused a request.
    #[error("{api:?} refused{}: {code}{}", topic.as_ref().map(|t| format!(" for {t}")).unwrap_or_default(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The api.
        api: floe_protocol::client::ApiKey,
        /// The wire code.
        code: ErrorCode,
        /// The topic, when one was refused.
        topic: Option<String>,
        /// The broker's detail.
        message: Option<String>,
    },
    /// The cluster or the client failed.
    #[error(transparent)]
    Client(floe_client::Error),
    /// Reading stdin or writing stdout failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `floe produce`: records the cluster did not acknowledge.
    #[error("{failed} of {records} records not acknowledged: {first}")]
    Undelivered {
        /// Records read from stdin.
        records: u64,
        /// Records that failed.
        failed: u64,
        /// The first failure.
        first: floe_client::Error,
    },
    /// `floe dev` failed.
    #[error(transparent)]
    Dev(#[from] dev::DevError),
}

impl From<floe_client::Error> for CliError {
    fn from(e: floe_client::Error) -> Self {
        match e {
            floe_client::Error::UnknownTopic { topic } => CliError::UnknownTopic(topic),
            floe_client::Error::Broker {
                code: ErrorCode::UnknownTopicOrPartition,
                topic: Some(topic),
                partition: None,
                ..
            } => CliError::UnknownTopic(topic),
            floe_client::Error::UnknownPartition {
                topic,
                partition,
                partitions,
            } => CliError::UnknownPartition {
                topic,
                partition,
                partitions,
            },
            floe_client::Error::Broker {
                code,
                api,
                topic,
                message,
                ..
            } => CliError::Refused {
                api,
                code,
                topic,
                message,
            },
            e => CliError::Client(e),
        }
    }
}

impl ClientArgs {
    /// Connects to the cluster (loads the CA, reaches one broker, reads the first metadata)
    /// within `--timeout`.
    pub(crate) async fn connect(&self) -> Result<Client, CliError> {
        if self.brokers.iter().all(|b| b.trim().is_empty()) {
            return Err(CliError::NoBrokers);
        }
        let path = self.ca_cert.clone().ok_or(CliError::NoCaCert)?;
        let ca = CaCerts::from_pem_file(&path).map_err(|source| CliError::BadCa {
            path: path.clone(),
            source,
        })?;
        let brokers: Vec<String> = self
            .brokers
            .iter()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect();
        let shown = brokers.join(",");
        // A few quick retries ride over a broker that is starting or a controller election
        // (about 3 s of backoff in all); more would only hide the reason.
        let builder = Client::builder()
            .brokers(brokers)
            .ca_certs(ca)
            .client_id("floe-cli")
            .request_timeout(self.timeout)
            .retries(5, Duration::from_millis(100));
        match tokio::time::timeout(self.timeout, builder.build()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) if e.is_retryable() => Err(CliError::Unreachable {
                brokers: shown,
                after: self.timeout,
                last: Some(e),
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(CliError::Unreachable {
                brokers: shown,
                after: self.timeout,
                last: None,
            }),
        }
    }
}

/// A multi-threaded runtime for one client verb.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("floe-cli")
        .build()
        .map_err(|source| CliError::Io {
            what: "starting the async runtime",
            source,
        })
}

/// `floe group ...`: the contract's verbs, refused until the protocol has groups.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups (not supported yet).
    List,
    /// Describe a consumer group (not supported yet).
    Describe {
        /// The group.
        group: String,
    },
}

/// `floe group`: every sub-command fails with [`CliError::GroupsUnsupported`].
pub(crate) fn group(_command: &GroupCommand) -> Result<(), CliError> {
    Err(CliError::GroupsUnsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_positive_bounded_seconds() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("1e9").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn unknown_topics_read_as_such() {
        let e = CliError::from(floe_client::Error::UnknownTopic { topic: "t".into() });
        assert_eq!(e.to_string(), "unknown topic t");
        let e = CliError::from(floe_client::Error::Broker {
            code: ErrorCode::UnknownTopicOrPartition,
            api: floe_protocol::client::ApiKey::DescribeTopics,
            topic: Some("u".into()),
            partition: None,
            message: None,
        });
        assert_eq!(e.to_string(), "unknown topic u");
        let e = CliError::from(floe_client::Error::Broker {
            code: ErrorCode::TopicAlreadyExists,
            api: floe_protocol::client::ApiKey::CreateTopics,
            topic: Some("v".into()),
            partition: None,
            message: Some("it is there".into()),
        });
        assert_eq!(
            e.to_string(),
            format!(
                "CreateTopics refused for v: {}: it is there",
                ErrorCode::TopicAlreadyExists
            )
        );
    }
}

//! [`Error`]: everything that can go wrong in the client, with retryable and fatal apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use floe_net::{CallError, ConnectError, EndpointError, TlsError};
use floe_protocol::ErrorCode;
use floe_protocol::batch::{BatchError, BuildError};
use floe_protocol::client::ApiKey;

use crate::partitioner::PartitionerError;

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client error. Cheap to clone (network sources are shared), so one failed batch can
/// report the same error to every record in it.
///
/// [`Error::is_retryable`] says whether the same operation may succeed later. The client
/// already retried retryable errors for as long as it was configured to, so a retryable
/// error reaching you means those retries ran out; a fatal one was never retried.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A broker answered with an error code for a request (or one topic/partition of it).
    #[error("broker error {code} (api {api:?}{})", fmt_tp(.topic, .partition))]
    Broker {
        /// The wire error code.
        code: ErrorCode,
        /// The api that failed.
        api: ApiKey,
        /// The topic, when the error was for one topic.
        topic: Option<String>,
        /// The partition, when the error was for one partition.
        partition: Option<u32>,
        /// The broker's detail, if it sent one.
        message: Option<String>,
    },
    /// A newer producer with the same id (a higher epoch) exists: this producer is fenced and
    /// can no longer write. Fatal.
    #[error("producer {producer_id} epoch {epoch} is fenced on {topic}/{partition}")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// This producer's epoch.
        epoch: i16,
        /// Where it was noticed.
        topic: String,
        /// Where it was noticed.
        partition: u32,
    },
    /// The partition leader saw a gap in this producer's sequence numbers (records were
    /// lost between the producer and the log). Fatal for the batch.
    #[error("out-of-order sequence {sequence} from producer {producer_id} on {topic}/{partition}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The batch's first sequence.
        sequence: i32,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The topic does not exist (after refreshing metadata).
    #[error("unknown topic {topic}")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// The partition does not exist in the topic.
    #[error("partition {partition} out of range: {topic} has {partitions}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
    /// No leader is known for the partition (after refreshing metadata).
    #[error("no leader for {topic}/{partition}")]
    LeaderNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A broker address could not be parsed or resolved.
    #[error("cannot resolve broker address {address:?}{}", .reason.map(|r| format!(": {r}")).unwrap_or_default())]
    Resolve {
        /// The address as given.
        address: String,
        /// The resolver's error kind, if it got that far.
        reason: Option<std::io::ErrorKind>,
    },
    /// Connecting to a broker failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The broker's address.
        addr: SocketAddr,
        /// Why.
        source: Arc<ConnectError>,
    },
    /// A call failed on the wire (connection lost, stream reset, undecodable response).
    #[error("call to {addr} failed: {source}")]
    Call {
        /// The broker's address.
        addr: SocketAddr,
        /// Why.
        source: Arc<CallError>,
    },
    /// A broker did not answer within the request timeout.
    #[error("{api:?} request to {addr} timed out after {after:?}")]
    Timeout {
        /// The api.
        api: ApiKey,
        /// The broker's address.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// A broker sent a response of the wrong kind for the request.
    #[error("unexpected response to {api:?} from {addr}")]
    UnexpectedResponse {
        /// The api called.
        api: ApiKey,
        /// The broker's address.
        addr: SocketAddr,
    },
    /// None of the known brokers could be reached.
    #[error("no broker reachable (tried {tried})")]
    NoBrokerAvailable {
        /// How many addresses were tried.
        tried: usize,
    },
    /// The client endpoint could not be created.
    #[error("client endpoint: {0}")]
    Endpoint(#[source] Arc<EndpointError>),
    /// The CA certificates could not be loaded.
    #[error("CA certificates: {0}")]
    Tls(#[source] Arc<TlsError>),
    /// A builder was given an invalid setting.
    #[error("invalid configuration {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The producer's buffer is full and the producer is configured to fail rather than wait
    /// (or waited longer than `max_block`).
    #[error("producer buffer full: {requested} bytes requested, {capacity} bytes capacity")]
    BufferFull {
        /// Bytes the record needs.
        requested: usize,
        /// The buffer's size.
        capacity: usize,
    },
    /// A record is larger than a batch may be.
    #[error("record of {size} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// The record's encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A record could not be added to a batch.
    #[error("building a batch: {0}")]
    Build(#[from] BuildError),
    /// A batch from a broker failed its checks (CRC, structure).
    #[error("corrupt batch from {topic}/{partition} near offset {offset}: {source}")]
    CorruptBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset being read.
        offset: u64,
        /// What was wrong.
        source: BatchError,
    },
    /// The partitioner could not pick a partition.
    #[error(transparent)]
    Partitioner(#[from] PartitionerError),
    /// The delivery timeout ran out before the broker acknowledged the record.
    #[error("record not delivered within {after:?}: {last}")]
    DeliveryTimeout {
        /// The delivery timeout.
        after: Duration,
        /// The last error seen.
        last: Box<Error>,
    },
    /// A partition leader's high watermark is below an offset known to be committed: a
    /// leader elected moments ago learns the commit point only once it commits an entry of
    /// its own. Retryable (the consumer waits and asks again).
    #[error(
        "{topic}/{partition}: offset {offset} not yet available (high watermark {high_watermark})"
    )]
    OffsetNotYetAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The leader's high watermark.
        high_watermark: u64,
    },
    /// The partition is not assigned to this consumer.
    #[error("{topic}/{partition} is not assigned")]
    NotAssigned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The client, producer or consumer was closed.
    #[error("closed")]
    Closed,
}

fn fmt_tp(topic: &Option<String>, partition: &Option<u32>) -> String {
    match (topic, partition) {
        (Some(t), Some(p)) => format!(" on {t}/{p}"),
        (Some(t), None) => format!(" on {t}"),
        _ => String::new(),
    }
}

impl Error {
    /// Whether the same operation may succeed if tried again later (a leader moved, a broker
    /// restarted, a timeout). Fatal errors (a fenced producer, a bad request, a TLS failure,
    /// a full buffer in error mode) will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Broker { code, .. } => code.is_retryable(),
            Error::Connect { source, .. } => source.is_retryable(),
            Error::Call { source, .. } => source.is_retryable(),
            Error::Timeout { .. }
            | Error::NoBrokerAvailable { .. }
            | Error::LeaderNotAvailable { .. }
            | Error::OffsetNotYetAvailable { .. } => true,
            Error::DeliveryTimeout { .. }
            | Error::ProducerFenced { .. }
            | Error::OutOfOrderSequence { .. }
            | Error::UnknownTopic { .. }
            | Error::UnknownPartition { .. }
            | Error::Resolve { .. }
            | Error::UnexpectedResponse { .. }
            | Error::Endpoint(_)
            | Error::Tls(_)
            | Error::Config { .. }
            | Error::BufferFull { .. }
            | Error::RecordTooLarge { .. }
            | Error::Build(_)
            | Error::CorruptBatch { .. }
            | Error::Partitioner(_)
            | Error::NotAssigned { .. }
            | Error::Closed => false,
        }
    }

    /// Whether this error is the opposite of retryable: the same operation will fail again.
    pub fn is_fatal(&self) -> bool {
        !self.is_retryable()
    }

    /// The broker's wire error code, when the error came from one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::ProducerFenced { .. } => Some(ErrorCode::ProducerFenced),
            Error::OutOfOrderSequence { .. } => Some(ErrorCode::OutOfOrderSequence),
            Error::Call { source, .. } => match **source {
                CallError::Refused(code) => Some(code),
                _ => None,
            },
            Error::DeliveryTimeout { last, .. } => last.code(),
            _ => None,
        }
    }

    /// Whether the broker may be gone: it could not be reached, the connection failed under
    /// the call, or it did not answer in time. A partition leader that fails like this is
    /// forgotten and metadata refreshed (from another broker) before the retry, since the
    /// cluster may have elected a new leader meanwhile.
    pub(crate) fn broker_unreachable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } => true,
            Error::Call { source, .. } => !matches!(**source, CallError::Refused(_)),
            _ => false,
        }
    }

    /// The broker's address, when [`broker_unreachable`](Self::broker_unreachable).
    pub(crate) fn unreachable_addr(&self) -> Option<SocketAddr> {
        match self {
            Error::Connect { addr, .. }
            | Error::Timeout { addr, .. }
            | Error::Call { addr, .. }
                if self.broker_unreachable() =>
            {
                Some(*addr)
            }
            _ => None,
        }
    }

    /// Whether a request routed to a partition leader should forget that leader and refresh
    /// metadata before retrying (the broker said it moved, or the broker may be gone).
    pub(crate) fn needs_leader_refresh(&self) -> bool {
        self.needs_metadata() || self.broker_unreachable()
    }

    /// A broker error for a whole request.
    pub(crate) fn broker(api: ApiKey, code: ErrorCode) -> Error {
        Error::Broker {
            code,
            api,
            topic: None,
            partition: None,
            message: None,
        }
    }

    /// Whether the client should refresh metadata before retrying.
    pub(crate) fn needs_metadata(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ErrorCode::NotLeader
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::UnknownTopicOrPartition
                    | ErrorCode::NotController
            )
        ) || matches!(self, Error::Connect { .. } | Error::Call { .. })
    }
}

impl From<EndpointError> for Error {
    fn from(e: EndpointError) -> Self {
        Error::Endpoint(Arc::new(e))
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_code() {
        let e = Error::broker(ApiKey::Produce, ErrorCode::NotLeader);
        assert!(e.is_retryable() && e.needs_metadata());
        let e = Error::broker(ApiKey::Produce, ErrorCode::CorruptBatch);
        assert!(e.is_fatal() && !e.needs_metadata());
        let fenced = Error::ProducerFenced {
            producer_id: 1,
            epoch: 0,
            topic: "t".into(),
            partition: 0,
        };
        assert!(fenced.is_fatal());
        assert_eq!(fenced.code(), Some(ErrorCode::ProducerFenced));
        assert!(
            Error::Timeout {
                api: ApiKey::Fetch,
                addr: "127.0.0.1:1".parse().unwrap(),
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(!Error::Closed.is_retryable());
        let timeout = Error::Timeout {
            api: ApiKey::ListOffsets,
            addr: "127.0.0.1:1".parse().unwrap(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.broker_unreachable() && timeout.needs_leader_refresh());
        let not_leader = Error::broker(ApiKey::Produce, ErrorCode::NotLeader);
        assert!(!not_leader.broker_unreachable() && not_leader.needs_leader_refresh());
        assert!(!Error::Closed.needs_leader_refresh());
    }

    #[test]
    fn display_names_the_partition() {
        let e = Error::Broker {
            code: ErrorCode::NotLeader,
            api: ApiKey::Produce,
            topic: Some("orders".into()),
            partition: Some(3),
            message: None,
        };
        assert_eq!(
            e.to_string(),
            "broker error NotLeader (7) (api Produce on orders/3)"
        );
    }
}

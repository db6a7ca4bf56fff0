//! The stable wire error-code table.
//!
//! Every error a response can carry is one `u16` from this table. Numbers are forever: a code
//! that is no longer used is moved to [`RETIRED_CODES`] and its number is never given to
//! another error. `0` means success. A receiver that meets a number it does not know treats it
//! as [`ErrorCode::UnknownServerError`] (not retryable).
//!
//! ```
//! use floe_protocol::ErrorCode;
//! assert_eq!(ErrorCode::NotLeader as u16, 7);
//! assert_eq!(ErrorCode::from_u16(7), Some(ErrorCode::NotLeader));
//! assert!(ErrorCode::NotLeader.is_retryable());
//! ```

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $name:ident = $num:literal, $retry:literal; )*) => {
        /// A wire error code. See the module docs for the rules.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $name = $num, )*
        }

        impl ErrorCode {
            /// Every code in use, in number order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The code for `n`, or `None` if `n` is not (or no longer) assigned.
            pub const fn from_u16(n: u16) -> Option<ErrorCode> {
                match n {
                    $( $num => Some(ErrorCode::$name), )*
                    _ => None,
                }
            }

            /// Whether a client may retry the same request (possibly after refreshing metadata).
            pub const fn is_retryable(self) -> bool {
                match self {
                    $( ErrorCode::$name => $retry, )*
                }
            }

            /// The variant name, for logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => stringify!($name), )*
                }
            }
        }
    };
}

error_codes! {
    /// Success.
    None = 0, false;
    /// An unexpected server error, or a code this receiver does not know.
    UnknownServerError = 1, false;
    /// The request is malformed (bad frame, bad field value).
    InvalidRequest = 2, false;
    /// The api key or api version is not supported by the receiver.
    UnsupportedVersion = 3, false;
    /// A batch failed its CRC or structural checks.
    CorruptBatch = 4, false;
    /// A batch or request is larger than the receiver allows.
    MessageTooLarge = 5, false;
    /// The topic or partition does not exist (on this broker).
    UnknownTopicOrPartition = 6, true;
    /// This broker is not the partition (or controller) leader; the response carries the leader
    /// when known.
    NotLeader = 7, true;
    /// No leader is currently elected.
    LeaderNotAvailable = 8, true;
    /// Fewer in-sync replicas than required; the batch was not appended.
    NotEnoughReplicas = 9, true;
    /// The batch was appended but not replicated in time; it may still commit.
    NotEnoughReplicasAfterAppend = 10, true;
    /// The request did not complete within its timeout.
    RequestTimedOut = 11, true;
    /// The requested offset is outside the log's [start, high watermark].
    OffsetOutOfRange = 12, false;
    /// A topic with that name already exists.
    TopicAlreadyExists = 13, false;
    /// Invalid partition count.
    InvalidPartitions = 14, false;
    /// Invalid replication factor (for example more than the number of brokers).
    InvalidReplicationFactor = 15, false;
    /// The topic name is empty, too long or has forbidden characters.
    InvalidTopicName = 16, false;
    /// The producer id is not known to the partition leader.
    UnknownProducerId = 17, false;
    /// A newer producer with the same id has a higher epoch: this one is fenced.
    ProducerFenced = 18, false;
    /// The batch's sequence leaves a gap after the last acknowledged one.
    OutOfOrderSequence = 19, false;
    /// The batch was already appended (a retry); the response carries its original offset.
    DuplicateSequence = 20, false;
    /// The request carries a term/epoch older than the receiver's.
    StaleEpoch = 21, false;
    /// The principal is not allowed to do this.
    Unauthorized = 22, false;
    /// This broker is not the coordinator of the consumer group.
    NotCoordinator = 23, true;
    /// The group coordinator is loading or not available yet.
    CoordinatorNotAvailable = 24, true;
    /// The generation id in the request is not the group's current one.
    IllegalGeneration = 25, false;
    /// The member id is not known to the group.
    UnknownMemberId = 26, false;
    /// The group is rebalancing; rejoin.
    RebalanceInProgress = 27, false;
    /// The member's protocols are incompatible with the group's.
    InconsistentGroupProtocol = 28, false;
    /// The session timeout is outside the broker's allowed range.
    InvalidSessionTimeout = 29, false;
    /// The group does not exist.
    GroupIdNotFound = 30, false;
    /// The group is not empty (for example on delete).
    NonEmptyGroup = 31, false;
    /// This broker is not the controller leader; the response carries the leader when known.
    NotController = 32, true;
    /// A configuration value is invalid.
    InvalidConfig = 33, false;
    /// The partition's log failed on this broker (for example an fsync error) and is stopped.
    StorageError = 34, true;
    /// The compression codec is unknown or not allowed.
    UnsupportedCompression = 35, false;
    /// The subscription ran out of credit and was paused.
    CreditExhausted = 36, false;
    /// The broker is shutting down or still starting.
    BrokerNotAvailable = 37, true;
    /// The cluster id presented in a handshake is not this cluster's.
    ClusterIdMismatch = 38, false;
    /// The topic is being deleted.
    TopicDeletionInProgress = 39, true;
    /// The timestamp is outside the range the topic accepts.
    InvalidTimestamp = 40, false;
}

/// Numbers that were assigned once and must never be reused. Empty today; append only.
pub const RETIRED_CODES: &[u16] = &[];

// The table macro cannot carry `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for ErrorCode {
    fn default() -> Self {
        ErrorCode::None
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c as u16
    }
}

impl ErrorCode {
    /// Decodes a wire number, mapping unknown numbers to [`ErrorCode::UnknownServerError`].
    pub const fn from_wire(n: u16) -> ErrorCode {
        match ErrorCode::from_u16(n) {
            Some(c) => c,
            None => ErrorCode::UnknownServerError,
        }
    }

    /// Whether this is success.
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::None)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins every number. Changing a line here is a wire-format break: retire instead.
    #[test]
    fn numbers_are_pinned() {
        let pinned: &[(ErrorCode, u16)] = &[
            (ErrorCode::None, 0),
            (ErrorCode::UnknownServerError, 1),
            (ErrorCode::InvalidRequest, 2),
            (ErrorCode::UnsupportedVersion, 3),
            (ErrorCode::CorruptBatch, 4),
            (ErrorCode::MessageTooLarge, 5),
            (ErrorCode::UnknownTopicOrPartition, 6),
            (ErrorCode::NotLeader, 7),
            (ErrorCode::LeaderNotAvailable, 8),
            (ErrorCode::NotEnoughReplicas, 9),
            (ErrorCode::NotEnoughReplicasAfterAppend, 10),
            (ErrorCode::RequestTimedOut, 11),
            (ErrorCode::OffsetOutOfRange, 12),
            (ErrorCode::TopicAlreadyExists, 13),
            (ErrorCode::InvalidPartitions, 14),
            (ErrorCode::InvalidReplicationFactor, 15),
            (ErrorCode::InvalidTopicName, 16),
            (ErrorCode::UnknownProducerId, 17),
            (ErrorCode::ProducerFenced, 18),
            (ErrorCode::OutOfOrderSequence, 19),
            (ErrorCode::DuplicateSequence, 20),
            (ErrorCode::StaleEpoch, 21),
            (ErrorCode::Unauthorized, 22),
            (ErrorCode::NotCoordinator, 23),
            (ErrorCode::CoordinatorNotAvailable, 24),
            (ErrorCode::IllegalGeneration, 25),
            (ErrorCode::UnknownMemberId, 26),
            (ErrorCode::RebalanceInProgress, 27),
            (ErrorCode::InconsistentGroupProtocol, 28),
            (ErrorCode::InvalidSessionTimeout, 29),
            (ErrorCode::GroupIdNotFound, 30),
            (ErrorCode::NonEmptyGroup, 31),
            (ErrorCode::NotController, 32),
            (ErrorCode::InvalidConfig, 33),
            (ErrorCode::StorageError, 34),
            (ErrorCode::UnsupportedCompression, 35),
            (ErrorCode::CreditExhausted, 36),
            (ErrorCode::BrokerNotAvailable, 37),
            (ErrorCode::ClusterIdMismatch, 38),
            (ErrorCode::TopicDeletionInProgress, 39),
            (ErrorCode::InvalidTimestamp, 40),
        ];
        assert_eq!(
            pinned.len(),
            ErrorCode::ALL.len(),
            "pin every new code here"
        );
        for &(code, n) in pinned {
            assert_eq!(code as u16, n, "{code:?}");
            assert_eq!(ErrorCode::from_u16(n), Some(code));
        }
    }

    #[test]
    fn retired_codes_are_never_reused_and_unknown_maps_to_unknown_server_error() {
        for &n in RETIRED_CODES {
            assert_eq!(ErrorCode::from_u16(n), None, "retired code {n} reused");
        }
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c as u16), "duplicate number {}", c as u16);
        }
        assert_eq!(ErrorCode::from_wire(60_000), ErrorCode::UnknownServerError);
        assert_eq!(ErrorCode::from_wire(7), ErrorCode::NotLeader);
        assert_eq!(ErrorCode::NotLeader.to_string(), "NotLeader (7)");
    }
}

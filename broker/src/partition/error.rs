//! Errors of a partition replica, and their wire codes.

use floe_protocol::ErrorCode;
use floe_protocol::batch::HeaderError;
use floe_raft::{NodeId, RaftError};

use super::raft_log::RaftLogError;

/// A failure that stops the replica: drop it and reopen its directory (recovery).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The Raft core failed (a log failure, or a safety violation).
    #[error(transparent)]
    Raft(#[from] RaftError),
    /// The partition log or its hard state failed (fsyncgate: never retried).
    #[error(transparent)]
    Log(#[from] RaftLogError),
    /// The replica failed earlier and refuses further inputs.
    #[error("the replica failed earlier; reopen it")]
    Stopped,
}

impl ReplicaError {
    /// Whether the replica stopped because it met damaged data (restart it with
    /// `ReplicaConfig::verify_on_open` so the damage is found and repaired).
    pub fn is_corruption(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if is_storage_corruption(e) {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

/// Whether `e` is (or directly wraps) floe-storage's `Corruption` (wrappers marked
/// `transparent` hide their inner error from `source()`, so each layer is looked into).
fn is_storage_corruption(e: &(dyn std::error::Error + 'static)) -> bool {
    let corrupt = |s: &floe_storage::Error| matches!(s, floe_storage::Error::Corruption { .. });
    if let Some(s) = e.downcast_ref::<floe_storage::Error>() {
        return corrupt(s);
    }
    if let Some(RaftLogError::Storage(s)) = e.downcast_ref::<RaftLogError>() {
        return corrupt(s);
    }
    let log_error = match e.downcast_ref::<ReplicaError>() {
        Some(ReplicaError::Log(RaftLogError::Storage(s))) => return corrupt(s),
        Some(ReplicaError::Raft(RaftError::Log(l))) => Some(l),
        _ => e.downcast_ref::<floe_raft::LogError>(),
    };
    match log_error {
        Some(floe_raft::LogError::Storage(inner)) => is_storage_corruption(inner.as_ref()),
        _ => false,
    }
}

/// Why a produce request was not accepted or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// This replica is not the leader; retry at `leader` (if known).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader of the current term, if known.
        leader: Option<NodeId>,
    },
    /// Leadership is moving; retry shortly.
    #[error("leadership transfer in progress")]
    LeaderNotAvailable,
    /// The batch failed validation (header, size limit or CRC).
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] HeaderError),
    /// The buffer holds more or fewer bytes than the batch header says.
    #[error("buffer of {buf_len} bytes for a batch of {batch_len} bytes")]
    LengthMismatch {
        /// `batch_len` from the header.
        batch_len: u32,
        /// Bytes given.
        buf_len: usize,
    },
    /// Producers may not write control batches.
    #[error("producers may not write control batches")]
    ControlBatch,
    /// The batch was appended by a leader that lost its term before the batch committed, and
    /// a new leader overwrote it: it is not in the log (retry at `leader`).
    #[error("the batch was overwritten after a leader change (leader: {leader:?})")]
    Overwritten {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// An idempotent producer's epoch is older than one this partition has seen for its id:
    /// a newer instance of the producer took over.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    ProducerFenced {
        /// The batch's producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newer epoch the partition holds.
        current_epoch: i16,
    },
    /// An idempotent producer's batch does not continue its sequence (a gap, a step back
    /// outside the deduplication window, or a new producer or epoch not starting at 0).
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {base_sequence} out of order (expected {expected})"
    )]
    OutOfOrderSequence {
        /// The batch's producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence.
        base_sequence: i32,
        /// The sequence it should have started at.
        expected: i32,
    },
    /// A batch with a producer id but a negative epoch or base sequence.
    #[error("producer {producer_id}: invalid epoch {epoch} or base sequence {base_sequence}")]
    InvalidProducerFields {
        /// The batch's producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence.
        base_sequence: i32,
    },
    /// The replica failed (see [`ReplicaError`]).
    #[error(transparent)]
    Fatal(#[from] ReplicaError),
}

impl ProduceError {
    /// The protocol error code for the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProduceError::NotLeader { .. } | ProduceError::Overwritten { .. } => {
                ErrorCode::NotLeader
            }
            ProduceError::LeaderNotAvailable => ErrorCode::LeaderNotAvailable,
            ProduceError::InvalidBatch(HeaderError::BadLength { len, max }) if len > max => {
                ErrorCode::MessageTooLarge
            }
            ProduceError::InvalidBatch(_) | ProduceError::LengthMismatch { .. } => {
                ErrorCode::CorruptBatch
            }
            ProduceError::ControlBatch | ProduceError::InvalidProducerFields { .. } => {
                ErrorCode::InvalidRequest
            }
            ProduceError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
            ProduceError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            ProduceError::Fatal(_) => ErrorCode::StorageError,
        }
    }
}

/// Why a compaction (retention) was refused.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Only committed data may be discarded.
    #[error("cannot compact to {up_to}: the high watermark is {high_watermark}")]
    NotCommitted {
        /// Asked.
        up_to: u64,
        /// The high watermark.
        high_watermark: u64,
    },
    /// Compaction stops at a batch boundary inside the log.
    #[error("{up_to} is not a batch boundary in the log")]
    NotBoundary {
        /// Asked.
        up_to: u64,
    },
    /// The replica failed (see [`ReplicaError`]).
    #[error(transparent)]
    Fatal(#[from] ReplicaError),
}

/// Why a consumer read failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The offset is below the log start or above the high watermark.
    #[error("offset {offset} outside [{start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The log start.
        start: u64,
        /// The high watermark (commit end).
        high_watermark: u64,
    },
    /// The storage refused the read (for example a damaged batch, never served).
    #[error(transparent)]
    Storage(#[from] RaftLogError),
}

impl FetchError {
    /// Where damaged data starts, if the read met some: hand it to
    /// [`crate::partition::Replica::report_damage`] so the replica re-fetches it.
    pub fn damaged_from(&self) -> Option<u64> {
        match self {
            FetchError::Storage(RaftLogError::Storage(floe_storage::Error::Corruption {
                range,
            })) => Some(range.start),
            _ => None,
        }
    }

    /// The protocol error code for the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            FetchError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            FetchError::Storage(_) => ErrorCode::StorageError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_is_recognised_through_the_layers() {
        let range = floe_storage::CorruptRange {
            start: 1,
            end: 2,
            segment: 0,
            position: 0,
            kind: floe_storage::CorruptionKind::CrcMismatch,
        };
        let storage = || floe_storage::Error::Corruption { range };
        let direct = ReplicaError::Log(RaftLogError::Storage(storage()));
        assert!(direct.is_corruption());
        let through_raft = ReplicaError::Raft(RaftError::Log(floe_raft::LogError::Storage(
            Box::new(RaftLogError::Storage(storage())),
        )));
        assert!(through_raft.is_corruption());
        let other = ReplicaError::Raft(RaftError::Log(floe_raft::LogError::Unavailable {
            offset: floe_raft::Offset(3),
        }));
        assert!(!other.is_corruption());
        assert!(!ReplicaError::Stopped.is_corruption());
    }

    #[test]
    fn wire_codes() {
        let too_big = ProduceError::InvalidBatch(HeaderError::BadLength { len: 10, max: 5 });
        assert_eq!(too_big.code(), ErrorCode::MessageTooLarge);
        let too_small = ProduceError::InvalidBatch(HeaderError::BadLength { len: 3, max: 5 });
        assert_eq!(too_small.code(), ErrorCode::CorruptBatch);
        let crc = ProduceError::InvalidBatch(HeaderError::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert_eq!(crc.code(), ErrorCode::CorruptBatch);
        assert_eq!(
            ProduceError::NotLeader { leader: None }.code(),
            ErrorCode::NotLeader
        );
        assert!(
            ProduceError::NotLeader { leader: None }
                .code()
                .is_retryable()
        );
        assert_eq!(ProduceError::ControlBatch.code(), ErrorCode::InvalidRequest);
        let fenced = ProduceError::ProducerFenced {
            producer_id: 1,
            epoch: 0,
            current_epoch: 1,
        };
        assert_eq!(fenced.code(), ErrorCode::ProducerFenced);
        assert!(!fenced.code().is_retryable());
        let gap = ProduceError::OutOfOrderSequence {
            producer_id: 1,
            epoch: 0,
            base_sequence: 5,
            expected: 3,
        };
        assert_eq!(gap.code(), ErrorCode::OutOfOrderSequence);
        let bad = ProduceError::InvalidProducerFields {
            producer_id: 1,
            epoch: -1,
            base_sequence: 0,
        };
        assert_eq!(bad.code(), ErrorCode::InvalidRequest);
        assert_eq!(
            ProduceError::Fatal(ReplicaError::Stopped).code(),
            ErrorCode::StorageError
        );
    }
}

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
            ProduceError::ControlBatch => ErrorCode::InvalidRequest,
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
        assert_eq!(
            ProduceError::Fatal(ReplicaError::Stopped).code(),
            ErrorCode::StorageError
        );
    }
}

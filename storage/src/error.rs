//! Errors of the storage crate.
//!
//! Callers branch on three classes, see [`Error::class`]:
//! - **fatal**: the log is in a failed state (an fsync or write failed, or a truncation left the
//!   disk in an unknown state); stop the partition, restart it, recover from disk and peers;
//! - **retryable**: nothing durable was harmed, the same call may succeed later (disk full);
//! - **rejected**: the request itself was wrong (bad batch, wrong offset); retrying the same
//!   request gives the same answer.

use std::io;

use floe_protocol::batch::HeaderError;
use thiserror::Error;

/// The storage operation during which an I/O error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Writing batch bytes to a segment.
    Append,
    /// Syncing a segment's data (fsync/fdatasync).
    SyncData,
    /// Syncing the directory (after creating, renaming or removing files).
    SyncDir,
    /// Creating or preallocating a file.
    Create,
    /// Opening a file.
    Open,
    /// Listing the directory.
    List,
    /// Reading from a file.
    Read,
    /// Removing a file.
    Remove,
    /// Renaming a file.
    Rename,
    /// Changing a file's length.
    SetLen,
    /// Writing an index, meta or hard-state file.
    WriteMeta,
}

/// Why a log refuses writes after a fatal error. Kept in the log; every later write returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The operation that failed.
    pub op: IoOp,
    /// The kind of the original `io::Error`.
    pub kind: io::ErrorKind,
    /// The raw OS error code, if any (e.g. `EIO` = 5).
    pub os_code: Option<i32>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} failed with {:?}", self.op, self.kind)?;
        if let Some(code) = self.os_code {
            write!(f, " (os error {code})")?;
        }
        Ok(())
    }
}

/// What was found wrong in a damaged range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorruptionKind {
    /// The batch header is readable but the CRC does not match the bytes.
    CrcMismatch,
    /// The header is not a valid header (length, magic, attributes, counts).
    BadHeader,
    /// The header's base offset is not the next offset of the log (offsets must be dense).
    OffsetMismatch,
    /// The term went down from one batch to the next.
    TermRegression,
    /// The batch's term is not the one the term history (`log.terms`) gives for its offsets:
    /// the term field (not covered by the batch CRC) was damaged.
    TermMismatch,
    /// Bytes the index or the durable floor says exist are missing (short file, gap between
    /// segments).
    Missing,
}

/// A damaged range of the log: offsets `[start, end)`. Never served; the Raft layer repairs it
/// from a peer (or truncates it away when it is an uncommitted suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CorruptRange {
    /// First damaged offset.
    pub start: u64,
    /// One past the last damaged offset.
    pub end: u64,
    /// Base offset of the segment that holds it.
    pub segment: u64,
    /// Byte position in that segment where the damage starts.
    pub position: u64,
    /// What is wrong.
    pub kind: CorruptionKind,
}

impl CorruptRange {
    /// Whether `offset` lies in the range.
    pub fn contains(&self, offset: u64) -> bool {
        self.start <= offset && offset < self.end
    }
}

/// Error class: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The log is failed: stop the partition and recover.
    Fatal,
    /// Nothing durable was harmed; the same call may succeed later.
    Retryable,
    /// The request was wrong; retrying it gives the same error.
    Rejected,
}

/// Every error of floe-storage.
#[derive(Debug, Error)]
pub enum Error {
    /// An fsync/write failed earlier (or just now) and the log refuses writes (fsyncgate: an
    /// fsync is never retried). Reopen the log to recover from what is on disk.
    #[error("log failed: {0}; refusing writes until it is reopened")]
    Failed(Failure),
    /// The disk is full (ENOSPC or EDQUOT). The partial write was rolled back logically;
    /// nothing durable was harmed. Retry after space frees.
    #[error("no space left during {op:?}")]
    NoSpace {
        /// The operation that ran out of space.
        op: IoOp,
        /// The original error.
        #[source]
        source: io::Error,
    },
    /// Another I/O error that did not leave the log in an unknown state (for example a failed
    /// directory listing at open).
    #[error("I/O error during {op:?} on {file}")]
    Io {
        /// The operation.
        op: IoOp,
        /// The file name inside the log directory (empty for the directory itself).
        file: String,
        /// The original error (its kind is kept).
        #[source]
        source: io::Error,
    },
    /// The batch failed validation (header, length limit or CRC).
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] HeaderError),
    /// A replicated batch does not start at the log end.
    #[error("batch base offset {got} is not the log end {expected}")]
    NotAtEnd {
        /// The log end.
        expected: u64,
        /// The batch's base offset.
        got: u64,
    },
    /// The batch's term is lower than the last batch's term.
    #[error("batch term {got} is below the log's last term {last}")]
    TermRegression {
        /// The last term in the log.
        last: u64,
        /// The batch's term.
        got: u64,
    },
    /// The offset is outside `[start, end]` (reads) or `[start, end]` (truncation).
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// Log start.
        start: u64,
        /// Log end.
        end: u64,
    },
    /// `truncate_suffix` at an offset in the middle of a batch.
    #[error("offset {offset} is inside batch [{batch_start}, {batch_end})")]
    NotBatchBoundary {
        /// The offset asked for.
        offset: u64,
        /// Base offset of the batch that contains it.
        batch_start: u64,
        /// Next offset after that batch.
        batch_end: u64,
    },
    /// The data at this offset is damaged and is not served.
    #[error("corrupt log range [{}, {}) ({:?}) in segment {}", range.start, range.end, range.kind, range.segment)]
    Corruption {
        /// The damaged range.
        range: CorruptRange,
    },
    /// A hard-state, index or meta file failed its checksum or layout checks.
    #[error("damaged {file}: {reason}")]
    BadMetaFile {
        /// The file name.
        file: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A configuration value is out of its allowed range.
    #[error("invalid log configuration: {field}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
    },
    /// The buffer holds more or fewer bytes than the batch header's `batch_len`.
    #[error("buffer of {buf_len} bytes for a batch of {batch_len} bytes")]
    LengthMismatch {
        /// `batch_len` from the header.
        batch_len: u32,
        /// Bytes given.
        buf_len: usize,
    },
    /// The group-commit writer thread is gone.
    #[error("log writer stopped")]
    WriterStopped,
}

impl Error {
    /// Fatal, retryable or rejected.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Failed(_) => ErrorClass::Fatal,
            Error::NoSpace { .. } | Error::Io { .. } => ErrorClass::Retryable,
            Error::WriterStopped => ErrorClass::Fatal,
            Error::Corruption { .. } | Error::BadMetaFile { .. } => ErrorClass::Rejected,
            Error::InvalidBatch(_)
            | Error::NotAtEnd { .. }
            | Error::TermRegression { .. }
            | Error::OffsetOutOfRange { .. }
            | Error::NotBatchBoundary { .. }
            | Error::InvalidConfig { .. }
            | Error::LengthMismatch { .. } => ErrorClass::Rejected,
        }
    }

    /// Shorthand for `class() == ErrorClass::Fatal`.
    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// The `io::ErrorKind` behind this error, if it came from I/O.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Failed(f) => Some(f.kind),
            Error::NoSpace { source, .. } | Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an I/O error means "the disk is full".
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

pub(crate) fn failure(op: IoOp, e: &io::Error) -> Failure {
    Failure {
        op,
        kind: e.kind(),
        os_code: e.raw_os_error(),
    }
}

pub(crate) fn io_err(op: IoOp, file: &str, source: io::Error) -> Error {
    if is_no_space(&source) {
        Error::NoSpace { op, source }
    } else {
        Error::Io {
            op,
            file: file.to_owned(),
            source,
        }
    }
}

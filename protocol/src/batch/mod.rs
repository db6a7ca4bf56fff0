//! The record batch: a fixed little-endian header followed by records.
//!
//! The header is split in two parts. The *broker-owned* fields (base offset and term) are
//! stamped by the partition leader and are not covered by the CRC. Everything from
//! `attributes` to the end of the batch is *producer-owned* and covered by the CRC, so the
//! leader can assign offsets without touching (or re-checksumming) the payload, and the same
//! bytes travel to disk, to followers and to consumers.
//!
//! * [`BatchBuilder`] makes batches (data or control, optionally LZ4-compressed).
//! * [`BatchView`] validates one batch (header + CRC) without copying; [`BatchView::records`]
//!   gives [`Records`], whose [`iter`](Records::iter) yields borrowed [`Record`]s.
//! * [`BatchIter`] walks consecutive batches in one buffer.
//! * [`ControlRecord`] is the typed payload of control batches.

pub mod builder;
pub mod compression;
pub mod control;
pub mod header;
pub mod reader;
pub mod records;

pub use builder::{BatchBuilder, BuildError};
pub use compression::{CompressionError, DEFAULT_MAX_UNCOMPRESSED_LEN};
pub use control::{ControlError, ControlRecord, RaftConfig};
pub use header::{
    Attributes, BATCH_MAGIC, BatchHeader, CRC_START, CompressionCodec, HEADER_LEN, HeaderError,
    MAX_BATCH_LEN, compute_crc, seal_crc, stamp, validate_batch,
};
pub use reader::{BatchError, BatchIter, BatchLimits, BatchView, RecordIter, Records};
pub use records::{Header, Headers, NewRecord, Record, RecordError};

#[cfg(test)]
mod tests;

//! The record batch: a fixed little-endian header followed by records.
//!
//! The header is split in two parts. The *broker-owned* fields (base offset and term) are
//! stamped by the partition leader and are not covered by the CRC. Everything from
//! `attributes` to the end of the batch is *producer-owned* and covered by the CRC, so the
//! leader can assign offsets without touching (or re-checksumming) the payload, and the same
//! bytes travel to disk, to followers and to consumers.

pub mod header;

pub use header::{
    Attributes, BATCH_MAGIC, BatchHeader, CRC_START, CompressionCodec, HEADER_LEN, HeaderError,
    MAX_BATCH_LEN, compute_crc, seal_crc, stamp, validate_batch,
};

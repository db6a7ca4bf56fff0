//! Record-batch header: layout, parsing, validation and broker-side stamping.
//!
//! ```text
//! offset len  field              owner     notes
//!  0     8    base_offset  u64   broker    offset of the first record
//!  8     4    batch_len    u32   producer  total bytes of the batch, header included
//! 12     8    term         u64   broker    Raft term of the leader that appended it
//! 20     1    magic        u8    producer  format version, = BATCH_MAGIC
//! 21     4    crc          u32   producer  CRC-32 (IEEE, crc32fast) of bytes [25, batch_len)
//! 25     2    attributes   u16   producer  bits 0-2 codec, bit 5 control batch, others zero
//! 27     4    last_offset_delta u32        last record's offset - base_offset
//! 31     8    first_timestamp i64          ms since the Unix epoch
//! 39     8    max_timestamp   i64          ms since the Unix epoch
//! 47     8    producer_id     i64          -1 when not idempotent
//! 55     2    producer_epoch  i16          -1 when not idempotent
//! 57     4    base_sequence   i32          -1 when not idempotent
//! 61     4    record_count    u32
//! 65     ..   records
//! ```
//! All integers are little-endian.

use thiserror::Error;

/// Byte offset of `base_offset`.
pub const BASE_OFFSET_AT: usize = 0;
/// Byte offset of `batch_len`.
pub const BATCH_LEN_AT: usize = BASE_OFFSET_AT + 8;
/// Byte offset of `term`.
pub const TERM_AT: usize = BATCH_LEN_AT + 4;
/// Byte offset of `magic`.
pub const MAGIC_AT: usize = TERM_AT + 8;
/// Byte offset of `crc`.
pub const CRC_AT: usize = MAGIC_AT + 1;
/// Byte offset of `attributes`: the CRC covers `[CRC_START, batch_len)`.
pub const CRC_START: usize = CRC_AT + 4;
/// Byte offset of `attributes`.
pub const ATTRIBUTES_AT: usize = CRC_START;
/// Byte offset of `last_offset_delta`.
pub const LAST_OFFSET_DELTA_AT: usize = ATTRIBUTES_AT + 2;
/// Byte offset of `first_timestamp`.
pub const FIRST_TIMESTAMP_AT: usize = LAST_OFFSET_DELTA_AT + 4;
/// Byte offset of `max_timestamp`.
pub const MAX_TIMESTAMP_AT: usize = FIRST_TIMESTAMP_AT + 8;
/// Byte offset of `producer_id`.
pub const PRODUCER_ID_AT: usize = MAX_TIMESTAMP_AT + 8;
/// Byte offset of `producer_epoch`.
pub const PRODUCER_EPOCH_AT: usize = PRODUCER_ID_AT + 8;
/// Byte offset of `base_sequence`.
pub const BASE_SEQUENCE_AT: usize = PRODUCER_EPOCH_AT + 2;
/// Byte offset of `record_count`.
pub const RECORD_COUNT_AT: usize = BASE_SEQUENCE_AT + 4;
/// Length of the fixed header; records start here.
pub const HEADER_LEN: usize = RECORD_COUNT_AT + 4;
const _: () = assert!(HEADER_LEN == 65);
const _: () = assert!(CRC_START == 25);

/// The only batch format version this crate reads and writes.
pub const BATCH_MAGIC: u8 = 1;

/// Hard upper bound on a batch's total length. Brokers configure a smaller limit; no decoder
/// trusts a length above this one.
pub const MAX_BATCH_LEN: u32 = 64 * 1024 * 1024;

/// Why a batch header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Fewer bytes than a header, or than `batch_len` says.
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the header says the batch needs.
        needed: usize,
        /// Bytes actually available.
        available: usize,
    },
    /// `batch_len` is smaller than a header or larger than the limit.
    #[error("batch length {len} out of bounds [{HEADER_LEN}, {max}]")]
    BadLength {
        /// The length found.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// Unknown format version.
    #[error("unknown batch magic {0}")]
    BadMagic(u8),
    /// The CRC does not match the producer-owned bytes.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// Reserved attribute bits are set or the codec id is unknown.
    #[error("unsupported batch attributes {0:#06x}")]
    BadAttributes(u16),
    /// `record_count` is zero or does not agree with `last_offset_delta + 1`.
    #[error("record count {record_count} inconsistent with last offset delta {last_offset_delta}")]
    BadRecordCount {
        /// Declared record count.
        record_count: u32,
        /// Declared last offset delta.
        last_offset_delta: u32,
    },
}

/// Compression codec carried in attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionCodec {
    /// Records stored as-is.
    None,
    /// Records block compressed with LZ4 (block format, size-prepended).
    Lz4,
}

impl CompressionCodec {
    /// The 3-bit id stored in the attributes.
    pub const fn id(self) -> u16 {
        match self {
            CompressionCodec::None => 0,
            CompressionCodec::Lz4 => 1,
        }
    }

    /// The codec for a 3-bit id, or `None` if it is unknown.
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            0 => Some(CompressionCodec::None),
            1 => Some(CompressionCodec::Lz4),
            _ => None,
        }
    }
}

/// The attributes field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes(pub u16);

impl Attributes {
    const CODEC_MASK: u16 = 0b111;
    /// Set on batches that carry control records (Raft configuration, no-op), not user data.
    pub const CONTROL: u16 = 1 << 5;
    const KNOWN: u16 = Self::CODEC_MASK | Self::CONTROL;

    /// Builds attributes from a codec and the control flag.
    pub const fn new(codec: CompressionCodec, control: bool) -> Self {
        Attributes(codec.id() | if control { Self::CONTROL } else { 0 })
    }

    /// The compression codec, or `None` when the id is unknown.
    pub const fn codec(self) -> Option<CompressionCodec> {
        CompressionCodec::from_id(self.0 & Self::CODEC_MASK)
    }

    /// Whether this is a control batch.
    pub const fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }

    /// Rejects reserved bits and unknown codecs.
    pub fn validate(self) -> Result<(), HeaderError> {
        if self.0 & !Self::KNOWN != 0 || self.codec().is_none() {
            return Err(HeaderError::BadAttributes(self.0));
        }
        Ok(())
    }
}

/// A decoded batch header. Plain data: parsing copies the 65 header bytes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record (broker-owned).
    pub base_offset: u64,
    /// Total bytes of the batch, header included.
    pub batch_len: u32,
    /// Raft term of the appending leader (broker-owned).
    pub term: u64,
    /// Format version.
    pub magic: u8,
    /// Stored CRC of `[CRC_START, batch_len)`.
    pub crc: u32,
    /// Codec and flags.
    pub attributes: Attributes,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record, ms since the epoch.
    pub first_timestamp: i64,
    /// Largest record timestamp, ms since the epoch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: u32,
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Reads the header fields from the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Checks only that the bytes exist; see [`BatchHeader::validate`] for the semantic checks.
    pub fn parse(buf: &[u8]) -> Result<Self, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: le_u64(buf, BASE_OFFSET_AT),
            batch_len: le_u32(buf, BATCH_LEN_AT),
            term: le_u64(buf, TERM_AT),
            magic: buf[MAGIC_AT],
            crc: le_u32(buf, CRC_AT),
            attributes: Attributes(le_u16(buf, ATTRIBUTES_AT)),
            last_offset_delta: le_u32(buf, LAST_OFFSET_DELTA_AT),
            first_timestamp: le_u64(buf, FIRST_TIMESTAMP_AT) as i64,
            max_timestamp: le_u64(buf, MAX_TIMESTAMP_AT) as i64,
            producer_id: le_u64(buf, PRODUCER_ID_AT) as i64,
            producer_epoch: le_u16(buf, PRODUCER_EPOCH_AT) as i16,
            base_sequence: le_u32(buf, BASE_SEQUENCE_AT) as i32,
            record_count: le_u32(buf, RECORD_COUNT_AT),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`HEADER_LEN`] (a caller bug, never input-driven).
    pub fn write(&self, out: &mut [u8]) {
        out[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&self.base_offset.to_le_bytes());
        out[BATCH_LEN_AT..BATCH_LEN_AT + 4].copy_from_slice(&self.batch_len.to_le_bytes());
        out[TERM_AT..TERM_AT + 8].copy_from_slice(&self.term.to_le_bytes());
        out[MAGIC_AT] = self.magic;
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&self.crc.to_le_bytes());
        out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&self.attributes.0.to_le_bytes());
        out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&self.last_offset_delta.to_le_bytes());
        out[FIRST_TIMESTAMP_AT..FIRST_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.first_timestamp.to_le_bytes());
        out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.max_timestamp.to_le_bytes());
        out[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&self.producer_id.to_le_bytes());
        out[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&self.producer_epoch.to_le_bytes());
        out[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
            .copy_from_slice(&self.base_sequence.to_le_bytes());
        out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&self.record_count.to_le_bytes());
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.last_offset_delta))
    }

    /// Sequence number of the last record for an idempotent producer (wrapping at 2^31),
    /// or `None` when the batch has no producer id.
    pub fn last_sequence(&self) -> Option<i32> {
        if self.producer_id < 0 || self.base_sequence < 0 {
            return None;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        Some((last % (i64::from(i32::MAX) + 1)) as i32)
    }

    /// Whether attributes bit 5 marks this as a control batch.
    pub fn is_control(&self) -> bool {
        self.attributes.is_control()
    }

    /// Offset just past the batch: the next batch's base offset.
    pub fn next_offset(&self) -> u64 {
        self.last_offset().saturating_add(1)
    }

    /// Checks everything but the CRC: magic, length bounds (against `max_len`, itself capped at
    /// [`MAX_BATCH_LEN`]), attributes, and that `record_count == last_offset_delta + 1`.
    pub fn validate(&self, max_len: u32) -> Result<(), HeaderError> {
        let max = max_len.min(MAX_BATCH_LEN);
        if self.magic != BATCH_MAGIC {
            return Err(HeaderError::BadMagic(self.magic));
        }
        if (self.batch_len as usize) < HEADER_LEN || self.batch_len > max {
            return Err(HeaderError::BadLength {
                len: self.batch_len,
                max,
            });
        }
        self.attributes.validate()?;
        if self.record_count == 0
            || u64::from(self.record_count) != u64::from(self.last_offset_delta) + 1
        {
            return Err(HeaderError::BadRecordCount {
                record_count: self.record_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }
}

/// CRC-32 of the producer-owned part of a complete batch, `batch[CRC_START..]`.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32fast::hash(batch.get(CRC_START..).unwrap_or(&[]))
}

/// Parses and fully validates the batch at the start of `buf`: header checks, that `buf` holds
/// at least `batch_len` bytes, and the CRC. Returns the header; the batch is
/// `&buf[..header.batch_len as usize]`.
pub fn validate_batch(buf: &[u8], max_len: u32) -> Result<BatchHeader, HeaderError> {
    let header = BatchHeader::parse(buf)?;
    header.validate(max_len)?;
    let len = header.batch_len as usize;
    if buf.len() < len {
        return Err(HeaderError::Truncated {
            needed: len,
            available: buf.len(),
        });
    }
    let computed = compute_crc(&buf[..len]);
    if computed != header.crc {
        return Err(HeaderError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Stamps the broker-owned fields (base offset and term) in place. The CRC is untouched and
/// stays valid, because it does not cover these fields.
///
/// # Panics
/// If `batch` is shorter than [`HEADER_LEN`] (a caller bug: validate first).
pub fn stamp(batch: &mut [u8], base_offset: u64, term: u64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_le_bytes());
    batch[TERM_AT..TERM_AT + 8].copy_from_slice(&term.to_le_bytes());
}

/// Writes `crc` = CRC of `batch[CRC_START..]` into the header. Producers call this last.
///
/// # Panics
/// If `batch` is shorter than [`HEADER_LEN`].
pub fn seal_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> Vec<u8> {
        let header = BatchHeader {
            base_offset: 0,
            batch_len: (HEADER_LEN + payload.len()) as u32,
            term: 0,
            magic: BATCH_MAGIC,
            crc: 0,
            attributes: Attributes::default(),
            last_offset_delta: 2,
            first_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_005,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 3,
        };
        let mut buf = vec![0u8; header.batch_len as usize];
        header.write(&mut buf);
        buf[HEADER_LEN..].copy_from_slice(payload);
        seal_crc(&mut buf);
        buf
    }

    #[test]
    fn round_trip_and_validate() {
        let buf = sample(b"records");
        let h = validate_batch(&buf, MAX_BATCH_LEN).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset(), 2);
        let mut again = vec![0u8; HEADER_LEN];
        h.write(&mut again);
        assert_eq!(&again[..], &buf[..HEADER_LEN]);
    }

    #[test]
    fn last_sequence_wraps() {
        let mut h = BatchHeader::parse(&sample(b"x")).unwrap();
        assert_eq!(h.last_sequence(), None);
        h.producer_id = 5;
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), Some(0)); // three records: MAX-1, MAX, 0
        h.base_sequence = 10;
        assert_eq!(h.last_sequence(), Some(12));
    }

    #[test]
    fn stamping_keeps_crc_valid() {
        let mut buf = sample(b"abc");
        let crc_before = BatchHeader::parse(&buf).unwrap().crc;
        stamp(&mut buf, 1234, 7);
        let h = validate_batch(&buf, MAX_BATCH_LEN).unwrap();
        assert_eq!((h.base_offset, h.term, h.crc), (1234, 7, crc_before));
    }

    #[test]
    fn every_flipped_producer_bit_is_detected() {
        let buf = sample(b"payload bytes");
        for byte in CRC_START..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    validate_batch(&bad, MAX_BATCH_LEN).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn short_and_oversized_are_typed_errors() {
        let buf = sample(b"x");
        assert!(matches!(
            validate_batch(&buf[..buf.len() - 1], MAX_BATCH_LEN),
            Err(HeaderError::Truncated { .. })
        ));
        assert!(matches!(
            validate_batch(&buf, HEADER_LEN as u32),
            Err(HeaderError::BadLength { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&[]),
            Err(HeaderError::Truncated { .. })
        ));
    }
}

//! [`BatchBuilder`]: how producers (and the broker, for control batches) make batches.

use super::compression::compress_into;
use super::control::ControlRecord;
use super::header::{
    Attributes, BATCH_MAGIC, BatchHeader, CompressionCodec, HEADER_LEN, MAX_BATCH_LEN, seal_crc,
};
use super::records::{NewRecord, body_len, encode_record};
use crate::varint;
use bytes::Bytes;
use thiserror::Error;

/// Why a record could not be added or a batch finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BuildError {
    /// Adding the record would make the batch larger than the builder's limit. The builder is
    /// unchanged: finish this batch and start a new one.
    #[error("batch would grow to {would_be} bytes, limit {limit}")]
    TooLarge {
        /// Size the batch would have had (uncompressed).
        would_be: usize,
        /// The builder's limit.
        limit: usize,
    },
    /// A batch must hold at least one record.
    #[error("a batch needs at least one record")]
    Empty,
    /// The finished (compressed) batch is still above the limit.
    #[error("finished batch is {len} bytes, limit {limit}")]
    FinishedTooLarge {
        /// The batch size.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Builds one record batch: append records, then [`finish`](BatchBuilder::finish) to get the
/// batch bytes with a sealed CRC. Base offset and term are left 0 for the leader to stamp.
///
/// ```
/// use floe_protocol::batch::{BatchBuilder, BatchView, BatchLimits, CompressionCodec};
/// let mut b = BatchBuilder::new(CompressionCodec::Lz4).with_producer(7, 0, 0);
/// b.append(1_700_000_000_000, Some(b"k"), Some(b"hello"), &[("trace", b"1")]).unwrap();
/// b.append(1_700_000_000_003, None, Some(b"world"), &[]).unwrap();
/// let bytes = b.finish().unwrap();
///
/// let view = BatchView::parse(bytes, BatchLimits::default()).unwrap();
/// assert_eq!(view.header().record_count, 2);
/// let records = view.records().unwrap();
/// let values: Vec<_> = records.iter().map(|r| r.unwrap().value.unwrap().to_vec()).collect();
/// assert_eq!(values, [b"hello".to_vec(), b"world".to_vec()]);
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    codec: CompressionCodec,
    control: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    first_timestamp: i64,
    max_timestamp: i64,
    count: u32,
    max_len: usize,
    /// `HEADER_LEN` reserved bytes, then the uncompressed records.
    buf: Vec<u8>,
}

impl BatchBuilder {
    /// A builder for a data batch with `codec`, no producer id, limit [`MAX_BATCH_LEN`].
    pub fn new(codec: CompressionCodec) -> Self {
        BatchBuilder {
            codec,
            control: false,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            first_timestamp: 0,
            max_timestamp: 0,
            count: 0,
            max_len: MAX_BATCH_LEN as usize,
            buf: vec![0; HEADER_LEN],
        }
    }

    /// A builder for a control batch (attributes bit 5), uncompressed.
    pub fn control() -> Self {
        BatchBuilder {
            control: true,
            ..Self::new(CompressionCodec::None)
        }
    }

    /// Sets the idempotent producer's id, epoch and the sequence of the first record.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Caps the batch size (uncompressed, header included); capped itself at [`MAX_BATCH_LEN`].
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.min(MAX_BATCH_LEN as usize);
        self
    }

    /// Reserves room for `bytes` more bytes of records.
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// Records appended so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Whether no record was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Current uncompressed size of the batch, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `record` would add to the batch.
    pub fn record_size(&self, record: &NewRecord<'_>) -> usize {
        let ts_delta = self.ts_delta(record.timestamp);
        let body = body_len(record, ts_delta, u64::from(self.count));
        varint::len_u64(body as u64) + body
    }

    fn ts_delta(&self, timestamp: i64) -> i64 {
        if self.count == 0 {
            0
        } else {
            timestamp.wrapping_sub(self.first_timestamp)
        }
    }

    /// Appends a record. See [`append_record`](Self::append_record).
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<(), BuildError> {
        self.append_record(&NewRecord {
            timestamp,
            key,
            value,
            headers,
        })
    }

    /// Appends a record, or returns [`BuildError::TooLarge`] and leaves the builder unchanged.
    pub fn append_record(&mut self, record: &NewRecord<'_>) -> Result<(), BuildError> {
        let would_be = self.buf.len().saturating_add(self.record_size(record));
        if would_be > self.max_len || self.count == u32::MAX {
            return Err(BuildError::TooLarge {
                would_be,
                limit: self.max_len,
            });
        }
        let ts_delta = self.ts_delta(record.timestamp);
        if self.count == 0 {
            self.first_timestamp = record.timestamp;
            self.max_timestamp = record.timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        encode_record(&mut self.buf, record, ts_delta, u64::from(self.count));
        self.count += 1;
        Ok(())
    }

    /// Appends a control record (use on a builder from [`BatchBuilder::control`]).
    pub fn append_control(
        &mut self,
        timestamp: i64,
        record: &ControlRecord,
    ) -> Result<(), BuildError> {
        record.with_record(timestamp, |r| self.append_record(r))
    }

    /// Finishes the batch: compresses the records if asked, writes the header and seals the CRC.
    pub fn finish(self) -> Result<Bytes, BuildError> {
        if self.count == 0 {
            return Err(BuildError::Empty);
        }
        let mut out = match self.codec {
            CompressionCodec::None => self.buf,
            codec => {
                let records = &self.buf[HEADER_LEN..];
                let mut out = Vec::with_capacity(HEADER_LEN + records.len() / 2 + 16);
                out.resize(HEADER_LEN, 0);
                compress_into(codec, records, &mut out);
                out
            }
        };
        if out.len() > self.max_len {
            return Err(BuildError::FinishedTooLarge {
                len: out.len(),
                limit: self.max_len,
            });
        }
        let header = BatchHeader {
            base_offset: 0,
            batch_len: out.len() as u32,
            term: 0,
            magic: BATCH_MAGIC,
            crc: 0,
            attributes: Attributes::new(self.codec, self.control),
            last_offset_delta: self.count - 1,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.count,
        };
        header.write(&mut out);
        seal_crc(&mut out);
        Ok(Bytes::from(out))
    }
}

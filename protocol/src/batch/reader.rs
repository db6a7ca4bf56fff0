//! [`BatchView`]: a validated, zero-copy view of one batch, and iteration over its records.

use super::compression::{CompressionError, DEFAULT_MAX_UNCOMPRESSED_LEN, decompress_lz4};
use super::header::{
    BatchHeader, CompressionCodec, HEADER_LEN, HeaderError, MAX_BATCH_LEN, validate_batch,
};
use super::records::{Record, RecordError, decode_record};
use bytes::Bytes;
use thiserror::Error;

/// Limits a reader applies to batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Largest accepted `batch_len` (capped at [`MAX_BATCH_LEN`]).
    pub max_batch_len: u32,
    /// Largest accepted uncompressed records section.
    pub max_uncompressed_len: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_batch_len: MAX_BATCH_LEN,
            max_uncompressed_len: DEFAULT_MAX_UNCOMPRESSED_LEN,
        }
    }
}

/// Why a batch or its records were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Header, length or CRC problem.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The compressed records section is bad.
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// A record is malformed.
    #[error("record {index}: {source}")]
    Record {
        /// Index of the record in the batch.
        index: u32,
        /// The problem.
        source: RecordError,
    },
}

/// One batch whose header, length and CRC have been checked. Cheap to clone (it holds `Bytes`).
///
/// Creating a view costs one CRC pass and no allocation; records are read lazily through
/// [`records`](BatchView::records), which decompresses once if the batch is compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchView {
    header: BatchHeader,
    batch: Bytes,
    limits: BatchLimits,
}

impl BatchView {
    /// Validates the batch at the start of `buf` (header checks, length, CRC). Bytes after
    /// `batch_len` are ignored; see [`BatchIter`] for a buffer of consecutive batches.
    pub fn parse(buf: Bytes, limits: BatchLimits) -> Result<Self, BatchError> {
        let header = validate_batch(&buf, limits.max_batch_len)?;
        let batch = buf.slice(..header.batch_len as usize);
        Ok(BatchView {
            header,
            batch,
            limits,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch, exactly `batch_len` bytes, as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.batch
    }

    /// Whether this is a control batch.
    pub fn is_control(&self) -> bool {
        self.header.attributes.is_control()
    }

    /// The records, decompressed once if needed.
    pub fn records(&self) -> Result<Records, BatchError> {
        let section = self.batch.slice(HEADER_LEN..);
        let section = match self.header.attributes.codec() {
            Some(CompressionCodec::None) => section,
            Some(CompressionCodec::Lz4) => {
                Bytes::from(decompress_lz4(&section, self.limits.max_uncompressed_len)?)
            }
            // Unknown codecs were rejected by header validation; keep the typed error anyway.
            None => return Err(HeaderError::BadAttributes(self.header.attributes.0).into()),
        };
        Ok(Records {
            section,
            base_offset: self.header.base_offset,
            first_timestamp: self.header.first_timestamp,
            count: self.header.record_count,
        })
    }

    /// Reads every record once to check it is well formed (the CRC is already checked).
    pub fn validate_records(&self) -> Result<(), BatchError> {
        self.records()?.iter().try_for_each(|r| r.map(drop))
    }
}

/// The (decompressed) records section of a batch; iterate with [`Records::iter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    section: Bytes,
    base_offset: u64,
    first_timestamp: i64,
    count: u32,
}

impl Records {
    /// Iterates the records in offset order. Yields an error (then stops) on a malformed record
    /// or if the section holds more or fewer records than the header says.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            records: self,
            pos: 0,
            index: 0,
            done: false,
        }
    }

    /// The records section bytes (uncompressed).
    pub fn section(&self) -> &Bytes {
        &self.section
    }

    /// A `Bytes` sharing this section's buffer for a slice borrowed from one of its records
    /// (zero copy), or `None` if `part` does not point into this section.
    pub fn bytes_of(&self, part: &[u8]) -> Option<Bytes> {
        let start = self.section.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        if part.is_empty() {
            return Some(Bytes::new());
        }
        if p >= start && p + part.len() <= start + self.section.len() {
            Some(self.section.slice(p - start..p - start + part.len()))
        } else {
            None
        }
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = Result<Record<'a>, BatchError>;
    type IntoIter = RecordIter<'a>;
    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

/// Iterator over the records of a batch. See [`Records::iter`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    records: &'a Records,
    pos: usize,
    index: u32,
    done: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.records;
        let section: &'a [u8] = &r.section;
        if self.index == r.count || self.pos >= section.len() {
            self.done = true;
            if self.index == r.count && self.pos == section.len() {
                return None;
            }
            return Some(Err(BatchError::Record {
                index: self.index,
                source: RecordError::CountMismatch {
                    expected: r.count,
                    found: self.index,
                    trailing: section.len().saturating_sub(self.pos),
                },
            }));
        }
        match decode_record(
            section,
            self.pos,
            self.index,
            r.base_offset,
            r.first_timestamp,
        ) {
            Ok((record, next)) => {
                self.pos = next;
                self.index += 1;
                Some(Ok(record))
            }
            Err(source) => {
                self.done = true;
                Some(Err(BatchError::Record {
                    index: self.index,
                    source,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.records.count - self.index.min(self.records.count)) as usize;
        (0, Some(left + 1))
    }
}

/// Iterates consecutive batches in one buffer (a produce payload, a fetch response, a segment
/// slice), validating each. Stops after the first error.
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    limits: BatchLimits,
    failed: bool,
}

impl BatchIter {
    /// Iterates the batches in `buf`.
    pub fn new(buf: Bytes, limits: BatchLimits) -> Self {
        BatchIter {
            buf,
            limits,
            failed: false,
        }
    }
}

impl Iterator for BatchIter {
    type Item = Result<BatchView, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        match BatchView::parse(self.buf.clone(), self.limits) {
            Ok(view) => {
                let _ = self.buf.split_to(view.batch.len());
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

//! Records: the varint-framed entries of a batch's records section.
//!
//! ```text
//! record :=
//!   length           uvarint   bytes of the record after this field
//!   attributes       u8        reserved, must be 0
//!   timestamp_delta  svarint   timestamp - batch.first_timestamp (wrapping i64)
//!   offset_delta     uvarint   offset - batch.base_offset; the i-th record (from 0) has delta i
//!   key_len          svarint   -1 = null key
//!   key              key_len bytes
//!   value_len        svarint   -1 = null value (a tombstone)
//!   value            value_len bytes
//!   header_count     uvarint
//!   header*          header_count times:
//!     key_len        uvarint   header key, UTF-8
//!     key            key_len bytes
//!     value_len      uvarint
//!     value          value_len bytes
//! ```
//! `uvarint` is LEB128 and `svarint` zigzag + LEB128 (see [`crate::varint`]). The `length`
//! must match the fields exactly: no trailing bytes inside a record.

use crate::varint::{self, VarintError};
use thiserror::Error;

/// Why a record could not be read. `at` is the byte position inside the (decompressed)
/// records section where the problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordError {
    /// A varint was truncated or overflowed.
    #[error("bad varint at byte {at} of the records: {source}")]
    Varint {
        /// Position in the records section.
        at: usize,
        /// The varint problem.
        source: VarintError,
    },
    /// A length or count runs past the record or section end.
    #[error("length at byte {at} of the records runs past the end")]
    Overrun {
        /// Position in the records section.
        at: usize,
    },
    /// A negative length other than -1, or -1 where null is not allowed.
    #[error("invalid length {len} at byte {at} of the records")]
    BadLength {
        /// Position in the records section.
        at: usize,
        /// The length found.
        len: i64,
    },
    /// Non-zero record attributes.
    #[error("reserved record attributes {attributes:#04x} at byte {at}")]
    BadAttributes {
        /// Position in the records section.
        at: usize,
        /// The attributes byte.
        attributes: u8,
    },
    /// The record's offset delta is not its index in the batch.
    #[error("record {index} has offset delta {delta}")]
    BadOffsetDelta {
        /// Index of the record in the batch.
        index: u32,
        /// The offset delta found.
        delta: u64,
    },
    /// A header key is not valid UTF-8.
    #[error("header key at byte {at} is not UTF-8")]
    HeaderKeyNotUtf8 {
        /// Position in the records section.
        at: usize,
    },
    /// The record's fields do not fill its declared length.
    #[error("record at byte {at} has {extra} unread bytes")]
    TrailingBytes {
        /// Position of the record's start.
        at: usize,
        /// Bytes left over.
        extra: usize,
    },
    /// The batch header's record count disagrees with the records section.
    #[error(
        "records section holds {found} records ({trailing} trailing bytes), header says {expected}"
    )]
    CountMismatch {
        /// Records the header declares.
        expected: u32,
        /// Records found before the section ended.
        found: u32,
        /// Bytes left after the last declared record.
        trailing: usize,
    },
}

/// A record header: a UTF-8 key and a byte value, borrowed from the batch.
pub type Header<'a> = (&'a str, &'a [u8]);

/// One record of a batch, borrowed from the batch's records section (zero copy).
///
/// Use [`crate::batch::Records::bytes_of`] to turn a borrowed slice into a `Bytes` that
/// shares the batch's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Absolute offset: batch base offset + offset delta.
    pub offset: u64,
    /// Absolute timestamp, ms since the Unix epoch: batch first timestamp + delta.
    pub timestamp: i64,
    /// The key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// The value, `None` when null (a tombstone).
    pub value: Option<&'a [u8]>,
    headers_raw: &'a [u8],
    header_count: u32,
}

impl<'a> Record<'a> {
    /// Number of headers.
    pub fn header_count(&self) -> u32 {
        self.header_count
    }

    /// The headers, in order. They were validated when the record was read.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            buf: self.headers_raw,
            pos: 0,
            left: self.header_count,
        }
    }
}

/// Iterator over a record's headers.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    buf: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated when the record was parsed; a failure here just ends the iteration.
        let mut c = Cursor {
            buf: self.buf,
            pos: self.pos,
            base: 0,
        };
        let h = read_header(&mut c).ok();
        self.pos = c.pos;
        if h.is_none() {
            self.left = 0;
        }
        h
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// A record to append, borrowing its parts. See [`crate::batch::BatchBuilder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewRecord<'a> {
    /// Timestamp, ms since the Unix epoch.
    pub timestamp: i64,
    /// Key, `None` for null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` for null (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint::len_i64(b.len() as i64) + b.len(),
    }
}

/// Bytes the record's body takes after its `length` field.
pub(crate) fn body_len(r: &NewRecord<'_>, ts_delta: i64, offset_delta: u64) -> usize {
    let mut n = 1 + varint::len_i64(ts_delta) + varint::len_u64(offset_delta);
    n += nullable_len(r.key) + nullable_len(r.value);
    n += varint::len_u64(r.headers.len() as u64);
    for (k, v) in r.headers {
        n += varint::len_u64(k.len() as u64) + k.len();
        n += varint::len_u64(v.len() as u64) + v.len();
    }
    n
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint::put_i64(out, -1),
        Some(b) => {
            varint::put_i64(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Appends one encoded record to `out`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    r: &NewRecord<'_>,
    ts_delta: i64,
    offset_delta: u64,
) {
    let body = body_len(r, ts_delta, offset_delta);
    out.reserve(body + varint::MAX_VARINT_LEN);
    varint::put_u64(out, body as u64);
    let start = out.len();
    out.push(0);
    varint::put_i64(out, ts_delta);
    varint::put_u64(out, offset_delta);
    put_nullable(out, r.key);
    put_nullable(out, r.value);
    varint::put_u64(out, r.headers.len() as u64);
    for (k, v) in r.headers {
        varint::put_u64(out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        varint::put_u64(out, v.len() as u64);
        out.extend_from_slice(v);
    }
    debug_assert_eq!(out.len() - start, body);
}

/// A bounds-checked reader over a slice; `base` shifts reported positions.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let (v, n) = varint::get_u64(rest).map_err(|source| RecordError::Varint {
            at: self.at(),
            source,
        })?;
        self.pos += n;
        Ok(v)
    }

    fn svarint(&mut self) -> Result<i64, RecordError> {
        self.uvarint().map(varint::unzigzag)
    }

    fn take(&mut self, len: u64, at: usize) -> Result<&'a [u8], RecordError> {
        let remaining = self.buf.len() - self.pos;
        if len > remaining as u64 {
            return Err(RecordError::Overrun { at });
        }
        let s = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    fn nullable(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        let at = self.at();
        match self.svarint()? {
            -1 => Ok(None),
            len if len < 0 => Err(RecordError::BadLength { at, len }),
            len => self.take(len as u64, at).map(Some),
        }
    }
}

fn read_header<'a>(c: &mut Cursor<'a>) -> Result<Header<'a>, RecordError> {
    let at = c.at();
    let klen = c.uvarint()?;
    let key = c.take(klen, at)?;
    let key = std::str::from_utf8(key).map_err(|_| RecordError::HeaderKeyNotUtf8 { at })?;
    let at = c.at();
    let vlen = c.uvarint()?;
    let value = c.take(vlen, at)?;
    Ok((key, value))
}

/// Parses the record at `section[pos..]`. Returns it and the position after it.
pub(crate) fn decode_record<'a>(
    section: &'a [u8],
    pos: usize,
    index: u32,
    base_offset: u64,
    first_timestamp: i64,
) -> Result<(Record<'a>, usize), RecordError> {
    let mut outer = Cursor {
        buf: section,
        pos,
        base: 0,
    };
    let start = pos;
    let len = outer.uvarint()?;
    let body = outer.take(len, start)?;
    let end = outer.pos;
    let body_at = end - body.len();
    let mut c = Cursor {
        buf: body,
        pos: 0,
        base: body_at,
    };
    let at = c.at();
    let attributes = *c.take(1, at)?.first().unwrap_or(&0);
    if attributes != 0 {
        return Err(RecordError::BadAttributes { at, attributes });
    }
    let ts_delta = c.svarint()?;
    let delta = c.uvarint()?;
    if delta != u64::from(index) {
        return Err(RecordError::BadOffsetDelta { index, delta });
    }
    let key = c.nullable()?;
    let value = c.nullable()?;
    let count_at = c.at();
    let count = c.uvarint()?;
    // Each header takes at least two bytes: a bound before any work.
    if count > (c.buf.len() - c.pos) as u64 / 2 {
        return Err(RecordError::Overrun { at: count_at });
    }
    let headers_start = c.pos;
    for _ in 0..count {
        read_header(&mut c)?;
    }
    let headers_raw = &body[headers_start..c.pos];
    if c.pos != body.len() {
        return Err(RecordError::TrailingBytes {
            at: start,
            extra: body.len() - c.pos,
        });
    }
    let record = Record {
        offset: base_offset.wrapping_add(delta),
        timestamp: first_timestamp.wrapping_add(ts_delta),
        key,
        value,
        headers_raw,
        header_count: count as u32,
    };
    Ok((record, end))
}

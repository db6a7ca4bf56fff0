//! The value of every record floe-bench produces: a fixed header the consumer verifies, then
//! incompressible padding up to `--message-size`.
//!
//! ```text
//! magic "FLB1" (4) | run id (u64) | producer index (u32) | sequence (u64) | intended send time (u64 ns since the Unix epoch)
//! ```
//! All little-endian, 32 bytes. The run id tells one benchmark run's records from another's in
//! a reused topic; (run id, producer, sequence) names a record uniquely; the intended send time
//! is when the record *should* have been sent under `--rate` (not when it was), so end-to-end
//! latency includes any time it waited behind a slow system (no coordinated omission).

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the header; `--message-size` must be at least this.
pub(crate) const HEADER_LEN: usize = 32;
const MAGIC: [u8; 4] = *b"FLB1";

/// The decoded header of a benchmark record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueHeader {
    /// Identifies the benchmark run that wrote the record.
    pub(crate) run_id: u64,
    /// Index of the producer task within its run.
    pub(crate) producer: u32,
    /// The producer's record sequence, from 0, dense.
    pub(crate) seq: u64,
    /// Intended send time in nanoseconds since the Unix epoch.
    pub(crate) intended_ns: u64,
}

/// Why a consumed value is not a floe-bench record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    /// Shorter than the header (or no value at all).
    #[error("value of {0} bytes is shorter than floe-bench's {HEADER_LEN}-byte header")]
    TooShort(usize),
    /// The magic does not match: someone else's record.
    #[error("value does not start with floe-bench's magic (not a benchmark record)")]
    BadMagic,
}

/// Builds values of one size: the header, then a slice of pseudo-random padding (so LZ4, if a
/// producer turns it on, cannot shrink the payload and inflate MB/s).
#[derive(Debug, Clone)]
pub(crate) struct ValueFactory {
    padding: Bytes,
    size: usize,
}

impl ValueFactory {
    /// Values of exactly `size` bytes (`size >= HEADER_LEN`, checked by the caller).
    pub(crate) fn new(size: usize, seed: u64) -> Self {
        let mut state = seed | 1;
        let padding: Vec<u8> = (0..size.saturating_sub(HEADER_LEN))
            .map(|_| {
                // xorshift64: cheap, deterministic, incompressible enough for LZ4.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        ValueFactory {
            padding: Bytes::from(padding),
            size,
        }
    }

    /// The value for `header`.
    pub(crate) fn make(&self, header: ValueHeader) -> Bytes {
        let mut b = BytesMut::with_capacity(self.size.max(HEADER_LEN));
        b.put_slice(&MAGIC);
        b.put_u64_le(header.run_id);
        b.put_u32_le(header.producer);
        b.put_u64_le(header.seq);
        b.put_u64_le(header.intended_ns);
        b.put_slice(&self.padding);
        b.freeze()
    }
}

/// Decodes a value's header.
pub(crate) fn decode(value: &[u8]) -> Result<ValueHeader, ValueError> {
    if value.len() < HEADER_LEN {
        return Err(ValueError::TooShort(value.len()));
    }
    if value[..4] != MAGIC {
        return Err(ValueError::BadMagic);
    }
    let u64_at = |i: usize| u64::from_le_bytes(value[i..i + 8].try_into().expect("8 bytes"));
    Ok(ValueHeader {
        run_id: u64_at(4),
        producer: u32::from_le_bytes(value[12..16].try_into().expect("4 bytes")),
        seq: u64_at(16),
        intended_ns: u64_at(24),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_have_the_asked_size() {
        let f = ValueFactory::new(1000, 7);
        let h = ValueHeader {
            run_id: 0xdead_beef_0000_0001,
            producer: 3,
            seq: 123_456,
            intended_ns: 1_700_000_000_000_000_000,
        };
        let v = f.make(h);
        assert_eq!(v.len(), 1000);
        assert_eq!(decode(&v), Ok(h));
        let tiny = ValueFactory::new(HEADER_LEN, 7).make(h);
        assert_eq!(tiny.len(), HEADER_LEN);
        assert_eq!(decode(&tiny), Ok(h));
    }

    #[test]
    fn foreign_values_are_typed_errors() {
        assert_eq!(decode(b"short"), Err(ValueError::TooShort(5)));
        assert_eq!(decode(&[0u8; 40]), Err(ValueError::BadMagic));
    }

    #[test]
    fn padding_is_not_trivially_compressible() {
        let f = ValueFactory::new(4096, 1);
        let distinct: std::collections::HashSet<u8> = f.padding.iter().copied().collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
    }
}

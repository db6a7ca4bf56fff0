//! Compression of a batch's records section.
//!
//! With codec `lz4` the records section (everything after the 65-byte header) is one LZ4
//! *block* (not the LZ4 frame format) prefixed by the uncompressed length:
//!
//! ```text
//! uncompressed_len  u32 LE   bytes of the records section once decompressed
//! block             ..       LZ4 block, to the end of the batch
//! ```
//! The header (and so the CRC, which covers the compressed bytes) is never compressed.
//! Readers check `uncompressed_len` against their limit *before* allocating, and require the
//! block to decompress to exactly that many bytes.

use super::header::CompressionCodec;
use thiserror::Error;

/// Default cap on a records section's uncompressed size.
pub const DEFAULT_MAX_UNCOMPRESSED_LEN: usize = 64 * 1024 * 1024;

/// LZ4 cannot expand data by more than this factor (each literal-run byte can stand for at
/// most 255 output bytes); a larger declared size is a lie and rejected early.
const LZ4_MAX_RATIO: usize = 256;

/// Why a compressed records section was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CompressionError {
    /// The section is shorter than the 4-byte size prefix.
    #[error("compressed records section shorter than its size prefix")]
    MissingSize,
    /// The declared size is above the reader's limit (or impossible for the input size).
    #[error("declared uncompressed size {declared} exceeds limit {limit}")]
    TooLarge {
        /// Declared uncompressed size.
        declared: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The LZ4 block is corrupt or decompresses to a different size.
    #[error("corrupt lz4 block")]
    Corrupt,
}

/// Compresses `records` with `codec` into `out` (appending).
pub fn compress_into(codec: CompressionCodec, records: &[u8], out: &mut Vec<u8>) {
    match codec {
        CompressionCodec::None => out.extend_from_slice(records),
        CompressionCodec::Lz4 => {
            out.extend_from_slice(&(records.len() as u32).to_le_bytes());
            let start = out.len();
            out.resize(
                start + lz4_flex::block::get_maximum_output_size(records.len()),
                0,
            );
            // The output buffer has the documented maximum size, so this cannot fail.
            let written = lz4_flex::block::compress_into(records, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
        }
    }
}

/// Decompresses an LZ4 records section (size prefix + block), bounded by `max_len`.
pub fn decompress_lz4(section: &[u8], max_len: usize) -> Result<Vec<u8>, CompressionError> {
    let Some((size, block)) = section.split_first_chunk::<4>() else {
        return Err(CompressionError::MissingSize);
    };
    let declared = u32::from_le_bytes(*size) as usize;
    let limit = max_len.min(block.len().saturating_mul(LZ4_MAX_RATIO));
    if declared > limit {
        return Err(CompressionError::TooLarge { declared, limit });
    }
    let mut out = vec![0u8; declared];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == declared => Ok(out),
        _ => Err(CompressionError::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_round_trip_and_bounds() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let mut out = Vec::new();
        compress_into(CompressionCodec::Lz4, &data, &mut out);
        assert!(out.len() < data.len() / 4);
        assert_eq!(decompress_lz4(&out, 1 << 20).unwrap(), data);
        assert!(matches!(
            decompress_lz4(&out, 100),
            Err(CompressionError::TooLarge { .. })
        ));
        // A lying size prefix.
        let mut lie = out.clone();
        lie[..4].copy_from_slice(&(data.len() as u32 - 1).to_le_bytes());
        assert_eq!(
            decompress_lz4(&lie, 1 << 20),
            Err(CompressionError::Corrupt)
        );
        let mut huge = out.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decompress_lz4(&huge, usize::MAX),
            Err(CompressionError::TooLarge { .. })
        ));
        assert_eq!(
            decompress_lz4(&[1, 2], 10),
            Err(CompressionError::MissingSize)
        );
        let mut empty = Vec::new();
        compress_into(CompressionCodec::Lz4, &[], &mut empty);
        assert_eq!(decompress_lz4(&empty, 10).unwrap(), Vec::<u8>::new());
    }
}

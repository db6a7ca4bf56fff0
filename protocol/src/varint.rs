//! Variable-length integers used inside records.
//!
//! * **Unsigned varint**: LEB128, least-significant group first, 7 bits per byte, high bit set
//!   on every byte but the last. A `u64` takes 1 to 10 bytes. Encodings are canonical: a final
//!   byte of `0x00` after a continuation byte (a padded encoding), an 11th byte, or a 10th byte
//!   above `0x01` are rejected, so every value has exactly one accepted form.
//! * **Signed varint**: zigzag (`(n << 1) ^ (n >> 63)`) then unsigned varint, so small
//!   magnitudes of either sign are short: 0 → `00`, -1 → `01`, 1 → `02`, -2 → `03`.
//!
//! ```
//! use floe_protocol::varint;
//! let mut buf = Vec::new();
//! varint::put_u64(&mut buf, 300);
//! assert_eq!(buf, [0xac, 0x02]);
//! assert_eq!(varint::get_u64(&buf), Ok((300, 2)));
//! buf.clear();
//! varint::put_i64(&mut buf, -1);
//! assert_eq!(buf, [0x01]);
//! ```

use thiserror::Error;

/// Most bytes an unsigned 64-bit varint may take.
pub const MAX_VARINT_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VarintError {
    /// The input ended in the middle of the varint.
    #[error("varint truncated")]
    Truncated,
    /// More than ten bytes, or bits above bit 63.
    #[error("varint overflows 64 bits")]
    Overflow,
    /// A padded (non-shortest) encoding.
    #[error("varint is not in its shortest form")]
    NonCanonical,
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` zigzag-encoded.
pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

/// Number of bytes [`put_u64`] writes for `value`.
pub const fn len_u64(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Number of bytes [`put_i64`] writes for `value`.
pub const fn len_i64(value: i64) -> usize {
    len_u64(zigzag(value))
}

/// Zigzag-maps a signed integer onto an unsigned one.
pub const fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub const fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Reads an unsigned varint from the start of `buf`: the value and the bytes consumed.
pub fn get_u64(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        let low = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && byte > 0x01 {
            return Err(VarintError::Overflow);
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(VarintError::NonCanonical);
            }
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Reads a zigzag varint from the start of `buf`: the value and the bytes consumed.
pub fn get_i64(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    get_u64(buf).map(|(v, n)| (unzigzag(v), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(len_u64(v), bytes.len());
            assert_eq!(get_u64(bytes), Ok((v, bytes.len())));
        }
        for (v, z) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
        ] {
            assert_eq!(zigzag(v), z);
            assert_eq!(unzigzag(z), v);
        }
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn malformed() {
        assert_eq!(get_u64(&[]), Err(VarintError::Truncated));
        assert_eq!(get_u64(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get_u64(&[0xff; 9]), Err(VarintError::Truncated));
        assert_eq!(get_u64(&[0xff; 10]), Err(VarintError::Overflow));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(get_u64(&ten), Err(VarintError::Overflow));
        ten[9] = 0x01;
        assert_eq!(get_u64(&ten), Ok((u64::MAX, 10)));
        assert_eq!(get_u64(&[0x80, 0x00]), Err(VarintError::NonCanonical));
        assert_eq!(get_u64(&[0x81, 0x80, 0x00]), Err(VarintError::NonCanonical));
    }

    proptest! {
        #[test]
        fn round_trip_u64(v: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            prop_assert_eq!(out.len(), len_u64(v));
            let n = out.len();
            out.extend_from_slice(&tail);
            prop_assert_eq!(get_u64(&out), Ok((v, n)));
        }

        #[test]
        fn round_trip_i64(v: i64) {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            prop_assert_eq!(out.len(), len_i64(v));
            prop_assert_eq!(get_i64(&out), Ok((v, out.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok((v, n)) = get_u64(&bytes) {
                prop_assert!((1..=MAX_VARINT_LEN).contains(&n) && n <= bytes.len());
                // Canonical: re-encoding gives back exactly the bytes read.
                let mut again = Vec::new();
                put_u64(&mut again, v);
                prop_assert_eq!(&again[..], &bytes[..n]);
            }
            let _ = get_i64(&bytes);
        }
    }
}

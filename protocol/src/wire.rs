//! Frame-body primitives: the [`Wire`] trait, the bounded [`Reader`], output [`Sink`]s and
//! [`DecodeError`].
//!
//! Encoding of frame fields (all integers little-endian, fixed width):
//!
//! | type            | bytes                                                        |
//! |-----------------|--------------------------------------------------------------|
//! | `u8/u16/u32/u64`, `i8/i16/i32/i64` | 1/2/4/8 bytes, little-endian              |
//! | `bool`          | one byte, 0 or 1 (anything else is an error)                 |
//! | `String`        | `u32` byte length, then UTF-8                                |
//! | `Bytes`         | `u32` byte length, then the bytes                            |
//! | `Option<T>`     | `u8` 0 (absent) or 1 followed by `T`                         |
//! | `Vec<T>`        | `u32` count, then the elements                               |
//! | [`ErrorCode`]   | `u16`                                                        |
//!
//! Lengths and counts are bounded by the bytes left in the frame (a count may not exceed
//! `remaining / minimum element size`) before anything is allocated.

use crate::error::ErrorCode;
use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// What went wrong while decoding a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeErrorKind {
    /// The input ended early.
    #[error("truncated: {needed} more bytes needed")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// The frame length is above the configured maximum (or below the envelope size).
    #[error("frame length {len} outside [{min}, {max}]")]
    BadFrameLength {
        /// Declared length.
        len: u64,
        /// Smallest valid length.
        min: u64,
        /// Largest accepted length.
        max: u64,
    },
    /// A byte length exceeds the bytes left.
    #[error("length {len} exceeds the {remaining} bytes left")]
    LengthTooLarge {
        /// Declared length.
        len: u64,
        /// Bytes left in the frame.
        remaining: usize,
    },
    /// An element count cannot fit in the bytes left.
    #[error("count {count} cannot fit in the {remaining} bytes left")]
    CountTooLarge {
        /// Declared count.
        count: u64,
        /// Bytes left in the frame.
        remaining: usize,
    },
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    InvalidUtf8,
    /// A boolean byte other than 0 or 1.
    #[error("invalid boolean {0}")]
    InvalidBool(u8),
    /// An enum or option tag out of range.
    #[error("invalid tag {0}")]
    InvalidTag(u64),
    /// The api key is unknown.
    #[error("unknown api key {0}")]
    UnknownApiKey(u16),
    /// The api version is outside the supported range.
    #[error("unsupported version {version} of api {api_key}")]
    UnsupportedVersion {
        /// The api key.
        api_key: u16,
        /// The version requested.
        version: u16,
    },
    /// The frame kind is unknown or not valid for this api key.
    #[error("frame kind {kind} not valid for api {api_key}")]
    BadKind {
        /// The api key.
        api_key: u16,
        /// The kind byte.
        kind: u8,
    },
    /// Reserved envelope bits are set.
    #[error("reserved bits set: {0:#04x}")]
    Reserved(u8),
    /// The body did not use every byte of the frame.
    #[error("{0} trailing bytes after the body")]
    TrailingBytes(usize),
}

/// A decoding error and the byte offset (from the start of the frame, length prefix included)
/// where it was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("decode error at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset from the frame start.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// A bounded cursor over a frame. Slices it hands out share the frame's buffer (zero copy).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[pos..end]`; offsets in errors are positions in `buf`.
    ///
    /// `end` is clamped to `buf.len()` and `pos` to `end`.
    pub fn new(buf: &'a Bytes, pos: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Reader {
            buf,
            pos: pos.min(end),
            end,
        }
    }

    /// Current position.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// An error of `kind` at the current position.
    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind,
        }
    }

    /// Takes `n` bytes as a slice of the input.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error(DecodeErrorKind::Truncated {
                needed: n - self.remaining(),
            }));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes `n` bytes as a `Bytes` sharing the input buffer.
    pub fn shared(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(self.error(DecodeErrorKind::Truncated {
                needed: n - self.remaining(),
            }));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads a `u32` byte length and checks it against the bytes left.
    pub fn length(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = u32::from_le_bytes(self.array()?);
        if len as usize > self.remaining() {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::LengthTooLarge {
                    len: u64::from(len),
                    remaining: self.remaining(),
                },
            });
        }
        Ok(len as usize)
    }

    /// Reads a `u32` element count and checks `count * min_elem_len <= remaining`.
    pub fn count(&mut self, min_elem_len: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = u32::from_le_bytes(self.array()?) as usize;
        if count > self.remaining() / min_elem_len.max(1) {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::CountTooLarge {
                    count: count as u64,
                    remaining: self.remaining(),
                },
            });
        }
        Ok(count)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(DecodeErrorKind::TrailingBytes(n))),
        }
    }
}

/// Where encoded bytes go. `put_shared` lets a sink keep a reference to a large `Bytes` (a
/// record batch) instead of copying it.
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
    /// Appends a shared buffer; the default copies it.
    fn put_shared(&mut self, bytes: &Bytes) {
        self.put(bytes);
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that produces a list of chunks, passing `Bytes` of at least
/// [`ChunkWriter::ZERO_COPY_MIN`] bytes through without copying. Write the chunks in order
/// (for example with quinn's `SendStream::write_all_chunks`).
#[derive(Debug, Default)]
pub struct ChunkWriter {
    current: BytesMut,
    chunks: Vec<Bytes>,
}

impl ChunkWriter {
    /// Shared buffers smaller than this are copied: a separate chunk would cost more.
    pub const ZERO_COPY_MIN: usize = 1024;

    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The chunks written, in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
        self.chunks
    }
}

impl Sink for ChunkWriter {
    fn put(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
    }

    fn put_shared(&mut self, bytes: &Bytes) {
        if bytes.len() < Self::ZERO_COPY_MIN {
            return self.put(bytes);
        }
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
        self.chunks.push(bytes.clone());
    }
}

/// A type with a frame encoding.
pub trait Wire: Sized {
    /// The fewest bytes any value takes (bounds element counts before allocation).
    const MIN_LEN: usize;
    /// Exact encoded size.
    fn encoded_len(&self) -> usize;
    /// Appends the encoding.
    fn encode<S: Sink + ?Sized>(&self, out: &mut S);
    /// Reads a value.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const MIN_LEN: usize = std::mem::size_of::<$t>();
            fn encoded_len(&self) -> usize {
                Self::MIN_LEN
            }
            fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
                out.put(&self.to_le_bytes());
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(r.array()?))
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Wire for bool {
    const MIN_LEN: usize = 1;
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        out.put(&[u8::from(*self)]);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match u8::decode(r)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::InvalidBool(b),
            }),
        }
    }
}

impl Wire for String {
    const MIN_LEN: usize = 4;
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        (self.len() as u32).encode(out);
        out.put(self.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.length()?;
        let at = r.position();
        let s = r.bytes(len)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::InvalidUtf8,
            }),
        }
    }
}

impl Wire for Bytes {
    const MIN_LEN: usize = 4;
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        (self.len() as u32).encode(out);
        out.put_shared(self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.length()?;
        r.shared(len)
    }
}

impl<T: Wire> Wire for Option<T> {
    const MIN_LEN: usize = 1;
    fn encoded_len(&self) -> usize {
        1 + self.as_ref().map_or(0, Wire::encoded_len)
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        match self {
            None => out.put(&[0]),
            Some(v) => {
                out.put(&[1]);
                v.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match u8::decode(r)? {
            0 => Ok(None),
            1 => T::decode(r).map(Some),
            t => Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::InvalidTag(u64::from(t)),
            }),
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    const MIN_LEN: usize = 4;
    fn encoded_len(&self) -> usize {
        4 + self.iter().map(Wire::encoded_len).sum::<usize>()
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        (self.len() as u32).encode(out);
        for v in self {
            v.encode(out);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count(T::MIN_LEN)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(r)?);
        }
        Ok(v)
    }
}

impl Wire for ErrorCode {
    const MIN_LEN: usize = 2;
    fn encoded_len(&self) -> usize {
        2
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        (*self as u16).encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        u16::decode(r).map(ErrorCode::from_wire)
    }
}

/// Defines a plain struct with a [`Wire`] impl that encodes its fields in order.
macro_rules! wire_struct {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $( $(#[doc = $fdoc:literal])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
        }

        impl $crate::wire::Wire for $name {
            const MIN_LEN: usize = 0 $( + <$ty as $crate::wire::Wire>::MIN_LEN )*;
            fn encoded_len(&self) -> usize {
                0 $( + $crate::wire::Wire::encoded_len(&self.$field) )*
            }
            #[allow(unused_variables)]
            fn encode<S: $crate::wire::Sink + ?Sized>(&self, out: &mut S) {
                $( $crate::wire::Wire::encode(&self.$field, out); )*
            }
            #[allow(unused_variables)]
            fn decode(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::wire::DecodeError> {
                Ok($name {
                    $( $field: <$ty as $crate::wire::Wire>::decode(r)?, )*
                })
            }
        }

        #[cfg(test)]
        impl $crate::wire::testing::Arb for $name {
            fn arb() -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::strategy::Strategy;
                #[allow(unused_parens)]
                let s = ( proptest::strategy::Just(()), $( <$ty as $crate::wire::testing::Arb>::arb(), )* );
                #[allow(unused_variables)]
                s.prop_map(|((), $($field,)*)| $name { $($field,)* }).boxed()
            }
        }
    };
}
pub(crate) use wire_struct;

/// Proptest strategies for wire types (test builds only).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use proptest::prelude::*;

    /// A proptest strategy for a wire type.
    pub(crate) trait Arb: Sized + std::fmt::Debug {
        fn arb() -> BoxedStrategy<Self>;
    }

    macro_rules! arb_any {
        ($($t:ty),*) => {$(
            impl Arb for $t {
                fn arb() -> BoxedStrategy<Self> {
                    any::<$t>().boxed()
                }
            }
        )*};
    }
    arb_any!(u8, u16, u32, u64, i8, i16, i32, i64, bool);

    impl Arb for String {
        fn arb() -> BoxedStrategy<Self> {
            ".{0,12}".boxed()
        }
    }

    impl Arb for Bytes {
        fn arb() -> BoxedStrategy<Self> {
            proptest::collection::vec(any::<u8>(), 0..48)
                .prop_map(Bytes::from)
                .boxed()
        }
    }

    impl<T: Arb + 'static> Arb for Option<T> {
        fn arb() -> BoxedStrategy<Self> {
            proptest::option::of(T::arb()).boxed()
        }
    }

    impl<T: Arb + 'static> Arb for Vec<T> {
        fn arb() -> BoxedStrategy<Self> {
            proptest::collection::vec(T::arb(), 0..3).boxed()
        }
    }

    impl Arb for ErrorCode {
        fn arb() -> BoxedStrategy<Self> {
            proptest::sample::select(ErrorCode::ALL).boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all<T: Wire>(bytes: &[u8]) -> Result<T, DecodeError> {
        let b = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&b, 0, b.len());
        let v = T::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    #[test]
    fn primitive_layouts() {
        let mut out = Vec::new();
        (0x0102_0304u32).encode(&mut out);
        Some(String::from("hé")).encode(&mut out);
        vec![true, false].encode(&mut out);
        assert_eq!(
            out,
            [
                4, 3, 2, 1, 1, 3, 0, 0, 0, b'h', 0xc3, 0xa9, 2, 0, 0, 0, 1, 0
            ]
        );
    }

    #[test]
    fn hostile_counts_and_lengths_are_bounded() {
        // A billion-element vector in 8 bytes.
        let err = decode_all::<Vec<u64>>(&[0, 0xca, 0x9a, 0x3b, 1, 2, 3, 4]).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(matches!(err.kind, DecodeErrorKind::CountTooLarge { .. }));
        let err = decode_all::<Bytes>(&[0xff, 0xff, 0xff, 0xff, 1]).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::LengthTooLarge { .. }));
        let err = decode_all::<String>(&[2, 0, 0, 0, 0xff, 0xfe]).unwrap_err();
        assert_eq!((err.offset, err.kind), (4, DecodeErrorKind::InvalidUtf8));
        let err = decode_all::<bool>(&[2]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidBool(2));
        let err = decode_all::<Option<u8>>(&[7]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidTag(7));
        let err = decode_all::<u16>(&[1, 2, 3]).unwrap_err();
        assert_eq!(
            (err.offset, err.kind),
            (2, DecodeErrorKind::TrailingBytes(1))
        );
    }

    #[test]
    fn chunk_writer_passes_large_bytes_through() {
        let big = Bytes::from(vec![7u8; 4096]);
        let mut w = ChunkWriter::new();
        big.encode(&mut w);
        Bytes::from_static(b"tail").encode(&mut w);
        let chunks = w.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "not copied");
        let flat: Vec<u8> = chunks.concat();
        let mut copy = Vec::new();
        big.encode(&mut copy);
        Bytes::from_static(b"tail").encode(&mut copy);
        assert_eq!(flat, copy);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_all::<Vec<Option<String>>>(&bytes);
            let _ = decode_all::<Vec<Vec<Bytes>>>(&bytes);
            let _ = decode_all::<Vec<ErrorCode>>(&bytes);
            let _ = decode_all::<Option<bool>>(&bytes);
        }
    }
}

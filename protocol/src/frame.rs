//! The frame envelope shared by the client and peer protocols.
//!
//! ```text
//! offset len field
//!  0     4   frame_len       u32  bytes after this field: 12 + body length
//!  4     2   api_key         u16  which api (client and peer protocols number separately)
//!  6     2   api_version     u16  body layout version
//!  8     1   kind            u8   0 request, 1 response, 2 push (server-initiated)
//!  9     1   flags           u8   reserved, must be 0
//! 10     2   error_code      u16  frame-level error in responses (0 otherwise); when non-zero
//!                                 the body is empty
//! 12     4   correlation_id  u32  chosen by the requester, echoed in the response and pushes
//! 16     ..  body
//! ```
//! All integers little-endian. A frame is at most [`FrameLimits::max_frame_len`] bytes in
//! total (length prefix included); a receiver rejects a larger `frame_len` before reading or
//! allocating the body.

use crate::error::ErrorCode;
use crate::wire::{DecodeError, DecodeErrorKind, Reader, Sink, Wire};
use bytes::Bytes;

/// Bytes of the envelope, length prefix included.
pub const ENVELOPE_LEN: usize = 16;
/// Default largest frame: room for a few maximum-size batches.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;
/// No configuration may accept frames larger than this.
pub const MAX_FRAME_LEN: u32 = 256 * 1024 * 1024;

/// Receiver-side limits on frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted frame, length prefix included (capped at [`MAX_FRAME_LEN`]).
    pub max_frame_len: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Sent by the side that opened the stream; expects a response (unless the api says not).
    Request = 0,
    /// The answer to a request, same api key and correlation id.
    Response = 1,
    /// Sent by the server on a subscription stream, carrying the subscription's correlation id.
    Push = 2,
}

impl FrameKind {
    /// The kind for a byte, if valid.
    pub const fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(FrameKind::Request),
            1 => Some(FrameKind::Response),
            2 => Some(FrameKind::Push),
            _ => None,
        }
    }
}

/// The decoded envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Api key.
    pub api_key: u16,
    /// Api version of the body.
    pub api_version: u16,
    /// Request, response or push.
    pub kind: FrameKind,
    /// Frame-level error (responses only).
    pub error: ErrorCode,
    /// Correlation id.
    pub correlation_id: u32,
}

impl FrameHeader {
    /// Writes the envelope for a body of `body_len` bytes.
    pub fn encode<S: Sink + ?Sized>(&self, body_len: usize, out: &mut S) {
        let mut b = [0u8; ENVELOPE_LEN];
        b[0..4].copy_from_slice(&((ENVELOPE_LEN - 4 + body_len) as u32).to_le_bytes());
        b[4..6].copy_from_slice(&self.api_key.to_le_bytes());
        b[6..8].copy_from_slice(&self.api_version.to_le_bytes());
        b[8] = self.kind as u8;
        b[9] = 0;
        b[10..12].copy_from_slice(&(self.error as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.correlation_id.to_le_bytes());
        out.put(&b);
    }
}

/// If `buf` starts with at least a length prefix, the total size of its first frame (checked
/// against `limits`); `Ok(None)` when fewer than 4 bytes are present. Use it to know how many
/// bytes to read from a stream before decoding.
pub fn frame_len(buf: &[u8], limits: FrameLimits) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let total = u64::from(u32::from_le_bytes(*prefix)) + 4;
    let max = u64::from(limits.max_frame_len.min(MAX_FRAME_LEN));
    if total < ENVELOPE_LEN as u64 || total > max {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::BadFrameLength {
                len: total,
                min: ENVELOPE_LEN as u64,
                max,
            },
        });
    }
    Ok(Some(total as usize))
}

/// Decodes the envelope of the frame at the start of `buf`. Returns the header, a reader
/// positioned on the body (bounded to this frame) and the frame's total length.
pub fn decode_envelope(
    buf: &Bytes,
    limits: FrameLimits,
) -> Result<(FrameHeader, Reader<'_>, usize), DecodeError> {
    let total = match frame_len(buf, limits)? {
        Some(t) => t,
        None => {
            return Err(DecodeError {
                offset: buf.len(),
                kind: DecodeErrorKind::Truncated {
                    needed: 4 - buf.len(),
                },
            });
        }
    };
    if buf.len() < total {
        return Err(DecodeError {
            offset: buf.len(),
            kind: DecodeErrorKind::Truncated {
                needed: total - buf.len(),
            },
        });
    }
    let mut r = Reader::new(buf, 4, total);
    let api_key = u16::decode(&mut r)?;
    let api_version = u16::decode(&mut r)?;
    let kind_byte = u8::decode(&mut r)?;
    let kind = FrameKind::from_u8(kind_byte).ok_or(DecodeError {
        offset: 8,
        kind: DecodeErrorKind::BadKind {
            api_key,
            kind: kind_byte,
        },
    })?;
    let flags = u8::decode(&mut r)?;
    if flags != 0 {
        return Err(DecodeError {
            offset: 9,
            kind: DecodeErrorKind::Reserved(flags),
        });
    }
    let error = ErrorCode::decode(&mut r)?;
    let correlation_id = u32::decode(&mut r)?;
    let header = FrameHeader {
        api_key,
        api_version,
        kind,
        error,
        correlation_id,
    };
    Ok((header, r, total))
}

/// Writes a whole frame: envelope then body.
pub fn encode_frame<M: Wire, S: Sink + ?Sized>(header: &FrameHeader, body: &M, out: &mut S) {
    header.encode(body.encoded_len(), out);
    body.encode(out);
}

/// Defines an api-key enum with its supported version range.
macro_rules! api_keys {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $( $(#[doc = $vdoc:literal])* $variant:ident = $num:literal, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum $name {
            $( $(#[doc = $vdoc])* $variant = $num, )*
        }

        impl $name {
            /// Every api, in number order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The api for a wire number.
            pub const fn from_u16(n: u16) -> Option<Self> {
                match n {
                    $( $num => Some($name::$variant), )*
                    _ => None,
                }
            }

            /// Lowest and highest api version this crate speaks (all apis are at version 1).
            pub const fn versions(self) -> (u16, u16) {
                (1, 1)
            }
        }
    };
}
pub(crate) use api_keys;

/// Defines an enum of the bodies of one frame kind, one variant per api, with dispatching
/// encode/decode.
macro_rules! message_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident : $keys:ident, $kind:ident {
            $( $variant:ident ( $ty:ty ), )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $( #[doc = concat!("Api `", stringify!($variant), "`.")] $variant($ty), )*
        }

        $(
            impl From<$ty> for $name {
                fn from(v: $ty) -> Self {
                    $name::$variant(v)
                }
            }
        )*

        impl $name {
            /// The frame kind these bodies travel in.
            pub const KIND: $crate::frame::FrameKind = $crate::frame::FrameKind::$kind;

            /// The api this body belongs to.
            pub fn api_key(&self) -> $keys {
                match self {
                    $( $name::$variant(_) => $keys::$variant, )*
                }
            }

            /// Encoded body size.
            pub fn body_len(&self) -> usize {
                match self {
                    $( $name::$variant(m) => $crate::wire::Wire::encoded_len(m), )*
                }
            }

            /// Appends the body only.
            pub fn encode_body<S: $crate::wire::Sink + ?Sized>(&self, out: &mut S) {
                match self {
                    $( $name::$variant(m) => $crate::wire::Wire::encode(m, out), )*
                }
            }

            /// Appends a complete frame (envelope + body) with the api's current version.
            pub fn encode_frame<S: $crate::wire::Sink + ?Sized>(&self, correlation_id: u32, out: &mut S) {
                let key = self.api_key();
                let header = $crate::frame::FrameHeader {
                    api_key: key as u16,
                    api_version: key.versions().1,
                    kind: Self::KIND,
                    error: $crate::error::ErrorCode::None,
                    correlation_id,
                };
                header.encode(self.body_len(), out);
                self.encode_body(out);
            }

            /// The frame as chunks, large batches passed through without copying.
            pub fn encode_frame_chunks(&self, correlation_id: u32) -> Vec<bytes::Bytes> {
                let mut w = $crate::wire::ChunkWriter::new();
                self.encode_frame(correlation_id, &mut w);
                w.into_chunks()
            }

            /// Decodes the body of api `key` from `r`, which must be exactly the body.
            pub fn decode_body(
                key: $keys,
                r: &mut $crate::wire::Reader<'_>,
            ) -> Result<Self, $crate::wire::DecodeError> {
                #[allow(unreachable_patterns)]
                let body = match key {
                    $( $keys::$variant => $name::$variant(<$ty as $crate::wire::Wire>::decode(r)?), )*
                    other => return Err(r.error($crate::wire::DecodeErrorKind::BadKind {
                        api_key: other as u16,
                        kind: Self::KIND as u8,
                    })),
                };
                r.finish()?;
                Ok(body)
            }
        }

        #[cfg(test)]
        impl $crate::wire::testing::Arb for $name {
            fn arb() -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::strategy::Strategy;
                proptest::strategy::Union::new(vec![
                    $( <$ty as $crate::wire::testing::Arb>::arb().prop_map($name::$variant).boxed(), )*
                ]).boxed()
            }
        }
    };
}
pub(crate) use message_enum;

/// Defines the frame-level enum and decoder of a protocol (client or peer).
macro_rules! protocol_frames {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident : $keys:ident {
            $( $variant:ident ( $ty:ty ), )*
        }
        decode = $decode:ident;
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $( #[doc = concat!("A `", stringify!($ty), "` frame.")] $variant($ty), )*
            /// A response carrying only a frame-level error (empty body).
            Error(crate::error::ErrorCode),
        }

        /// Decodes the frame at the start of `buf`: its envelope, its body (zero copy: batches
        /// share `buf`) and its total length, so the caller can advance past it.
        ///
        /// Checks the api key, the version range, the kind, that the body is consumed exactly,
        /// and every length against `limits` before allocating.
        pub fn $decode(
            buf: &bytes::Bytes,
            limits: $crate::frame::FrameLimits,
        ) -> Result<($crate::frame::FrameHeader, $name, usize), $crate::wire::DecodeError> {
            let (header, mut r, total) = $crate::frame::decode_envelope(buf, limits)?;
            // An error response echoes the request's api key and version, which may be ones
            // this side does not know (that can be the very error): accept it before checking.
            if header.kind == $crate::frame::FrameKind::Response && !header.error.is_ok() {
                r.finish()?;
                return Ok((header, $name::Error(header.error), total));
            }
            let key = $keys::from_u16(header.api_key).ok_or($crate::wire::DecodeError {
                offset: 4,
                kind: $crate::wire::DecodeErrorKind::UnknownApiKey(header.api_key),
            })?;
            let (min, max) = key.versions();
            if header.api_version < min || header.api_version > max {
                return Err($crate::wire::DecodeError {
                    offset: 6,
                    kind: $crate::wire::DecodeErrorKind::UnsupportedVersion {
                        api_key: header.api_key,
                        version: header.api_version,
                    },
                });
            }
            if header.kind != $crate::frame::FrameKind::Response && !header.error.is_ok() {
                return Err($crate::wire::DecodeError {
                    offset: 10,
                    kind: $crate::wire::DecodeErrorKind::InvalidTag(u64::from(header.error as u16)),
                });
            }
            let body = match header.kind {
                $( <$ty>::KIND => $name::$variant(<$ty>::decode_body(key, &mut r)?), )*
                #[allow(unreachable_patterns)]
                _ => return Err($crate::wire::DecodeError {
                    offset: 8,
                    kind: $crate::wire::DecodeErrorKind::BadKind {
                        api_key: header.api_key,
                        kind: header.kind as u8,
                    },
                }),
            };
            Ok((header, body, total))
        }
    };
}
pub(crate) use protocol_frames;

/// Reassembles frames from the chunks a stream delivers (sans-IO: the caller reads the stream
/// and pushes what it got). Rejects an oversized frame from its length prefix, before
/// buffering its body.
///
/// ```
/// use floe_protocol::frame::FrameAssembler;
/// use floe_protocol::client::{Request, HeartbeatRequest};
/// use floe_protocol::FrameLimits;
///
/// let mut wire = Vec::new();
/// Request::from(HeartbeatRequest::default()).encode_frame(1, &mut wire);
/// let mut asm = FrameAssembler::new(FrameLimits::default());
/// asm.push(&wire[..5]);
/// assert_eq!(asm.next_frame().unwrap(), None); // not complete yet
/// asm.push(&wire[5..]);
/// assert_eq!(asm.next_frame().unwrap().unwrap(), wire);
/// ```
#[derive(Debug)]
pub struct FrameAssembler {
    buf: bytes::BytesMut,
    limits: FrameLimits,
}

impl FrameAssembler {
    /// An empty assembler.
    pub fn new(limits: FrameLimits) -> Self {
        FrameAssembler {
            buf: bytes::BytesMut::new(),
            limits,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes are needed before [`next_frame`](Self::next_frame) can return a
    /// frame (at least 1 when none is complete; 0 when one is ready).
    pub fn needed(&self) -> Result<usize, DecodeError> {
        Ok(match frame_len(&self.buf, self.limits)? {
            None => 4 - self.buf.len(),
            Some(total) => total.saturating_sub(self.buf.len()),
        })
    }

    /// The next complete frame, if the buffer holds one. After an error the stream is
    /// unusable (framing is lost): close it.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, DecodeError> {
        match frame_len(&self.buf, self.limits)? {
            Some(total) if self.buf.len() >= total => Ok(Some(self.buf.split_to(total).freeze())),
            _ => Ok(None),
        }
    }
}

/// Writes a response frame that carries only a frame-level `error` (for a request that could
/// not be decoded or is not supported). `api_key`, `api_version` and `correlation_id` echo
/// the request's envelope.
pub fn encode_error_frame<S: Sink + ?Sized>(
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    error: ErrorCode,
    out: &mut S,
) {
    FrameHeader {
        api_key,
        api_version,
        kind: FrameKind::Response,
        error,
        correlation_id,
    }
    .encode(0, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn assembler_reassembles_any_split(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut wire = Vec::new();
            let mut frames = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                let start = wire.len();
                let header = FrameHeader {
                    api_key: 1,
                    api_version: 1,
                    kind: FrameKind::Request,
                    error: ErrorCode::None,
                    correlation_id: i as u32,
                };
                header.encode(body.len(), &mut wire);
                wire.extend_from_slice(body);
                frames.push(wire[start..].to_vec());
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut asm = FrameAssembler::new(FrameLimits::default());
            let mut got = Vec::new();
            for w in points.windows(2) {
                asm.push(&wire[w[0]..w[1]]);
                while let Some(f) = asm.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(asm.buffered(), 0);
        }
    }

    #[test]
    fn assembler_rejects_oversized_prefix_early() {
        let mut asm = FrameAssembler::new(FrameLimits { max_frame_len: 100 });
        asm.push(&1000u32.to_le_bytes());
        assert!(asm.next_frame().is_err());
        assert!(asm.needed().is_err());
        let mut asm = FrameAssembler::new(FrameLimits::default());
        assert_eq!(asm.needed(), Ok(4));
        asm.push(&20u32.to_le_bytes());
        assert_eq!(asm.needed(), Ok(20));
    }
}

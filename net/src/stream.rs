//! Whole floe-protocol frames on QUIC streams.
//!
//! A [`FrameReader`] reads the 4-byte length prefix, checks it against the
//! [`FrameLimits`] *before* allocating anything, then collects exactly that many bytes; a
//! length out of bounds is [`StreamError::BadLength`] and the stream is stopped with
//! [`StreamCode::FRAME_TOO_LARGE`]. A [`FrameWriter`] writes frames given as chunks (large
//! batches pass through without a copy). Frames are returned whole, length prefix included,
//! ready for `floe_protocol::client::decode_client_frame` or
//! `floe_protocol::peer::decode_peer_frame`.

use bytes::{Bytes, BytesMut};
use floe_protocol::FrameLimits;
use floe_protocol::frame::{ENVELOPE_LEN, MAX_FRAME_LEN};
use quinn::{
    ConnectionError, ReadError, ReadExactError, RecvStream, SendStream, VarInt, WriteError,
};

use crate::endpoint::connection_error_is_retryable;

/// First allocation for a frame's buffer; it grows only as bytes actually arrive, so a
/// declared length (already bounded) never reserves memory by itself.
const INITIAL_FRAME_BUFFER: usize = 64 * 1024;

/// Application error codes floe puts in QUIC `STOP_SENDING` / `RESET_STREAM` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamCode(pub u32);

impl StreamCode {
    /// No error (a reader no longer interested).
    pub const NO_ERROR: StreamCode = StreamCode(0);
    /// A frame length prefix was below the envelope size or above the receiver's limit.
    pub const FRAME_TOO_LARGE: StreamCode = StreamCode(1);
    /// The frame could not be understood at all (no response frame could be formed).
    pub const MALFORMED_FRAME: StreamCode = StreamCode(2);
    /// The handler failed without answering.
    pub const INTERNAL: StreamCode = StreamCode(3);
    /// The server is shutting down; try again elsewhere or later.
    pub const SHUTTING_DOWN: StreamCode = StreamCode(4);
    /// The request did not arrive in time.
    pub const TIMED_OUT: StreamCode = StreamCode(5);

    /// quinn's representation.
    pub fn varint(self) -> VarInt {
        VarInt::from_u32(self.0)
    }

    fn from_varint(v: VarInt) -> StreamCode {
        StreamCode(u32::try_from(v.into_inner()).unwrap_or(u32::MAX))
    }
}

/// Reading or writing a frame on one stream failed. The stream is unusable afterwards; the
/// connection may still be fine (see [`StreamError::connection_lost`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// A length prefix out of bounds (the stream was stopped, nothing was allocated).
    #[error("frame length {len} outside {min}..={max}")]
    BadLength {
        /// Declared total length (prefix included).
        len: u64,
        /// Smallest valid frame.
        min: u64,
        /// This side's limit.
        max: u64,
    },
    /// The sender finished the stream in the middle of a frame.
    #[error("stream ended {received} bytes into a {expected}-byte frame")]
    Truncated {
        /// Bytes the frame needed (for a cut prefix: 4).
        expected: usize,
        /// Bytes that arrived.
        received: usize,
    },
    /// The peer reset the stream (it will not send more).
    #[error("stream reset by peer with code {}", code.0)]
    Reset {
        /// The peer's reason.
        code: StreamCode,
    },
    /// The peer stopped reading what we send.
    #[error("peer stopped reading with code {}", code.0)]
    Stopped {
        /// The peer's reason.
        code: StreamCode,
    },
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] ConnectionError),
    /// This side already finished or reset the stream.
    #[error("stream already closed")]
    Closed,
}

impl StreamError {
    /// Whether the same request may succeed if sent again (on a new stream, or a new
    /// connection if [`StreamError::connection_lost`]). A malformed or oversized frame is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StreamError::Reset { code } | StreamError::Stopped { code } => {
                *code == StreamCode::SHUTTING_DOWN || *code == StreamCode::TIMED_OUT
            }
            StreamError::ConnectionLost(e) => connection_error_is_retryable(e),
            StreamError::BadLength { .. } | StreamError::Truncated { .. } | StreamError::Closed => {
                false
            }
        }
    }

    /// The connection itself is gone (reconnect before retrying).
    pub fn connection_lost(&self) -> Option<&ConnectionError> {
        match self {
            StreamError::ConnectionLost(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ReadError> for StreamError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Reset(code) => StreamError::Reset {
                code: StreamCode::from_varint(code),
            },
            ReadError::ConnectionLost(e) => StreamError::ConnectionLost(e),
            // 0-RTT is never enabled in floe, and a closed stream is ours.
            ReadError::ClosedStream
            | ReadError::ZeroRttRejected
            | ReadError::IllegalOrderedRead => StreamError::Closed,
        }
    }
}

impl From<WriteError> for StreamError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Stopped(code) => StreamError::Stopped {
                code: StreamCode::from_varint(code),
            },
            WriteError::ConnectionLost(e) => StreamError::ConnectionLost(e),
            WriteError::ClosedStream | WriteError::ZeroRttRejected => StreamError::Closed,
        }
    }
}

/// Reads whole frames from a stream's receive side.
#[derive(Debug)]
pub struct FrameReader {
    recv: RecvStream,
    limits: FrameLimits,
}

impl FrameReader {
    /// Wraps `recv`; frames above `limits.max_frame_len` are refused.
    pub fn new(recv: RecvStream, limits: FrameLimits) -> Self {
        FrameReader { recv, limits }
    }

    /// The next whole frame (length prefix included), or `None` if the sender finished the
    /// stream cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, StreamError> {
        let mut prefix = [0u8; 4];
        match self.recv.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(ReadExactError::FinishedEarly(received)) => {
                return Err(StreamError::Truncated {
                    expected: 4,
                    received,
                });
            }
            Err(ReadExactError::ReadError(e)) => return Err(e.into()),
        }
        let len = u64::from(u32::from_le_bytes(prefix)) + 4;
        let max = u64::from(self.limits.max_frame_len.min(MAX_FRAME_LEN));
        let min = ENVELOPE_LEN as u64;
        if len < min || len > max {
            // Refuse the rest of this stream; the connection and other streams carry on.
            let _ = self.recv.stop(StreamCode::FRAME_TOO_LARGE.varint());
            return Err(StreamError::BadLength { len, min, max });
        }
        // `len <= max <= MAX_FRAME_LEN` (256 MiB): fits in usize.
        let total = len as usize;
        let mut buf = BytesMut::with_capacity(total.min(INITIAL_FRAME_BUFFER));
        buf.extend_from_slice(&prefix);
        while buf.len() < total {
            match self.recv.read_chunk(total - buf.len(), true).await? {
                Some(chunk) => buf.extend_from_slice(&chunk.bytes),
                None => {
                    return Err(StreamError::Truncated {
                        expected: total,
                        received: buf.len(),
                    });
                }
            }
        }
        Ok(Some(buf.freeze()))
    }

    /// Tells the sender to stop (no more frames wanted).
    pub fn stop(&mut self, code: StreamCode) {
        // Already stopped or finished: nothing left to refuse.
        let _ = self.recv.stop(code.varint());
    }

    /// The limits in force.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// The quinn stream.
    pub fn into_inner(self) -> RecvStream {
        self.recv
    }
}

/// Writes whole frames on a stream's send side.
#[derive(Debug)]
pub struct FrameWriter {
    send: SendStream,
}

impl FrameWriter {
    /// Wraps `send`.
    pub fn new(send: SendStream) -> Self {
        FrameWriter { send }
    }

    /// Writes one frame given as chunks (as `encode_frame_chunks` returns them); large
    /// chunks are handed to quinn without copying.
    pub async fn write_frame(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamError> {
        self.send.write_all_chunks(chunks).await?;
        Ok(())
    }

    /// Writes one frame from a contiguous buffer.
    pub async fn write_frame_bytes(&mut self, frame: &[u8]) -> Result<(), StreamError> {
        self.send.write_all(frame).await?;
        Ok(())
    }

    /// Ends the stream cleanly after everything written so far.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.send.finish().map_err(|_| StreamError::Closed)
    }

    /// Abandons the stream: unsent data is discarded and the peer sees `code`.
    pub fn reset(&mut self, code: StreamCode) {
        // Already finished or reset: the peer has its answer.
        let _ = self.send.reset(code.varint());
    }

    /// The quinn stream.
    pub fn into_inner(self) -> SendStream {
        self.send
    }
}

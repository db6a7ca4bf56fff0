//! floe-protocol: the record-batch format and the wire frames of floe.
//!
//! This crate is a pure codec: bytes in, bytes out. It performs no I/O, spawns nothing and
//! reads no clock. Every decoder bounds lengths before it allocates and returns a typed error
//! on any input; none panics.
//!
//! The record batch is the unit that flows unchanged from producer to disk to consumer. Its
//! header layout is documented byte by byte in `protocol/PROTOCOL.md` and in [`batch::header`].
//!
//! ```
//! use floe_protocol::batch::{BatchHeader, HEADER_LEN};
//! assert_eq!(HEADER_LEN, 65);
//! // A buffer too short to hold a header is a typed error, not a panic.
//! assert!(BatchHeader::parse(&[0u8; 10]).is_err());
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod client;
pub mod error;
pub mod frame;
pub mod peer;
pub mod varint;
pub mod wire;

pub use error::{ErrorCode, RETIRED_CODES};
pub use frame::{FrameHeader, FrameKind, FrameLimits};
pub use wire::{DecodeError, DecodeErrorKind, Wire};

//! floe-protocol: the record-batch format and the wire frames of floe.
//!
//! This crate is a pure codec: bytes in, bytes out. It performs no I/O, spawns nothing and
//! reads no clock. Every decoder bounds lengths and counts before it allocates and returns a
//! typed error on any input; none panics. The formats are specified byte by byte in
//! `protocol/PROTOCOL.md`.
//!
//! # Tour
//!
//! * [`batch`]: the record batch, the unit that flows unchanged from producer to disk to
//!   consumer. [`batch::BatchBuilder`] makes one (optionally LZ4-compressed, optionally a
//!   control batch); [`batch::BatchView`] checks one (header + CRC, no copy);
//!   [`batch::BatchView::records`] iterates its records, borrowed from the batch;
//!   [`batch::stamp`] lets the leader assign offsets and term without touching the CRC.
//! * [`varint`]: the LEB128 / zigzag varints used inside records.
//! * [`frame`]: the 16-byte envelope shared by both protocols and [`FrameLimits`].
//! * [`client`]: every client ↔ broker request, response and push (ALPN `floe/1`), and
//!   [`client::decode_client_frame`].
//! * [`peer`]: Raft messages for many groups, coalesced heartbeats, snapshots and controller
//!   forwarding (ALPN `floe-peer/1`), and [`peer::decode_peer_frame`].
//! * [`error`]: the stable `u16` [`ErrorCode`] table; [`wire`]: the field encodings and
//!   [`DecodeError`] (with the byte offset of the failure).
//!
//! # Example: produce and consume one batch
//!
//! ```
//! use bytes::BytesMut;
//! use floe_protocol::batch::{stamp, BatchBuilder, BatchLimits, BatchView, CompressionCodec};
//! use floe_protocol::client::*;
//! use floe_protocol::FrameLimits;
//!
//! // Producer: build a batch and a produce request around it.
//! let mut builder = BatchBuilder::new(CompressionCodec::Lz4);
//! builder.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]).unwrap();
//! let batch = builder.finish().unwrap();
//! let request = Request::from(ProduceRequest {
//!     acks: Acks::All,
//!     timeout_ms: 5_000,
//!     topics: vec![ProduceTopic {
//!         name: "orders".into(),
//!         partitions: vec![ProducePartition { partition: 0, batches: batch }],
//!     }],
//! });
//! let mut wire = BytesMut::new();
//! request.encode_frame(1, &mut wire);
//!
//! // Broker: decode the frame (the batch is a zero-copy slice of it), validate, stamp.
//! let (_, frame, _) = decode_client_frame(&wire.freeze(), FrameLimits::default()).unwrap();
//! let ClientFrame::Request(Request::Produce(produce)) = frame else { unreachable!() };
//! let received = produce.topics[0].partitions[0].batches.clone();
//! let view = BatchView::parse(received.clone(), BatchLimits::default()).unwrap();
//! view.validate_records().unwrap();
//! let mut stored = received.to_vec();
//! stamp(&mut stored, 41, 3); // base offset 41, term 3; the CRC stays valid
//!
//! // Consumer: read the records.
//! let view = BatchView::parse(stored.into(), BatchLimits::default()).unwrap();
//! let records = view.records().unwrap();
//! let record = records.iter().next().unwrap().unwrap();
//! assert_eq!((record.offset, record.value), (41, Some(&b"value"[..])));
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

/// Case count for this crate's property tests: `PROPTEST_CASES` when set (the long test
/// profile raises it), else the given default.
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

//! Produce, idempotent producer ids and offset lookup.

use crate::error::ErrorCode;
use crate::wire::{DecodeError, DecodeErrorKind, Reader, Sink, Wire, wire_struct};
use bytes::Bytes;

/// How much replication a produce waits for. Wire: `u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// 0: no response is awaited beyond the leader having received the request.
    None = 0,
    /// 1: answered once the leader appended (not yet committed).
    Leader = 1,
    /// 2: answered once the batch is committed (a quorum holds it). The default.
    #[default]
    All = 2,
}

impl Wire for Acks {
    const MIN_LEN: usize = 1;
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        out.put(&[*self as u8]);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match u8::decode(r)? {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Leader),
            2 => Ok(Acks::All),
            t => Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::InvalidTag(u64::from(t)),
            }),
        }
    }
}

#[cfg(test)]
impl crate::wire::testing::Arb for Acks {
    fn arb() -> proptest::strategy::BoxedStrategy<Self> {
        use proptest::strategy::Strategy;
        proptest::sample::select(vec![Acks::None, Acks::Leader, Acks::All]).boxed()
    }
}

wire_struct! {
    /// Batches for one partition.
    pub struct ProducePartition {
        /// Partition index.
        pub partition: u32,
        /// One or more complete record batches, back to back (zero copy on both sides).
        pub batches: Bytes,
    }
}

wire_struct! {
    /// Batches for one topic.
    pub struct ProduceTopic {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<ProducePartition>,
    }
}

wire_struct! {
    /// Append batches to many partitions (each sent to its leader).
    pub struct ProduceRequest {
        /// Replication to wait for.
        pub acks: Acks,
        /// How long the broker may wait for replication, ms.
        pub timeout_ms: u32,
        /// Topics and partitions.
        pub topics: Vec<ProduceTopic>,
    }
}

wire_struct! {
    /// Result for one partition.
    pub struct ProducePartitionResult {
        /// Partition index.
        pub partition: u32,
        /// Error (for example `NotLeader`, `CorruptBatch`, `OutOfOrderSequence`).
        pub error: ErrorCode,
        /// Offset of the first record appended (for `DuplicateSequence`, of the original).
        pub base_offset: u64,
        /// Log start offset of the partition.
        pub log_start_offset: u64,
        /// Leader when the error is `NotLeader` and the leader is known.
        pub current_leader: Option<u64>,
        /// Detail for errors.
        pub message: Option<String>,
    }
}

wire_struct! {
    /// Results for one topic.
    pub struct ProduceTopicResult {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<ProducePartitionResult>,
    }
}

wire_struct! {
    /// Produce response: one result per partition sent.
    pub struct ProduceResponse {
        /// Topics.
        pub topics: Vec<ProduceTopicResult>,
    }
}

wire_struct! {
    /// Get a producer id for idempotent produce, or bump the epoch of an existing one.
    pub struct InitProducerIdRequest {
        /// Existing producer id, or -1 for a new one.
        pub producer_id: i64,
        /// Existing epoch, or -1.
        pub producer_epoch: i16,
    }
}

wire_struct! {
    /// The producer id and epoch to stamp into batches.
    pub struct InitProducerIdResponse {
        /// Error.
        pub error: ErrorCode,
        /// Producer id.
        pub producer_id: i64,
        /// Producer epoch.
        pub producer_epoch: i16,
    }
}

/// Which offset to look up. Wire: `i64` with `-2` = earliest, `-1` = latest, any other value
/// (must be `>= 0`) = the first offset whose timestamp is `>=` that many ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (next offset to be committed).
    #[default]
    Latest,
    /// First offset with timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

impl Wire for OffsetSpec {
    const MIN_LEN: usize = 8;
    fn encoded_len(&self) -> usize {
        8
    }
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        let v = match *self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        };
        v.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match i64::decode(r)? {
            -2 => Ok(OffsetSpec::Earliest),
            -1 => Ok(OffsetSpec::Latest),
            t if t >= 0 => Ok(OffsetSpec::Timestamp(t)),
            t => Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::InvalidTag(t as u64),
            }),
        }
    }
}

#[cfg(test)]
impl crate::wire::testing::Arb for OffsetSpec {
    fn arb() -> proptest::strategy::BoxedStrategy<Self> {
        use proptest::prelude::*;
        prop_oneof![
            Just(OffsetSpec::Earliest),
            Just(OffsetSpec::Latest),
            (0..i64::MAX).prop_map(OffsetSpec::Timestamp),
        ]
        .boxed()
    }
}

wire_struct! {
    /// One partition to look up.
    pub struct ListOffsetsPartition {
        /// Partition index.
        pub partition: u32,
        /// What to look up.
        pub spec: OffsetSpec,
    }
}

wire_struct! {
    /// Partitions of one topic to look up.
    pub struct ListOffsetsTopic {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<ListOffsetsPartition>,
    }
}

wire_struct! {
    /// Look up offsets (sent to partition leaders).
    pub struct ListOffsetsRequest {
        /// Topics.
        pub topics: Vec<ListOffsetsTopic>,
    }
}

wire_struct! {
    /// Result for one partition.
    pub struct ListOffsetsPartitionResult {
        /// Partition index.
        pub partition: u32,
        /// Error.
        pub error: ErrorCode,
        /// The offset found (for a timestamp with no later record: the high watermark).
        pub offset: u64,
        /// Timestamp of the record at `offset`, or -1.
        pub timestamp: i64,
        /// Leader when the error is `NotLeader`.
        pub current_leader: Option<u64>,
    }
}

wire_struct! {
    /// Results for one topic.
    pub struct ListOffsetsTopicResult {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<ListOffsetsPartitionResult>,
    }
}

wire_struct! {
    /// List-offsets response.
    pub struct ListOffsetsResponse {
        /// Topics.
        pub topics: Vec<ListOffsetsTopicResult>,
    }
}

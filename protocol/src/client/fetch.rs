//! Fetch (pull) and subscribe (server push) of committed batches.

use crate::error::ErrorCode;
use crate::wire::wire_struct;
use bytes::Bytes;

wire_struct! {
    /// One partition to read.
    pub struct FetchPartition {
        /// Partition index.
        pub partition: u32,
        /// First offset wanted.
        pub fetch_offset: u64,
        /// Most bytes of batches to return for this partition (at least one whole batch is
        /// returned even if larger, so a consumer never gets stuck).
        pub max_bytes: u32,
    }
}

wire_struct! {
    /// Partitions of one topic to read.
    pub struct FetchTopic {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<FetchPartition>,
    }
}

wire_struct! {
    /// Read committed batches (sent to partition leaders).
    pub struct FetchRequest {
        /// Longest the broker may wait for `min_bytes`, ms.
        pub max_wait_ms: u32,
        /// Answer as soon as this many bytes are available.
        pub min_bytes: u32,
        /// Most bytes in the whole response.
        pub max_bytes: u32,
        /// Topics.
        pub topics: Vec<FetchTopic>,
    }
}

wire_struct! {
    /// Data for one partition. Only committed batches (below the high watermark) are returned.
    pub struct FetchPartitionResult {
        /// Partition index.
        pub partition: u32,
        /// Error (for example `OffsetOutOfRange`, `NotLeader`).
        pub error: ErrorCode,
        /// High watermark (commit index + 1): the next offset to be committed.
        pub high_watermark: u64,
        /// Log start offset.
        pub log_start_offset: u64,
        /// Leader when the error is `NotLeader`.
        pub current_leader: Option<u64>,
        /// Whole record batches back to back, straight from the log (zero copy). The first
        /// batch may start before `fetch_offset`; skip records below it.
        pub batches: Bytes,
    }
}

wire_struct! {
    /// Data for one topic.
    pub struct FetchTopicResult {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<FetchPartitionResult>,
    }
}

wire_struct! {
    /// Fetch response.
    pub struct FetchResponse {
        /// Topics.
        pub topics: Vec<FetchTopicResult>,
    }
}

wire_struct! {
    /// Open a subscription: the broker pushes committed batches of these partitions, from the
    /// given offsets, as they commit. Flow control is QUIC's stream flow control, plus an
    /// optional byte credit.
    pub struct SubscribeRequest {
        /// Partitions and start offsets (`max_bytes` bounds each push per partition).
        pub topics: Vec<FetchTopic>,
        /// Byte credit granted up front; 0 = unlimited (QUIC flow control only). When credit
        /// runs out the broker stops pushing until a [`SubscribeCredit`] arrives.
        pub initial_credit: u64,
    }
}

wire_struct! {
    /// Starting state of one subscribed partition.
    pub struct SubscribePartitionStatus {
        /// Partition index.
        pub partition: u32,
        /// Error; partitions with an error are not pushed.
        pub error: ErrorCode,
        /// High watermark now.
        pub high_watermark: u64,
        /// Log start offset now.
        pub log_start_offset: u64,
        /// Leader when the error is `NotLeader`.
        pub current_leader: Option<u64>,
    }
}

wire_struct! {
    /// Status of one topic's subscribed partitions.
    pub struct SubscribeTopicStatus {
        /// Topic name.
        pub name: String,
        /// Partitions.
        pub partitions: Vec<SubscribePartitionStatus>,
    }
}

wire_struct! {
    /// Subscription accepted (per-partition errors inside).
    pub struct SubscribeResponse {
        /// Topics.
        pub topics: Vec<SubscribeTopicStatus>,
    }
}

wire_struct! {
    /// More byte credit for a subscription (sent on the subscription stream; no response).
    pub struct SubscribeCredit {
        /// Bytes added to the credit.
        pub bytes: u64,
    }
}

wire_struct! {
    /// A push on a subscription stream: new committed batches and watermarks. A partition
    /// whose leadership moved is reported once with `NotLeader` and then no longer pushed.
    pub struct SubscribeEvent {
        /// Topics with news (same layout as a fetch response).
        pub topics: Vec<FetchTopicResult>,
    }
}

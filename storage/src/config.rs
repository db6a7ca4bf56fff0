//! Log configuration.

use crate::error::{Error, Result};

/// When the log fsyncs its active segment.
///
/// | policy | an acknowledged batch survives | cost |
/// |---|---|---|
/// | `Always` | power loss and kernel crash, once `sync()` returned | one fsync per group of appends |
/// | `Interval { ms }` | a process crash always; power loss only if older than the last sync (up to `ms` of acknowledged data can be lost) | one fsync per `ms` |
/// | `Never` | a process crash; power loss only up to the last segment roll | fsync only when a segment is sealed |
///
/// Under every policy a torn or unsynced tail is detected by CRC at recovery and cut off; what
/// differs is how much acknowledged data that tail may contain. With Raft, a replica that lost
/// acknowledged entries must not vote as if it had them: `Interval` and `Never` trade that
/// guarantee for throughput and are safe only while a quorum does not lose power at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Group commit: appends go to the page cache; the caller (or [`crate::LogWriter`]) calls
    /// `sync()` once for the whole group before acknowledging any of it.
    #[default]
    Always,
    /// `maybe_sync(now_ms)` syncs when `ms` have passed since the last sync.
    Interval {
        /// Milliseconds between syncs.
        ms: u64,
    },
    /// `maybe_sync` never syncs; data becomes durable when its segment is sealed (or on an
    /// explicit `sync()`).
    Never,
}

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this many bytes. Also the
    /// preallocated size of a new segment. At most [`LogConfig::MAX_SEGMENT_BYTES`].
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (by the caller's clock), if set.
    pub segment_ms: Option<u64>,
    /// One sparse index entry per this many bytes of batches.
    pub index_interval_bytes: u32,
    /// Largest batch accepted by `append` (capped by the protocol's `MAX_BATCH_LEN`).
    pub max_batch_bytes: u32,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Preallocate (set the length of) a new segment to `segment_bytes` so the file is mapped
    /// once at full size and appends never change its length.
    pub preallocate: bool,
    /// Rewrite the active segment's index checkpoint after this many newly durable bytes, so
    /// recovery scans at most about this much of the last segment.
    pub checkpoint_interval_bytes: u64,
    /// Retention by size: delete the oldest sealed segments while the rest still hold at
    /// least this many bytes.
    pub retention_bytes: Option<u64>,
    /// Retention by age: delete sealed segments whose newest batch is older than this.
    pub retention_ms: Option<u64>,
}

impl LogConfig {
    /// Segments address bytes with `u32` positions; leave room for one maximal batch.
    pub const MAX_SEGMENT_BYTES: u64 = 3 << 30;

    /// Checks the limits; called by `Log::open`.
    pub fn validate(&self) -> Result<()> {
        let bad = |field| Err(Error::InvalidConfig { field });
        if self.segment_bytes < 1024 || self.segment_bytes > Self::MAX_SEGMENT_BYTES {
            return bad("segment_bytes");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes");
        }
        if (self.max_batch_bytes as usize) < floe_protocol::batch::HEADER_LEN {
            return bad("max_batch_bytes");
        }
        if self.checkpoint_interval_bytes == 0 {
            return bad("checkpoint_interval_bytes");
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 256 << 20,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            max_batch_bytes: 8 << 20,
            fsync: FsyncPolicy::Always,
            preallocate: true,
            checkpoint_interval_bytes: 16 << 20,
            retention_bytes: None,
            retention_ms: None,
        }
    }
}

/// Options for one `Log::open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// The caller's clock, ms since the epoch (segment age starts here for the reopened active
    /// segment).
    pub now_ms: u64,
    /// Offsets below this are known to have been durable (for example Raft's persisted commit
    /// index under `FsyncPolicy::Always`). A damaged batch below it is reported as corruption
    /// instead of being cut off as a torn tail.
    pub durable_floor: Option<u64>,
}

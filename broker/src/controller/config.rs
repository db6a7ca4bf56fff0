//! Per-topic configuration and its `key = value` form.

use floe_protocol::batch::header::{HEADER_LEN, MAX_BATCH_LEN};
use floe_storage::{FsyncPolicy, LogConfig};

/// Configuration of one topic; `None` retention means unlimited.
///
/// Keys and values (as in `CreateTopics` / `AlterTopicConfig`):
///
/// | key               | value                                                   |
/// |-------------------|---------------------------------------------------------|
/// | `retention.bytes` | bytes, or `-1` for unlimited                            |
/// | `retention.ms`    | milliseconds, or `-1` for unlimited                     |
/// | `fsync`           | `always`, `never`, or `<n>ms` (every n ms, n ≥ 1)       |
/// | `segment.bytes`   | 1024 ..= 3 GiB                                          |
/// | `max.batch.bytes` | batch header length ..= 64 MiB                          |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// Retention by size.
    pub retention_bytes: Option<u64>,
    /// Retention by age.
    pub retention_ms: Option<u64>,
    /// When replicas fsync.
    pub fsync: FsyncPolicy,
    /// Segment size.
    pub segment_bytes: u64,
    /// Largest accepted batch.
    pub max_batch_bytes: u32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        TopicConfig {
            retention_bytes: log.retention_bytes,
            retention_ms: log.retention_ms,
            fsync: log.fsync,
            segment_bytes: log.segment_bytes,
            max_batch_bytes: log.max_batch_bytes,
        }
    }
}

/// The keys [`TopicConfig`] knows, in display order.
pub const CONFIG_KEYS: [&str; 5] = [
    "retention.bytes",
    "retention.ms",
    "fsync",
    "segment.bytes",
    "max.batch.bytes",
];

impl TopicConfig {
    /// Sets `key` to `value`; `Err(())` when the key is unknown or the value invalid.
    #[allow(clippy::result_unit_err)]
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ()> {
        match key {
            "retention.bytes" => self.retention_bytes = parse_limit(value)?,
            "retention.ms" => self.retention_ms = parse_limit(value)?,
            "fsync" => self.fsync = parse_fsync(value)?,
            "segment.bytes" => {
                let n: u64 = value.parse().map_err(|_| ())?;
                if !(1024..=LogConfig::MAX_SEGMENT_BYTES).contains(&n) {
                    return Err(());
                }
                self.segment_bytes = n;
            }
            "max.batch.bytes" => {
                let n: u32 = value.parse().map_err(|_| ())?;
                if (n as usize) < HEADER_LEN || n > MAX_BATCH_LEN {
                    return Err(());
                }
                self.max_batch_bytes = n;
            }
            _ => return Err(()),
        }
        Ok(())
    }

    /// Whether every field is within the limits [`TopicConfig::set`] enforces.
    pub fn is_valid(&self) -> bool {
        let mut check = TopicConfig::default();
        self.entries().iter().all(|(k, v)| check.set(k, v).is_ok())
    }

    /// The configuration as `(key, value)` pairs, in [`CONFIG_KEYS`] order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let limit = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |n| n.to_string());
        let fsync = match self.fsync {
            FsyncPolicy::Always => "always".to_string(),
            FsyncPolicy::Never => "never".to_string(),
            FsyncPolicy::Interval { ms } => format!("{ms}ms"),
        };
        vec![
            (CONFIG_KEYS[0], limit(self.retention_bytes)),
            (CONFIG_KEYS[1], limit(self.retention_ms)),
            (CONFIG_KEYS[2], fsync),
            (CONFIG_KEYS[3], self.segment_bytes.to_string()),
            (CONFIG_KEYS[4], self.max_batch_bytes.to_string()),
        ]
    }

    /// `base` with this topic's settings applied.
    pub fn log_config(&self, base: LogConfig) -> LogConfig {
        LogConfig {
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            fsync: self.fsync,
            segment_bytes: self.segment_bytes,
            max_batch_bytes: self.max_batch_bytes,
            ..base
        }
    }
}

fn parse_limit(value: &str) -> Result<Option<u64>, ()> {
    if value == "-1" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| ())
}

fn parse_fsync(value: &str) -> Result<FsyncPolicy, ()> {
    match value {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => {
            let digits = value.strip_suffix("ms").ok_or(())?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            match digits.parse::<u64>() {
                Ok(ms) if ms >= 1 => Ok(FsyncPolicy::Interval { ms }),
                _ => Err(()),
            }
        }
    }
}

//! The history of one run: what the clients asked, what they were told, what they read, what
//! the nemesis did, and what every replica held at the end. Written as JSON lines (one
//! [`Event`] per line) so a failed run can be re-checked, or read by a person, afterwards.
//!
//! Times are microseconds since the run started, from one monotonic clock shared by every
//! client task, so "A was acknowledged before B was invoked" is a comparison of two numbers.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A producer client is about to send `value` to `partition` (operation `op`, unique in
    /// the run).
    Invoke {
        /// Microseconds since the start.
        t: u64,
        /// The producer client.
        process: u32,
        /// The operation id.
        op: u64,
        /// The partition it is sent to.
        partition: u32,
        /// The value, unique in the run.
        value: String,
    },
    /// The broker acknowledged operation `op` at `offset`.
    Ok {
        /// Microseconds since the start.
        t: u64,
        /// The operation id.
        op: u64,
        /// The partition the acknowledgement names.
        partition: u32,
        /// The offset the acknowledgement names.
        offset: u64,
    },
    /// Operation `op` definitely did not happen (the client refused it before sending, or a
    /// broker rejected it in a way that cannot have written it).
    Fail {
        /// Microseconds since the start.
        t: u64,
        /// The operation id.
        op: u64,
        /// Why.
        error: String,
    },
    /// Operation `op` may or may not have happened (a timeout, a lost connection).
    Unknown {
        /// Microseconds since the start.
        t: u64,
        /// The operation id.
        op: u64,
        /// Why.
        error: String,
    },
    /// A consumer started (or restarted) reading `partition` at `from`: a read session. The
    /// session's reads must continue from there without skipping or repeating records.
    Subscribe {
        /// Microseconds since the start.
        t: u64,
        /// The consumer client.
        consumer: u32,
        /// The session (unique per consumer).
        session: u32,
        /// The partition.
        partition: u32,
        /// The first offset asked for.
        from: u64,
    },
    /// A consumer read `value` at `offset` in `session`.
    Read {
        /// Microseconds since the start.
        t: u64,
        /// The consumer client.
        consumer: u32,
        /// The session.
        session: u32,
        /// The partition.
        partition: u32,
        /// The record's offset.
        offset: u64,
        /// The record's value.
        value: String,
    },
    /// A consumer's session ended with an error (it restarts in a new session).
    ReadError {
        /// Microseconds since the start.
        t: u64,
        /// The consumer client.
        consumer: u32,
        /// The session.
        session: u32,
        /// Why.
        error: String,
    },
    /// The full read of one partition after healing: every data record below
    /// `high_watermark`, in offset order.
    FinalRead {
        /// Microseconds since the start.
        t: u64,
        /// The partition.
        partition: u32,
        /// Everything below this offset was read (data records; control records are skipped).
        high_watermark: u64,
        /// `(offset, value)` in offset order.
        records: Vec<(u64, String)>,
    },
    /// One replica's log of one partition, read from its directory after its node stopped,
    /// cut at the commit end that node last reported.
    Replica {
        /// The node.
        node: u64,
        /// The partition.
        partition: u32,
        /// The node's commit end: the prefix below it is committed.
        committed_end: u64,
        /// The committed prefix's batches (data and control), in log order.
        batches: Vec<BatchDigest>,
        /// The committed prefix's data records.
        records: Vec<(u64, String)>,
        /// Damage the offline scan found inside the committed prefix, if any.
        damage: Option<String>,
    },
    /// The nemesis started or stopped a fault.
    Nemesis {
        /// Microseconds since the start.
        t: u64,
        /// Start, stop or info.
        phase: NemesisPhase,
        /// The fault's kind (`kill`, `pause`, `partition`, `disk`, ...).
        fault: String,
        /// What exactly (which node, which link, which file).
        detail: String,
    },
}

/// The `fault` of the [`NemesisPhase::Info`] event that marks the end of the workload: every
/// fault healed, producers told to stop. Availability is measured up to it (what follows,
/// stopping the producers and writing the fences, is not the system being unavailable).
pub const WORKLOAD_END: &str = "heal";

/// Whether a nemesis event begins or ends a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NemesisPhase {
    /// The fault begins (availability is measured from here).
    Start,
    /// The fault is healed.
    Stop,
    /// Something worth recording that is not a fault boundary.
    Info,
}

/// What identifies a stored batch: replicas that agree on every batch's range, term and CRC
/// hold the same bytes (the CRC covers everything the producer wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDigest {
    /// First offset.
    pub base: u64,
    /// Last offset.
    pub last: u64,
    /// The Raft term that wrote it.
    pub term: u64,
    /// The batch CRC.
    pub crc: u32,
}

/// Why a history file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not an event.
    #[error("history file {path}, line {line}: {source}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// A whole history, in the order the events were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The events.
    pub events: Vec<Event>,
}

impl History {
    /// Writes one JSON object per line.
    pub fn write_jsonl(&self, path: &Path) -> Result<(), HistoryError> {
        let io = |source| HistoryError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        for e in &self.events {
            // An Event always serialises (plain strings and numbers); a failure here is I/O.
            serde_json::to_writer(&mut out, e).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)
    }

    /// Reads a file written by [`History::write_jsonl`].
    pub fn read_jsonl(path: &Path) -> Result<History, HistoryError> {
        let file = std::fs::File::open(path).map_err(|source| HistoryError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut events = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| HistoryError::Io {
                path: path.to_owned(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            events.push(
                serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                    path: path.to_owned(),
                    line: i + 1,
                    source,
                })?,
            );
        }
        Ok(History { events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trips() {
        let h = History {
            events: vec![
                Event::Invoke {
                    t: 1,
                    process: 0,
                    op: 7,
                    partition: 2,
                    value: "0-7".into(),
                },
                Event::Ok {
                    t: 2,
                    op: 7,
                    partition: 2,
                    offset: 41,
                },
                Event::Replica {
                    node: 3,
                    partition: 2,
                    committed_end: 42,
                    batches: vec![BatchDigest {
                        base: 41,
                        last: 41,
                        term: 2,
                        crc: 9,
                    }],
                    records: vec![(41, "0-7".into())],
                    damage: None,
                },
                Event::Nemesis {
                    t: 3,
                    phase: NemesisPhase::Start,
                    fault: "kill".into(),
                    detail: "node 2".into(),
                },
            ],
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        h.write_jsonl(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 4);
        assert!(text.starts_with("{\"type\":\"invoke\""), "{text}");
        assert_eq!(History::read_jsonl(&path).expect("read back"), h);
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        std::fs::write(
            &path,
            "{\"type\":\"ok\",\"t\":1,\"op\":1,\"partition\":0,\"offset\":0}\nnope\n",
        )
        .expect("write");
        match History::read_jsonl(&path) {
            Err(HistoryError::Parse { line: 2, .. }) => {}
            other => panic!("expected a parse error on line 2, got {other:?}"),
        }
    }
}

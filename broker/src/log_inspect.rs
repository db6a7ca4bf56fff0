//! Read-only inspection of a partition directory, for operators (like kafka-dump-log).
//!
//! Unlike `floe_storage::Log::open`, which repairs (cuts a torn tail), this never writes: it
//! reads each `<base-offset:020>.log` segment with bounded positional reads, validates every
//! batch (header, length, CRC) with floe-protocol, and reports what it finds. A segment is
//! batches back to back, possibly followed by zeros (preallocation); see storage/FORMAT.md.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use floe_protocol::batch::{BatchHeader, HEADER_LEN, HeaderError, MAX_BATCH_LEN, validate_batch};
use thiserror::Error;

/// Why a directory could not be inspected at all.
#[derive(Debug, Error)]
pub enum InspectError {
    /// Listing the directory or reading a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The directory holds no segment files.
    #[error("no segment files (*.log) in {0}")]
    NoSegments(PathBuf),
}

/// What ended the scan of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The data ends exactly at the end of the file.
    Clean,
    /// The data is followed by `bytes` zero bytes (a preallocated, unused tail).
    ZeroTail {
        /// Length of the zero tail.
        bytes: u64,
    },
    /// An invalid or incomplete batch at `position` (bytes after it were not read).
    Damaged {
        /// Byte position in the segment.
        position: u64,
        /// The first offset expected there, if any batch preceded it.
        expected_offset: Option<u64>,
        /// What was wrong.
        error: HeaderError,
    },
    /// Bytes from `position` on belong to offsets at or past the next segment's base: batches
    /// (valid or not) that `truncate_suffix` cut off and that a later segment replaced. They
    /// are not log data (FORMAT.md S2/S3) and are neither counted nor judged.
    Superseded {
        /// Byte position in the segment where the superseded bytes start.
        position: u64,
        /// How many bytes follow it (to the end of the file).
        bytes: u64,
    },
}

/// One valid batch found by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Byte position in the segment.
    pub position: u64,
    /// Its header.
    pub header: BatchHeader,
}

/// What the scan found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Base offset from the file name.
    pub base_offset: u64,
    /// File length.
    pub file_len: u64,
    /// Valid batches in order.
    pub batches: Vec<BatchSummary>,
    /// How the scan ended.
    pub end: SegmentEnd,
}

impl SegmentReport {
    /// Records in the valid batches.
    pub fn records(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| u64::from(b.header.record_count))
            .sum()
    }

    /// Bytes of valid batches.
    pub fn data_bytes(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| u64::from(b.header.batch_len))
            .sum()
    }

    /// Offset after the last valid batch.
    pub fn next_offset(&self) -> Option<u64> {
        self.batches.last().map(|b| b.header.next_offset())
    }
}

/// A problem across the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Damage in a segment other than the last: data that was sealed (and fsynced) is bad.
    SealedDamage {
        /// The segment's base offset.
        segment: u64,
        /// Byte position.
        position: u64,
        /// What was wrong.
        error: HeaderError,
    },
    /// An invalid batch at the end of the last segment: a torn write from a crash, which
    /// recovery cuts if it lies beyond the durable point (or reports as corruption otherwise).
    TornTail {
        /// The segment's base offset.
        segment: u64,
        /// Byte position.
        position: u64,
        /// What was wrong.
        error: HeaderError,
    },
    /// A batch whose base offset does not continue from the previous one.
    OffsetGap {
        /// Where the batch was expected to start.
        expected: u64,
        /// Where it starts.
        found: u64,
    },
    /// A batch whose term is lower than its predecessor's (terms never decrease in a log).
    TermRegression {
        /// The batch's base offset.
        offset: u64,
        /// The previous term.
        previous: u64,
        /// This batch's term.
        term: u64,
    },
}

impl Finding {
    /// Whether this makes the log unfit to serve as is (a torn tail does not: recovery handles it).
    pub fn is_damage(&self) -> bool {
        !matches!(self, Finding::TornTail { .. })
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::SealedDamage {
                segment,
                position,
                error,
            } => {
                write!(
                    f,
                    "segment {segment}: damaged batch at byte {position}: {error}"
                )
            }
            Finding::TornTail {
                segment,
                position,
                error,
            } => write!(
                f,
                "segment {segment}: torn tail at byte {position} ({error}); recovery cuts it if it is beyond the durable point"
            ),
            Finding::OffsetGap { expected, found } => {
                write!(
                    f,
                    "offset gap: expected a batch at {expected}, found {found}"
                )
            }
            Finding::TermRegression {
                offset,
                previous,
                term,
            } => {
                write!(
                    f,
                    "term regression at offset {offset}: {previous} then {term}"
                )
            }
        }
    }
}

/// The whole directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// Segments in base-offset order.
    pub segments: Vec<SegmentReport>,
    /// Problems found, in log order.
    pub findings: Vec<Finding>,
}

impl LogReport {
    /// Whether any finding is damage (see [`Finding::is_damage`]).
    pub fn is_damaged(&self) -> bool {
        self.findings.iter().any(Finding::is_damage)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InspectError + 'a {
    move |source| InspectError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Segment files in `dir`, sorted by base offset.
pub fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, InspectError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(base) = stem.parse::<u64>()
        {
            out.push((base, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Scans one segment file.
pub fn scan_segment(path: &Path, base_offset: u64) -> Result<SegmentReport, InspectError> {
    let file = File::open(path).map_err(io_err("opening", path))?;
    let file_len = file
        .metadata()
        .map_err(io_err("reading metadata of", path))?
        .len();
    let mut batches = Vec::new();
    let mut pos = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut body = Vec::new();
    let damaged = |position, batches: &Vec<BatchSummary>, error| SegmentEnd::Damaged {
        position,
        expected_offset: batches
            .last()
            .map(|b: &BatchSummary| b.header.next_offset()),
        error,
    };
    let end = loop {
        let left = file_len - pos;
        if left == 0 {
            break SegmentEnd::Clean;
        }
        if left < HEADER_LEN as u64 {
            if is_zero_from(&file, pos, file_len, path)? {
                break SegmentEnd::ZeroTail { bytes: left };
            }
            let error = HeaderError::Truncated {
                needed: HEADER_LEN,
                available: left as usize,
            };
            break damaged(pos, &batches, error);
        }
        file.read_exact_at(&mut header, pos)
            .map_err(io_err("reading", path))?;
        if header[..20].iter().all(|b| *b == 0) && is_zero_from(&file, pos, file_len, path)? {
            break SegmentEnd::ZeroTail { bytes: left };
        }
        let h =
            match BatchHeader::parse(&header).and_then(|h| h.validate(MAX_BATCH_LEN).map(|()| h)) {
                Ok(h) => h,
                Err(e) => break damaged(pos, &batches, e),
            };
        // The length is bounded by validate() before this allocation.
        let len = u64::from(h.batch_len);
        if len > left {
            let error = HeaderError::Truncated {
                needed: len as usize,
                available: left as usize,
            };
            break damaged(pos, &batches, error);
        }
        body.resize(len as usize, 0);
        file.read_exact_at(&mut body, pos)
            .map_err(io_err("reading", path))?;
        match validate_batch(&body, MAX_BATCH_LEN) {
            Ok(h) => batches.push(BatchSummary {
                position: pos,
                header: h,
            }),
            Err(e) => break damaged(pos, &batches, e),
        }
        pos += len;
    };
    Ok(SegmentReport {
        path: path.to_path_buf(),
        base_offset,
        file_len,
        batches,
        end,
    })
}

fn is_zero_from(file: &File, from: u64, to: u64, path: &Path) -> Result<bool, InspectError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(io_err("reading", path))?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Scans every segment of the partition directory `dir`.
pub fn inspect(dir: &Path) -> Result<LogReport, InspectError> {
    let files = segment_files(dir)?;
    if files.is_empty() {
        return Err(InspectError::NoSegments(dir.to_path_buf()));
    }
    let mut segments = Vec::with_capacity(files.len());
    for (base, path) in &files {
        segments.push(scan_segment(path, *base)?);
    }
    for (seg, (next_base, _)) in segments.iter_mut().zip(files.iter().skip(1)) {
        cut_superseded(seg, *next_base);
    }
    let findings = findings(&segments);
    Ok(LogReport { segments, findings })
}

/// A segment's data never reaches the next segment's base offset (FORMAT.md S3): batches from
/// there on, and damage met after them, are leftovers of a suffix truncation, not data.
fn cut_superseded(seg: &mut SegmentReport, next_base: u64) {
    let superseded_at = match seg
        .batches
        .iter()
        .position(|b| b.header.base_offset >= next_base)
    {
        Some(i) => Some(seg.batches.split_off(i)[0].position),
        None => match seg.end {
            SegmentEnd::Damaged {
                position,
                expected_offset: Some(expected),
                ..
            } if expected >= next_base => Some(position),
            _ => None,
        },
    };
    if let Some(position) = superseded_at {
        seg.end = SegmentEnd::Superseded {
            position,
            bytes: seg.file_len - position,
        };
    }
}

fn findings(segments: &[SegmentReport]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut expected: Option<u64> = None;
    let mut last_term = 0u64;
    for (i, seg) in segments.iter().enumerate() {
        for b in &seg.batches {
            // The log start may lie inside the first segment (prefix truncation), so the
            // first batch seen anchors the sequence.
            if let Some(want) = expected
                && b.header.base_offset != want
            {
                out.push(Finding::OffsetGap {
                    expected: want,
                    found: b.header.base_offset,
                });
            }
            if b.header.term < last_term {
                out.push(Finding::TermRegression {
                    offset: b.header.base_offset,
                    previous: last_term,
                    term: b.header.term,
                });
            }
            last_term = last_term.max(b.header.term);
            expected = Some(b.header.next_offset());
        }
        if let SegmentEnd::Damaged {
            position, error, ..
        } = &seg.end
        {
            let (segment, position, error) = (seg.base_offset, *position, *error);
            if i + 1 == segments.len() {
                out.push(Finding::TornTail {
                    segment,
                    position,
                    error,
                });
            } else {
                out.push(Finding::SealedDamage {
                    segment,
                    position,
                    error,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::batch::{BatchBuilder, CompressionCodec, stamp};

    fn batch(base: u64, term: u64, records: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(CompressionCodec::None);
        for i in 0..records {
            b.append(1_000 + i as i64, None, Some(b"value"), &[])
                .unwrap();
        }
        let mut v = b.finish().unwrap().to_vec();
        stamp(&mut v, base, term);
        v
    }

    fn write_segment(dir: &Path, base: u64, parts: &[&[u8]]) -> PathBuf {
        let path = dir.join(format!("{base:020}.log"));
        std::fs::write(&path, parts.concat()).unwrap();
        path
    }

    #[test]
    fn clean_log_with_zero_tail_has_no_findings() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (batch(0, 1, 3), batch(3, 2, 2));
        write_segment(dir.path(), 0, &[&a, &b]);
        write_segment(dir.path(), 5, &[&batch(5, 2, 1), &[0u8; 4096]]);
        let r = inspect(dir.path()).unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.segments[0].end, SegmentEnd::Clean);
        assert_eq!(r.segments[1].end, SegmentEnd::ZeroTail { bytes: 4096 });
        assert_eq!(r.segments[0].records() + r.segments[1].records(), 6);
    }

    #[test]
    fn batches_a_truncation_left_past_the_next_segments_base_are_superseded_not_data() {
        let dir = tempfile::tempdir().unwrap();
        // Offsets 0..3 were written in term 1, then cut back to 1 and rewritten in term 2
        // from a new segment at 1: the old bytes of 1..3 stay in the first file.
        let (a, b, c) = (batch(0, 1, 1), batch(1, 1, 1), batch(2, 1, 1));
        let mut torn = batch(3, 1, 1);
        torn.truncate(torn.len() / 2);
        write_segment(dir.path(), 0, &[&a, &b, &c, &torn]);
        write_segment(dir.path(), 1, &[&batch(1, 2, 1), &batch(2, 2, 1)]);
        let r = inspect(dir.path()).unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(
            r.segments[0].end,
            SegmentEnd::Superseded {
                position: a.len() as u64,
                bytes: (b.len() + c.len() + torn.len()) as u64,
            }
        );
        assert_eq!(r.segments[0].records() + r.segments[1].records(), 3);

        // Damage *before* the next segment's base is still sealed damage.
        let dir = tempfile::tempdir().unwrap();
        let mut bad = batch(1, 1, 1);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        write_segment(dir.path(), 0, &[&a, &bad]);
        write_segment(dir.path(), 2, &[&batch(2, 1, 1)]);
        let r = inspect(dir.path()).unwrap();
        assert!(
            matches!(r.findings[0], Finding::SealedDamage { position, .. } if position == a.len() as u64),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn flipped_bit_in_a_sealed_segment_is_damage_and_tail_damage_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = batch(0, 1, 3);
        let last = a.len() - 1;
        a[last] ^= 0x10;
        write_segment(dir.path(), 0, &[&a]);
        let b = batch(3, 1, 1);
        write_segment(dir.path(), 3, &[&b, &b[..b.len() / 2]]);
        let r = inspect(dir.path()).unwrap();
        assert!(r.is_damaged());
        assert!(matches!(
            r.findings[0],
            Finding::SealedDamage {
                segment: 0,
                position: 0,
                error: HeaderError::CrcMismatch { .. }
            }
        ));
        assert!(
            matches!(r.findings[1], Finding::TornTail { segment: 3, .. }),
            "{:?}",
            r.findings
        );
        assert!(!r.findings[1].is_damage());
    }

    #[test]
    fn gaps_and_term_regressions_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, &[&batch(0, 2, 2), &batch(4, 1, 1)]);
        let r = inspect(dir.path()).unwrap();
        assert_eq!(
            r.findings,
            vec![
                Finding::OffsetGap {
                    expected: 2,
                    found: 4
                },
                Finding::TermRegression {
                    offset: 4,
                    previous: 2,
                    term: 1
                }
            ]
        );
    }

    #[test]
    fn absurd_length_is_rejected_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = batch(0, 1, 1);
        a[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        write_segment(dir.path(), 0, &[&a]);
        let r = inspect(dir.path()).unwrap();
        assert!(matches!(
            r.segments[0].end,
            SegmentEnd::Damaged {
                error: HeaderError::BadLength { .. },
                ..
            }
        ));
    }

    #[test]
    fn empty_directory_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            inspect(dir.path()),
            Err(InspectError::NoSegments(_))
        ));
    }
}

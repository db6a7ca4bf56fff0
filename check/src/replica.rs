//! Reading a stopped node's partition log offline: its committed prefix as batch digests and
//! data records, with floe's independent log scanner (`floe_broker::log_inspect`, the code
//! behind `floe log verify|dump`), never through the broker's own recovery.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use floe_broker::log_inspect;
use floe_protocol::batch::{BatchLimits, BatchView};

use crate::history::BatchDigest;

/// A replica's committed prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix {
    /// Batches whose offsets lie below the commit end, in log order.
    pub batches: Vec<BatchDigest>,
    /// Their data records (control batches are left out), `(offset, value)`.
    pub records: Vec<(u64, String)>,
    /// Why the prefix is not whole, if it is not: damage or a log shorter than its commit end.
    pub damage: Option<String>,
}

/// A record value as the history writes it (values are UTF-8 in this workload).
pub fn show_value(v: Option<&[u8]>) -> String {
    match v {
        Some(v) => String::from_utf8_lossy(v).into_owned(),
        None => "<null>".into(),
    }
}

/// Reads the batches of `dir` below `committed_end`.
pub fn read_prefix(dir: &Path, committed_end: u64) -> Prefix {
    let mut out = Prefix::default();
    if committed_end == 0 {
        return out;
    }
    let report = match log_inspect::inspect(dir) {
        Ok(r) => r,
        Err(e) => {
            out.damage = Some(format!("cannot scan {}: {e}", dir.display()));
            return out;
        }
    };
    let mut next = None;
    'segments: for (i, seg) in report.segments.iter().enumerate() {
        // FORMAT.md S2/S3: a segment's data never reaches the next segment's base. Batches
        // that do lie past a sealed segment's data end, cut off by a Raft truncation (the
        // new entries went to a new segment); they are not log data.
        let next_base = report
            .segments
            .get(i + 1)
            .map_or(u64::MAX, |s| s.base_offset);
        for b in &seg.batches {
            let h = &b.header;
            if h.base_offset >= committed_end {
                break 'segments;
            }
            if h.next_offset() > next_base {
                continue 'segments;
            }
            // Batches continue each other from the first segment's base: a batch missing in
            // the middle (a damaged one the scan skipped) is damage, not a shorter log.
            let want = next.unwrap_or(report.segments[0].base_offset);
            if h.base_offset != want {
                let findings: Vec<String> =
                    report.findings.iter().map(ToString::to_string).collect();
                out.damage = Some(format!(
                    "{}: expected a batch at {want}, found {} ({})",
                    seg.path.display(),
                    h.base_offset,
                    findings.join("; ")
                ));
                return out;
            }
            out.batches.push(BatchDigest {
                base: h.base_offset,
                last: h.last_offset(),
                term: h.term,
                crc: h.crc,
            });
            next = Some(h.next_offset());
            if h.attributes.is_control() {
                continue;
            }
            if let Err(e) = read_records(&seg.path, b, &mut out.records) {
                out.damage = Some(format!(
                    "{}: batch at {}: {e}",
                    seg.path.display(),
                    h.base_offset
                ));
                return out;
            }
        }
    }
    let held = next.unwrap_or(0);
    if held < committed_end {
        let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        out.damage = Some(format!(
            "the log holds batches up to {held}, below its commit end {committed_end}{}",
            if findings.is_empty() {
                String::new()
            } else {
                format!(" ({})", findings.join("; "))
            }
        ));
    }
    out
}

fn read_records(
    path: &Path,
    b: &log_inspect::BatchSummary,
    out: &mut Vec<(u64, String)>,
) -> Result<(), String> {
    // The scan bounded and CRC-checked this batch.
    let mut buf = vec![0u8; b.header.batch_len as usize];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut buf, b.position))
        .map_err(|e| e.to_string())?;
    let view =
        BatchView::parse(Bytes::from(buf), BatchLimits::default()).map_err(|e| e.to_string())?;
    let records = view.records().map_err(|e| e.to_string())?;
    for r in records.iter() {
        let r = r.map_err(|e| e.to_string())?;
        out.push((r.offset, show_value(r.value)));
    }
    Ok(())
}

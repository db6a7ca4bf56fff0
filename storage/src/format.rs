//! On-disk layouts other than the batches themselves: file names, the segment index, the log
//! meta file and the hard-state file. Byte diagrams are in `storage/FORMAT.md`; the offsets
//! below are chained constants checked at compile time.

use crate::error::Error;

/// Width of the zero-padded base offset in file names.
pub(crate) const NAME_DIGITS: usize = 20;

/// `<base:020>.log`
pub(crate) fn log_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}.log")
}

/// `<base:020>.index`
pub(crate) fn index_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}.index")
}

/// Name of the log meta file (holds the logical log start).
pub(crate) const META_NAME: &str = "log.meta";

/// What a directory entry is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment(u64),
    Index(u64),
    Temp,
    Meta,
    Other,
}

pub(crate) fn classify(name: &str) -> FileKind {
    if name.ends_with(".tmp") {
        return FileKind::Temp;
    }
    if name == META_NAME {
        return FileKind::Meta;
    }
    let parse = |stem: &str| {
        (stem.len() == NAME_DIGITS && stem.bytes().all(|b| b.is_ascii_digit()))
            .then(|| stem.parse::<u64>().ok())
            .flatten()
    };
    if let Some(stem) = name.strip_suffix(".log")
        && let Some(base) = parse(stem)
    {
        return FileKind::Segment(base);
    }
    if let Some(stem) = name.strip_suffix(".index")
        && let Some(base) = parse(stem)
    {
        return FileKind::Index(base);
    }
    FileKind::Other
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

// ---------------------------------------------------------------------------------------------
// Segment index: offset + time index in one file.

const INDEX_MAGIC: [u8; 4] = *b"FLIX";
const INDEX_VERSION: u8 = 1;
const IX_MAGIC_AT: usize = 0;
const IX_VERSION_AT: usize = IX_MAGIC_AT + 4;
const IX_SEALED_AT: usize = IX_VERSION_AT + 1;
const IX_RESERVED_AT: usize = IX_SEALED_AT + 1;
const IX_BASE_AT: usize = IX_RESERVED_AT + 2;
/// Length of the index header.
pub(crate) const IX_HEADER_LEN: usize = IX_BASE_AT + 8;
const _: () = assert!(IX_HEADER_LEN == 16);

const ENTRY_REL_AT: usize = 0;
const ENTRY_POS_AT: usize = ENTRY_REL_AT + 4;
const ENTRY_TS_AT: usize = ENTRY_POS_AT + 4;
/// Length of one index entry.
pub(crate) const ENTRY_LEN: usize = ENTRY_TS_AT + 8;
const _: () = assert!(ENTRY_LEN == 16);

const FT_DATA_LEN_AT: usize = 0;
const FT_NEXT_AT: usize = FT_DATA_LEN_AT + 8;
const FT_MAX_TS_AT: usize = FT_NEXT_AT + 8;
const FT_LAST_TERM_AT: usize = FT_MAX_TS_AT + 8;
const FT_COUNT_AT: usize = FT_LAST_TERM_AT + 8;
const FT_CRC_AT: usize = FT_COUNT_AT + 4;
/// Length of the index footer.
pub(crate) const IX_FOOTER_LEN: usize = FT_CRC_AT + 4;
const _: () = assert!(IX_FOOTER_LEN == 40);

/// One sparse index entry: the batch starting at byte `position` has base offset
/// `segment base + relative_offset`; `max_ts_before` is the largest `max_timestamp` of all
/// batches of the segment before `position` (`i64::MIN` if none), which makes it the time index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
    pub(crate) max_ts_before: i64,
}

/// A decoded index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFile {
    pub(crate) base: u64,
    /// Sealed: the segment is complete and `data_len` is its end. Not sealed: a checkpoint of
    /// the active segment; `data_len` is known durable, more may follow.
    pub(crate) sealed: bool,
    pub(crate) entries: Vec<IndexEntry>,
    pub(crate) data_len: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) last_term: u64,
}

impl IndexFile {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(IX_HEADER_LEN + self.entries.len() * ENTRY_LEN + IX_FOOTER_LEN);
        out.extend_from_slice(&INDEX_MAGIC);
        out.push(INDEX_VERSION);
        out.push(u8::from(self.sealed));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.base.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
            out.extend_from_slice(&e.max_ts_before.to_le_bytes());
        }
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&self.next_offset.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        out.extend_from_slice(&self.last_term.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks an index file for the segment at `base`. Any inconsistency is an
    /// error: the caller then rebuilds the index by scanning the segment.
    pub(crate) fn decode(buf: &[u8], base: u64, name: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadMetaFile {
            file: name.to_owned(),
            reason,
        };
        if buf.len() < IX_HEADER_LEN + IX_FOOTER_LEN
            || !(buf.len() - IX_HEADER_LEN - IX_FOOTER_LEN).is_multiple_of(ENTRY_LEN)
        {
            return Err(bad("bad length"));
        }
        let crc_at = buf.len() - 4;
        if crc32fast::hash(&buf[..crc_at]) != u32_at(buf, crc_at) {
            return Err(bad("checksum mismatch"));
        }
        if buf[IX_MAGIC_AT..IX_MAGIC_AT + 4] != INDEX_MAGIC || buf[IX_VERSION_AT] != INDEX_VERSION {
            return Err(bad("bad magic or version"));
        }
        if buf[IX_SEALED_AT] > 1 || u64_at(buf, IX_BASE_AT) != base {
            return Err(bad("bad flags or base offset"));
        }
        let footer = &buf[buf.len() - IX_FOOTER_LEN..];
        let count = (buf.len() - IX_HEADER_LEN - IX_FOOTER_LEN) / ENTRY_LEN;
        if u32_at(footer, FT_COUNT_AT) as usize != count {
            return Err(bad("entry count mismatch"));
        }
        let data_len = u64_at(footer, FT_DATA_LEN_AT);
        let next_offset = u64_at(footer, FT_NEXT_AT);
        if next_offset < base || (data_len == 0) != (next_offset == base) {
            return Err(bad("inconsistent end"));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let e = &buf[IX_HEADER_LEN + i * ENTRY_LEN..];
            let entry = IndexEntry {
                relative_offset: u32_at(e, ENTRY_REL_AT),
                position: u32_at(e, ENTRY_POS_AT),
                max_ts_before: u64_at(e, ENTRY_TS_AT) as i64,
            };
            let ordered = entries.last().is_none_or(|p: &IndexEntry| {
                p.relative_offset < entry.relative_offset && p.position < entry.position
            });
            if !ordered
                || u64::from(entry.position) >= data_len
                || base + u64::from(entry.relative_offset) >= next_offset
            {
                return Err(bad("entry out of order or past the end"));
            }
            entries.push(entry);
        }
        Ok(IndexFile {
            base,
            sealed: buf[IX_SEALED_AT] == 1,
            entries,
            data_len,
            next_offset,
            max_timestamp: u64_at(footer, FT_MAX_TS_AT) as i64,
            last_term: u64_at(footer, FT_LAST_TERM_AT),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Log meta file: the logical log start.

const META_MAGIC: [u8; 4] = *b"FLMT";
const META_VERSION: u8 = 1;
const MT_START_AT: usize = 8;
const MT_CRC_AT: usize = MT_START_AT + 8;
pub(crate) const META_LEN: usize = MT_CRC_AT + 4;
const _: () = assert!(META_LEN == 20);

pub(crate) fn encode_meta(log_start: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_LEN);
    out.extend_from_slice(&META_MAGIC);
    out.extend_from_slice(&[META_VERSION, 0, 0, 0]);
    out.extend_from_slice(&log_start.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub(crate) fn decode_meta(buf: &[u8]) -> Result<u64, Error> {
    let bad = |reason| Error::BadMetaFile {
        file: META_NAME.to_owned(),
        reason,
    };
    if buf.len() != META_LEN {
        return Err(bad("bad length"));
    }
    if crc32fast::hash(&buf[..MT_CRC_AT]) != u32_at(buf, MT_CRC_AT) {
        return Err(bad("checksum mismatch"));
    }
    if buf[..4] != META_MAGIC || buf[4] != META_VERSION {
        return Err(bad("bad magic or version"));
    }
    Ok(u64_at(buf, MT_START_AT))
}

// ---------------------------------------------------------------------------------------------
// Hard state.

const HS_MAGIC: [u8; 4] = *b"FLHS";
const HS_VERSION: u8 = 1;
const HS_VERSION_AT: usize = 4;
const HS_HAS_VOTE_AT: usize = HS_VERSION_AT + 1;
const HS_TERM_AT: usize = 8;
const HS_VOTE_AT: usize = HS_TERM_AT + 8;
const HS_COMMIT_AT: usize = HS_VOTE_AT + 8;
const HS_CRC_AT: usize = HS_COMMIT_AT + 8;
pub(crate) const HS_LEN: usize = HS_CRC_AT + 4;
const _: () = assert!(HS_LEN == 36);

/// Raft's hard state: what must survive a crash before a vote or an acknowledgement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Candidate voted for in `term`, if any.
    pub vote: Option<u64>,
    /// Commit index (offset of the last committed entry + 1, or however the caller counts it;
    /// the storage stores it verbatim).
    pub commit: u64,
}

impl HardState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HS_LEN);
        out.extend_from_slice(&HS_MAGIC);
        out.extend_from_slice(&[HS_VERSION, u8::from(self.vote.is_some()), 0, 0]);
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.vote.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.commit.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(buf: &[u8], name: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadMetaFile {
            file: name.to_owned(),
            reason,
        };
        if buf.len() != HS_LEN {
            return Err(bad("bad length"));
        }
        if crc32fast::hash(&buf[..HS_CRC_AT]) != u32_at(buf, HS_CRC_AT) {
            return Err(bad("checksum mismatch"));
        }
        if buf[..4] != HS_MAGIC || buf[HS_VERSION_AT] != HS_VERSION || buf[HS_HAS_VOTE_AT] > 1 {
            return Err(bad("bad magic, version or flags"));
        }
        Ok(HardState {
            term: u64_at(buf, HS_TERM_AT),
            vote: (buf[HS_HAS_VOTE_AT] == 1).then(|| u64_at(buf, HS_VOTE_AT)),
            commit: u64_at(buf, HS_COMMIT_AT),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Commit floor: two slots, overwritten in place by turns (FORMAT.md, "Commit floor").

const CF_MAGIC: [u8; 4] = *b"FLCF";
const CF_VERSION: u8 = 1;
const CF_SEQ_AT: usize = 8;
const CF_COMMIT_AT: usize = CF_SEQ_AT + 8;
const CF_CRC_AT: usize = CF_COMMIT_AT + 8;
/// Bytes of one slot.
pub(crate) const COMMIT_SLOT_LEN: usize = CF_CRC_AT + 4;
const _: () = assert!(COMMIT_SLOT_LEN == 28);
/// Slot `i` starts at `i * COMMIT_SLOT_STRIDE`: each in its own 512-byte sector, so a write
/// torn inside one slot never touches the other.
pub(crate) const COMMIT_SLOT_STRIDE: usize = 512;
/// The commit-floor file's length (two slots).
pub(crate) const COMMIT_FILE_LEN: usize = 2 * COMMIT_SLOT_STRIDE;

/// One slot: the sequence number (which slot is newest) and the commit.
pub(crate) fn encode_commit_slot(seq: u64, commit: u64) -> [u8; COMMIT_SLOT_LEN] {
    let mut out = [0u8; COMMIT_SLOT_LEN];
    out[..4].copy_from_slice(&CF_MAGIC);
    out[4] = CF_VERSION;
    out[CF_SEQ_AT..CF_COMMIT_AT].copy_from_slice(&seq.to_le_bytes());
    out[CF_COMMIT_AT..CF_CRC_AT].copy_from_slice(&commit.to_le_bytes());
    let crc = crc32fast::hash(&out[..CF_CRC_AT]);
    out[CF_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// (sequence number, commit) of a valid slot at the start of `buf`; `None` for a slot never
/// written, torn or damaged.
pub(crate) fn decode_commit_slot(buf: &[u8]) -> Option<(u64, u64)> {
    let slot = buf.get(..COMMIT_SLOT_LEN)?;
    if slot[..4] != CF_MAGIC || slot[4] != CF_VERSION || slot[5..8] != [0, 0, 0] {
        return None;
    }
    if crc32fast::hash(&slot[..CF_CRC_AT]) != u32_at(slot, CF_CRC_AT) {
        return None;
    }
    Some((u64_at(slot, CF_SEQ_AT), u64_at(slot, CF_COMMIT_AT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(log_name(42), "00000000000000000042.log");
        assert_eq!(classify(&log_name(42)), FileKind::Segment(42));
        assert_eq!(classify(&index_name(u64::MAX)), FileKind::Index(u64::MAX));
        assert_eq!(classify("42.log"), FileKind::Other);
        assert_eq!(classify("x.index.tmp"), FileKind::Temp);
    }

    #[test]
    fn index_round_trip_and_damage() {
        let ix = IndexFile {
            base: 100,
            sealed: true,
            entries: vec![
                IndexEntry {
                    relative_offset: 0,
                    position: 0,
                    max_ts_before: i64::MIN,
                },
                IndexEntry {
                    relative_offset: 7,
                    position: 4096,
                    max_ts_before: 55,
                },
            ],
            data_len: 9000,
            next_offset: 120,
            max_timestamp: 99,
            last_term: 3,
        };
        let bytes = ix.encode();
        assert_eq!(IndexFile::decode(&bytes, 100, "i").unwrap(), ix);
        assert!(IndexFile::decode(&bytes, 101, "i").is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(IndexFile::decode(&bad, 100, "i").is_err(), "byte {i}");
        }
        assert!(IndexFile::decode(&bytes[..bytes.len() - 1], 100, "i").is_err());
    }

    #[test]
    fn hard_state_and_meta_round_trip() {
        let hs = HardState {
            term: 9,
            vote: Some(2),
            commit: 77,
        };
        assert_eq!(HardState::decode(&hs.encode(), "h").unwrap(), hs);
        let none = HardState { vote: None, ..hs };
        assert_eq!(HardState::decode(&none.encode(), "h").unwrap(), none);
        let mut bad = hs.encode();
        bad[20] ^= 1;
        assert!(HardState::decode(&bad, "h").is_err());
        assert_eq!(decode_meta(&encode_meta(123)).unwrap(), 123);
        assert!(decode_meta(&encode_meta(123)[..19]).is_err());
    }
}

//! Small checksummed files next to the segments: the snapshot (log start) metadata and the
//! damage mark, which floe-storage's hard-state file has no room for.
//!
//! Layout (little-endian): `magic "FLSC"` | `payload_len u32` | payload | `crc32 u32` of all
//! that precedes it. Written atomically: `NAME.tmp`, fsync, rename, fsync the directory.

use std::io;
use std::sync::Arc;

use floe_storage::backend::Directory;

const MAGIC: &[u8; 4] = b"FLSC";
/// Largest payload accepted when reading (bounds the allocation).
pub(crate) const MAX_PAYLOAD: usize = 16 << 20;

/// Why a sidecar file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// I/O failed (a failed fsync is fatal for the partition: do not retry and carry on).
    #[error("I/O error on {file}")]
    Io {
        /// The file.
        file: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file is damaged or not a sidecar file.
    #[error("damaged {file}: {reason}")]
    Damaged {
        /// The file.
        file: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Replaces `name` with `payload`, atomically and durably.
pub(crate) fn store(
    dir: &Arc<dyn Directory>,
    name: &'static str,
    payload: &[u8],
) -> Result<(), SidecarError> {
    let io = |source| SidecarError::Io { file: name, source };
    let mut buf = Vec::with_capacity(payload.len() + 12);
    buf.extend_from_slice(MAGIC);
    let len = u32::try_from(payload.len()).map_err(|_| SidecarError::Damaged {
        file: name,
        reason: "payload too large",
    })?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let tmp = format!("{name}.tmp");
    let file = dir.create(&tmp).map_err(io)?;
    file.write_at(0, &buf).map_err(io)?;
    file.sync().map_err(io)?;
    dir.rename(&tmp, name).map_err(io)?;
    dir.sync().map_err(io)
}

/// The payload of `name`, `None` if the file does not exist.
pub(crate) fn load(
    dir: &Arc<dyn Directory>,
    name: &'static str,
) -> Result<Option<Vec<u8>>, SidecarError> {
    let damaged = |reason| SidecarError::Damaged { file: name, reason };
    let file = match dir.open(name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SidecarError::Io { file: name, source }),
    };
    let len = file
        .len()
        .map_err(|source| SidecarError::Io { file: name, source })?;
    let len = usize::try_from(len).map_err(|_| damaged("too large"))?;
    if !(12..=MAX_PAYLOAD + 12).contains(&len) {
        return Err(damaged("bad length"));
    }
    let mut buf = vec![0u8; len];
    file.read_at(0, &mut buf)
        .map_err(|source| SidecarError::Io { file: name, source })?;
    let (body, crc) = buf.split_at(len - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(damaged("checksum mismatch"));
    }
    if &body[..4] != MAGIC {
        return Err(damaged("bad magic"));
    }
    let payload_len = u32::from_le_bytes([body[4], body[5], body[6], body[7]]) as usize;
    if payload_len != body.len() - 8 {
        return Err(damaged("bad payload length"));
    }
    Ok(Some(body[8..].to_vec()))
}

/// A little-endian cursor over a payload that fails instead of panicking.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        let (head, tail) = self.rest.split_first_chunk::<8>()?;
        self.rest = tail;
        Some(u64::from_le_bytes(*head))
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (head, tail) = self.rest.split_first()?;
        self.rest = tail;
        Some(*head)
    }

    /// A `u32` count then that many `u64`s (bounded by the bytes present).
    pub(crate) fn ids(&mut self) -> Option<Vec<u64>> {
        let (head, tail) = self.rest.split_first_chunk::<4>()?;
        let n = u32::from_le_bytes(*head) as usize;
        if n > tail.len() / 8 {
            return None;
        }
        self.rest = tail;
        (0..n).map(|_| self.u64()).collect()
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }
}

pub(crate) fn put_ids(out: &mut Vec<u8>, ids: impl ExactSizeIterator<Item = u64>) {
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
}

/// The sidecar holding a replica's bootstrap membership (see [`bootstrap_membership`]).
const BOOTSTRAP_FILE: &str = "raft.bootstrap";

/// The bootstrap membership to open this partition directory with: the one recorded in it,
/// or, for a directory that has none yet (a new replica), `decide()`'s, recorded durably
/// first. Recording it matters for a replica that joined an existing group (bootstrap: no
/// members, so it never campaigns on an empty log): were it to restart before it received
/// anything, the partition's *current* replica set would otherwise make it a founding voter
/// of a group that already has a log, and two empty founders could elect each other.
pub fn bootstrap_membership(
    dir: &Arc<dyn Directory>,
    decide: impl FnOnce() -> floe_raft::Membership,
) -> Result<floe_raft::Membership, SidecarError> {
    let damaged = |reason| SidecarError::Damaged {
        file: BOOTSTRAP_FILE,
        reason,
    };
    if let Some(payload) = load(dir, BOOTSTRAP_FILE)? {
        let mut r = Reader::new(&payload);
        let voters = r.ids().ok_or(damaged("truncated voters"))?;
        if !r.rest().is_empty() {
            return Err(damaged("trailing bytes"));
        }
        return Ok(floe_raft::Membership::new(
            voters.into_iter().map(floe_raft::NodeId),
            [],
        ));
    }
    let m = decide();
    let mut payload = Vec::new();
    put_ids(&mut payload, m.voters().iter().map(|n| n.0));
    store(dir, BOOTSTRAP_FILE, &payload)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_storage::backend::MemDir;

    #[test]
    fn round_trip_and_damage() {
        let dir: Arc<dyn Directory> = Arc::new(MemDir::new());
        assert!(load(&dir, "x").expect("load").is_none());
        store(&dir, "x", b"hello").expect("store");
        assert_eq!(
            load(&dir, "x").expect("load").as_deref(),
            Some(&b"hello"[..])
        );
        // Flip one payload byte: the checksum catches it.
        let f = dir.open("x").expect("open");
        f.write_at(9, b"E").expect("write");
        assert!(matches!(
            load(&dir, "x"),
            Err(SidecarError::Damaged {
                reason: "checksum mismatch",
                ..
            })
        ));
        f.set_len(3).expect("truncate");
        assert!(matches!(load(&dir, "x"), Err(SidecarError::Damaged { .. })));
    }

    #[test]
    fn the_bootstrap_membership_is_decided_once_and_kept() {
        use floe_raft::{Membership, NodeId};
        let dir: Arc<dyn Directory> = Arc::new(MemDir::new());
        let founders = Membership::new([NodeId(1), NodeId(2), NodeId(3)], []);
        let first = bootstrap_membership(&dir, || founders.clone()).expect("decide");
        assert_eq!(first, founders);
        // Later opens read the record, whatever the caller would decide now.
        let again = bootstrap_membership(&dir, Membership::default).expect("read");
        assert_eq!(again, founders);
        // A joiner's (empty) decision is kept just the same.
        let joiner: Arc<dyn Directory> = Arc::new(MemDir::new());
        bootstrap_membership(&joiner, Membership::default).expect("decide");
        let again = bootstrap_membership(&joiner, || founders.clone()).expect("read");
        assert_eq!(again, Membership::default());
        // Damage is a typed error, never a guess.
        let f = dir.open(BOOTSTRAP_FILE).expect("open");
        f.set_len(5).expect("truncate");
        assert!(matches!(
            bootstrap_membership(&dir, Membership::default),
            Err(SidecarError::Damaged { .. })
        ));
    }

    #[test]
    fn reader_bounds_counts() {
        let mut buf = Vec::new();
        put_ids(&mut buf, [1u64, 2].into_iter());
        let mut r = Reader::new(&buf);
        assert_eq!(r.ids(), Some(vec![1, 2]));
        assert!(r.rest().is_empty());
        // A count promising more ids than bytes present is refused, not allocated.
        let mut r = Reader::new(&[255, 255, 255, 255, 0]);
        assert_eq!(r.ids(), None);
    }
}

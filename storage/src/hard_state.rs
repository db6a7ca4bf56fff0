//! The Raft hard-state file: written atomically, checked by CRC when read; and beside it the
//! commit floor, overwritten in place (see [`HardStateFile::store_commit`]).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{BackendFile, Directory, read_all, write_atomic};
use crate::error::{Error, IoOp, Result, failure, io_err};
pub use crate::format::HardState;
use crate::format::{COMMIT_FILE_LEN, COMMIT_SLOT_STRIDE, decode_commit_slot, encode_commit_slot};

/// A hard-state file in a directory (for example `hardstate` next to the segments).
///
/// `store` writes `name.tmp`, fsyncs it, renames it over `name` and fsyncs the directory, so a
/// crash leaves the old or the new state, never a mix; a damaged file is a typed error at
/// `load`, never a silently wrong term or vote.
///
/// A change of the commit alone (the common case: it moves with every replicated batch) need
/// not pay for a new file, a rename and a directory fsync: `store_commit` overwrites one of two
/// slots of `name.commit` in place and fdatasyncs it (FORMAT.md, "Commit floor"). `load`
/// returns the larger of the two commits.
///
/// ```
/// use std::sync::Arc;
/// use floe_storage::{HardState, HardStateFile, backend::MemDir};
/// let hs = HardStateFile::new(Arc::new(MemDir::new()), "hardstate");
/// assert_eq!(hs.load()?, None);
/// let state = HardState { term: 3, vote: Some(1), commit: 40 };
/// hs.store(&state)?;
/// assert_eq!(hs.load()?, Some(state));
/// hs.store_commit(55)?;
/// assert_eq!(hs.load()?, Some(HardState { commit: 55, ..state }));
/// # Ok::<(), floe_storage::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HardStateFile {
    dir: Arc<dyn Directory>,
    name: String,
    commit_name: String,
    /// The commit-floor file once opened (or created) by `store_commit`, shared by clones.
    floor: Arc<Mutex<Option<Floor>>>,
}

/// The open commit-floor file and the sequence number of its newest valid slot (the next
/// store writes the other slot, so the newest durable one is never overwritten).
#[derive(Debug)]
struct Floor {
    file: Arc<dyn BackendFile>,
    seq: u64,
}

impl HardStateFile {
    /// The hard-state file `name` in `dir` (not touched until `load` or `store`); its commit
    /// floor is `name.commit`.
    pub fn new(dir: Arc<dyn Directory>, name: impl Into<String>) -> Self {
        let name = name.into();
        HardStateFile {
            dir,
            commit_name: format!("{name}.commit"),
            name,
            floor: Arc::new(Mutex::new(None)),
        }
    }

    fn floor(&self) -> MutexGuard<'_, Option<Floor>> {
        // A panic while holding the lock cannot leave the slot state half-updated (the
        // sequence number moves only after a successful sync); carry on.
        self.floor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored state, `None` if none was ever stored, [`Error::BadMetaFile`] if the
    /// hard-state file is damaged. Its commit is the larger of the hard-state file's and the
    /// commit floor's (a floor without a hard-state file: term 0, no vote).
    pub fn load(&self) -> Result<Option<HardState>> {
        let state = match self.dir.open(&self.name) {
            Ok(file) => {
                let buf = read_all(&*file).map_err(|e| io_err(IoOp::Read, &self.name, e))?;
                Some(HardState::decode(&buf, &self.name)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(IoOp::Open, &self.name, e)),
        };
        let floor = self.read_floor()?.map(|(_, commit)| commit);
        Ok(match (state, floor) {
            (Some(s), Some(c)) => Some(HardState {
                commit: s.commit.max(c),
                ..s
            }),
            (Some(s), None) => Some(s),
            (None, Some(c)) => Some(HardState {
                commit: c,
                ..HardState::default()
            }),
            (None, None) => None,
        })
    }

    /// The commit-floor file with the sequence number of its newest valid slot, and that
    /// slot's commit. `None`
    /// when there is no such file, or no valid slot in it (a floor that cannot be read only
    /// falls back to the hard-state file's commit, which is never above it: a lower commit is
    /// conservative, never wrong).
    fn read_floor(&self) -> Result<Option<(Floor, u64)>> {
        let file = match self.dir.open(&self.commit_name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(IoOp::Open, &self.commit_name, e)),
        };
        let len = file
            .len()
            .map_err(|e| io_err(IoOp::Read, &self.commit_name, e))?;
        if len != COMMIT_FILE_LEN as u64 {
            return Ok(None);
        }
        let mut buf = vec![0u8; COMMIT_FILE_LEN];
        file.read_at(0, &mut buf)
            .map_err(|e| io_err(IoOp::Read, &self.commit_name, e))?;
        let newest = (0..2)
            .filter_map(|i| decode_commit_slot(&buf[i * COMMIT_SLOT_STRIDE..]))
            .max_by_key(|&(seq, _)| seq);
        Ok(newest.map(|(seq, commit)| (Floor { file, seq }, commit)))
    }

    /// Replaces the stored state atomically and durably. A failed fsync is returned as
    /// [`Error::Failed`] (fatal: do not vote or acknowledge; restart); running out of space as
    /// [`Error::NoSpace`], with the old state intact.
    pub fn store(&self, state: &HardState) -> Result<()> {
        write_atomic(&*self.dir, &self.name, &state.encode(), true).map_err(|(op, e)| {
            if matches!(op, IoOp::SyncData | IoOp::SyncDir) {
                Error::Failed(failure(op, &e))
            } else {
                io_err(op, &self.name, e)
            }
        })
    }

    /// Durably records that the commit is at least `commit`, keeping the term and vote of
    /// the last [`HardStateFile::store`]: one in-place write of a 28-byte slot and one
    /// fdatasync, instead of a new file, a rename and a directory fsync. The two slots take
    /// turns, so a write torn by a crash leaves the previous floor readable (the torn one was
    /// never reported durable). Errors as for `store`.
    pub fn store_commit(&self, commit: u64) -> Result<()> {
        let mut floor = self.floor();
        if floor.is_none() {
            *floor = self.read_floor()?.map(|(f, _)| f);
        }
        let Some(f) = floor.as_mut() else {
            // No usable floor file yet: create it whole, atomically (a crash leaves none or
            // all of it), with its first slot.
            let mut buf = vec![0u8; COMMIT_FILE_LEN];
            let seq = 1u64;
            let at = slot_at(seq);
            buf[at..at + crate::format::COMMIT_SLOT_LEN]
                .copy_from_slice(&encode_commit_slot(seq, commit));
            write_atomic(&*self.dir, &self.commit_name, &buf, true).map_err(|(op, e)| {
                if matches!(op, IoOp::SyncData | IoOp::SyncDir) {
                    Error::Failed(failure(op, &e))
                } else {
                    io_err(op, &self.commit_name, e)
                }
            })?;
            let file = self
                .dir
                .open(&self.commit_name)
                .map_err(|e| io_err(IoOp::Open, &self.commit_name, e))?;
            *floor = Some(Floor { file, seq });
            return Ok(());
        };
        let seq = f.seq + 1;
        f.file
            .write_at(slot_at(seq) as u64, &encode_commit_slot(seq, commit))
            .map_err(|e| io_err(IoOp::WriteMeta, &self.commit_name, e))?;
        f.file
            .sync()
            .map_err(|e| Error::Failed(failure(IoOp::SyncData, &e)))?;
        f.seq = seq;
        Ok(())
    }
}

/// Where the slot of sequence number `seq` lives.
fn slot_at(seq: u64) -> usize {
    (seq % 2) as usize * COMMIT_SLOT_STRIDE
}

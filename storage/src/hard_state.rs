//! The Raft hard-state file: written atomically, checked by CRC when read.

use std::sync::Arc;

use crate::backend::{Directory, read_all, write_atomic};
use crate::error::{Error, IoOp, Result, failure, io_err};
pub use crate::format::HardState;

/// A hard-state file in a directory (for example `hardstate` next to the segments).
///
/// `store` writes `name.tmp`, fsyncs it, renames it over `name` and fsyncs the directory, so a
/// crash leaves the old or the new state, never a mix; a damaged file is a typed error at
/// `load`, never a silently wrong term or vote.
///
/// ```
/// use std::sync::Arc;
/// use floe_storage::{HardState, HardStateFile, backend::MemDir};
/// let hs = HardStateFile::new(Arc::new(MemDir::new()), "hardstate");
/// assert_eq!(hs.load()?, None);
/// let state = HardState { term: 3, vote: Some(1), commit: 40 };
/// hs.store(&state)?;
/// assert_eq!(hs.load()?, Some(state));
/// # Ok::<(), floe_storage::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HardStateFile {
    dir: Arc<dyn Directory>,
    name: String,
}

impl HardStateFile {
    /// The hard-state file `name` in `dir` (not touched until `load` or `store`).
    pub fn new(dir: Arc<dyn Directory>, name: impl Into<String>) -> Self {
        HardStateFile {
            dir,
            name: name.into(),
        }
    }

    /// The stored state, `None` if none was ever stored, [`Error::BadMetaFile`] if damaged.
    pub fn load(&self) -> Result<Option<HardState>> {
        let file = match self.dir.open(&self.name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(IoOp::Open, &self.name, e)),
        };
        let buf = read_all(&*file).map_err(|e| io_err(IoOp::Read, &self.name, e))?;
        HardState::decode(&buf, &self.name).map(Some)
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
}

//! The I/O seam: one file ([`BackendFile`]) and one directory ([`Directory`]).
//!
//! The log never touches `std::fs` directly; it goes through these two traits, so the same code
//! runs on real files with mmap reads ([`FileDir`]), in memory ([`MemDir`]) and on the
//! fault-injecting test backend ([`FaultDir`]).
//!
//! # To ensure correctness, an implementation must
//! - make `write_at` visible to later `read_at`/`read_bytes` calls at once (page-cache semantics);
//! - make data durable only through `sync`, and directory entries (create, remove, rename) only
//!   through [`Directory::sync`];
//! - keep every `Bytes` returned by `read_bytes` valid and unchanged by later *appends* for as
//!   long as it lives (the file backend returns slices of a shared read-only mapping). The log
//!   in turn promises never to shrink a file below bytes it has served (see FORMAT.md, "mmap
//!   safety"), and never to overwrite bytes it has served.

mod fault;
mod file;
mod memory;

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::IoOp;

pub use fault::{CrashMode, FaultDir};
pub use file::FileDir;
pub use memory::MemDir;

/// One file of a log directory.
pub trait BackendFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads exactly `buf.len()` bytes at `pos` (`UnexpectedEof` past the end).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Returns `len` bytes at `pos` as `Bytes`: zero-copy over a mapping where the backend has
    /// one, a copy otherwise. `UnexpectedEof` past the end.
    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Writes all of `data` at `pos`, growing the file if needed. On error a prefix of `data`
    /// may have been written.
    fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()>;
    /// Sets the length (truncates or zero-extends).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync). An error here is fatal for the
    /// caller: the data may be lost and a retry may falsely succeed.
    fn sync(&self) -> io::Result<()>;
}

/// A flat directory of files: one partition log, or a hard-state location.
pub trait Directory: Send + Sync + Debug {
    /// Creates `name` empty (truncating it if it exists).
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>>;
    /// Opens the existing `name` (`NotFound` otherwise).
    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>>;
    /// Removes `name`. Open handles (and mappings) stay readable.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// The names of all files, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Makes directory entries (create, remove, rename) durable.
    fn sync(&self) -> io::Result<()>;
}

/// Replaces `name` atomically with `data`: write `name.tmp`, sync it, rename over `name`, and
/// sync the directory if `sync_dir`. A crash leaves either the old or the new content. On error
/// returns which step failed, so callers can tell a failed sync (fatal) from the rest.
pub(crate) fn write_atomic(
    dir: &dyn Directory,
    name: &str,
    data: &[u8],
    sync_dir: bool,
) -> Result<(), (IoOp, io::Error)> {
    let tmp = format!("{name}.tmp");
    let result = (|| {
        let file = dir.create(&tmp).map_err(|e| (IoOp::Create, e))?;
        file.write_at(0, data).map_err(|e| (IoOp::WriteMeta, e))?;
        file.sync().map_err(|e| (IoOp::SyncData, e))?;
        dir.rename(&tmp, name).map_err(|e| (IoOp::Rename, e))?;
        if sync_dir {
            dir.sync().map_err(|e| (IoOp::SyncDir, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is also removed at the next open.
        let _ = dir.remove(&tmp);
    }
    result
}

/// Reads a whole (small) file.
pub(crate) fn read_all(file: &dyn BackendFile) -> io::Result<Vec<u8>> {
    let len = file.len()?;
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_at(0, &mut buf)?;
    Ok(buf)
}

fn eof(pos: u64, len: usize, file_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at {pos} past end {file_len}"),
    )
}

/// Bounds-checks a read of `len` bytes at `pos` in a file of `file_len` bytes and returns the
/// byte range.
pub(crate) fn check_range(
    pos: u64,
    len: usize,
    file_len: u64,
) -> io::Result<std::ops::Range<usize>> {
    let end = pos
        .checked_add(len as u64)
        .filter(|&e| e <= file_len)
        .ok_or_else(|| eof(pos, len, file_len))?;
    Ok(pos as usize..end as usize)
}

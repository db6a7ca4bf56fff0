//! The real backend: `std::fs` files, writes with `pwrite`, reads through a shared read-only
//! `mmap` (memmap2) handed out as zero-copy `Bytes`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::Mmap;

use super::{BackendFile, Directory, check_range};

/// A real directory on disk.
///
/// ```
/// use floe_storage::backend::{Directory, FileDir};
/// let tmp = tempfile::tempdir().unwrap();
/// let dir = FileDir::open(tmp.path().join("p0")).unwrap();
/// let f = dir.create("x").unwrap();
/// f.write_at(0, b"abc").unwrap();
/// f.sync().unwrap();
/// assert_eq!(&f.read_bytes(0, 3).unwrap()[..], b"abc");
/// ```
#[derive(Debug, Clone)]
pub struct FileDir {
    path: PathBuf,
}

impl FileDir {
    /// Opens (creating it and its parents if needed) the directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path)?;
        Ok(FileDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One open file plus its current read mapping.
#[derive(Debug)]
struct RealFile {
    file: File,
    /// The whole-file mapping as `Bytes` (its owner is the `Mmap`), replaced by a larger one when
    /// a read goes past it. Old mappings live on for as long as some `Bytes` refers to them.
    map: Mutex<Option<Bytes>>,
}

impl RealFile {
    fn new(file: File) -> Self {
        RealFile {
            file,
            map: Mutex::new(None),
        }
    }
}

impl BackendFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut map = self
            .map
            .lock()
            .map_err(|_| io::Error::other("mapping lock poisoned"))?;
        if let Some(m) = map.as_ref()
            && let Ok(range) = check_range(pos, len, m.len() as u64)
        {
            return Ok(m.slice(range));
        }
        let file_len = self.len()?;
        let range = check_range(pos, len, file_len)?;
        // SAFETY: the mapping is read-only and private to this process's use of the log. The
        // log's contract (FORMAT.md, "mmap safety") is that it never shrinks a file below
        // bytes it has served and never overwrites served bytes, so every slice handed out
        // stays backed by the file and unchanged for as long as it lives. Pages past the
        // logical end are never read through this mapping.
        let mmap = unsafe { Mmap::map(&self.file)? };
        let whole = Bytes::from_owner(mmap);
        let out = whole.slice(range);
        *map = Some(whole);
        Ok(out)
    }

    fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Directory for FileDir {
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(RealFile::new(file)))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(RealFile::new(file)))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path.join(from), self.path.join(to))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn sync(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
}

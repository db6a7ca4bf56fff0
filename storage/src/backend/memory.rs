//! In-memory backend: files are byte vectors, `sync` is a no-op. For tests and simulation.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::{BackendFile, Directory, check_range};

/// A directory held in memory. Cloning shares the same files.
///
/// ```
/// use floe_storage::backend::{Directory, MemDir};
/// let dir = MemDir::new();
/// let f = dir.create("a").unwrap();
/// f.write_at(0, b"hello").unwrap();
/// assert_eq!(&dir.open("a").unwrap().read_bytes(1, 3).unwrap()[..], b"ell");
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemDir {
    files: Arc<Mutex<BTreeMap<String, Arc<MemFile>>>>,
}

impl MemDir {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Debug, Default)]
struct MemFile {
    data: RwLock<Vec<u8>>,
}

fn lock_err() -> io::Error {
    io::Error::other("memory backend lock poisoned")
}

impl BackendFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().map_err(|_| lock_err())?.len() as u64)
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.data.read().map_err(|_| lock_err())?;
        let range = check_range(pos, buf.len(), data.len() as u64)?;
        buf.copy_from_slice(&data[range]);
        Ok(())
    }

    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let data = self.data.read().map_err(|_| lock_err())?;
        let range = check_range(pos, len, data.len() as u64)?;
        Ok(Bytes::copy_from_slice(&data[range]))
    }

    fn write_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        let mut data = self.data.write().map_err(|_| lock_err())?;
        let pos = usize::try_from(pos).map_err(|_| io::Error::other("position too large"))?;
        let end = pos + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[pos..end].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.data.write().map_err(|_| lock_err())?.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl Directory for MemDir {
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let file = Arc::new(MemFile::default());
        self.files
            .lock()
            .map_err(|_| lock_err())?
            .insert(name.to_owned(), file.clone());
        Ok(file)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let files = self.files.lock().map_err(|_| lock_err())?;
        let file = files.get(name).ok_or_else(|| not_found(name))?;
        Ok(file.clone())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut files = self.files.lock().map_err(|_| lock_err())?;
        files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.lock().map_err(|_| lock_err())?;
        let file = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_owned(), file);
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .lock()
            .map_err(|_| lock_err())?
            .keys()
            .cloned()
            .collect())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

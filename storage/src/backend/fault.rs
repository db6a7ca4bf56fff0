//! The fault-injecting test backend.
//!
//! Every file (inode) keeps two images: `live` (what reads see: the page cache) and `durable`
//! (what survived the last `sync`), plus the list of writes since that sync. Directory entries
//! likewise have a live and a durable namespace. [`FaultDir::crash`] builds the directory a
//! restarted process would find, according to a [`CrashMode`]. Faults: EIO on write or on sync,
//! ENOSPC after a byte budget, bit flips (media corruption, in both images).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{BackendFile, Directory, check_range};

/// What survives a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Process kill: the page cache survives, every write and directory change is kept.
    KeepAll,
    /// Power loss: only synced data and synced directory entries survive.
    DropUnsynced,
    /// Power loss with torn writes: per file, a random prefix of the unsynced writes survives,
    /// the last of them cut at a random byte; likewise a random prefix of the unsynced directory
    /// operations. Deterministic for a given seed.
    Torn {
        /// Seed of the choices.
        seed: u64,
    },
}

#[derive(Debug, Clone)]
enum DataOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum NsOp {
    Link(String, u64),
    Unlink(String),
    Rename(String, String),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<DataOp>,
}

#[derive(Debug, Clone, Default)]
struct Faults {
    fail_writes: bool,
    fail_syncs: bool,
    space_left: Option<u64>,
    syncs: u64,
}

#[derive(Debug, Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    ns_pending: Vec<NsOp>,
    faults: Faults,
}

fn apply(image: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write(pos, data) => {
            let pos = *pos as usize;
            let end = pos + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[pos..end].copy_from_slice(data);
        }
        DataOp::SetLen(len) => image.resize(*len as usize, 0),
    }
}

fn apply_ns(ns: &mut BTreeMap<String, u64>, op: &NsOp) {
    match op {
        NsOp::Link(name, ino) => {
            ns.insert(name.clone(), *ino);
        }
        NsOp::Unlink(name) => {
            ns.remove(name);
        }
        NsOp::Rename(from, to) => {
            if let Some(ino) = ns.remove(from) {
                ns.insert(to.clone(), ino);
            }
        }
    }
}

/// splitmix64: a tiny deterministic generator for crash choices.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A directory in memory with fault injection and crash simulation. Cloning shares the state.
///
/// ```
/// use floe_storage::backend::{CrashMode, Directory, FaultDir};
/// let dir = FaultDir::new();
/// let f = dir.create("seg").unwrap();
/// dir.sync().unwrap();
/// f.write_at(0, b"durable").unwrap();
/// f.sync().unwrap();
/// f.write_at(7, b" and lost").unwrap();
/// let after = dir.crash(CrashMode::DropUnsynced);
/// let f = after.open("seg").unwrap();
/// assert_eq!(f.len().unwrap(), 7);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FaultDir {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct FaultFile {
    state: Arc<Mutex<State>>,
    ino: u64,
}

/// EIO with its OS code, so callers see `raw_os_error() == Some(5)` like a real disk error.
fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl FaultDir {
    /// An empty directory with no faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// While set, every `write_at` fails with EIO and writes nothing.
    pub fn fail_writes(&self, on: bool) {
        self.lock().faults.fail_writes = on;
    }

    /// While set, every file and directory `sync` fails with EIO and makes nothing durable.
    pub fn fail_syncs(&self, on: bool) {
        self.lock().faults.fail_syncs = on;
    }

    /// After `bytes` more written bytes, writes fail with ENOSPC (the part that fits is written,
    /// like a short write). `None` lifts the limit ("space freed").
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.lock().faults.space_left = bytes;
    }

    /// How many successful syncs (file or directory) happened so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().faults.syncs
    }

    /// Flips one bit of `name` at byte `pos`, in both the live and the durable image (media
    /// corruption). Returns false if the file or byte does not exist.
    pub fn flip_bit(&self, name: &str, pos: u64, bit: u8) -> bool {
        let mut st = self.lock();
        let Some(&ino) = st.live.get(name) else {
            return false;
        };
        let inode = st
            .inodes
            .get_mut(&ino)
            .expect("live name points to an inode");
        let mut hit = false;
        for image in [&mut inode.live, &mut inode.durable] {
            if let Some(b) = image.get_mut(pos as usize) {
                *b ^= 1 << (bit % 8);
                hit = true;
            }
        }
        hit
    }

    /// The live content of `name`, if it exists.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.live.get(name)?;
        Some(st.inodes[ino].live.clone())
    }

    /// Creates (or replaces) `name` with `data`, durable at once, directory entry included.
    pub fn put_durable(&self, name: &str, data: &[u8]) {
        let mut st = self.lock();
        let ino = st.next_ino;
        st.next_ino += 1;
        st.inodes.insert(
            ino,
            Inode {
                live: data.to_vec(),
                durable: data.to_vec(),
                pending: Vec::new(),
            },
        );
        st.live.insert(name.to_owned(), ino);
        st.durable.insert(name.to_owned(), ino);
    }

    /// The directory a restarted process finds after a crash now. Faults are not carried over;
    /// the old handles keep working on the old state (drop them).
    pub fn crash(&self, mode: CrashMode) -> FaultDir {
        let st = self.lock();
        let mut rng = Rng(match mode {
            CrashMode::Torn { seed } => seed,
            _ => 0,
        });
        let mut ns = st.durable.clone();
        let keep_ns = match mode {
            CrashMode::KeepAll => st.ns_pending.len(),
            CrashMode::DropUnsynced => 0,
            CrashMode::Torn { .. } => rng.below(st.ns_pending.len() + 1),
        };
        for op in &st.ns_pending[..keep_ns] {
            apply_ns(&mut ns, op);
        }
        let mut inodes = BTreeMap::new();
        for &ino in ns.values() {
            let old = &st.inodes[&ino];
            let mut image = old.durable.clone();
            match mode {
                CrashMode::KeepAll => image = old.live.clone(),
                CrashMode::DropUnsynced => {}
                CrashMode::Torn { .. } => {
                    let k = rng.below(old.pending.len() + 1);
                    for op in &old.pending[..k] {
                        apply(&mut image, op);
                    }
                    if let Some(DataOp::Write(pos, data)) = old.pending.get(k) {
                        let cut = rng.below(data.len());
                        apply(&mut image, &DataOp::Write(*pos, data[..cut].to_vec()));
                    }
                }
            }
            inodes.insert(
                ino,
                Inode {
                    live: image.clone(),
                    durable: image,
                    pending: Vec::new(),
                },
            );
        }
        FaultDir {
            state: Arc::new(Mutex::new(State {
                inodes,
                next_ino: st.next_ino,
                live: ns.clone(),
                durable: ns,
                ns_pending: Vec::new(),
                faults: Faults::default(),
            })),
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding this lock is a test bug; keep going with the data as it is.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl FaultFile {
    fn with<T>(&self, f: impl FnOnce(&mut Inode, &mut Faults) -> io::Result<T>) -> io::Result<T> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let inode = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("inode vanished"))?;
        f(inode, &mut st.faults)
    }
}

impl BackendFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|i, _| Ok(i.live.len() as u64))
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(|i, _| {
            let range = check_range(pos, buf.len(), i.live.len() as u64)?;
            buf.copy_from_slice(&i.live[range]);
            Ok(())
        })
    }

    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.with(|i, _| {
            let range = check_range(pos, len, i.live.len() as u64)?;
            Ok(Bytes::copy_from_slice(&i.live[range]))
        })
    }

    fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        self.with(|i, faults| {
            if faults.fail_writes {
                return Err(eio());
            }
            let (fits, full) = match faults.space_left {
                Some(left) if (data.len() as u64) > left => (left as usize, false),
                _ => (data.len(), true),
            };
            if let Some(left) = faults.space_left.as_mut() {
                *left -= fits as u64;
            }
            if fits > 0 {
                let op = DataOp::Write(pos, data[..fits].to_vec());
                apply(&mut i.live, &op);
                i.pending.push(op);
            }
            if full {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(28))
            }
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|i, _| {
            let op = DataOp::SetLen(len);
            apply(&mut i.live, &op);
            i.pending.push(op);
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.with(|i, faults| {
            if faults.fail_syncs {
                return Err(eio());
            }
            faults.syncs += 1;
            i.durable = i.live.clone();
            i.pending.clear();
            Ok(())
        })
    }
}

impl Directory for FaultDir {
    fn create(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let mut st = self.lock();
        let ino = st.next_ino;
        st.next_ino += 1;
        st.inodes.insert(ino, Inode::default());
        st.live.insert(name.to_owned(), ino);
        st.ns_pending.push(NsOp::Link(name.to_owned(), ino));
        Ok(Arc::new(FaultFile {
            state: self.state.clone(),
            ino,
        }))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn BackendFile>> {
        let st = self.lock();
        let ino = *st.live.get(name).ok_or_else(|| not_found(name))?;
        Ok(Arc::new(FaultFile {
            state: self.state.clone(),
            ino,
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut st = self.lock();
        st.live.remove(name).ok_or_else(|| not_found(name))?;
        st.ns_pending.push(NsOp::Unlink(name.to_owned()));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.live.remove(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_owned(), ino);
        st.ns_pending
            .push(NsOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().live.keys().cloned().collect())
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.faults.fail_syncs {
            return Err(eio());
        }
        st.faults.syncs += 1;
        st.durable = st.live.clone();
        st.ns_pending.clear();
        Ok(())
    }
}

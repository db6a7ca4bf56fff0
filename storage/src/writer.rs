//! Group commit from many threads: [`LogWriter`] owns the log on one std thread, drains every
//! queued request, writes them all, fsyncs once, then answers each caller with its offsets and
//! the durable end. Readers share the log through [`LogReader`] and are not blocked by the
//! fsync (it runs outside the lock).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use floe_protocol::batch::BatchHeader;

use crate::config::FsyncPolicy;
use crate::error::{Error, Result};
use crate::log::{AppendInfo, Log, ReadBatches};

/// The answer to one append through the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the batch landed.
    pub info: AppendInfo,
    /// The durable end when the answer was sent. Under `FsyncPolicy::Always` it is at least
    /// `info.next_offset`: the batch is on disk.
    pub durable_end: u64,
}

/// A pending append; [`PendingAppend::wait`] blocks until its group is written (and synced,
/// under `Always`).
#[derive(Debug)]
pub struct PendingAppend {
    rx: Receiver<Result<Appended>>,
}

impl PendingAppend {
    /// Waits for the answer.
    pub fn wait(self) -> Result<Appended> {
        self.rx.recv().map_err(|_| Error::WriterStopped)?
    }
}

type Job = Box<dyn FnOnce(&mut Log) + Send>;

enum Request {
    Append {
        batch: Vec<u8>,
        /// `Some(term)`: leader append (stamp); `None`: replicated batch.
        term: Option<u64>,
        reply: SyncSender<Result<Appended>>,
    },
    Exec(Job),
}

/// Clock for the writer thread (the driver may read time; the log's logic never does).
pub type Clock = Box<dyn Fn() -> u64 + Send>;

/// The system clock in ms since the epoch.
pub fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Owns a [`Log`] on a writer thread and commits appends in groups.
///
/// ```
/// use std::sync::Arc;
/// use floe_storage::{Log, LogConfig, LogWriter, OpenOptions, backend::MemDir};
/// let log = Log::open(Arc::new(MemDir::new()), LogConfig::default(), OpenOptions::default())?;
/// let writer = LogWriter::spawn(log);
/// let pending: Vec<_> = (0..10)
///     .map(|_| writer.append_async(floe_storage::testing::batch(1, b"r", 0), 1))
///     .collect::<Result<_, _>>()?;
/// for p in pending {
///     let done = p.wait()?;
///     assert!(done.durable_end >= done.info.next_offset); // FsyncPolicy::Always
/// }
/// assert_eq!(writer.reader().log_end()?, 10);
/// let log = writer.shutdown()?;
/// assert_eq!(log.durable_end(), 10);
/// # Ok::<(), floe_storage::Error>(())
/// ```
#[derive(Debug)]
pub struct LogWriter {
    tx: Option<Sender<Request>>,
    shared: Arc<RwLock<Log>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Append { batch, term, .. } => f
                .debug_struct("Append")
                .field("len", &batch.len())
                .field("term", term)
                .finish(),
            Request::Exec(_) => f.write_str("Exec"),
        }
    }
}

/// Most requests handled in one group.
const MAX_GROUP: usize = 4096;

impl LogWriter {
    /// Starts the writer thread with the system clock.
    pub fn spawn(log: Log) -> Self {
        Self::spawn_with_clock(log, Box::new(system_now_ms))
    }

    /// Starts the writer thread with the given clock (ms).
    pub fn spawn_with_clock(log: Log, clock: Clock) -> Self {
        let shared = Arc::new(RwLock::new(log));
        let (tx, rx) = mpsc::channel();
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("floe-log-writer".into())
            .spawn(move || run(inner, rx, clock))
            .expect("spawning the log writer thread");
        LogWriter {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        }
    }

    fn send(&self, req: Request) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or(Error::WriterStopped)?
            .send(req)
            .map_err(|_| Error::WriterStopped)
    }

    /// Queues a leader append of `batch` with `term`.
    pub fn append_async(&self, batch: Vec<u8>, term: u64) -> Result<PendingAppend> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request::Append {
            batch,
            term: Some(term),
            reply,
        })?;
        Ok(PendingAppend { rx })
    }

    /// Queues a follower append of an already stamped batch.
    pub fn append_replicated_async(&self, batch: Vec<u8>) -> Result<PendingAppend> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request::Append {
            batch,
            term: None,
            reply,
        })?;
        Ok(PendingAppend { rx })
    }

    /// Leader append, waiting for the group commit.
    pub fn append(&self, batch: Vec<u8>, term: u64) -> Result<Appended> {
        self.append_async(batch, term)?.wait()
    }

    /// Runs `f` on the writer thread, in order with the appends (truncation, retention, roll,
    /// an explicit sync...), and returns its result.
    pub fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Log) -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::Exec(Box::new(move |log| {
            let _ = tx.send(f(log));
        })))?;
        rx.recv().map_err(|_| Error::WriterStopped)
    }

    /// A read handle that can be cloned to other threads.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// Stops the thread after the queued requests (syncing unless the policy is `Never`) and
    /// returns the log. Fails with [`Error::WriterStopped`] while a [`LogReader`] is alive.
    pub fn shutdown(mut self) -> Result<Log> {
        let shared = self.shared.clone();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| Error::WriterStopped)?;
        }
        drop(self);
        let lock = Arc::try_unwrap(shared).map_err(|_| Error::WriterStopped)?;
        lock.into_inner().map_err(|_| Error::WriterStopped)
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: Arc<RwLock<Log>>, rx: Receiver<Request>, clock: Clock) {
    let interval = match shared.read().map(|l| l.config().fsync) {
        Ok(FsyncPolicy::Interval { ms }) => Some(Duration::from_millis(ms.max(1))),
        _ => None,
    };
    loop {
        let first = match interval {
            Some(d) => match rx.recv_timeout(d) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(mut log) = shared.write() {
                        let _ = log.maybe_sync(clock());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        handle_group(&shared, group, &clock);
    }
    if let Ok(mut log) = shared.write()
        && log.config().fsync != FsyncPolicy::Never
    {
        let _ = log.sync();
    }
}

fn handle_group(shared: &RwLock<Log>, group: Vec<Request>, clock: &Clock) {
    let now = clock();
    let mut done: Vec<(SyncSender<Result<Appended>>, Result<AppendInfo>)> = Vec::new();
    let Ok(mut log) = shared.write() else {
        return;
    };
    for req in group {
        match req {
            Request::Append {
                mut batch,
                term,
                reply,
            } => {
                let r = match term {
                    Some(t) => log.append(&mut batch, t, now),
                    None => log.append_replicated(&batch, now),
                };
                done.push((reply, r));
            }
            Request::Exec(job) => job(&mut log),
        }
    }
    let always = log.config().fsync == FsyncPolicy::Always;
    let synced = if always && done.iter().any(|(_, r)| r.is_ok()) {
        match log.begin_sync() {
            Ok(ticket) => {
                drop(log);
                let outcome = ticket.run(); // the fsync, without the lock
                let Ok(mut log) = shared.write() else {
                    return;
                };
                log.complete_sync(ticket, outcome)
            }
            Err(e) => Err(e),
        }
    } else {
        let r = log.maybe_sync(now);
        drop(log);
        r
    };
    for (reply, r) in done {
        let answer = match (r, &synced) {
            (Ok(info), Ok(durable_end)) => Ok(Appended {
                info,
                durable_end: *durable_end,
            }),
            (Ok(_), Err(e)) => Err(clone_failure(e)),
            (Err(e), _) => Err(e),
        };
        let _ = reply.send(answer);
    }
}

/// The sync error for every caller of the group (errors are not `Clone`; the failure is).
fn clone_failure(e: &Error) -> Error {
    match e {
        Error::Failed(f) => Error::Failed(*f),
        _ => Error::WriterStopped,
    }
}

/// Shared read access to a log owned by a [`LogWriter`].
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<RwLock<Log>>,
}

impl LogReader {
    fn with<R>(&self, f: impl FnOnce(&Log) -> Result<R>) -> Result<R> {
        let log = self.shared.read().map_err(|_| Error::WriterStopped)?;
        f(&log)
    }

    /// See [`Log::read`].
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches> {
        self.with(|l| l.read(offset, max_bytes))
    }

    /// See [`Log::read_until`].
    pub fn read_until(&self, offset: u64, max_bytes: usize, limit: u64) -> Result<ReadBatches> {
        self.with(|l| l.read_until(offset, max_bytes, limit))
    }

    /// See [`Log::batch_header_at`].
    pub fn batch_header_at(&self, offset: u64) -> Result<BatchHeader> {
        self.with(|l| l.batch_header_at(offset))
    }

    /// See [`Log::term_at`].
    pub fn term_at(&self, offset: u64) -> Result<u64> {
        self.with(|l| l.term_at(offset))
    }

    /// See [`Log::lookup_time`].
    pub fn lookup_time(&self, ts: i64) -> Result<Option<BatchHeader>> {
        self.with(|l| l.lookup_time(ts))
    }

    /// See [`Log::log_start`].
    pub fn log_start(&self) -> Result<u64> {
        self.with(|l| Ok(l.log_start()))
    }

    /// See [`Log::log_end`].
    pub fn log_end(&self) -> Result<u64> {
        self.with(|l| Ok(l.log_end()))
    }

    /// See [`Log::durable_end`].
    pub fn durable_end(&self) -> Result<u64> {
        self.with(|l| Ok(l.durable_end()))
    }
}

//! [`Producer`]: batching, buffering, retries and idempotence.
//!
//! `send` and friends run in the caller's task only until the record is in the buffer: they
//! pick the partition, reserve buffer memory (waiting or failing when full, as configured)
//! and hand the record to the producer's background task. That task owns every batch: it
//! appends records to one open batch per partition, seals it when it reaches `batch_size` or
//! has waited `linger`, groups sealed batches by partition leader into one produce request
//! per leader, and resolves each record's delivery with its offset or an error.
//!
//! **Ordering and idempotence.** At most one batch per partition is in flight, so batches
//! reach the log in the order they were sealed, retries included. With idempotence (the
//! default) each batch carries the producer id, epoch and the partition's next sequence
//! number, and a retry resends the very same bytes: a leader that already appended the
//! batch answers `DuplicateSequence` with the original offset, which is what the records
//! resolve with. A gap (`OutOfOrderSequence`) fails the batch with a typed [`Error`]; a
//! fenced producer (`ProducerFenced`: a newer instance took the producer id) fails that batch,
//! every buffered one and every later record, and never bumps its epoch again.

mod sender;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use floe_protocol::batch::CompressionCodec;
use floe_protocol::client::{Acks, ApiKey, InitProducerIdRequest, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::client::{Client, lock};
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::record::{ProducerRecord, RecordMetadata, now_ms};

/// Batch compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Records as they are.
    None,
    /// LZ4 block compression of each batch's records.
    #[default]
    Lz4,
}

/// What `send` does when the producer's buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait for room, up to `max_block`, then fail with [`Error::BufferFull`].
    #[default]
    Wait,
    /// Fail at once with [`Error::BufferFull`].
    Fail,
}

/// The producer's settings.
#[derive(Debug, Clone)]
pub(crate) struct ProducerConfig {
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) max_block: Duration,
    pub(crate) compression: Compression,
    pub(crate) retries: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) max_request_size: usize,
    pub(crate) idempotence: bool,
}

impl ProducerConfig {
    pub(crate) fn codec(&self) -> CompressionCodec {
        match self.compression {
            Compression::None => CompressionCodec::None,
            Compression::Lz4 => CompressionCodec::Lz4,
        }
    }
}

/// Settings for a [`Producer`]; see [`Producer::builder`].
#[derive(Debug)]
pub struct ProducerBuilder {
    client: Client,
    config: ProducerConfig,
    partitioner: Partitioner,
}

impl ProducerBuilder {
    /// `acks=all` (the default: answered once a quorum holds the batch) or `acks=leader`
    /// (answered once the leader appended it; a leader failure may lose it).
    pub fn acks(mut self, acks: Acks) -> Self {
        self.config.acks = acks;
        self
    }

    /// How long a batch waits for more records before it is sent (default 5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// Seal a batch once it holds this many bytes (default 64 KiB). A larger record gets a
    /// batch of its own, up to `max_request_size`.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.config.batch_size = bytes;
        self
    }

    /// Bytes of records the producer may hold before they are acknowledged (default
    /// 32 MiB). When full, `send` waits or fails per [`when_full`](Self::when_full).
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.config.buffer_memory = bytes;
        self
    }

    /// Wait for room (up to `max_block`, the default) or fail at once when the buffer is full.
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.config.when_full = when_full;
        self
    }

    /// Longest `send` waits for buffer room (default 60 s).
    pub fn max_block(mut self, max_block: Duration) -> Self {
        self.config.max_block = max_block;
        self
    }

    /// Batch compression (default LZ4).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// How records without an explicit partition are spread (default: murmur2 of the key,
    /// keyless records round robin).
    pub fn partitioner(mut self, partitioner: Partitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    /// Retries of a batch after a retryable error (default `u32::MAX`: bounded by the
    /// delivery timeout instead), and the first backoff between them (default 100 ms,
    /// doubling up to 1 s).
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.config.retries = retries;
        self.config.retry_backoff = backoff;
        self
    }

    /// Longest time from `send` to the record's acknowledgement, retries included
    /// (default 120 s); after it the record fails with [`Error::DeliveryTimeout`].
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.config.delivery_timeout = timeout;
        self
    }

    /// Largest record, and largest produce request (default 1 MiB).
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.config.max_request_size = bytes;
        self
    }

    /// Idempotent delivery (default on): a producer id and per-partition sequence numbers, so
    /// retries never duplicate records in the log. Off, a retry after a lost response may
    /// append a batch twice.
    pub fn idempotence(mut self, on: bool) -> Self {
        self.config.idempotence = on;
        self
    }

    /// Checks the settings, gets a producer id (with idempotence) and starts the producer's
    /// background task.
    pub async fn build(self) -> Result<Producer> {
        let c = &self.config;
        let bad = |field, reason| Err(Error::Config { field, reason });
        if c.batch_size == 0 {
            return bad("batch_size", "must be above zero");
        }
        if c.buffer_memory < c.batch_size || c.buffer_memory > Semaphore::MAX_PERMITS {
            return bad("buffer_memory", "must be at least batch_size");
        }
        if c.max_request_size < 1024
            || c.max_request_size > floe_protocol::batch::MAX_BATCH_LEN as usize
        {
            return bad(
                "max_request_size",
                "must be between 1 KiB and the batch limit",
            );
        }
        let client = self.client;
        let producer = if c.idempotence {
            Some(init_producer_id(&client, None).await?)
        } else {
            None
        };
        let producer = Arc::new(Mutex::new(producer));
        let memory = Arc::new(Semaphore::new(c.buffer_memory));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            sender::Sender::new(
                client.clone(),
                self.config.clone(),
                producer.clone(),
                tx.clone(),
                rx,
            )
            .run(),
        );
        Ok(Producer {
            shared: Arc::new(Shared {
                client,
                config: self.config,
                producer,
                memory,
                tx,
                partitioner: Mutex::new(self.partitioner),
                closed: AtomicBool::new(false),
                task: tokio::sync::Mutex::new(Some(task)),
            }),
        })
    }
}

/// A new producer id (`current` = `None`), or the next epoch of `current`.
pub(crate) async fn init_producer_id(
    client: &Client,
    current: Option<(i64, i16)>,
) -> Result<(i64, i16)> {
    let (producer_id, producer_epoch) = current.unwrap_or((-1, -1));
    let request = Request::from(InitProducerIdRequest {
        producer_id,
        producer_epoch,
    });
    match client.call_any(&request).await? {
        Response::InitProducerId(r) if r.error.is_ok() => Ok((r.producer_id, r.producer_epoch)),
        Response::InitProducerId(r) => Err(Error::broker(ApiKey::InitProducerId, r.error)),
        _ => Err(Error::broker(
            ApiKey::InitProducerId,
            floe_protocol::ErrorCode::UnknownServerError,
        )),
    }
}

/// How a record's outcome is reported.
pub(crate) enum Notify {
    Future(oneshot::Sender<Result<RecordMetadata>>),
    Callback(Box<dyn FnOnce(Result<RecordMetadata>) + Send>),
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Notify::Future(_) => "Notify::Future",
            Notify::Callback(_) => "Notify::Callback",
        })
    }
}

impl Notify {
    pub(crate) fn done(self, result: Result<RecordMetadata>) {
        match self {
            // The caller dropped its Delivery: fire and forget.
            Notify::Future(tx) => drop(tx.send(result)),
            Notify::Callback(f) => f(result),
        }
    }
}

/// What the handles send the background task.
#[derive(Debug)]
pub(crate) enum Command {
    Append {
        record: ProducerRecord,
        partition: u32,
        timestamp: i64,
        permit: OwnedSemaphorePermit,
        notify: Notify,
    },
    Flush(oneshot::Sender<()>),
    Close(Option<oneshot::Sender<()>>),
    /// Metadata changed (a refresh finished): look at waiting batches again.
    Wake,
    /// The producer epoch was bumped (or could not be).
    Bumped(Result<(i64, i16)>),
}

#[derive(Debug)]
struct Shared {
    client: Client,
    config: ProducerConfig,
    /// The id and epoch in use (the epoch changes after an unresolved failure).
    producer: Arc<Mutex<Option<(i64, i16)>>>,
    memory: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Command>,
    partitioner: Mutex<Partitioner>,
    closed: AtomicBool,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: deliver what is buffered, then stop.
        let _ = self.tx.send(Command::Close(None));
    }
}

/// The outcome of one record, resolved once the broker acknowledged it (or it failed).
/// Dropping it does not cancel the record: it is still delivered (fire and forget).
#[derive(Debug)]
#[must_use = "await it for the record's offset, or drop it to fire and forget"]
pub struct Delivery {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// Sends records to a topic's partition leaders: batched, compressed, retried, and (by
/// default) idempotent. Cheap to clone; every clone feeds the same buffer.
///
/// ```no_run
/// # async fn demo(client: floe_client::Client) -> floe_client::Result<()> {
/// use std::time::Duration;
/// use floe_client::{Producer, ProducerRecord};
/// let producer = Producer::builder(&client)
///     .linger(Duration::from_millis(10))
///     .batch_size(128 * 1024)
///     .build()
///     .await?;
/// // Wait for each record's offset...
/// let meta = producer.send(ProducerRecord::new("orders", "one").key("user-1")).await?;
/// println!("stored at {}/{}@{}", meta.topic, meta.partition, meta.offset);
/// // ...or keep many in flight and collect them later.
/// let mut pending = Vec::new();
/// for i in 0..1000 {
///     pending.push(producer.dispatch(ProducerRecord::new("orders", format!("#{i}"))).await?);
/// }
/// for d in pending {
///     d.await?;
/// }
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

impl Producer {
    /// Starts configuring a producer on `client`.
    pub fn builder(client: &Client) -> ProducerBuilder {
        ProducerBuilder {
            client: client.clone(),
            config: ProducerConfig {
                acks: Acks::All,
                linger: Duration::from_millis(5),
                batch_size: 64 * 1024,
                buffer_memory: 32 * 1024 * 1024,
                when_full: WhenFull::Wait,
                max_block: Duration::from_secs(60),
                compression: Compression::Lz4,
                retries: u32::MAX,
                retry_backoff: Duration::from_millis(100),
                retry_backoff_max: Duration::from_secs(1),
                delivery_timeout: Duration::from_secs(120),
                max_request_size: 1024 * 1024,
                idempotence: true,
            },
            partitioner: Partitioner::key_hash(),
        }
    }

    /// Sends `record` and waits until the broker acknowledged it: its partition, offset and
    /// timestamp. To keep many records in flight use [`dispatch`](Self::dispatch) or
    /// run several `send` futures at once (they are batched together).
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.dispatch(record).await?.await
    }

    /// Buffers `record` (waiting for room if the buffer is full and the producer waits) and
    /// returns its [`Delivery`] at once. Await the delivery for the offset, or drop it: the
    /// record is delivered either way.
    pub async fn dispatch(&self, record: ProducerRecord) -> Result<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(record, Notify::Future(tx)).await?;
        Ok(Delivery { rx })
    }

    /// Buffers `record` and calls `callback` with its outcome once it is known (on the
    /// producer's task: keep the callback short).
    ///
    /// ```no_run
    /// # async fn demo(producer: floe_client::Producer) -> floe_client::Result<()> {
    /// use floe_client::ProducerRecord;
    /// let (tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
    /// for i in 0..10_000 {
    ///     let tx = tx.clone();
    ///     producer
    ///         .send_with_callback(ProducerRecord::new("events", format!("#{i}")), move |r| {
    ///             if let Err(e) = r {
    ///                 let _ = tx.send((i, e));
    ///             }
    ///         })
    ///         .await?;
    /// }
    /// producer.flush().await?; // every callback has run
    /// drop(tx);
    /// while let Some((i, e)) = failures.recv().await {
    ///     eprintln!("record {i} failed: {e}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_with_callback<F>(&self, record: ProducerRecord, callback: F) -> Result<()>
    where
        F: FnOnce(Result<RecordMetadata>) + Send + 'static,
    {
        self.enqueue(record, Notify::Callback(Box::new(callback)))
            .await
    }

    /// Sends every buffered record now (ignoring `linger`) and waits until all records
    /// buffered before this call are acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Flush(tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Refuses new records, delivers the buffered ones, and stops the background task.
    pub async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(Command::Close(Some(tx))).is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.shared.task.lock().await.take() {
            let _ = task.await;
        }
        Ok(())
    }

    /// Bytes of records buffered and not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.config.buffer_memory - self.shared.memory.available_permits()
    }

    /// The idempotent producer id and epoch, if idempotence is on. The epoch is bumped
    /// after a batch fails without knowing whether the broker appended it (for example
    /// after the delivery timeout), so later batches start a fresh sequence.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        *lock(&self.shared.producer)
    }

    async fn enqueue(&self, mut record: ProducerRecord, notify: Notify) -> Result<()> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let partitions = shared.client.partition_count(&record.topic).await?;
        let partition = match record.partition {
            Some(p) if p >= partitions => {
                return Err(Error::UnknownPartition {
                    topic: record.topic,
                    partition: p,
                    partitions,
                });
            }
            Some(p) => p,
            None => lock(&shared.partitioner).partition(record.key.as_deref(), partitions)?,
        };
        let size = record.buffered_size();
        // A batch of this one record must fit the request limit, header included.
        let max = (shared.config.max_request_size - floe_protocol::batch::HEADER_LEN)
            .min(shared.config.buffer_memory);
        if size > max {
            return Err(Error::RecordTooLarge { size, max });
        }
        let full = || Error::BufferFull {
            requested: size,
            capacity: shared.config.buffer_memory,
        };
        // `size <= max_request_size <= MAX_BATCH_LEN` fits in u32.
        let n = size as u32;
        let permit =
            match shared.config.when_full {
                WhenFull::Fail => shared
                    .memory
                    .clone()
                    .try_acquire_many_owned(n)
                    .map_err(|e| match e {
                        tokio::sync::TryAcquireError::Closed => Error::Closed,
                        tokio::sync::TryAcquireError::NoPermits => full(),
                    })?,
                WhenFull::Wait => {
                    let acquire = shared.memory.clone().acquire_many_owned(n);
                    match tokio::time::timeout(shared.config.max_block, acquire).await {
                        Ok(Ok(p)) => p,
                        Ok(Err(_)) => return Err(Error::Closed),
                        Err(_) => return Err(full()),
                    }
                }
            };
        let timestamp = *record.timestamp.get_or_insert_with(now_ms);
        shared
            .tx
            .send(Command::Append {
                record,
                partition,
                timestamp,
                permit,
                notify,
            })
            .map_err(|_| Error::Closed)
    }
}

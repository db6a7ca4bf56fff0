//! [`Consumer`]: read assigned partitions as a [`futures_core::Stream`] of records.
//!
//! Each assigned partition has a reader task that holds a subscription stream (section 8 of
//! PROTOCOL.md) to the partition's leader: the broker pushes committed batches as they
//! commit. The reader decodes them and hands them to the consumer's buffer, which is bounded
//! by `max_buffered_bytes`: a reader that finds the buffer full waits, stops reading its QUIC
//! stream, and stops granting the broker byte credit, so a slow consumer slows the broker's
//! pushes instead of growing memory.
//!
//! A broker that does not serve subscriptions (its handshake leaves them out, or it refuses
//! one as unsupported) is read with fetch long-polls instead, under the same buffer bound:
//! the next fetch goes out only once the last answer's records found room.
//!
//! **Consumer groups** (a separate issue) will sit on top of this: a group member gets its
//! partitions and committed offsets from the coordinator and calls [`Consumer::assign`] /
//! [`Consumer::unassign`] with them; [`Consumer::position`] is what it commits.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use floe_net::{FrameReader, FrameWriter};
use floe_protocol::ErrorCode;
use floe_protocol::batch::{BatchIter, BatchLimits, CompressionCodec};
use floe_protocol::client::{
    ApiKey, ClientFrame, FetchPartition, FetchPartitionResult, FetchRequest, FetchTopic,
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, OffsetSpec, Push, Request,
    Response, SubscribeCredit, SubscribeRequest, decode_client_frame,
};
use futures_core::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::client::{Client, Config, lock};
use crate::error::{Error, Result};
use crate::metadata::BrokerAddr;
use crate::record::{ConsumerRecord, TopicPartition};

/// Where a partition's reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The log start (the oldest record still kept).
    Earliest,
    /// The high watermark: only records committed from now on.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first record with a timestamp at or after this (ms since the Unix epoch).
    Timestamp(i64),
}

/// Settings for a [`Consumer`]; see [`Consumer::builder`].
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    client: Client,
    max_buffered_bytes: usize,
    max_partition_bytes: u32,
    subscriptions: bool,
}

impl ConsumerBuilder {
    /// Bytes of fetched records the consumer may hold before readers wait (default 16 MiB;
    /// one push larger than this is still accepted alone, so a large batch never blocks).
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }

    /// Most bytes the broker pushes per partition at once (default 1 MiB; at least one whole
    /// batch is pushed even if larger).
    pub fn max_partition_bytes(mut self, bytes: u32) -> Self {
        self.max_partition_bytes = bytes;
        self
    }

    /// Read with server-pushed subscriptions where brokers serve them (the default), or,
    /// with `false`, always with fetch long-polls: one request per answer, so more round
    /// trips, for paths that should see plain request/response traffic only.
    pub fn subscriptions(mut self, on: bool) -> Self {
        self.subscriptions = on;
        self
    }

    /// Makes the consumer (no partitions assigned yet).
    pub fn build(self) -> Result<Consumer> {
        if self.max_buffered_bytes == 0 || self.max_buffered_bytes > Semaphore::MAX_PERMITS {
            return Err(Error::Config {
                field: "max_buffered_bytes",
                reason: "must be above zero",
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Consumer {
            shared: Arc::new(Shared {
                client: self.client,
                max_buffered_bytes: self.max_buffered_bytes,
                max_partition_bytes: self.max_partition_bytes.max(1),
                subscriptions: self.subscriptions,
                memory: Arc::new(Semaphore::new(self.max_buffered_bytes)),
                tx: Mutex::new(Some(tx)),
                parts: Mutex::new(HashMap::new()),
                stream: Mutex::new(StreamState { rx, current: None }),
                generations: AtomicU64::new(0),
            }),
        })
    }
}

/// One reader's delivery to the stream.
#[derive(Debug)]
enum Item {
    Records {
        tp: TopicPartition,
        generation: u64,
        records: VecDeque<ConsumerRecord>,
        _permit: OwnedSemaphorePermit,
    },
    Failed {
        tp: TopicPartition,
        generation: u64,
        error: Error,
    },
}

#[derive(Debug)]
struct PartState {
    /// Next offset the stream will yield.
    position: u64,
    /// Bumped by seek/pause/unassign: buffered items of older generations are dropped.
    generation: u64,
    paused: bool,
    reader: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct StreamState {
    rx: mpsc::UnboundedReceiver<Item>,
    current: Option<Item>,
}

#[derive(Debug)]
struct Shared {
    client: Client,
    max_buffered_bytes: usize,
    max_partition_bytes: u32,
    subscriptions: bool,
    memory: Arc<Semaphore>,
    /// Where readers deliver; taken on close so the stream ends once the readers are gone.
    tx: Mutex<Option<mpsc::UnboundedSender<Item>>>,
    parts: Mutex<HashMap<TopicPartition, PartState>>,
    stream: Mutex<StreamState>,
    /// Source of generations, unique across partitions and reassignments, so no buffered
    /// item of an earlier assignment can pass for a current one.
    generations: AtomicU64,
}

impl Shared {
    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }
}

/// Reads assigned partitions. Records of one partition arrive in offset order; partitions
/// are interleaved as their pushes arrive.
///
/// ```no_run
/// # async fn demo(client: floe_client::Client) -> floe_client::Result<()> {
/// use futures_util::StreamExt;
/// use floe_client::{Consumer, StartFrom, TopicPartition};
/// let consumer = Consumer::builder(&client).max_buffered_bytes(4 << 20).build()?;
/// consumer.assign(TopicPartition::new("orders", 0), StartFrom::Earliest).await?;
/// let mut records = consumer.stream();
/// while let Some(record) = records.next().await {
///     let record = record?;
///     println!("{}@{}: {:?}", record.partition, record.offset, record.value);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.close();
    }
}

impl Consumer {
    /// Starts configuring a consumer on `client`.
    pub fn builder(client: &Client) -> ConsumerBuilder {
        ConsumerBuilder {
            client: client.clone(),
            max_buffered_bytes: 16 * 1024 * 1024,
            max_partition_bytes: 1024 * 1024,
            subscriptions: true,
        }
    }

    /// Starts reading `tp` from `start` (replacing any earlier assignment of it).
    pub async fn assign(&self, tp: TopicPartition, start: StartFrom) -> Result<()> {
        let position = self.resolve(&tp, start).await?;
        if lock(&self.shared.tx).is_none() {
            return Err(Error::Closed);
        }
        let mut parts = lock(&self.shared.parts);
        let generation = self.shared.next_generation();
        if let Some(old) = parts.get_mut(&tp).and_then(|p| p.reader.take()) {
            old.abort();
        }
        // Earliest, latest and timestamp offsets come from the leader: committed positions.
        let committed = !matches!(start, StartFrom::Offset(_));
        let reader = self.spawn_reader(tp.clone(), generation, position, committed);
        parts.insert(
            tp,
            PartState {
                position,
                generation,
                paused: false,
                reader,
            },
        );
        Ok(())
    }

    /// Assigns every partition of `topic`, each from `start`.
    pub async fn assign_topic(&self, topic: &str, start: StartFrom) -> Result<()> {
        let partitions = self.shared.client.partition_count(topic).await?;
        for p in 0..partitions {
            self.assign(TopicPartition::new(topic, p), start).await?;
        }
        Ok(())
    }

    /// Stops reading `tp` and drops its buffered records.
    pub fn unassign(&self, tp: &TopicPartition) -> Result<()> {
        let mut part = lock(&self.shared.parts)
            .remove(tp)
            .ok_or_else(|| not_assigned(tp))?;
        if let Some(task) = part.reader.take() {
            task.abort();
        }
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = lock(&self.shared.parts).keys().cloned().collect();
        v.sort();
        v
    }

    /// The offset of the next record the stream yields for `tp`.
    pub fn position(&self, tp: &TopicPartition) -> Result<u64> {
        lock(&self.shared.parts)
            .get(tp)
            .map(|p| p.position)
            .ok_or_else(|| not_assigned(tp))
    }

    /// Continues `tp` from `offset`: buffered records of `tp` are dropped and the next one
    /// the stream yields for it is at `offset` (or the first after it).
    ///
    /// ```no_run
    /// # async fn demo(consumer: floe_client::Consumer) -> floe_client::Result<()> {
    /// use floe_client::{StartFrom, TopicPartition};
    /// use futures_util::StreamExt;
    /// let tp = TopicPartition::new("orders", 0);
    /// consumer.assign(tp.clone(), StartFrom::Latest).await?;
    /// // Replay the last 100 records, then follow new ones.
    /// let end = consumer.position(&tp)?;
    /// consumer.seek(&tp, end.saturating_sub(100))?;
    /// let mut records = consumer.stream();
    /// while let Some(r) = records.next().await {
    ///     let r = r?;
    ///     if r.value.is_none() {
    ///         // Hold this partition while something else catches up; its position stays.
    ///         consumer.pause(&tp)?;
    ///         consumer.resume(&tp)?;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn seek(&self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let mut parts = lock(&self.shared.parts);
        let part = parts.get_mut(tp).ok_or_else(|| not_assigned(tp))?;
        part.position = offset;
        part.generation = self.shared.next_generation();
        if let Some(task) = part.reader.take() {
            task.abort();
        }
        if !part.paused {
            part.reader = self.spawn_reader(tp.clone(), part.generation, offset, false);
        }
        Ok(())
    }

    /// Like [`seek`](Self::seek), to the earliest, latest or a timestamp's offset.
    pub async fn seek_to(&self, tp: &TopicPartition, start: StartFrom) -> Result<()> {
        self.position(tp)?;
        let offset = self.resolve(tp, start).await?;
        self.seek(tp, offset)
    }

    /// Stops reading `tp` (its buffered records are dropped; the position stays).
    pub fn pause(&self, tp: &TopicPartition) -> Result<()> {
        let mut parts = lock(&self.shared.parts);
        let part = parts.get_mut(tp).ok_or_else(|| not_assigned(tp))?;
        part.paused = true;
        part.generation = self.shared.next_generation();
        if let Some(task) = part.reader.take() {
            task.abort();
        }
        Ok(())
    }

    /// Continues reading a paused `tp` from its position.
    pub fn resume(&self, tp: &TopicPartition) -> Result<()> {
        let mut parts = lock(&self.shared.parts);
        let part = parts.get_mut(tp).ok_or_else(|| not_assigned(tp))?;
        if part.paused {
            part.paused = false;
            part.reader = self.spawn_reader(tp.clone(), part.generation, part.position, false);
        }
        Ok(())
    }

    /// Whether `tp` is paused.
    pub fn is_paused(&self, tp: &TopicPartition) -> Result<bool> {
        lock(&self.shared.parts)
            .get(tp)
            .map(|p| p.paused)
            .ok_or_else(|| not_assigned(tp))
    }

    /// Bytes of fetched records buffered and not yet yielded by the stream.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.max_buffered_bytes - self.shared.memory.available_permits()
    }

    /// The records of every assigned partition. A partition that fails fatally (for example
    /// `OffsetOutOfRange`) yields one error and is no longer read; retryable failures (a
    /// leader change, a lost connection) are retried inside. Use one stream at a time: two
    /// streams share (and split) the same records.
    pub fn stream(&self) -> RecordStream {
        RecordStream {
            shared: self.shared.clone(),
        }
    }

    /// Stops every reader and drops the buffered records; the stream then ends. Later
    /// assignments fail with [`Error::Closed`].
    pub fn close(&self) {
        lock(&self.shared.tx).take();
        let mut parts = lock(&self.shared.parts);
        for (_, mut part) in parts.drain() {
            if let Some(task) = part.reader.take() {
                task.abort();
            }
        }
    }

    async fn resolve(&self, tp: &TopicPartition, start: StartFrom) -> Result<u64> {
        let spec = match start {
            StartFrom::Offset(o) => return Ok(o),
            StartFrom::Earliest => OffsetSpec::Earliest,
            StartFrom::Latest => OffsetSpec::Latest,
            StartFrom::Timestamp(t) if t >= 0 => OffsetSpec::Timestamp(t),
            StartFrom::Timestamp(_) => {
                return Err(Error::Config {
                    field: "StartFrom::Timestamp",
                    reason: "must not be negative",
                });
            }
        };
        list_offset(&self.shared.client, tp, spec).await
    }

    /// Starts `tp`'s reader at `position`; `committed`: a broker named that offset (so it
    /// exists, even if a newly elected leader does not know it yet).
    fn spawn_reader(
        &self,
        tp: TopicPartition,
        generation: u64,
        position: u64,
        committed: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let tx = lock(&self.shared.tx).clone()?;
        Some(tokio::spawn(read_partition(
            self.shared.clone(),
            tx,
            tp,
            generation,
            position,
            committed,
        )))
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::NotAssigned {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

/// The offset `spec` names in `tp` (asked of its leader).
pub(crate) async fn list_offset(
    client: &Client,
    tp: &TopicPartition,
    spec: OffsetSpec,
) -> Result<u64> {
    let request = Request::from(ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: tp.topic.clone(),
            partitions: vec![ListOffsetsPartition {
                partition: tp.partition,
                spec,
            }],
        }],
    });
    client
        .call_leader(tp, &request, |response| {
            let Response::ListOffsets(r) = response else {
                return Err(Error::broker(
                    ApiKey::ListOffsets,
                    ErrorCode::UnknownServerError,
                ));
            };
            let p = r
                .topics
                .iter()
                .filter(|t| t.name == tp.topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition == tp.partition)
                .ok_or_else(|| Error::broker(ApiKey::ListOffsets, ErrorCode::UnknownServerError))?;
            Client::check_code(ApiKey::ListOffsets, p.error, &tp.topic, Some(tp.partition))?;
            Ok(p.offset)
        })
        .await
}

/// A stream of records from a [`Consumer`]'s assigned partitions; see [`Consumer::stream`].
/// It ends when the consumer is closed or dropped.
#[derive(Debug)]
pub struct RecordStream {
    shared: Arc<Shared>,
}

impl Stream for RecordStream {
    type Item = Result<ConsumerRecord>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &self.shared;
        let mut st = lock(&shared.stream);
        loop {
            if let Some(Item::Records {
                tp,
                generation,
                records,
                ..
            }) = &mut st.current
            {
                let mut parts = lock(&shared.parts);
                if let Some(part) = parts.get_mut(tp)
                    && part.generation == *generation
                    && let Some(record) = records.pop_front()
                {
                    part.position = record.offset + 1;
                    return Poll::Ready(Some(Ok(record)));
                }
                // Exhausted or stale: release its memory.
                st.current = None;
            }
            match st.rx.poll_recv(cx) {
                Poll::Ready(Some(item @ Item::Records { .. })) => st.current = Some(item),
                Poll::Ready(Some(Item::Failed {
                    tp,
                    generation,
                    error,
                })) => {
                    let current = lock(&shared.parts)
                        .get(&tp)
                        .is_some_and(|p| p.generation == generation);
                    if current {
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Whether `generation` is still `tp`'s current one (else the reader should stop).
fn is_current(shared: &Shared, tp: &TopicPartition, generation: u64) -> bool {
    lock(&shared.parts)
        .get(tp)
        .is_some_and(|p| p.generation == generation && !p.paused)
}

/// A partition's reader: subscribes at the leader and feeds the buffer, resubscribing after
/// retryable failures.
async fn read_partition(
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Item>,
    tp: TopicPartition,
    generation: u64,
    mut next: u64,
    start_committed: bool,
) {
    let start = next;
    let mut attempt = 0u32;
    let topic: Arc<str> = Arc::from(tp.topic.as_str());
    while is_current(&shared, &tp, generation) {
        let before = next;
        let result = read_once(&shared, &tx, &tp, &topic, generation, &mut next).await;
        if next > before {
            attempt = 0;
        }
        let error = match result {
            Ok(()) => Error::broker(ApiKey::Subscribe, ErrorCode::BrokerNotAvailable),
            // An offset past the broker's high watermark is worth waiting for only if it is
            // known to be committed: records were read up to it, or a broker named it. An
            // offset the user chose may simply not exist.
            Err(Error::OffsetNotYetAvailable { offset, .. })
                if !(start_committed || next > start) =>
            {
                Error::Broker {
                    code: ErrorCode::OffsetOutOfRange,
                    api: ApiKey::Subscribe,
                    topic: Some(tp.topic.clone()),
                    partition: Some(tp.partition),
                    message: Some(format!("offset {offset} is past the end of the log")),
                }
            }
            Err(e) => e,
        };
        if !error.is_retryable() {
            let _ = tx.send(Item::Failed {
                tp,
                generation,
                error,
            });
            return;
        }
        tracing::debug!(%tp, error = %error, "resubscribing");
        let refresh = error.needs_leader_refresh();
        let client = &shared.client;
        if refresh {
            // The leader moved or may be gone (connection lost, no answer in time): forget
            // it and, after the backoff, ask the other brokers where the partition is now.
            client.note_failure(&error);
            client.leader_moved(&tp.topic, tp.partition, None);
        }
        let cfg = client.config();
        tokio::time::sleep(Config::backoff(
            cfg.retry_backoff,
            cfg.reconnect_backoff_max,
            attempt,
        ))
        .await;
        if refresh {
            let _ = client.refresh_metadata(Some(vec![tp.topic.clone()])).await;
        }
        attempt = attempt.saturating_add(1);
    }
}

fn stream_error(addr: std::net::SocketAddr, e: floe_net::StreamError, send: bool) -> Error {
    let source = if send {
        floe_net::CallError::Send(e)
    } else {
        floe_net::CallError::Receive(e)
    };
    Error::Call {
        addr,
        source: Arc::new(source),
    }
}

/// Longest a fallback fetch long-poll waits at the broker (also bounded by half the
/// request timeout, so an idle partition's fetch is never mistaken for a dead broker).
const FETCH_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads `tp` at its leader until the reading ends (Ok: the broker closed it) or fails:
/// with a subscription when the leader serves them, else with fetch long-polls.
async fn read_once(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Item>,
    tp: &TopicPartition,
    topic: &Arc<str>,
    generation: u64,
    next: &mut u64,
) -> Result<()> {
    let client = &shared.client;
    let (_, broker) = client.leader_addr(tp).await?;
    let (conn, subscribe) = client.connection_and_subscribe(&broker).await?;
    if subscribe && shared.subscriptions {
        let result = subscribe_once(shared, tx, tp, topic, generation, next, &conn, &broker).await;
        match result {
            Err(Error::Broker {
                code: ErrorCode::UnsupportedVersion,
                api: ApiKey::Subscribe,
                ..
            }) => {
                // The handshake promised subscriptions, the broker refused one: fetch.
                tracing::debug!(%tp, addr = %broker.addr, "subscribe refused, fetching instead");
                client.subscribe_refused(broker.addr).await;
            }
            other => return other,
        }
    }
    fetch_loop(shared, tx, tp, topic, generation, next, &broker).await
}

/// Reads `tp` with fetch long-polls (brokers without subscriptions). The same buffer bounds
/// memory: the next fetch goes out only once the last answer's records found room.
async fn fetch_loop(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Item>,
    tp: &TopicPartition,
    topic: &Arc<str>,
    generation: u64,
    next: &mut u64,
    broker: &BrokerAddr,
) -> Result<()> {
    let client = &shared.client;
    let max_wait = (client.config().request_timeout / 2).min(FETCH_MAX_WAIT);
    loop {
        if !is_current(shared, tp, generation) {
            return Ok(());
        }
        let request = Request::from(FetchRequest {
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: 1,
            max_bytes: shared.max_partition_bytes,
            topics: vec![FetchTopic {
                name: tp.topic.clone(),
                partitions: vec![FetchPartition {
                    partition: tp.partition,
                    fetch_offset: *next,
                    max_bytes: shared.max_partition_bytes,
                }],
            }],
        });
        let started = tokio::time::Instant::now();
        let Response::Fetch(response) = client.call(broker, &request).await? else {
            return Err(Error::UnexpectedResponse {
                api: ApiKey::Fetch,
                addr: broker.addr,
            });
        };
        let p = response
            .topics
            .into_iter()
            .filter(|t| t.name == tp.topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition == tp.partition)
            .ok_or_else(|| Error::broker(ApiKey::Fetch, ErrorCode::UnknownServerError))?;
        if !p.error.is_ok() {
            return Err(partition_error(
                client,
                tp,
                ApiKey::Fetch,
                p.error,
                p.current_leader,
                (*next, p.high_watermark),
            ));
        }
        let decoded = decode_records(topic, tp, &p, *next)?;
        if decoded.records.is_empty() {
            // Only control batches (Raft's no-ops): step over them.
            *next = (*next).max(decoded.end);
            if p.batches.is_empty() && started.elapsed() < max_wait / 2 {
                // An empty answer long before the wait was up: a broker that does not
                // long-poll. Do not spin on it.
                tokio::time::sleep(client.config().retry_backoff).await;
            }
            continue;
        }
        let end = decoded.end;
        if !deliver(shared, tx, tp, generation, next, decoded).await? {
            return Ok(());
        }
        *next = (*next).max(end);
    }
}

/// Waits for room in the buffer (this is the backpressure: meanwhile nothing more is read
/// or asked for), then hands `decoded`'s records to the stream and advances `next`. False
/// when the reader is no longer current.
async fn deliver(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Item>,
    tp: &TopicPartition,
    generation: u64,
    next: &mut u64,
    decoded: Decoded,
) -> Result<bool> {
    let want = decoded.bytes.clamp(1, shared.max_buffered_bytes) as u32;
    let permit = shared
        .memory
        .clone()
        .acquire_many_owned(want)
        .await
        .map_err(|_| Error::Closed)?;
    if !is_current(shared, tp, generation) {
        return Ok(false);
    }
    *next = decoded.records.back().map_or(*next, |r| r.offset + 1);
    let _ = tx.send(Item::Records {
        tp: tp.clone(),
        generation,
        records: decoded.records,
        _permit: permit,
    });
    Ok(true)
}

/// One subscription on `conn` to `broker`: returns when the stream ends (Ok) or fails.
#[allow(clippy::too_many_arguments)] // one reader's whole state, passed down once
async fn subscribe_once(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Item>,
    tp: &TopicPartition,
    topic: &Arc<str>,
    generation: u64,
    next: &mut u64,
    conn: &floe_net::quinn::Connection,
    broker: &BrokerAddr,
) -> Result<()> {
    let client = &shared.client;
    let addr = broker.addr;
    let (send, recv) = conn.open_bi().await.map_err(|e| Error::Call {
        addr,
        source: Arc::new(floe_net::CallError::Open(e)),
    })?;
    let limits = client.config().limits;
    let mut writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv, limits);
    let credit = shared.max_buffered_bytes as u64;
    let request = Request::from(SubscribeRequest {
        topics: vec![FetchTopic {
            name: tp.topic.clone(),
            partitions: vec![FetchPartition {
                partition: tp.partition,
                fetch_offset: *next,
                max_bytes: shared.max_partition_bytes,
            }],
        }],
        initial_credit: credit,
    });
    let correlation_id = 1;
    writer
        .write_frame(&mut request.encode_frame_chunks(correlation_id))
        .await
        .map_err(|e| stream_error(addr, e, true))?;
    let timeout = client.config().request_timeout;
    let first = match tokio::time::timeout(timeout, reader.read_frame()).await {
        Ok(r) => r.map_err(|e| stream_error(addr, e, false))?,
        Err(_) => {
            return Err(Error::Timeout {
                api: ApiKey::Subscribe,
                addr,
                after: timeout,
            });
        }
    };
    let Some(first) = first else {
        return Err(stream_error(addr, floe_net::StreamError::Closed, false));
    };
    match decode_client_frame(&first, limits) {
        Ok((_, ClientFrame::Response(Response::Subscribe(r)), _)) => {
            for p in r.topics.iter().flat_map(|t| &t.partitions) {
                if p.partition == tp.partition && !p.error.is_ok() {
                    return Err(partition_error(
                        client,
                        tp,
                        ApiKey::Subscribe,
                        p.error,
                        p.current_leader,
                        (*next, p.high_watermark),
                    ));
                }
            }
        }
        Ok((_, ClientFrame::Error(code), _)) => return Err(Error::broker(ApiKey::Subscribe, code)),
        Ok(_) => {
            return Err(Error::UnexpectedResponse {
                api: ApiKey::Subscribe,
                addr,
            });
        }
        Err(e) => {
            return Err(Error::Call {
                addr,
                source: Arc::new(floe_net::CallError::Decode(e)),
            });
        }
    }
    // Set when a credit grant could not be written: the broker ended the subscription (it
    // stops reading credit once it has sent a partition's last event, for example
    // `NotLeader`). What it sent before still arrives; the stream must end soon after.
    let mut ending = false;
    loop {
        let read = reader.read_frame();
        let frame = if ending {
            match tokio::time::timeout(timeout, read).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Error::Timeout {
                        api: ApiKey::Subscribe,
                        addr,
                        after: timeout,
                    });
                }
            }
        } else {
            read.await
        }
        .map_err(|e| stream_error(addr, e, false))?;
        let Some(frame) = frame else { return Ok(()) };
        let event = match decode_client_frame(&frame, limits) {
            Ok((_, ClientFrame::Push(Push::Subscribe(event)), _)) => event,
            Ok(_) => {
                return Err(Error::UnexpectedResponse {
                    api: ApiKey::Subscribe,
                    addr,
                });
            }
            Err(e) => {
                return Err(Error::Call {
                    addr,
                    source: Arc::new(floe_net::CallError::Decode(e)),
                });
            }
        };
        for p in event
            .topics
            .into_iter()
            .filter(|t| t.name == tp.topic)
            .flat_map(|t| t.partitions)
        {
            if p.partition != tp.partition {
                continue;
            }
            if !p.error.is_ok() {
                return Err(partition_error(
                    client,
                    tp,
                    ApiKey::Subscribe,
                    p.error,
                    p.current_leader,
                    (*next, p.high_watermark),
                ));
            }
            let decoded = decode_records(topic, tp, &p, *next)?;
            if decoded.records.is_empty() {
                continue;
            }
            // While this waits for room, the QUIC stream is not read and no credit granted.
            let bytes = decoded.bytes;
            if !deliver(shared, tx, tp, generation, next, decoded).await? {
                return Ok(());
            }
            let grant = Request::from(SubscribeCredit {
                bytes: bytes as u64,
            });
            if ending {
                continue;
            }
            if let Err(e) = writer
                .write_frame(&mut grant.encode_frame_chunks(correlation_id))
                .await
            {
                tracing::debug!(%tp, error = %e, "subscription stopped taking credit");
                ending = true;
            }
        }
    }
}

/// A partition's error code as an error. `(next, high_watermark)`: the offset asked for and
/// the broker's high watermark; an offset above it may be one the broker, a leader elected
/// moments ago, has not yet learned is committed (see [`Error::OffsetNotYetAvailable`]).
fn partition_error(
    client: &Client,
    tp: &TopicPartition,
    api: ApiKey,
    code: ErrorCode,
    leader: Option<u64>,
    (next, high_watermark): (u64, u64),
) -> Error {
    if code == ErrorCode::NotLeader {
        client.leader_moved(&tp.topic, tp.partition, leader);
    }
    if code == ErrorCode::OffsetOutOfRange && next > high_watermark {
        return Error::OffsetNotYetAvailable {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: next,
            high_watermark,
        };
    }
    Error::Broker {
        code,
        api,
        topic: Some(tp.topic.clone()),
        partition: Some(tp.partition),
        message: None,
    }
}

/// A pushed or fetched partition's records.
#[derive(Debug)]
struct Decoded {
    /// The records at or after the requested offset.
    records: VecDeque<ConsumerRecord>,
    /// The bytes they hold in memory.
    bytes: usize,
    /// The offset after the last batch (control batches included).
    end: u64,
}

/// The records at or after `from` in a pushed or fetched partition.
fn decode_records(
    topic: &Arc<str>,
    tp: &TopicPartition,
    p: &FetchPartitionResult,
    from: u64,
) -> Result<Decoded> {
    let mut out = VecDeque::new();
    let mut bytes = p.batches.len();
    let mut end = from;
    let corrupt = |source| Error::CorruptBatch {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: from,
        source,
    };
    for batch in BatchIter::new(p.batches.clone(), BatchLimits::default()) {
        let batch = batch.map_err(corrupt)?;
        end = end.max(batch.header().next_offset());
        if batch.is_control() || batch.header().next_offset() <= from {
            continue;
        }
        let records = batch.records().map_err(corrupt)?;
        if batch.header().attributes.codec() != Some(CompressionCodec::None) {
            bytes += records.section().len();
        }
        for r in records.iter() {
            let r = r.map_err(corrupt)?;
            if r.offset < from {
                continue;
            }
            let share = |part: &[u8]| {
                records
                    .bytes_of(part)
                    .unwrap_or_else(|| Bytes::copy_from_slice(part))
            };
            out.push_back(ConsumerRecord {
                topic: topic.clone(),
                partition: tp.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(share),
                value: r.value.map(share),
                headers: r
                    .headers()
                    .map(|(k, v)| (k.to_string(), share(v)))
                    .collect(),
            });
        }
    }
    Ok(Decoded {
        records: out,
        bytes,
        end,
    })
}

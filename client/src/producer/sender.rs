//! The producer's background task: the only owner of batches.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use floe_protocol::ErrorCode;
use floe_protocol::batch::{BatchBuilder, BatchHeader, BuildError, NewRecord, seal_crc};
use floe_protocol::client::{
    ApiKey, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic, Request, Response,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Command, Notify, ProducerConfig};
use crate::client::{Client, Config, lock};
use crate::error::{Error, Result};
use crate::metadata::BrokerAddr;
use crate::record::{ProducerRecord, RecordMetadata};

type Key = (Arc<str>, u32);

/// A flush waiting for each listed partition to finish this many batches.
type FlushWaiter = (Vec<(Key, u64)>, oneshot::Sender<()>);

/// Produce requests to one leader, each a list of (partition, batch).
type LeaderRequests = (BrokerAddr, Vec<Vec<(Key, Bytes)>>);

/// A record waiting for its batch's outcome.
#[derive(Debug)]
struct Pending {
    timestamp: i64,
    notify: Notify,
}

/// The batch being filled.
#[derive(Debug)]
struct Open {
    builder: BatchBuilder,
    records: Vec<Pending>,
    permits: Vec<OwnedSemaphorePermit>,
    created: Instant,
}

/// A sealed batch. With idempotence its sequence is stamped when it is first sent; from
/// then on its bytes never change, so a retry resends exactly what the first attempt sent
/// (same producer id, epoch and sequence).
#[derive(Debug)]
struct Sealed {
    bytes: Bytes,
    record_count: u32,
    /// The first record's sequence, once stamped (`None` before the first send).
    base_sequence: Option<i32>,
    records: Vec<Pending>,
    /// Buffer memory, released when the batch is done.
    _permits: Vec<OwnedSemaphorePermit>,
    created: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<Open>,
    ready: VecDeque<Sealed>,
    /// The front of `ready` is in a request.
    in_flight: bool,
    next_sequence: i32,
    /// Batches sealed / finished so far (for flush).
    sealed: u64,
    done: u64,
}

/// What one produce request came back with.
#[derive(Debug)]
struct Outcome {
    keys: Vec<Key>,
    result: Result<ProduceResponse>,
}

#[derive(Debug)]
pub(super) struct Sender {
    client: Client,
    config: ProducerConfig,
    producer: Option<(i64, i16)>,
    /// Where the handles read the id and epoch.
    shared_producer: Arc<Mutex<Option<(i64, i16)>>>,
    tx: mpsc::UnboundedSender<Command>,
    rx: mpsc::UnboundedReceiver<Command>,
    queues: BTreeMap<Key, PartitionQueue>,
    requests: JoinSet<Outcome>,
    flushes: Vec<FlushWaiter>,
    closing: Option<Vec<oneshot::Sender<()>>>,
    refreshing: bool,
    bump: Bump,
    /// Set when the producer can no longer write (fenced by a newer epoch, or the epoch could
    /// not be bumped): every buffered and later record fails with it.
    fatal: Option<Error>,
}

/// The epoch bump after a batch failed with an unknown outcome: its sequence numbers may or
/// may not be in the log, so the partition's next sequence is unknowable. Kafka's answer
/// (KIP-360): once no batch with a sequence is unresolved, take the next epoch and start
/// every partition at sequence 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bump {
    Idle,
    /// Needed; not before this instant (a retry after a failed attempt).
    Needed(Instant),
    Running,
}

impl Sender {
    pub(super) fn new(
        client: Client,
        config: ProducerConfig,
        shared_producer: Arc<Mutex<Option<(i64, i16)>>>,
        tx: mpsc::UnboundedSender<Command>,
        rx: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let producer = *lock(&shared_producer);
        Sender {
            client,
            config,
            producer,
            shared_producer,
            tx,
            rx,
            queues: BTreeMap::new(),
            requests: JoinSet::new(),
            flushes: Vec::new(),
            closing: None,
            refreshing: false,
            bump: Bump::Idle,
            fatal: None,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.seal_due(now);
            self.maybe_bump(now);
            self.send_ready(now);
            self.finish_flushes();
            if let Some(waiters) = &mut self.closing
                && self
                    .queues
                    .values()
                    .all(|q| q.open.is_none() && q.ready.is_empty())
                && self.requests.is_empty()
            {
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
            let wake = self.next_wake();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
                Some(done) = self.requests.join_next(), if !self.requests.is_empty() => {
                    match done {
                        Ok(outcome) => self.outcome(outcome),
                        Err(e) => tracing::error!(error = %e, "produce request task failed"),
                    }
                }
                _ = sleep_until(wake) => {}
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Append {
                record,
                partition,
                timestamp,
                permit,
                notify,
            } => self.append(record, partition, timestamp, permit, notify),
            Command::Flush(done) => {
                self.seal_all();
                let targets = self
                    .queues
                    .iter()
                    .filter(|(_, q)| q.done < q.sealed)
                    .map(|(k, q)| (k.clone(), q.sealed))
                    .collect();
                self.flushes.push((targets, done));
            }
            Command::Close(done) => {
                self.seal_all();
                let waiters = self.closing.get_or_insert_with(Vec::new);
                waiters.extend(done);
            }
            Command::Wake => self.refreshing = false,
            Command::Bumped(Ok(producer)) => {
                tracing::info!(?producer, "producer epoch bumped");
                self.producer = Some(producer);
                *lock(&self.shared_producer) = Some(producer);
                for q in self.queues.values_mut() {
                    q.next_sequence = 0;
                }
                self.bump = Bump::Idle;
            }
            Command::Bumped(Err(e)) if e.is_retryable() => {
                self.bump = Bump::Needed(Instant::now() + self.config.retry_backoff);
            }
            Command::Bumped(Err(e)) => {
                tracing::error!(error = %e, "cannot bump the producer epoch");
                self.bump = Bump::Idle;
                self.fail_for_good(e);
            }
        }
    }

    /// The producer can no longer write: fails every buffered record (batches in flight fail
    /// as their answers come) and, from now on, every new one with `e`.
    fn fail_for_good(&mut self, e: Error) {
        self.fatal = Some(e.clone());
        let keys: Vec<Key> = self.queues.keys().cloned().collect();
        for key in keys {
            let q = self.queues.get_mut(&key).expect("listed");
            seal(q);
            if q.in_flight {
                // Its answer decides the front batch; the rest cannot be sent.
                let waiting: Vec<Sealed> = q.ready.drain(1..).collect();
                q.done += waiting.len() as u64;
                for batch in waiting {
                    for r in batch.records {
                        r.notify.done(Err(e.clone()));
                    }
                }
            } else {
                while !self.queues[&key].ready.is_empty() {
                    self.fail(&key, e.clone(), false);
                }
            }
        }
    }

    /// Starts the epoch bump once nothing with a sequence is unresolved.
    fn maybe_bump(&mut self, now: Instant) {
        let Bump::Needed(not_before) = self.bump else {
            return;
        };
        if self.fatal.is_some() {
            // Never for a fenced producer: a bump would fence the instance that owns the id.
            self.bump = Bump::Idle;
            return;
        }
        let unresolved = self
            .queues
            .values()
            .any(|q| q.ready.front().is_some_and(|b| b.base_sequence.is_some()));
        if unresolved || !self.requests.is_empty() || not_before > now {
            return;
        }
        self.bump = Bump::Running;
        let client = self.client.clone();
        let current = self.producer;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = super::init_producer_id(&client, current).await;
            let _ = tx.send(Command::Bumped(result));
        });
    }

    fn new_builder(&self) -> BatchBuilder {
        let b = BatchBuilder::new(self.config.codec()).with_max_len(self.config.max_request_size);
        match self.producer {
            // The sequence is stamped at the first send (see `send_ready`).
            Some((id, epoch)) => b.with_producer(id, epoch, 0),
            None => b,
        }
    }

    fn append(
        &mut self,
        record: ProducerRecord,
        partition: u32,
        timestamp: i64,
        permit: OwnedSemaphorePermit,
        notify: Notify,
    ) {
        if let Some(e) = &self.fatal {
            notify.done(Err(e.clone()));
            return;
        }
        let key: Key = (Arc::from(record.topic.as_str()), partition);
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
            .collect();
        let new = NewRecord {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        };
        let batch_size = self.config.batch_size;
        let mut q = self.queues.remove(&key).unwrap_or_default();
        // Seal a non-empty open batch the record would push over batch_size.
        if let Some(open) = &q.open
            && !open.builder.is_empty()
            && open.builder.size() + open.builder.record_size(&new) > batch_size
        {
            seal(&mut q);
        }
        if q.open.is_none() {
            q.open = Some(Open {
                builder: self.new_builder(),
                records: Vec::new(),
                permits: Vec::new(),
                created: Instant::now(),
            });
        }
        let open = q.open.as_mut().expect("just opened");
        let appended = open.builder.append_record(&new);
        match appended {
            Ok(()) => {
                open.records.push(Pending { timestamp, notify });
                open.permits.push(permit);
                if open.builder.size() >= batch_size {
                    seal(&mut q);
                }
            }
            Err(
                e @ (BuildError::TooLarge { .. }
                | BuildError::FinishedTooLarge { .. }
                | BuildError::Empty),
            ) => {
                notify.done(Err(Error::Build(e)));
                if open.builder.is_empty() {
                    q.open = None;
                }
            }
        }
        self.queues.insert(key, q);
    }

    fn seal_all(&mut self) {
        for q in self.queues.values_mut() {
            seal(q);
        }
    }

    fn seal_due(&mut self, now: Instant) {
        let linger = self.config.linger;
        let closing = self.closing.is_some();
        for q in self.queues.values_mut() {
            // A partition with a batch in flight or waiting cannot send this one yet: it
            // keeps filling (up to batch_size) instead of queueing behind as a small batch,
            // so a slow round trip makes batches larger rather than the backlog longer.
            let busy = q.in_flight || !q.ready.is_empty();
            if q.open
                .as_ref()
                .is_some_and(|o| closing || (!busy && o.created + linger <= now))
            {
                seal(q);
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        for q in self.queues.values() {
            // A busy partition's open batch waits for the outcome, which wakes the loop.
            if let Some(o) = &q.open
                && !q.in_flight
                && q.ready.is_empty()
            {
                at(o.created + self.config.linger);
            }
            if !q.in_flight
                && let Some(front) = q.ready.front()
                && (self.bump == Bump::Idle || front.base_sequence.is_some())
            {
                at(front.retry_at.unwrap_or_else(Instant::now));
            }
        }
        if let Bump::Needed(t) = self.bump {
            at(t);
        }
        wake
    }

    /// Sends the front batch of every idle partition whose leader is known, one request per
    /// leader (split when it would exceed `max_request_size`).
    fn send_ready(&mut self, now: Instant) {
        if let Some(e) = self.fatal.clone() {
            // Batches that came back for a retry after the producer failed for good.
            let keys: Vec<Key> = self
                .queues
                .iter()
                .filter(|(_, q)| !q.in_flight && !q.ready.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                while !self.queues[&key].ready.is_empty() {
                    self.fail(&key, e.clone(), false);
                }
            }
            return;
        }
        let mut by_leader: HashMap<u64, LeaderRequests> = HashMap::new();
        let mut need_metadata = false;
        let max_request = self.config.max_request_size;
        for (key, q) in self.queues.iter_mut() {
            if q.in_flight {
                continue;
            }
            let Some(front) = q.ready.front_mut() else {
                continue;
            };
            if front.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            if self.bump != Bump::Idle && front.base_sequence.is_none() {
                // New sequences wait for the new epoch.
                continue;
            }
            let Some((leader, broker)) = self.client.cached_leader(&key.0, key.1) else {
                need_metadata = true;
                front.retry_at = Some(now + self.config.retry_backoff);
                continue;
            };
            if let Some((id, epoch)) = self.producer
                && front.base_sequence.is_none()
            {
                // First send: this batch takes the producer's current epoch and the
                // partition's next sequence numbers.
                front.bytes = with_sequence(&front.bytes, id, epoch, q.next_sequence);
                front.base_sequence = Some(q.next_sequence);
                q.next_sequence = next_sequence(q.next_sequence, front.record_count);
            }
            let (_, requests) = by_leader
                .entry(leader)
                .or_insert_with(|| (broker, vec![Vec::new()]));
            let current = requests.last_mut().expect("never empty");
            let size: usize = current.iter().map(|(_, b)| b.len()).sum();
            if !current.is_empty() && size + front.bytes.len() > max_request {
                requests.push(Vec::new());
            }
            requests
                .last_mut()
                .expect("never empty")
                .push((key.clone(), front.bytes.clone()));
            q.in_flight = true;
            front.attempts += 1;
        }
        if need_metadata {
            self.refresh_metadata();
        }
        for (_, (broker, requests)) in by_leader {
            for batches in requests {
                self.spawn_request(broker.clone(), batches);
            }
        }
    }

    fn spawn_request(&mut self, broker: BrokerAddr, batches: Vec<(Key, Bytes)>) {
        let mut topics: BTreeMap<Arc<str>, Vec<ProducePartition>> = BTreeMap::new();
        let keys = batches.iter().map(|(k, _)| k.clone()).collect();
        for ((topic, partition), bytes) in batches {
            topics.entry(topic).or_default().push(ProducePartition {
                partition,
                batches: bytes,
            });
        }
        let request = Request::from(ProduceRequest {
            acks: self.config.acks,
            timeout_ms: u32::try_from(self.client.config().request_timeout.as_millis())
                .unwrap_or(u32::MAX),
            topics: topics
                .into_iter()
                .map(|(name, partitions)| ProduceTopic {
                    name: name.to_string(),
                    partitions,
                })
                .collect(),
        });
        let client = self.client.clone();
        self.requests.spawn(async move {
            let result = match client.call(&broker, &request).await {
                Ok(Response::Produce(r)) => Ok(r),
                Ok(_) => Err(Error::UnexpectedResponse {
                    api: ApiKey::Produce,
                    addr: broker.addr,
                }),
                Err(e) => Err(e),
            };
            Outcome { keys, result }
        });
    }

    fn refresh_metadata(&mut self) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let client = self.client.clone();
        let topics: Vec<String> = {
            let mut t: Vec<String> = self.queues.keys().map(|k| k.0.to_string()).collect();
            t.dedup();
            t
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Err(e) = client.refresh_metadata(Some(topics)).await {
                tracing::debug!(error = %e, "producer metadata refresh failed");
            }
            let _ = tx.send(Command::Wake);
        });
    }

    fn outcome(&mut self, outcome: Outcome) {
        let response = match outcome.result {
            Ok(r) => r,
            Err(e) => {
                for key in &outcome.keys {
                    self.retry_or_fail(key, e.clone());
                }
                return;
            }
        };
        let mut answered = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                let Some(key) = outcome
                    .keys
                    .iter()
                    .find(|k| &*k.0 == t.name.as_str() && k.1 == p.partition)
                    .cloned()
                else {
                    continue;
                };
                if answered.contains(&key) {
                    continue;
                }
                answered.push(key.clone());
                let broker_error = || Error::Broker {
                    code: p.error,
                    api: ApiKey::Produce,
                    topic: Some(t.name.clone()),
                    partition: Some(p.partition),
                    message: p.message.clone(),
                };
                match p.error {
                    ErrorCode::None | ErrorCode::DuplicateSequence => {
                        self.complete(&key, p.base_offset)
                    }
                    ErrorCode::NotLeader => {
                        self.client
                            .leader_moved(&t.name, p.partition, p.current_leader);
                        if p.current_leader.is_none() {
                            self.refresh_metadata();
                        }
                        self.retry_or_fail(&key, broker_error());
                    }
                    ErrorCode::ProducerFenced => {
                        // A newer instance owns the producer id: this one is done for good.
                        let (producer_id, epoch) = self.producer.unwrap_or((-1, -1));
                        let e = Error::ProducerFenced {
                            producer_id,
                            epoch,
                            topic: t.name.clone(),
                            partition: p.partition,
                        };
                        self.fail(&key, e.clone(), true);
                        self.fail_for_good(e);
                    }
                    ErrorCode::OutOfOrderSequence => {
                        let producer_id = self.producer.map_or(-1, |p| p.0);
                        let sequence = self
                            .queues
                            .get(&key)
                            .and_then(|q| q.ready.front())
                            .and_then(|b| b.base_sequence)
                            .unwrap_or(-1);
                        self.fail(
                            &key,
                            Error::OutOfOrderSequence {
                                producer_id,
                                sequence,
                                topic: t.name.clone(),
                                partition: p.partition,
                            },
                            true,
                        );
                    }
                    _ => {
                        let e = broker_error();
                        if e.needs_metadata() {
                            self.refresh_metadata();
                        }
                        self.retry_or_fail(&key, e);
                    }
                }
            }
        }
        for key in outcome.keys {
            if !answered.contains(&key) {
                // The broker left this partition out: treat as an unanswered request.
                self.retry_or_fail(
                    &key,
                    Error::broker(ApiKey::Produce, ErrorCode::RequestTimedOut),
                );
            }
        }
    }

    fn retry_or_fail(&mut self, key: &Key, error: Error) {
        let Some(q) = self.queues.get_mut(key) else {
            return;
        };
        let Some(front) = q.ready.front_mut() else {
            return;
        };
        let timed_out = front.created.elapsed() >= self.config.delivery_timeout;
        if error.is_retryable() && !timed_out && front.attempts <= self.config.retries {
            q.in_flight = false;
            let wait = Config::backoff(
                self.config.retry_backoff,
                self.config.retry_backoff_max,
                front.attempts.saturating_sub(1),
            );
            front.retry_at = Some(Instant::now() + wait);
            tracing::debug!(topic = %key.0, partition = key.1, error = %error, attempt = front.attempts, "retrying batch");
            if error.broker_unreachable() {
                // The leader may be gone: forget it, so the batch waits for metadata from
                // another broker instead of going back to a dead address.
                self.client.leader_moved(&key.0, key.1, None);
            }
            if error.needs_leader_refresh() {
                self.refresh_metadata();
            }
        } else if timed_out && error.is_retryable() {
            let after = self.config.delivery_timeout;
            self.fail(
                key,
                Error::DeliveryTimeout {
                    after,
                    last: Box::new(error),
                },
                false,
            );
        } else {
            // A fatal error code in the broker's answer means the batch was not appended.
            let refused = matches!(error, Error::Broker { .. });
            self.fail(key, error, refused);
        }
    }

    fn complete(&mut self, key: &Key, base_offset: u64) {
        let Some(batch) = self.pop(key) else { return };
        for (i, r) in batch.records.into_iter().enumerate() {
            r.notify.done(Ok(RecordMetadata {
                topic: key.0.to_string(),
                partition: key.1,
                offset: base_offset + i as u64,
                timestamp: r.timestamp,
            }));
        }
    }

    /// Fails the partition's front batch. `refused`: the broker answered that it did not
    /// append it, so its sequence numbers are free again for the next batch (else the next
    /// batch would leave a gap and be refused as out of order).
    fn fail(&mut self, key: &Key, error: Error, refused: bool) {
        let Some(batch) = self.pop(key) else { return };
        if let Some(sequence) = batch.base_sequence {
            if refused {
                if let Some(q) = self.queues.get_mut(key) {
                    q.next_sequence = sequence;
                }
            } else if self.bump == Bump::Idle && self.fatal.is_none() {
                // The broker may or may not hold this batch: a new epoch resets sequences.
                self.bump = Bump::Needed(Instant::now());
            }
        }
        tracing::debug!(topic = %key.0, partition = key.1, error = %error, "batch failed");
        for r in batch.records {
            r.notify.done(Err(error.clone()));
        }
    }

    fn pop(&mut self, key: &Key) -> Option<Sealed> {
        let q = self.queues.get_mut(key)?;
        q.in_flight = false;
        let batch = q.ready.pop_front()?;
        q.done += 1;
        if q.open.is_none() && q.ready.is_empty() && self.closing.is_none() {
            // Keep the sequence: the queue stays, only its buffers go.
            q.ready.shrink_to_fit();
        }
        Some(batch)
    }

    fn finish_flushes(&mut self) {
        let queues = &self.queues;
        let mut i = 0;
        while i < self.flushes.len() {
            let done = self.flushes[i]
                .0
                .iter()
                .all(|(k, target)| queues.get(k).is_none_or(|q| q.done >= *target));
            if done {
                let (_, tx) = self.flushes.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
    }
}

/// Seals `q`'s open batch.
fn seal(q: &mut PartitionQueue) {
    let Some(open) = q.open.take() else { return };
    if open.builder.is_empty() {
        return;
    }
    let record_count = open.builder.record_count();
    match open.builder.finish() {
        Ok(bytes) => {
            q.sealed += 1;
            q.ready.push_back(Sealed {
                bytes,
                record_count,
                base_sequence: None,
                records: open.records,
                _permits: open.permits,
                created: open.created,
                attempts: 0,
                retry_at: None,
            });
        }
        Err(e) => {
            for r in open.records {
                r.notify.done(Err(Error::Build(e)));
            }
        }
    }
}

/// The sequence after a batch of `count` records starting at `sequence`; sequences wrap to
/// 0 after `i32::MAX`, as in Kafka.
fn next_sequence(sequence: i32, count: u32) -> i32 {
    ((i64::from(sequence) + i64::from(count)) % (i64::from(i32::MAX) + 1)) as i32
}

/// `batch` with its producer id, epoch and base sequence set, and its CRC resealed.
fn with_sequence(batch: &Bytes, producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    let mut bytes = batch.to_vec();
    match BatchHeader::parse(&bytes) {
        Ok(mut header) => {
            header.producer_id = producer_id;
            header.producer_epoch = epoch;
            header.base_sequence = sequence;
            header.write(&mut bytes);
            seal_crc(&mut bytes);
            Bytes::from(bytes)
        }
        // Unreachable: the batch came from our own builder. Send it unchanged; the broker
        // will refuse it with a typed error.
        Err(_) => batch.clone(),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

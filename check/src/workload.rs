//! The workload: idempotent producers (each its own [`Client`]) sending unique values to the
//! partitions of an R3 topic, and streaming consumers recording what they read, all into one
//! [`Recorder`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use floe_client::{Client, Consumer, Error, Producer, ProducerRecord, StartFrom, TopicPartition};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::cluster::TOPIC;
use crate::history::{Event, History};
use crate::replica::show_value;
use crate::rng::Rng;

/// Collects events from every task, stamped from one monotonic clock.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    ops: AtomicU64,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            ops: AtomicU64::new(1),
        })
    }

    /// Microseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A fresh operation id.
    pub fn next_op(&self) -> u64 {
        self.ops.fetch_add(1, Ordering::Relaxed)
    }

    /// Records `event` (built with the current time).
    pub fn push(&self, event: impl FnOnce(u64) -> Event) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        // Stamp under the lock so the recorded order is the time order.
        let t = self.now();
        events.push(event(t));
    }

    /// Everything recorded so far.
    pub fn history(&self) -> History {
        History {
            events: self
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Acknowledged operations so far (for progress lines).
    pub fn count_ok(&self) -> usize {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| matches!(e, Event::Ok { .. }))
            .count()
    }
}

/// Where the clients connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Client addresses of the brokers.
    pub brokers: Vec<String>,
    /// The cluster CA.
    pub ca_cert: PathBuf,
    /// Partitions of the topic.
    pub partitions: u32,
}

/// Longest a client waits for one produce answer before calling it unknown.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(12);

/// Builds a client, retrying until `deadline` (brokers may be down or restarting).
pub async fn connect(target: &Target, deadline: Instant) -> Option<Client> {
    loop {
        let built = Client::builder()
            .brokers(target.brokers.iter().map(String::as_str))
            .ca_cert(target.ca_cert.clone())
            .request_timeout(Duration::from_secs(3))
            .build();
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(10), built).await {
            return Some(c);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn new_producer(client: &Client, deadline: Instant) -> Option<Producer> {
    loop {
        let built = Producer::builder(client)
            .linger(Duration::from_millis(1))
            .delivery_timeout(Duration::from_secs(10))
            .build();
        if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_secs(10), built).await {
            return Some(p);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How a produce error counts: `true` if the record may have been written (unknown), `false`
/// if it definitely was not (failed). Anything that could have reached a broker and been
/// written before the answer was lost is unknown: timeouts, lost connections, retryable
/// errors that ran out of retries (an earlier attempt may have landed), closes. What remains
/// are refusals that a broker (or the client, before sending) gives instead of writing: a
/// fenced producer, a sequence gap, a record too large, a bad request.
pub fn is_indeterminate(e: &Error) -> bool {
    e.is_retryable()
        || matches!(
            e,
            Error::DeliveryTimeout { .. }
                | Error::Timeout { .. }
                | Error::Call { .. }
                | Error::Connect { .. }
                | Error::Closed
        )
}

/// Sends one record and records invoke and outcome. Returns whether it was acknowledged.
pub async fn produce_one(
    rec: &Recorder,
    producer: &Producer,
    process: u32,
    partition: u32,
    value: String,
) -> Option<(u32, u64)> {
    let op = rec.next_op();
    rec.push(|t| Event::Invoke {
        t,
        process,
        op,
        partition,
        value: value.clone(),
    });
    let record = ProducerRecord::new(TOPIC, value.into_bytes()).partition(partition);
    match tokio::time::timeout(SEND_TIMEOUT, producer.send(record)).await {
        Ok(Ok(meta)) => {
            rec.push(|t| Event::Ok {
                t,
                op,
                partition: meta.partition,
                offset: meta.offset,
            });
            Some((meta.partition, meta.offset))
        }
        Ok(Err(e)) => {
            let error = e.to_string();
            if is_indeterminate(&e) {
                rec.push(|t| Event::Unknown { t, op, error });
            } else {
                rec.push(|t| Event::Fail { t, op, error });
            }
            None
        }
        Err(_) => {
            rec.push(|t| Event::Unknown {
                t,
                op,
                error: format!("no answer within {SEND_TIMEOUT:?}"),
            });
            None
        }
    }
}

/// One producer client: sends `"<process>-<n>"` to random partitions, one at a time, until
/// `stop` turns true. After three unanswered sends in a row it starts a new producer (a
/// stuck batch must not stall the process for the rest of the run).
pub async fn producer(
    process: u32,
    target: Target,
    rec: Arc<Recorder>,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::new(seed ^ (u64::from(process) << 32) ^ 0x70);
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let Some(client) = connect(&target, far).await else {
        return;
    };
    let mut n = 0u64;
    'outer: while !*stop.borrow() {
        let built = tokio::select! {
            p = new_producer(&client, far) => p,
            _ = stop.changed() => None,
        };
        let Some(producer) = built else {
            break;
        };
        let mut bad = 0;
        while !*stop.borrow() {
            let partition = rng.below(u64::from(target.partitions)) as u32;
            let value = format!("{process}-{n}");
            n += 1;
            if produce_one(&rec, &producer, process, partition, value)
                .await
                .is_some()
            {
                bad = 0;
            } else {
                bad += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                if bad >= 3 {
                    let _ = tokio::time::timeout(Duration::from_secs(2), producer.close()).await;
                    continue 'outer;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
    }
    tokio::time::timeout(Duration::from_secs(3), client.close())
        .await
        .ok();
}

/// Progress of a consumer: per partition, the next offset it expects.
pub type Progress = Arc<Mutex<Vec<u64>>>;

/// One consumer client: every partition assigned from offset 0, read with
/// [`Consumer::stream`]; each (re)start opens a new session per partition at the next offset
/// it has not read. Stops when `stop` turns true.
pub async fn consumer(
    id: u32,
    target: Target,
    rec: Arc<Recorder>,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) {
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut session = 0u32;
    while !*stop.borrow() {
        let Some(client) = connect(&target, far).await else {
            return;
        };
        let restart = read_until_error(
            id,
            &target,
            &rec,
            &progress,
            &mut session,
            &client,
            &mut stop,
        )
        .await;
        tokio::time::timeout(Duration::from_secs(3), client.close())
            .await
            .ok();
        if !restart {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Returns `true` to restart (an error), `false` when stopped.
async fn read_until_error(
    id: u32,
    target: &Target,
    rec: &Recorder,
    progress: &Progress,
    session: &mut u32,
    client: &Client,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let consumer = match Consumer::builder(client).build() {
        Ok(c) => c,
        Err(e) => {
            let s = *session;
            rec.push(|t| Event::ReadError {
                t,
                consumer: id,
                session: s,
                error: e.to_string(),
            });
            return true;
        }
    };
    let mut sessions = Vec::new();
    for p in 0..target.partitions {
        *session += 1;
        let s = *session;
        let from = progress.lock().unwrap_or_else(PoisonError::into_inner)[p as usize];
        rec.push(|t| Event::Subscribe {
            t,
            consumer: id,
            session: s,
            partition: p,
            from,
        });
        sessions.push(s);
        let assigned = tokio::time::timeout(
            Duration::from_secs(10),
            consumer.assign(TopicPartition::new(TOPIC, p), StartFrom::Offset(from)),
        )
        .await;
        let err = match assigned {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "assign timed out".to_string(),
        };
        rec.push(|t| Event::ReadError {
            t,
            consumer: id,
            session: s,
            error: err,
        });
        consumer.close();
        return true;
    }
    let mut stream = consumer.stream();
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            // Only `true` is ever sent (or the sender dropped): both mean stop.
            _ = stop.changed() => {
                consumer.close();
                return false;
            }
        };
        match next {
            Some(Ok(r)) => {
                let p = r.partition;
                let Some(&s) = sessions.get(p as usize) else {
                    continue;
                };
                let value = show_value(r.value.as_deref());
                let offset = r.offset;
                rec.push(|t| Event::Read {
                    t,
                    consumer: id,
                    session: s,
                    partition: p,
                    offset,
                    value,
                });
                let mut prog = progress.lock().unwrap_or_else(PoisonError::into_inner);
                prog[p as usize] = prog[p as usize].max(offset + 1);
            }
            Some(Err(e)) => {
                let s = *session;
                let error = e.to_string();
                rec.push(|t| Event::ReadError {
                    t,
                    consumer: id,
                    session: s,
                    error,
                });
                consumer.close();
                return true;
            }
            None => {
                consumer.close();
                return !*stop.borrow();
            }
        }
    }
}

/// Reads every partition from offset 0 until each one's `until` offset was read (a data record
/// the caller wrote last), or `deadline`. Returns per partition the `(offset, value)` pairs, or
/// `None` for a partition not read to its end in time.
pub async fn final_read(
    target: &Target,
    until: &[u64],
    deadline: Instant,
) -> Vec<Option<Vec<(u64, String)>>> {
    let mut out: Vec<Vec<(u64, String)>> = vec![Vec::new(); until.len()];
    let mut done = vec![false; until.len()];
    while Instant::now() < deadline && done.iter().any(|d| !d) {
        let Some(client) = connect(target, deadline).await else {
            break;
        };
        let Ok(consumer) = Consumer::builder(&client).build() else {
            continue;
        };
        let mut ok = true;
        for (p, records) in out.iter().enumerate() {
            if done[p] {
                continue;
            }
            let from = records.last().map_or(0, |(o, _)| o + 1);
            let assigned = tokio::time::timeout(
                Duration::from_secs(10),
                consumer.assign(
                    TopicPartition::new(TOPIC, p as u32),
                    StartFrom::Offset(from),
                ),
            )
            .await;
            if !matches!(assigned, Ok(Ok(()))) {
                ok = false;
                break;
            }
        }
        if ok {
            let mut stream = consumer.stream();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Some(Ok(r))) = tokio::time::timeout(left, stream.next()).await else {
                    break;
                };
                let p = r.partition as usize;
                if p >= out.len() || done[p] {
                    continue;
                }
                out[p].push((r.offset, show_value(r.value.as_deref())));
                if r.offset >= until[p] {
                    done[p] = true;
                    if done.iter().all(|d| *d) {
                        break;
                    }
                }
            }
        }
        consumer.close();
        tokio::time::timeout(Duration::from_secs(3), client.close())
            .await
            .ok();
    }
    out.into_iter()
        .zip(done)
        .map(|(r, d)| d.then_some(r))
        .collect()
}

//! The client service: the client protocol answered from the partitions this node hosts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use floe_net::{Handler, IncomingRequest};
use floe_protocol::batch::BatchHeader;
use floe_protocol::client::*;
use floe_protocol::{ErrorCode, FrameLimits};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::worker::{Busy, Cmd, PartitionStatus};
use super::{Hosted, Shared, Table};
use crate::controller::{Command, ControllerState, LiveLeader, TopicRecord};
use crate::partition::{self, FetchError, ProduceError};
use crate::telemetry;

/// The apis this broker answers (each at the protocol's version range).
const APIS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::ListTopics,
    ApiKey::DescribeTopics,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::Subscribe,
    ApiKey::SubscribeCredit,
    ApiKey::ListOffsets,
    ApiKey::InitProducerId,
    ApiKey::DescribeCluster,
    ApiKey::AlterPartitionReplicas,
];

/// Longest long-poll a fetch may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Longest a produce waits for its acknowledgement.
const MAX_PRODUCE_WAIT: Duration = Duration::from_secs(60);
/// A subscription re-checks its partitions at least this often (leadership moves).
const SUBSCRIBE_RECHECK: Duration = Duration::from_millis(100);

/// The floe-net [`Handler`] of the client protocol. See the module docs of [`super`].
#[derive(Debug)]
pub struct ClientService {
    shared: Arc<Shared>,
}

impl Handler for ClientService {
    async fn handle(&self, req: IncomingRequest) {
        self.serve(req).await;
    }
}

/// Where a partition request goes.
enum Route {
    /// This node leads it.
    Leader(Arc<Hosted>, PartitionStatus),
    /// Refused with this code (and leader hint).
    Refused(ErrorCode, Option<u64>),
}

impl ClientService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        ClientService { shared }
    }

    fn route(&self, topic: &str, partition: u32) -> Route {
        let (state, table) = (self.shared.controller.state(), self.shared.table());
        let Some(t) = state.topic(topic) else {
            return Route::Refused(ErrorCode::UnknownTopicOrPartition, None);
        };
        let Some(pa) = t.partitions.get(partition as usize) else {
            return Route::Refused(ErrorCode::UnknownTopicOrPartition, None);
        };
        let Some(h) = hosted_now(&table, t, partition) else {
            if pa.replicas.iter().any(|r| r.0 == self.shared.node_id) {
                // Placed here, not open yet.
                return Route::Refused(ErrorCode::LeaderNotAvailable, None);
            }
            // Not a replica here: the preferred leader is the best guess.
            return Route::Refused(ErrorCode::NotLeader, Some(pa.preferred_leader.0));
        };
        let status = *h.handle.status.borrow();
        if status.failed {
            return Route::Refused(ErrorCode::StorageError, None);
        }
        if !status.is_leader {
            return match status.leader {
                Some(l) => Route::Refused(ErrorCode::NotLeader, Some(l)),
                None => Route::Refused(ErrorCode::LeaderNotAvailable, None),
            };
        }
        Route::Leader(h, status)
    }

    async fn serve(&self, req: IncomingRequest) {
        let started = Instant::now();
        let cid = req.header.correlation_id;
        let request = match decode_client_frame(&req.frame, FrameLimits::default()) {
            Ok((_, ClientFrame::Request(r), _)) => r,
            _ => {
                count_errors("unknown", [ErrorCode::InvalidRequest]);
                let _ = req.responder.respond_error(ErrorCode::InvalidRequest).await;
                return;
            }
        };
        let api = api_label(request.api_key());
        let response = match request {
            Request::ApiVersions(_) => Response::from(self.api_versions()),
            Request::Metadata(r) => {
                let resp = self.metadata(r);
                count_errors(api, resp.topics.iter().map(|t| t.error));
                Response::from(resp)
            }
            Request::DescribeCluster(_) => Response::from(
                self.shared
                    .controller
                    .state()
                    .describe_cluster(&self.shared.cluster_id, self.shared.controller.leader()),
            ),
            Request::ListTopics(_) => Response::from(ListTopicsResponse {
                error: ErrorCode::None,
                topics: self.shared.controller.state().topic_listings(),
            }),
            Request::DescribeTopics(r) => {
                let (state, table) = (self.shared.controller.state(), self.shared.table());
                let leader_of = |t: &str, p: u32| live_leader(&state, &table, t, p);
                Response::from(counted(
                    api,
                    DescribeTopicsResponse {
                        topics: r
                            .names
                            .iter()
                            .map(|name| state.describe_topic(name, &leader_of))
                            .collect(),
                    },
                    |r| r.topics.iter().map(|t| t.error).collect(),
                ))
            }
            Request::CreateTopics(r) => {
                let resp = self.create_topics(r).await;
                Response::from(counted(api, resp, |r| {
                    r.results.iter().map(|t| t.error).collect()
                }))
            }
            Request::DeleteTopics(r) => {
                let resp = self.delete_topics(r).await;
                Response::from(counted(api, resp, |r| {
                    r.results.iter().map(|t| t.error).collect()
                }))
            }
            Request::AlterPartitionReplicas(r) => {
                let resp = self.alter_partition_replicas(r).await;
                count_errors(api, [resp.error]);
                Response::from(resp)
            }
            Request::InitProducerId(r) => {
                let resp = self.init_producer_id(r).await;
                count_errors(api, [resp.error]);
                Response::from(resp)
            }
            Request::Produce(r) => {
                let resp = self.produce(r).await;
                let codes = resp.topics.iter().flat_map(|t| &t.partitions);
                count_errors(api, codes.map(|p| p.error));
                Response::from(resp)
            }
            Request::Fetch(r) => {
                let resp = self.fetch(r).await;
                let codes = resp.topics.iter().flat_map(|t| &t.partitions);
                count_errors(api, codes.map(|p| p.error));
                Response::from(resp)
            }
            Request::ListOffsets(r) => {
                let resp = self.list_offsets(r).await;
                let codes = resp.topics.iter().flat_map(|t| &t.partitions);
                count_errors(api, codes.map(|p| p.error));
                Response::from(resp)
            }
            Request::Subscribe(r) => {
                self.subscribe(r, req, started).await;
                return;
            }
            _ => {
                count_errors(api, [ErrorCode::UnsupportedVersion]);
                let _ = req
                    .responder
                    .respond_error(ErrorCode::UnsupportedVersion)
                    .await;
                return;
            }
        };
        let _ = req
            .responder
            .respond(&mut response.encode_frame_chunks(cid))
            .await;
        metrics::histogram!(telemetry::REQUEST_LATENCY, "api" => api)
            .record(started.elapsed().as_secs_f64());
    }

    /// Allocates a producer id from this node's block of the controller's (unique
    /// cluster-wide and across restarts: the controller hands each block out once), or, for a
    /// producer re-initialising the id and epoch it holds, bumps that epoch: only if it is the
    /// id's current one (the controller keeps it), else `ProducerFenced` (a newer instance
    /// took the id over). An id whose epochs ran out gets a new id at epoch 0, as in Kafka.
    async fn init_producer_id(&self, r: InitProducerIdRequest) -> InitProducerIdResponse {
        let refused = |error| InitProducerIdResponse {
            error,
            producer_id: -1,
            producer_epoch: -1,
        };
        if r.producer_id >= 0 || r.producer_epoch >= 0 {
            let (Ok(id), Ok(epoch)) = (
                u64::try_from(r.producer_id),
                u16::try_from(r.producer_epoch),
            ) else {
                return refused(ErrorCode::InvalidRequest);
            };
            // At the last epoch there is no next one: a fresh id below.
            if epoch < crate::controller::MAX_PRODUCER_EPOCH {
                return match self.shared.bump_producer_epoch(id, epoch).await {
                    Ok(bumped) => InitProducerIdResponse {
                        error: ErrorCode::None,
                        producer_id: r.producer_id,
                        producer_epoch: i16::try_from(bumped).unwrap_or(i16::MAX),
                    },
                    Err(code) => refused(code),
                };
            }
        }
        match self.shared.allocate_producer_id().await {
            Some(producer_id) => InitProducerIdResponse {
                error: ErrorCode::None,
                producer_id,
                producer_epoch: 0,
            },
            None => InitProducerIdResponse {
                error: ErrorCode::CoordinatorNotAvailable,
                producer_id: -1,
                producer_epoch: -1,
            },
        }
    }

    /// Proposes each topic to the controller; each answer comes once the topic exists in this
    /// node's view (or the controller refused it).
    async fn create_topics(&self, r: CreateTopicsRequest) -> CreateTopicsResponse {
        let wait = Duration::from_millis(u64::from(r.timeout_ms));
        let mut results = Vec::new();
        for t in r.topics {
            if r.validate_only {
                let exists = self.shared.table().topic(&t.name).is_some();
                results.push(TopicResult {
                    error: if exists {
                        ErrorCode::TopicAlreadyExists
                    } else {
                        ErrorCode::None
                    },
                    message: None,
                    name: t.name,
                });
                continue;
            }
            let command = Command::CreateTopic {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                configs: t.configs.into_iter().map(|c| (c.name, c.value)).collect(),
            };
            results.push(self.admin(t.name, command, wait).await);
        }
        CreateTopicsResponse { results }
    }

    /// Proposes each deletion to the controller; each answer comes once this node's view no
    /// longer has the topic (and its partitions here are stopping).
    async fn delete_topics(&self, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let wait = Duration::from_millis(u64::from(r.timeout_ms));
        let mut results = Vec::new();
        for name in r.names {
            let command = Command::DeleteTopic { name: name.clone() };
            results.push(self.admin(name, command, wait).await);
        }
        DeleteTopicsResponse { results }
    }

    /// Proposes the new replica set to the controller; answered once this node's view has
    /// it (the move itself then proceeds in the partition's Raft group).
    async fn alter_partition_replicas(
        &self,
        r: AlterPartitionReplicasRequest,
    ) -> AlterPartitionReplicasResponse {
        if r.replicas.is_empty()
            || r.replicas.len() > usize::from(crate::controller::MAX_REPLICATION_FACTOR)
        {
            // Refused here too, so an oversized list never reaches the controller's log.
            let e = crate::controller::ControllerError::InvalidReplicaCount {
                count: u32::try_from(r.replicas.len()).unwrap_or(u32::MAX),
            };
            return AlterPartitionReplicasResponse {
                error: e.code(),
                message: Some(e.to_string()),
            };
        }
        let wait = Duration::from_millis(u64::from(r.timeout_ms));
        let command = Command::AlterPartitionReplicas {
            topic: r.topic.clone(),
            partition: r.partition,
            replicas: r.replicas.iter().map(|&n| floe_raft::NodeId(n)).collect(),
        };
        let t = self.admin(r.topic, command, wait).await;
        AlterPartitionReplicasResponse {
            error: t.error,
            message: t.message,
        }
    }

    async fn admin(&self, name: String, command: Command, wait: Duration) -> TopicResult {
        match self.shared.propose_admin(command, wait).await {
            Ok(o) => TopicResult {
                name,
                error: o.code,
                message: o.message,
            },
            Err(e) => TopicResult {
                name,
                error: ErrorCode::RequestTimedOut,
                message: Some(e.to_string()),
            },
        }
    }

    fn api_versions(&self) -> ApiVersionsResponse {
        ApiVersionsResponse {
            error: ErrorCode::None,
            cluster_id: self.shared.cluster_id.clone(),
            node_id: self.shared.node_id,
            apis: api_version_ranges(APIS),
            max_frame_len: floe_protocol::frame::DEFAULT_MAX_FRAME_LEN,
            max_batch_len: self.shared.max_batch_bytes,
        }
    }

    fn metadata(&self, r: MetadataRequest) -> MetadataResponse {
        let (state, table) = (self.shared.controller.state(), self.shared.table());
        let leader_of = |t: &str, p: u32| live_leader(&state, &table, t, p);
        state.metadata(
            &self.shared.cluster_id,
            self.shared.controller.leader(),
            r.topics.as_deref(),
            &leader_of,
        )
    }

    async fn produce(&self, r: ProduceRequest) -> ProduceResponse {
        let acks = match r.acks {
            Acks::All => partition::Acks::All,
            // `None` is answered like `Leader`: after the local durable append.
            Acks::Leader | Acks::None => partition::Acks::Leader,
        };
        let wait = Duration::from_millis(u64::from(r.timeout_ms)).min(MAX_PRODUCE_WAIT);
        let deadline = Instant::now() + wait;
        // Phase 1: queue every batch of every partition, so partitions proceed together.
        // Each batch's answer, record count and size.
        type Waits = Vec<(
            oneshot::Receiver<Result<partition::Produced, ProduceError>>,
            u64,
            u64,
        )>;
        let mut queued: Vec<(String, Vec<(ProducePartitionResult, Waits)>)> = Vec::new();
        for t in r.topics {
            let mut parts = Vec::new();
            for pp in t.partitions {
                let mut result = ProducePartitionResult {
                    partition: pp.partition,
                    error: ErrorCode::None,
                    base_offset: 0,
                    log_start_offset: 0,
                    current_leader: None,
                    message: None,
                };
                let mut waits = Vec::new();
                match self.route(&t.name, pp.partition) {
                    Route::Refused(code, leader) => {
                        result.error = code;
                        result.current_leader = leader;
                    }
                    Route::Leader(h, status) => {
                        result.log_start_offset = status.log_start;
                        match split_batches(pp.batches) {
                            None => result.error = ErrorCode::CorruptBatch,
                            Some(batches) => {
                                for (batch, records) in batches {
                                    let size = batch.len() as u64;
                                    let (tx, rx) = oneshot::channel();
                                    let cmd = Cmd::Produce {
                                        batch,
                                        acks,
                                        reply: tx,
                                    };
                                    if let Err(busy) = h.handle.send(cmd) {
                                        result.error = match busy {
                                            Busy::Full => ErrorCode::RequestTimedOut,
                                            Busy::Gone => ErrorCode::LeaderNotAvailable,
                                        };
                                        break;
                                    }
                                    waits.push((rx, records, size));
                                }
                            }
                        }
                    }
                }
                parts.push((result, waits));
            }
            queued.push((t.name, parts));
        }
        // Phase 2: collect the answers.
        let mut topics = Vec::new();
        for (name, parts) in queued {
            let mut results = Vec::new();
            for (mut result, waits) in parts {
                for (i, (rx, records, size)) in waits.into_iter().enumerate() {
                    let answer = tokio::time::timeout_at(deadline, rx).await;
                    if result.error != ErrorCode::None {
                        continue;
                    }
                    match answer {
                        Err(_) => result.error = ErrorCode::RequestTimedOut,
                        Ok(Err(_)) => {
                            let leader =
                                self.shared.hosted(&name, result.partition).and_then(|h| {
                                    let s = *h.handle.status.borrow();
                                    s.leader.filter(|_| !s.is_leader)
                                });
                            result.error = ErrorCode::NotLeader;
                            result.current_leader = leader;
                        }
                        Ok(Ok(Ok(p))) => {
                            if i == 0 {
                                result.base_offset = p.base_offset;
                            }
                            if let Some(h) = self.shared.hosted(&name, result.partition) {
                                h.metrics.produce_records.increment(records);
                                h.metrics.produce_bytes.increment(size);
                            }
                        }
                        Ok(Ok(Err(e))) => {
                            result.error = e.code();
                            result.current_leader = leader_hint(&e);
                            result.message = Some(e.to_string());
                        }
                    }
                }
                results.push(result);
            }
            topics.push(ProduceTopicResult {
                name,
                partitions: results,
            });
        }
        ProduceResponse { topics }
    }

    /// Reads committed batches of one partition; `Err` is the partition's error result.
    async fn read(
        &self,
        h: &Hosted,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Option<floe_storage::ReadBatches>, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::Read {
            offset,
            max_bytes,
            reply: tx,
        };
        h.handle.send(cmd).map_err(|b| match b {
            Busy::Full => ErrorCode::RequestTimedOut,
            Busy::Gone => ErrorCode::LeaderNotAvailable,
        })?;
        match rx.await {
            Err(_) => Err(ErrorCode::LeaderNotAvailable),
            Ok(Ok(rb)) if rb.bytes.is_empty() => Ok(None),
            Ok(Ok(rb)) => Ok(Some(rb)),
            Ok(Err(FetchError::OffsetOutOfRange { .. })) => Err(ErrorCode::OffsetOutOfRange),
            Ok(Err(_)) => Err(ErrorCode::StorageError),
        }
    }

    async fn fetch(&self, r: FetchRequest) -> FetchResponse {
        let wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_WAIT);
        let deadline = Instant::now() + wait;
        let min_bytes = r.min_bytes.max(1) as usize;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut budget = r.max_bytes as usize;
            let mut total = 0usize;
            let mut topics = Vec::new();
            for t in &r.topics {
                let mut parts = Vec::new();
                for fp in &t.partitions {
                    let mut res = FetchPartitionResult {
                        partition: fp.partition,
                        error: ErrorCode::None,
                        high_watermark: 0,
                        log_start_offset: 0,
                        current_leader: None,
                        batches: Bytes::new(),
                    };
                    match self.route(&t.name, fp.partition) {
                        Route::Refused(code, leader) => {
                            res.error = code;
                            res.current_leader = leader;
                        }
                        Route::Leader(h, status) => {
                            res.high_watermark = status.high_watermark;
                            res.log_start_offset = status.log_start;
                            let max = (fp.max_bytes as usize).min(budget);
                            if !fetchable(fp.fetch_offset, &status) {
                                res.error = ErrorCode::OffsetOutOfRange;
                            } else if fp.fetch_offset < status.high_watermark && max > 0 {
                                match self.read(&h, fp.fetch_offset, max).await {
                                    Ok(Some(rb)) => {
                                        budget = budget.saturating_sub(rb.bytes.len());
                                        total += rb.bytes.len();
                                        res.batches = rb.bytes;
                                    }
                                    Ok(None) => {}
                                    Err(code) => res.error = code,
                                }
                            }
                        }
                    }
                    if res.error != ErrorCode::None {
                        // An error is news: answer now.
                        total = total.max(min_bytes);
                    }
                    parts.push(res);
                }
                topics.push(FetchTopicResult {
                    name: t.name.clone(),
                    partitions: parts,
                });
            }
            if total >= min_bytes || Instant::now() >= deadline {
                // Counted once, for the answer sent (a long poll may read more than once).
                for t in &topics {
                    for p in t.partitions.iter().filter(|p| !p.batches.is_empty()) {
                        if let Some(h) = self.shared.hosted(&t.name, p.partition) {
                            h.metrics.fetch_bytes.increment(p.batches.len() as u64);
                        }
                    }
                }
                return FetchResponse { topics };
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    async fn list_offsets(&self, r: ListOffsetsRequest) -> ListOffsetsResponse {
        let mut topics = Vec::new();
        for t in r.topics {
            let mut parts = Vec::new();
            for lp in &t.partitions {
                let mut res = ListOffsetsPartitionResult {
                    partition: lp.partition,
                    error: ErrorCode::None,
                    offset: 0,
                    timestamp: -1,
                    current_leader: None,
                };
                match self.route(&t.name, lp.partition) {
                    Route::Refused(code, leader) => {
                        res.error = code;
                        res.current_leader = leader;
                    }
                    Route::Leader(h, status) => match lp.spec {
                        OffsetSpec::Earliest => res.offset = status.log_start,
                        OffsetSpec::Latest => res.offset = status.high_watermark,
                        OffsetSpec::Timestamp(ts) => {
                            let (tx, rx) = oneshot::channel();
                            if h.handle.send(Cmd::LookupTime { ts, reply: tx }).is_err() {
                                res.error = ErrorCode::LeaderNotAvailable;
                            } else {
                                match rx.await {
                                    Err(_) => res.error = ErrorCode::LeaderNotAvailable,
                                    // No record that late: the high watermark (Kafka's answer
                                    // is "latest").
                                    Ok(None) => res.offset = status.high_watermark,
                                    // The batch holding the first record at or after `ts`
                                    // (the time index is per batch).
                                    Ok(Some((offset, max_ts))) => {
                                        res.offset = offset;
                                        res.timestamp = max_ts;
                                    }
                                }
                            }
                        }
                    },
                }
                parts.push(res);
            }
            topics.push(ListOffsetsTopicResult {
                name: t.name,
                partitions: parts,
            });
        }
        ListOffsetsResponse { topics }
    }

    /// Serves one subscription until it ends; `started`: when its request was read.
    async fn subscribe(&self, r: SubscribeRequest, req: IncomingRequest, started: Instant) {
        let cid = req.header.correlation_id;
        let mut responder = req.responder;
        let mut reader = req.reader;
        // (topic, partition, next offset, max bytes, active)
        let mut subs: Vec<(String, u32, u64, u32, bool)> = Vec::new();
        let mut status = Vec::new();
        for t in &r.topics {
            let mut parts = Vec::new();
            for fp in &t.partitions {
                let mut st = SubscribePartitionStatus {
                    partition: fp.partition,
                    error: ErrorCode::None,
                    high_watermark: 0,
                    log_start_offset: 0,
                    current_leader: None,
                };
                match self.route(&t.name, fp.partition) {
                    Route::Refused(code, leader) => {
                        st.error = code;
                        st.current_leader = leader;
                    }
                    Route::Leader(_, s) => {
                        st.high_watermark = s.high_watermark;
                        st.log_start_offset = s.log_start;
                        if !fetchable(fp.fetch_offset, &s) {
                            st.error = ErrorCode::OffsetOutOfRange;
                        } else {
                            subs.push((
                                t.name.clone(),
                                fp.partition,
                                fp.fetch_offset,
                                fp.max_bytes.max(1),
                                true,
                            ));
                        }
                    }
                }
                parts.push(st);
            }
            status.push(SubscribeTopicStatus {
                name: t.name.clone(),
                partitions: parts,
            });
        }
        let codes = status.iter().flat_map(|t| &t.partitions);
        count_errors("subscribe", codes.map(|p| p.error));
        let response = Response::from(SubscribeResponse { topics: status });
        if responder
            .send(&mut response.encode_frame_chunks(cid))
            .await
            .is_err()
        {
            return;
        }
        metrics::histogram!(telemetry::REQUEST_LATENCY, "api" => "subscribe")
            .record(started.elapsed().as_secs_f64());
        // Byte credit (0 = unlimited), topped up by SubscribeCredit frames on the stream.
        let credit = Arc::new(AtomicU64::new(if r.initial_credit == 0 {
            u64::MAX
        } else {
            r.initial_credit
        }));
        let credit_changed = Arc::new(Notify::new());
        let closed = Arc::new(AtomicBool::new(false));
        let credit_task = {
            let (credit, changed, closed) =
                (credit.clone(), credit_changed.clone(), closed.clone());
            tokio::spawn(async move {
                while let Ok(Some(frame)) = reader.read_frame().await {
                    if let Ok((_, ClientFrame::Request(Request::SubscribeCredit(c)), _)) =
                        decode_client_frame(&frame, FrameLimits::default())
                    {
                        let _ = credit.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                            Some(v.saturating_add(c.bytes))
                        });
                        changed.notify_waiters();
                    }
                }
                closed.store(true, Ordering::Release);
                changed.notify_waiters();
            })
        };
        loop {
            let changed = self.shared.changed.notified();
            let credit_wait = credit_changed.notified();
            tokio::pin!(changed, credit_wait);
            changed.as_mut().enable();
            credit_wait.as_mut().enable();
            if closed.load(Ordering::Acquire) || !subs.iter().any(|s| s.4) {
                break;
            }
            let mut events = Vec::new();
            let mut sent = 0u64;
            for sub in subs.iter_mut().filter(|s| s.4) {
                let available = credit.load(Ordering::Acquire).saturating_sub(sent);
                let route = self.route(&sub.0, sub.1);
                let (h, st) = match route {
                    Route::Leader(h, st) => (h, st),
                    Route::Refused(code, leader) => {
                        // Leadership moved: reported once, then no longer pushed.
                        count_errors("subscribe", [code]);
                        sub.4 = false;
                        events.push(event(&sub.0, sub.1, code, leader, 0, 0, Bytes::new()));
                        continue;
                    }
                };
                if sub.2 >= st.high_watermark || available == 0 {
                    continue;
                }
                let max = (sub.3 as u64).min(available) as usize;
                match self.read(&h, sub.2, max).await {
                    Ok(Some(rb)) => {
                        h.metrics.subscribe_bytes.increment(rb.bytes.len() as u64);
                        sub.2 = rb.next_offset;
                        sent += rb.bytes.len() as u64;
                        events.push(event(
                            &sub.0,
                            sub.1,
                            ErrorCode::None,
                            None,
                            st.high_watermark,
                            st.log_start,
                            rb.bytes,
                        ));
                    }
                    Ok(None) => {}
                    Err(code) => {
                        count_errors("subscribe", [code]);
                        sub.4 = false;
                        events.push(event(
                            &sub.0,
                            sub.1,
                            code,
                            None,
                            st.high_watermark,
                            st.log_start,
                            Bytes::new(),
                        ));
                    }
                }
            }
            if sent > 0 {
                let _ = credit.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(sent))
                });
            }
            if !events.is_empty() {
                let push = Push::from(SubscribeEvent { topics: events });
                // QUIC flow control paces this send: a slow reader stalls it.
                if responder
                    .send(&mut push.encode_frame_chunks(cid))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = changed => {}
                _ = credit_wait => {}
                _ = tokio::time::sleep(SUBSCRIBE_RECHECK) => {}
            }
        }
        credit_task.abort();
        let _ = responder.finish();
    }
}

/// The hosted replica of partition `partition` of topic `t` (this incarnation of the topic:
/// the table may still hold a deleted namesake's replica for a moment).
fn hosted_now(table: &Table, t: &TopicRecord, partition: u32) -> Option<Arc<Hosted>> {
    table
        .hosted(&t.name, partition)
        .filter(|h| h.group_id == super::group_id(t.id, partition))
        .cloned()
}

/// The leader of a partition as this node knows it: its own replica's view where it hosts
/// one; else (no replica here, or one not open yet) the controller's preferred leader
/// (term 0) as a hint: a client that asks it is redirected with `NotLeader` if it does not
/// lead.
fn live_leader(
    state: &ControllerState,
    table: &Table,
    topic: &str,
    partition: u32,
) -> Option<LiveLeader> {
    let t = state.topic(topic)?;
    let pa = t.partitions.get(partition as usize)?;
    match hosted_now(table, t, partition) {
        Some(h) => {
            let s = *h.handle.status.borrow();
            s.leader.map(|node| LiveLeader { node, term: s.term })
        }
        // Not hosted here, or placed here and not open yet.
        None => Some(LiveLeader {
            node: pa.preferred_leader.0,
            term: 0,
        }),
    }
}

/// One partition's news on a subscription.
fn event(
    topic: &str,
    partition: u32,
    error: ErrorCode,
    current_leader: Option<u64>,
    high_watermark: u64,
    log_start_offset: u64,
    batches: Bytes,
) -> FetchTopicResult {
    FetchTopicResult {
        name: topic.to_owned(),
        partitions: vec![FetchPartitionResult {
            partition,
            error,
            high_watermark,
            log_start_offset,
            current_leader,
            batches,
        }],
    }
}

fn leader_hint(e: &ProduceError) -> Option<u64> {
    match e {
        ProduceError::NotLeader { leader } | ProduceError::Overwritten { leader } => {
            leader.map(|n| n.0)
        }
        _ => None,
    }
}

/// The `api` label of a request's metrics (a fixed set: label cardinality stays bounded).
fn api_label(key: ApiKey) -> &'static str {
    match key {
        ApiKey::ApiVersions => "api_versions",
        ApiKey::Metadata => "metadata",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::ListTopics => "list_topics",
        ApiKey::DescribeTopics => "describe_topics",
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::Subscribe => "subscribe",
        ApiKey::SubscribeCredit => "subscribe_credit",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::AlterPartitionReplicas => "alter_partition_replicas",
        _ => "other",
    }
}

/// Counts every non-`None` code among `codes` in `floe_request_errors_total{api, code}`.
fn count_errors(api: &'static str, codes: impl IntoIterator<Item = ErrorCode>) {
    for code in codes {
        if code != ErrorCode::None {
            metrics::counter!(telemetry::REQUEST_ERRORS, "api" => api, "code" => code.name())
                .increment(1);
        }
    }
}

/// Counts the error codes `codes` finds in `response`, then hands it back.
fn counted<R>(api: &'static str, response: R, codes: impl FnOnce(&R) -> Vec<ErrorCode>) -> R {
    count_errors(api, codes(&response));
    response
}

/// Splits a produce request's partition payload into its batches with their record counts
/// (by each header's `batch_len`; the replica validates each one). `None`: a header is
/// unreadable or a length runs past the end.
fn split_batches(mut rest: Bytes) -> Option<Vec<(Bytes, u64)>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let h = BatchHeader::parse(&rest).ok()?;
        let len = h.batch_len as usize;
        if len == 0 || len > rest.len() {
            return None;
        }
        out.push((rest.split_to(len), u64::from(h.record_count)));
    }
    if out.is_empty() {
        return None;
    }
    Some(out)
}

/// Whether a fetch or subscription may start at `offset` on a leader in `status`: anywhere
/// from the log start to the log end. Between the high watermark and the log end the data
/// is appended but not committed yet (an `acks=leader` producer may already know those
/// offsets): the reader waits for the commit, as Kafka's does. Only past the log end, or
/// below the log start, is it out of range.
fn fetchable(offset: u64, status: &PartitionStatus) -> bool {
    (status.log_start..=status.log_end.max(status.high_watermark)).contains(&offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_range_is_log_start_to_log_end_not_the_high_watermark() {
        let status = PartitionStatus {
            is_leader: true,
            leader: Some(1),
            term: 3,
            high_watermark: 20,
            log_start: 10,
            log_end: 25,
            failed: false,
            departed: false,
        };
        assert!(!fetchable(9, &status), "below the log start");
        for committed in 10..20 {
            assert!(fetchable(committed, &status));
        }
        for uncommitted in 20..=25 {
            assert!(fetchable(uncommitted, &status), "{uncommitted}: waits");
        }
        assert!(!fetchable(26, &status), "past the log end");
    }
}

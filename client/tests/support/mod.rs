//! A fake floe cluster for the client's tests: N nodes on loopback QUIC (floe-net's server
//! side), sharing in-memory partitions, with fault knobs the tests turn.
//!
//! It behaves like the real broker where the client can tell: leaders answer produce, fetch,
//! subscribe and list offsets, others answer `NotLeader` with the leader; idempotent produce
//! dedupes by (producer id, partition, sequence) and answers a retried batch with
//! `DuplicateSequence` and the original offset. Test-only code.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use floe_net::{Endpoint, EndpointOptions, Identity, IncomingRequest};
use floe_protocol::batch::{BatchIter, BatchLimits, BatchView, stamp};
use floe_protocol::client::*;
use floe_protocol::{ErrorCode, FrameLimits};
use tokio::sync::Notify;

pub const WAIT: Duration = Duration::from_secs(10);

/// A CA and node certificates for 127.0.0.1.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
            dir,
        }
    }

    pub fn ca_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn identity(&self, name: &str) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        Identity::from_pem_files(c, k).unwrap()
    }
}

#[derive(Debug, Default)]
pub struct ProducerState {
    pub epoch: i16,
    /// (first sequence, last sequence, base offset) of recent batches.
    pub batches: Vec<(i32, i32, u64)>,
}

#[derive(Debug, Default)]
pub struct FakePartition {
    pub leader: u64,
    /// Stamped batches in offset order.
    pub log: Vec<Bytes>,
    pub next_offset: u64,
    pub producers: HashMap<i64, ProducerState>,
}

impl FakePartition {
    /// Every record value in the log, in offset order.
    pub fn values(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for b in &self.log {
            let view = BatchView::parse(b.clone(), BatchLimits::default()).unwrap();
            for r in view.records().unwrap().iter() {
                out.push(r.unwrap().value.unwrap_or_default().to_vec());
            }
        }
        out
    }
}

/// Faults the tests turn on.
#[derive(Debug, Default)]
pub struct Knobs {
    /// Answer `NotLeader` once for this partition, naming this new leader, and move it.
    pub not_leader_once: Option<(String, u32, u64)>,
    /// Append, then never answer, this many produce requests.
    pub drop_produce_responses: usize,
    /// Sleep this long before answering produce requests.
    pub produce_delay: Option<Duration>,
    /// Refuse every produce partition with this code (nothing appended).
    pub refuse_produce: Option<ErrorCode>,
    /// Never answer produce requests and append nothing (a broker lost in the network).
    pub black_hole_produce: bool,
    /// Leave these apis out of the handshake's list.
    pub handshake_without: Vec<u16>,
    /// Refuse subscriptions with `UnsupportedVersion` (though the handshake lists them).
    pub refuse_subscribe: bool,
    /// End every subscription after its first push with records, the way a broker does when
    /// leadership moves: stop reading credit, send `NotLeader` (naming this node), finish.
    pub end_subscriptions_after_push: bool,
    /// Answer this many subscriptions (at an offset above 0) `OffsetOutOfRange` with a high
    /// watermark just below their offset: a leader elected moments ago that has not yet
    /// learned the commit point.
    pub lagging_high_watermark: usize,
    /// Refuse admin requests with `NotController` this many times.
    pub not_controller: usize,
    /// These nodes answer nothing more (handshakes included) and push nothing on open
    /// subscriptions, while their QUIC connections stay up: a hung or killed process whose
    /// connections have not timed out yet.
    pub silent_nodes: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub produce_requests: usize,
    pub produce_partitions: Vec<usize>,
    pub metadata_requests: usize,
    pub fetch_requests: usize,
    pub pushed_bytes: u64,
    pub connections: usize,
    pub last_acks: Option<Acks>,
    pub epoch_bumps: usize,
}

#[derive(Debug)]
pub struct State {
    pub topics: BTreeMap<String, Vec<FakePartition>>,
    pub nodes: Vec<(u64, SocketAddr)>,
    pub knobs: Knobs,
    pub stats: Stats,
    pub next_producer_id: i64,
}

pub struct FakeCluster {
    pub ca: TestCa,
    pub state: Arc<Mutex<State>>,
    pub appended: Arc<Notify>,
    pub endpoints: Vec<Endpoint>,
}

impl FakeCluster {
    /// `nodes` fake brokers on 127.0.0.1.
    pub fn start(nodes: u64) -> Self {
        let ca = TestCa::new();
        let state = Arc::new(Mutex::new(State {
            topics: BTreeMap::new(),
            nodes: Vec::new(),
            knobs: Knobs::default(),
            stats: Stats::default(),
            next_producer_id: 1000,
        }));
        let appended = Arc::new(Notify::new());
        let mut endpoints = Vec::new();
        for id in 1..=nodes {
            let identity = ca.identity(&format!("node-{id}"));
            let ep = Endpoint::client_listener(
                "127.0.0.1:0".parse().unwrap(),
                &identity,
                &EndpointOptions::loopback(),
            )
            .unwrap();
            state
                .lock()
                .unwrap()
                .nodes
                .push((id, ep.local_addr().unwrap()));
            spawn_node(id, &ep, &state, &appended);
            endpoints.push(ep);
        }
        FakeCluster {
            ca,
            state,
            appended,
            endpoints,
        }
    }

    /// Stops node `node` (closing every connection to it) and starts it again on the same
    /// address.
    pub async fn restart(&mut self, node: u64) {
        let i = node as usize - 1;
        let old = self.endpoints.remove(i);
        let addr = old.local_addr().unwrap();
        old.close(0, b"restart");
        let _ = tokio::time::timeout(Duration::from_secs(2), old.wait_idle()).await;
        drop(old);
        let identity = self.ca.identity(&format!("node-{node}"));
        let mut tries = 0;
        let ep = loop {
            match Endpoint::client_listener(addr, &identity, &EndpointOptions::loopback()) {
                Ok(ep) => break ep,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "cannot rebind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        spawn_node(node, &ep, &self.state, &self.appended);
        self.endpoints.insert(i, ep);
    }

    /// Node `node` stops answering (see [`Knobs::silent_nodes`]) and the cluster moves the
    /// leadership of every partition it led to `new_leader`; the other nodes' metadata says
    /// so.
    pub fn stop_answering(&self, node: u64, new_leader: u64) {
        self.with(|s| {
            s.knobs.silent_nodes.push(node);
            for p in s.topics.values_mut().flatten() {
                if p.leader == node {
                    p.leader = new_leader;
                }
            }
        });
    }

    pub fn addr(&self, node: u64) -> String {
        self.endpoints[node as usize - 1]
            .local_addr()
            .unwrap()
            .to_string()
    }

    pub fn add_topic(&self, name: &str, partitions: u32, leader: u64) {
        let mut s = self.state.lock().unwrap();
        let parts = (0..partitions)
            .map(|_| FakePartition {
                leader,
                ..Default::default()
            })
            .collect();
        s.topics.insert(name.to_string(), parts);
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn values(&self, topic: &str, partition: u32) -> Vec<Vec<u8>> {
        self.with(|s| s.topics[topic][partition as usize].values())
    }

    /// A client builder trusting this cluster's CA, bootstrapped at node 1, with short
    /// timeouts for tests.
    pub fn client(&self) -> floe_client::ClientBuilder {
        floe_client::Client::builder()
            .brokers([self.addr(1)])
            .ca_pem(self.ca.pem.clone())
            .endpoint_options(EndpointOptions::loopback())
            .request_timeout(Duration::from_secs(2))
            .retries(5, Duration::from_millis(10))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
    }

    /// Appends a batch to a partition directly (as if another producer wrote it).
    pub fn append(&self, topic: &str, partition: u32, batch: Bytes) -> u64 {
        let base = self.with(|s| {
            let p = &mut s.topics.get_mut(topic).unwrap()[partition as usize];
            append(p, batch)
        });
        self.appended.notify_waiters();
        base
    }
}

fn spawn_node(id: u64, ep: &Endpoint, state: &Arc<Mutex<State>>, appended: &Arc<Notify>) {
    let node = Node {
        id,
        state: state.clone(),
        appended: appended.clone(),
    };
    let handler = floe_net::handler_fn(move |req: IncomingRequest| {
        let node = node.clone();
        async move { node.handle(req).await }
    });
    tokio::spawn(floe_net::serve(
        ep.clone(),
        Arc::new(handler),
        Default::default(),
    ));
}

fn append(p: &mut FakePartition, batch: Bytes) -> u64 {
    let view = BatchView::parse(batch, BatchLimits::default()).unwrap();
    let base = p.next_offset;
    let mut bytes = view.as_bytes().to_vec();
    stamp(&mut bytes, base, 1);
    p.next_offset += u64::from(view.header().record_count);
    p.log.push(Bytes::from(bytes));
    base
}

#[derive(Clone)]
struct Node {
    id: u64,
    state: Arc<Mutex<State>>,
    appended: Arc<Notify>,
}

fn respond_frame(response: Response, cid: u32) -> Vec<Bytes> {
    response.encode_frame_chunks(cid)
}

impl Node {
    fn silent(&self) -> bool {
        self.state
            .lock()
            .unwrap()
            .knobs
            .silent_nodes
            .contains(&self.id)
    }

    async fn handle(&self, req: IncomingRequest) {
        if self.silent() {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let cid = req.header.correlation_id;
        let Ok((_, ClientFrame::Request(request), _)) =
            decode_client_frame(&req.frame, FrameLimits::default())
        else {
            let _ = req.responder.respond_error(ErrorCode::InvalidRequest).await;
            return;
        };
        let response = match request {
            Request::ApiVersions(r) => {
                let mut s = self.state.lock().unwrap();
                s.stats.connections += 1;
                let without = s.knobs.handshake_without.clone();
                Response::from(ApiVersionsResponse {
                    error: ErrorCode::None,
                    cluster_id: "fake".into(),
                    node_id: self.id,
                    apis: r
                        .apis
                        .into_iter()
                        .filter(|a| !without.contains(&a.api_key))
                        .collect(),
                    max_frame_len: floe_protocol::frame::DEFAULT_MAX_FRAME_LEN,
                    max_batch_len: 1 << 20,
                })
            }
            Request::Metadata(r) => self.metadata(r),
            Request::Subscribe(_) if self.state.lock().unwrap().knobs.refuse_subscribe => {
                let _ = req
                    .responder
                    .respond_error(ErrorCode::UnsupportedVersion)
                    .await;
                return;
            }
            Request::Subscribe(r) => {
                self.subscribe(r, req).await;
                return;
            }
            Request::Produce(_) if self.state.lock().unwrap().knobs.black_hole_produce => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Request::Produce(r) => {
                let (response, drop) = self.produce(r).await;
                if drop {
                    // The append happened; the answer is lost. Hold the stream open.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                response
            }
            other => match self.admin(other) {
                Some(r) => r,
                None => {
                    let _ = req.responder.respond_error(ErrorCode::NotController).await;
                    return;
                }
            },
        };
        let _ = req
            .responder
            .respond(&mut respond_frame(response, cid))
            .await;
    }

    fn metadata(&self, r: MetadataRequest) -> Response {
        let mut s = self.state.lock().unwrap();
        s.stats.metadata_requests += 1;
        let names: Vec<String> = r
            .topics
            .unwrap_or_else(|| s.topics.keys().cloned().collect());
        let topics = names
            .into_iter()
            .map(|name| match s.topics.get(&name) {
                None => TopicMetadata {
                    error: ErrorCode::UnknownTopicOrPartition,
                    name,
                    internal: false,
                    partitions: vec![],
                },
                Some(parts) => TopicMetadata {
                    error: ErrorCode::None,
                    name,
                    internal: false,
                    partitions: partitions_of(parts),
                },
            })
            .collect();
        Response::from(MetadataResponse {
            brokers: brokers(&s),
            cluster_id: "fake".into(),
            controller_id: Some(1),
            topics,
        })
    }

    /// Admin and lookup apis; `None` = refuse with `NotController` (a knob).
    fn admin(&self, request: Request) -> Option<Response> {
        let mut s = self.state.lock().unwrap();
        let is_admin = matches!(
            request,
            Request::CreateTopics(_) | Request::DeleteTopics(_) | Request::ListTopics(_)
        );
        if is_admin && s.knobs.not_controller > 0 {
            s.knobs.not_controller -= 1;
            return None;
        }
        Some(match request {
            Request::CreateTopics(r) => {
                let mut results = Vec::new();
                for t in r.topics {
                    let error = if s.topics.contains_key(&t.name) {
                        ErrorCode::TopicAlreadyExists
                    } else if t.partitions == 0 {
                        ErrorCode::InvalidPartitions
                    } else {
                        let parts = (0..t.partitions)
                            .map(|i| FakePartition {
                                leader: 1 + u64::from(i) % s.nodes.len() as u64,
                                ..Default::default()
                            })
                            .collect();
                        s.topics.insert(t.name.clone(), parts);
                        ErrorCode::None
                    };
                    results.push(TopicResult {
                        name: t.name,
                        error,
                        message: None,
                    });
                }
                Response::from(CreateTopicsResponse { results })
            }
            Request::DeleteTopics(r) => Response::from(DeleteTopicsResponse {
                results: r
                    .names
                    .into_iter()
                    .map(|name| TopicResult {
                        error: if s.topics.remove(&name).is_some() {
                            ErrorCode::None
                        } else {
                            ErrorCode::UnknownTopicOrPartition
                        },
                        name,
                        message: None,
                    })
                    .collect(),
            }),
            Request::ListTopics(_) => Response::from(ListTopicsResponse {
                error: ErrorCode::None,
                topics: s
                    .topics
                    .iter()
                    .map(|(name, parts)| TopicListing {
                        name: name.clone(),
                        partitions: parts.len() as u32,
                        replication_factor: 1,
                        internal: false,
                    })
                    .collect(),
            }),
            Request::DescribeTopics(r) => Response::from(DescribeTopicsResponse {
                topics: r
                    .names
                    .into_iter()
                    .map(|name| match s.topics.get(&name) {
                        None => TopicDescription {
                            error: ErrorCode::UnknownTopicOrPartition,
                            name,
                            internal: false,
                            partitions: vec![],
                            configs: vec![],
                        },
                        Some(parts) => TopicDescription {
                            error: ErrorCode::None,
                            name,
                            internal: false,
                            partitions: partitions_of(parts),
                            configs: vec![ConfigEntry {
                                name: "fsync".into(),
                                value: "always".into(),
                            }],
                        },
                    })
                    .collect(),
            }),
            Request::DescribeCluster(_) => Response::from(DescribeClusterResponse {
                error: ErrorCode::None,
                cluster_id: "fake".into(),
                controller_id: Some(1),
                brokers: brokers(&s),
            }),
            Request::InitProducerId(r) if r.producer_id >= 0 => {
                // Bump the epoch of an existing producer.
                s.stats.epoch_bumps += 1;
                Response::from(InitProducerIdResponse {
                    error: ErrorCode::None,
                    producer_id: r.producer_id,
                    producer_epoch: r.producer_epoch + 1,
                })
            }
            Request::InitProducerId(_) => {
                s.next_producer_id += 1;
                Response::from(InitProducerIdResponse {
                    error: ErrorCode::None,
                    producer_id: s.next_producer_id,
                    producer_epoch: 0,
                })
            }
            Request::ListOffsets(r) => Response::from(ListOffsetsResponse {
                topics: r
                    .topics
                    .into_iter()
                    .map(|t| ListOffsetsTopicResult {
                        partitions: t
                            .partitions
                            .iter()
                            .map(|lp| list_offset(&s, self.id, &t.name, lp))
                            .collect(),
                        name: t.name,
                    })
                    .collect(),
            }),
            Request::Fetch(r) => {
                s.stats.fetch_requests += 1;
                Response::from(FetchResponse {
                    topics: r
                        .topics
                        .into_iter()
                        .map(|t| FetchTopicResult {
                            partitions: t
                                .partitions
                                .iter()
                                .map(|fp| fetch(&s, self.id, &t.name, fp))
                                .collect(),
                            name: t.name,
                        })
                        .collect(),
                })
            }
            _ => Response::from(ListTopicsResponse {
                error: ErrorCode::UnsupportedVersion,
                topics: vec![],
            }),
        })
    }

    /// Appends (or dedupes) every partition's batches. Returns the response and whether to
    /// drop it.
    async fn produce(&self, r: ProduceRequest) -> (Response, bool) {
        let delay = self.state.lock().unwrap().knobs.produce_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut s = self.state.lock().unwrap();
        s.stats.produce_requests += 1;
        s.stats.last_acks = Some(r.acks);
        let count = r.topics.iter().map(|t| t.partitions.len()).sum();
        s.stats.produce_partitions.push(count);
        let mut topics = Vec::new();
        for t in r.topics {
            let mut results = Vec::new();
            for pp in t.partitions {
                let result = produce_partition(&mut s, self.id, &t.name, pp);
                results.push(result);
            }
            topics.push(ProduceTopicResult {
                name: t.name,
                partitions: results,
            });
        }
        let lose = s.knobs.drop_produce_responses > 0;
        if lose {
            s.knobs.drop_produce_responses -= 1;
        }
        drop(s);
        self.appended.notify_waiters();
        (Response::from(ProduceResponse { topics }), lose)
    }

    async fn subscribe(&self, r: SubscribeRequest, req: IncomingRequest) {
        let cid = req.header.correlation_id;
        let mut responder = req.responder;
        let mut reader = req.reader;
        // (topic, partition, next offset, max bytes)
        let mut subs = Vec::new();
        let mut status = Vec::new();
        {
            let mut s = self.state.lock().unwrap();
            for t in &r.topics {
                let mut parts = Vec::new();
                for fp in &t.partitions {
                    if s.knobs.lagging_high_watermark > 0 && fp.fetch_offset > 0 {
                        s.knobs.lagging_high_watermark -= 1;
                        parts.push(SubscribePartitionStatus {
                            partition: fp.partition,
                            error: ErrorCode::OffsetOutOfRange,
                            high_watermark: fp.fetch_offset - 1,
                            log_start_offset: 0,
                            current_leader: None,
                        });
                        continue;
                    }
                    let p = s
                        .topics
                        .get(&t.name)
                        .and_then(|p| p.get(fp.partition as usize));
                    let (error, leader, hw) = match p {
                        None => (ErrorCode::UnknownTopicOrPartition, None, 0),
                        Some(p) if p.leader != self.id => (ErrorCode::NotLeader, Some(p.leader), 0),
                        Some(p) if fp.fetch_offset > p.next_offset => {
                            (ErrorCode::OffsetOutOfRange, None, p.next_offset)
                        }
                        Some(p) => (ErrorCode::None, None, p.next_offset),
                    };
                    if error.is_ok() {
                        subs.push((t.name.clone(), fp.partition, fp.fetch_offset, fp.max_bytes));
                    }
                    parts.push(SubscribePartitionStatus {
                        partition: fp.partition,
                        error,
                        high_watermark: hw,
                        log_start_offset: 0,
                        current_leader: leader,
                    });
                }
                status.push(SubscribeTopicStatus {
                    name: t.name.clone(),
                    partitions: parts,
                });
            }
        }
        let response = Response::from(SubscribeResponse { topics: status });
        if responder
            .send(&mut respond_frame(response, cid))
            .await
            .is_err()
        {
            return;
        }
        // Credit: 0 = unlimited. Credit frames arrive on the reader.
        let credit = Arc::new(Mutex::new(if r.initial_credit == 0 {
            u64::MAX
        } else {
            r.initial_credit
        }));
        let credit_changed = Arc::new(Notify::new());
        let credit_task = {
            let credit = credit.clone();
            let changed = credit_changed.clone();
            tokio::spawn(async move {
                while let Ok(Some(frame)) = reader.read_frame().await {
                    if let Ok((_, ClientFrame::Request(Request::SubscribeCredit(c)), _)) =
                        decode_client_frame(&frame, FrameLimits::default())
                    {
                        let mut cr = credit.lock().unwrap();
                        *cr = cr.saturating_add(c.bytes);
                        changed.notify_waiters();
                    }
                }
            })
        };
        loop {
            if self.silent() {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            let appended = self.appended.notified();
            let credit_wait = credit_changed.notified();
            tokio::pin!(appended, credit_wait);
            appended.as_mut().enable();
            credit_wait.as_mut().enable();
            let mut event_topics: Vec<FetchTopicResult> = Vec::new();
            let mut sent = 0u64;
            {
                let mut s = self.state.lock().unwrap();
                let available = *credit.lock().unwrap();
                for sub in subs.iter_mut() {
                    let Some(p) = s.topics.get(&sub.0).and_then(|p| p.get(sub.1 as usize)) else {
                        continue;
                    };
                    if sub.3 == 0 {
                        continue;
                    }
                    if p.leader != self.id {
                        // Leadership moved: report it once and stop pushing this partition.
                        event_topics.push(FetchTopicResult {
                            name: sub.0.clone(),
                            partitions: vec![FetchPartitionResult {
                                partition: sub.1,
                                error: ErrorCode::NotLeader,
                                high_watermark: 0,
                                log_start_offset: 0,
                                current_leader: Some(p.leader),
                                batches: Bytes::new(),
                            }],
                        });
                        sub.3 = 0;
                        continue;
                    }
                    if sent >= available {
                        break;
                    }
                    let mut batches = Vec::new();
                    let mut bytes = 0usize;
                    for b in &p.log {
                        let h = floe_protocol::batch::BatchHeader::parse(b).unwrap();
                        if h.next_offset() <= sub.2 {
                            continue;
                        }
                        if bytes > 0 && bytes + b.len() > sub.3 as usize {
                            break;
                        }
                        if sent + bytes as u64 >= available {
                            break;
                        }
                        bytes += b.len();
                        batches.extend_from_slice(b);
                        sub.2 = h.next_offset();
                    }
                    if bytes == 0 {
                        continue;
                    }
                    sent += bytes as u64;
                    event_topics.push(FetchTopicResult {
                        name: sub.0.clone(),
                        partitions: vec![FetchPartitionResult {
                            partition: sub.1,
                            error: ErrorCode::None,
                            high_watermark: p.next_offset,
                            log_start_offset: 0,
                            current_leader: None,
                            batches: Bytes::from(batches),
                        }],
                    });
                }
                s.stats.pushed_bytes += sent;
                if sent > 0 {
                    let mut cr = credit.lock().unwrap();
                    *cr = cr.saturating_sub(sent);
                }
            }
            if event_topics.is_empty() {
                tokio::select! {
                    _ = appended => {}
                    _ = credit_wait => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            let push = Push::from(SubscribeEvent {
                topics: event_topics,
            });
            let mut frame = push.encode_frame_chunks(cid);
            if responder.send(&mut frame).await.is_err() {
                return;
            }
            if sent > 0
                && self
                    .state
                    .lock()
                    .unwrap()
                    .knobs
                    .end_subscriptions_after_push
            {
                // Stop reading credit first (the client's next grant fails), then the
                // partition's last event, then the end of the stream.
                credit_task.abort();
                let _ = credit_task.await;
                let ended = Push::from(SubscribeEvent {
                    topics: subs
                        .iter()
                        .map(|sub| FetchTopicResult {
                            name: sub.0.clone(),
                            partitions: vec![FetchPartitionResult {
                                partition: sub.1,
                                error: ErrorCode::NotLeader,
                                high_watermark: 0,
                                log_start_offset: 0,
                                current_leader: Some(self.id),
                                batches: Bytes::new(),
                            }],
                        })
                        .collect(),
                });
                let _ = responder.send(&mut ended.encode_frame_chunks(cid)).await;
                let _ = responder.finish();
                return;
            }
        }
    }
}

fn brokers(s: &State) -> Vec<BrokerInfo> {
    s.nodes
        .iter()
        .map(|(id, addr)| BrokerInfo {
            node_id: *id,
            host: addr.ip().to_string(),
            port: addr.port(),
            rack: None,
        })
        .collect()
}

fn partitions_of(parts: &[FakePartition]) -> Vec<PartitionMetadata> {
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| PartitionMetadata {
            error: ErrorCode::None,
            partition: i as u32,
            leader: Some(p.leader),
            leader_term: 1,
            replicas: vec![p.leader],
            in_sync: vec![p.leader],
        })
        .collect()
}

fn produce_partition(
    s: &mut State,
    node: u64,
    topic: &str,
    pp: ProducePartition,
) -> ProducePartitionResult {
    let mut result = ProducePartitionResult {
        partition: pp.partition,
        error: ErrorCode::None,
        base_offset: 0,
        log_start_offset: 0,
        current_leader: None,
        message: None,
    };
    if let Some((t, p, new_leader)) = s.knobs.not_leader_once.clone()
        && t == topic
        && p == pp.partition
    {
        s.knobs.not_leader_once = None;
        if let Some(part) = s.topics.get_mut(topic).and_then(|x| x.get_mut(p as usize)) {
            part.leader = new_leader;
        }
        result.error = ErrorCode::NotLeader;
        result.current_leader = Some(new_leader);
        return result;
    }
    if let Some(code) = s.knobs.refuse_produce {
        result.error = code;
        return result;
    }
    let Some(part) = s
        .topics
        .get_mut(topic)
        .and_then(|x| x.get_mut(pp.partition as usize))
    else {
        result.error = ErrorCode::UnknownTopicOrPartition;
        return result;
    };
    if part.leader != node {
        result.error = ErrorCode::NotLeader;
        result.current_leader = Some(part.leader);
        return result;
    }
    let mut first = true;
    for batch in BatchIter::new(pp.batches, BatchLimits::default()) {
        let Ok(view) = batch else {
            result.error = ErrorCode::CorruptBatch;
            return result;
        };
        let h = *view.header();
        if h.producer_id >= 0 {
            let st = part.producers.entry(h.producer_id).or_default();
            if h.producer_epoch < st.epoch {
                result.error = ErrorCode::ProducerFenced;
                return result;
            }
            if h.producer_epoch > st.epoch {
                // A new epoch starts a new sequence.
                st.batches.clear();
            }
            st.epoch = h.producer_epoch;
            let last_seq = h.base_sequence + h.record_count as i32 - 1;
            if let Some(&(_, _, off)) = st
                .batches
                .iter()
                .find(|(f, l, _)| *f == h.base_sequence && *l == last_seq)
            {
                result.error = ErrorCode::DuplicateSequence;
                result.base_offset = off;
                return result;
            }
            let expected = st.batches.last().map_or(0, |(_, l, _)| l + 1);
            if h.base_sequence != expected {
                result.error = ErrorCode::OutOfOrderSequence;
                return result;
            }
            let base = part.next_offset;
            st.batches.push((h.base_sequence, last_seq, base));
        }
        let base = append(part, view.as_bytes().clone());
        if first {
            result.base_offset = base;
            first = false;
        }
    }
    result
}

fn list_offset(
    s: &State,
    node: u64,
    topic: &str,
    lp: &ListOffsetsPartition,
) -> ListOffsetsPartitionResult {
    let mut r = ListOffsetsPartitionResult {
        partition: lp.partition,
        error: ErrorCode::None,
        offset: 0,
        timestamp: -1,
        current_leader: None,
    };
    let Some(p) = s
        .topics
        .get(topic)
        .and_then(|x| x.get(lp.partition as usize))
    else {
        r.error = ErrorCode::UnknownTopicOrPartition;
        return r;
    };
    if p.leader != node {
        r.error = ErrorCode::NotLeader;
        r.current_leader = Some(p.leader);
        return r;
    }
    r.offset = match lp.spec {
        OffsetSpec::Earliest => 0,
        OffsetSpec::Latest => p.next_offset,
        OffsetSpec::Timestamp(ts) => {
            let mut found = p.next_offset;
            'outer: for b in &p.log {
                let view = BatchView::parse(b.clone(), BatchLimits::default()).unwrap();
                for rec in view.records().unwrap().iter() {
                    let rec = rec.unwrap();
                    if rec.timestamp >= ts {
                        found = rec.offset;
                        r.timestamp = rec.timestamp;
                        break 'outer;
                    }
                }
            }
            found
        }
    };
    r
}

fn fetch(s: &State, node: u64, topic: &str, fp: &FetchPartition) -> FetchPartitionResult {
    let mut r = FetchPartitionResult {
        partition: fp.partition,
        error: ErrorCode::None,
        high_watermark: 0,
        log_start_offset: 0,
        current_leader: None,
        batches: Bytes::new(),
    };
    let Some(p) = s
        .topics
        .get(topic)
        .and_then(|x| x.get(fp.partition as usize))
    else {
        r.error = ErrorCode::UnknownTopicOrPartition;
        return r;
    };
    if p.leader != node {
        r.error = ErrorCode::NotLeader;
        r.current_leader = Some(p.leader);
        return r;
    }
    r.high_watermark = p.next_offset;
    let mut out = Vec::new();
    for b in &p.log {
        let h = floe_protocol::batch::BatchHeader::parse(b).unwrap();
        if h.next_offset() > fp.fetch_offset && out.len() < fp.max_bytes as usize {
            out.extend_from_slice(b);
        }
    }
    r.batches = Bytes::from(out);
    r
}

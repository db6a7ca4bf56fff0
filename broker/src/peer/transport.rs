//! The peer transport: Raft messages between nodes over floe-net QUIC.
//!
//! - One QUIC connection per node pair (mutual TLS, ALPN `floe-peer/1`), dialled by the
//!   sender and re-dialled with exponential backoff when it fails.
//! - One unidirectional stream (a *lane*) per Raft group on that connection: a group's
//!   messages stay in order, and on the receiving side every lane is read by a task of its
//!   own, so one group's backlog never delays another's delivery.
//! - Sending never blocks the caller: each peer has a bounded queue; when it is full (the peer
//!   is down or slow) the message is dropped, which Raft tolerates (it retransmits).
//! - Inbound frames are decoded with the protocol's frame limit, mapped to Raft messages
//!   ([`super::codec`]) and handed to the node's router through a bounded channel; a lane that
//!   sends a malformed frame is stopped.
//!
//! - Peers can be added while running ([`PeerTransport::add_peer`]): the node learns brokers'
//!   peer addresses from their controller registrations.
//! - Unary calls ([`PeerTransport::call`]: `ControllerCall`, `ControllerFetch`) go on
//!   bidirectional streams of a connection of their own per peer (dialled on first use and
//!   re-dialled when it fails), so a long-polling call never waits behind Raft traffic; inbound
//!   ones go to the handler set with [`PeerTransport::set_unary_handler`] (refused until then).
//!
//! Not yet: the `PeerHello` handshake (cluster id, checking that a sender's node id matches its
//! certificate), coalescing heartbeats across groups, one writer task per lane.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use floe_net::{
    CallError, Endpoint, FrameWriter, IncomingRequest, IncomingStream, ServeOptions, StreamCode,
};
use floe_protocol::peer::{PeerFrame, PeerRequest, PeerResponse, decode_peer_frame};
use floe_protocol::{ErrorCode, FrameLimits};
use floe_raft::Message;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::codec::{from_request, to_request};

/// Where a peer listens: its address and the name its certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// The peer's UDP address.
    pub addr: SocketAddr,
    /// The DNS name (or IP) its certificate must carry.
    pub server_name: String,
}

/// One Raft message of one group, as delivered to (or sent by) a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    /// The Raft group (partition or controller) id.
    pub group_id: u64,
    /// The message.
    pub message: Message,
}

/// Tunables of the transport.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Messages queued per peer before new ones are dropped.
    pub queue_per_peer: usize,
    /// Inbound messages queued for the router before lanes wait.
    pub inbound_queue: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// A frame write that takes longer drops the connection (it is re-dialled).
    pub write_timeout: Duration,
    /// Limits on inbound frames.
    pub limits: FrameLimits,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            queue_per_peer: 4096,
            inbound_queue: 4096,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            limits: FrameLimits::default(),
        }
    }
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No address is known for the destination node.
    #[error("unknown peer node {0}")]
    UnknownPeer(u64),
    /// The peer's queue is full (it is down or slow); the message was dropped.
    #[error("queue to node {0} is full; message dropped")]
    QueueFull(u64),
    /// The transport was shut down.
    #[error("transport stopped")]
    Stopped,
}

/// Why a unary call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    /// No address is known for the destination node.
    #[error("unknown peer node {0}")]
    UnknownPeer(u64),
    /// The peer could not be reached.
    #[error("connecting to node {node}: {reason}")]
    Connect {
        /// The node.
        node: u64,
        /// Why.
        reason: String,
    },
    /// The call failed on the connection (it is re-dialled next time).
    #[error("calling node {node}: {source}")]
    Call {
        /// The node.
        node: u64,
        /// Why.
        source: CallError,
    },
    /// No answer in time.
    #[error("node {0} did not answer in time")]
    Timeout(u64),
}

/// What a unary-call handler returns: the response, or `None` to refuse the call.
pub type UnaryFuture = Pin<Box<dyn Future<Output = Option<PeerResponse>> + Send>>;

/// Serves inbound unary peer calls (see [`PeerTransport::set_unary_handler`]).
pub type UnaryHandler = Arc<dyn Fn(PeerRequest) -> UnaryFuture + Send + Sync>;

/// Where the unary handler goes once the node has one (cleared at shutdown: the handler
/// usually holds the transport).
struct UnarySlot(RwLock<Option<UnaryHandler>>);

impl UnarySlot {
    fn get(&self) -> Option<UnaryHandler> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, handler: Option<UnaryHandler>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = handler;
    }
}

impl std::fmt::Debug for UnarySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnarySlot")
            .field("set", &self.get().is_some())
            .finish()
    }
}

/// A node's peer transport. See the module docs.
#[derive(Debug)]
pub struct PeerTransport {
    node_id: u64,
    endpoint: Endpoint,
    options: TransportOptions,
    /// Per peer: its address and its Raft message queue.
    links: RwLock<HashMap<u64, (PeerAddress, mpsc::Sender<GroupMessage>)>>,
    /// Per peer: the connection unary calls use.
    calls: tokio::sync::Mutex<HashMap<u64, floe_net::quinn::Connection>>,
    unary: Arc<UnarySlot>,
    tasks: Mutex<JoinSet<()>>,
}

impl PeerTransport {
    /// Starts serving `endpoint` (a peer endpoint: [`Endpoint::peer`]) and one link task per
    /// peer in `peers`. Must be called inside a tokio runtime. Returns the transport and the
    /// stream of inbound messages addressed to `node_id`.
    pub fn start(
        node_id: u64,
        endpoint: Endpoint,
        peers: BTreeMap<u64, PeerAddress>,
        options: TransportOptions,
    ) -> (PeerTransport, mpsc::Receiver<GroupMessage>) {
        let (in_tx, in_rx) = mpsc::channel(options.inbound_queue.max(1));
        let mut tasks = JoinSet::new();
        let unary = Arc::new(UnarySlot(RwLock::new(None)));
        let handler = Arc::new(Inbound {
            node_id,
            tx: in_tx,
            limits: options.limits,
            unary: unary.clone(),
        });
        let serve_options = ServeOptions {
            limits: options.limits,
            ..ServeOptions::default()
        };
        tasks.spawn(floe_net::serve(endpoint.clone(), handler, serve_options));
        let transport = PeerTransport {
            node_id,
            endpoint,
            options,
            links: RwLock::new(HashMap::new()),
            calls: tokio::sync::Mutex::new(HashMap::new()),
            unary,
            tasks: Mutex::new(tasks),
        };
        for (id, addr) in peers {
            transport.add_peer(id, addr);
        }
        (transport, in_rx)
    }

    /// Starts a link to node `id` at `addr`, or moves it there if it is known at another
    /// address (its old link ends). This node itself and an unchanged address are no-ops.
    /// Must be called inside the tokio runtime.
    pub fn add_peer(&self, id: u64, addr: PeerAddress) {
        if id == self.node_id {
            return;
        }
        let mut links = self.links.write().unwrap_or_else(|e| e.into_inner());
        if links.get(&id).is_some_and(|(known, _)| *known == addr) {
            return;
        }
        let (tx, rx) = mpsc::channel(self.options.queue_per_peer.max(1));
        let link = run_link(
            self.endpoint.clone(),
            addr.clone(),
            rx,
            self.options.clone(),
        );
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(link);
        links.insert(id, (addr, tx));
    }

    /// The address known for node `id`.
    pub fn peer_address(&self, id: u64) -> Option<PeerAddress> {
        let links = self.links.read().unwrap_or_else(|e| e.into_inner());
        links.get(&id).map(|(a, _)| a.clone())
    }

    /// Sets the handler of inbound unary calls (replacing any earlier one).
    pub fn set_unary_handler(&self, handler: UnaryHandler) {
        self.unary.set(Some(handler));
    }

    /// Makes one unary call to node `to` and waits at most `wait` for its answer. The
    /// connection is kept for later calls and re-dialled after a failure.
    pub async fn call(
        &self,
        to: u64,
        request: &PeerRequest,
        wait: Duration,
    ) -> Result<PeerResponse, PeerCallError> {
        let addr = self
            .peer_address(to)
            .ok_or(PeerCallError::UnknownPeer(to))?;
        let attempt = async {
            let conn = {
                let mut calls = self.calls.lock().await;
                match calls.get(&to) {
                    Some(c) if c.close_reason().is_none() => c.clone(),
                    _ => {
                        let c = self
                            .endpoint
                            .connect(addr.addr, &addr.server_name)
                            .await
                            .map_err(|e| PeerCallError::Connect {
                                node: to,
                                reason: e.to_string(),
                            })?;
                        calls.insert(to, c.clone());
                        c
                    }
                }
            };
            match floe_net::call_peer(&conn, request, 1, self.options.limits).await {
                Ok(r) => Ok(r),
                Err(source) => {
                    // Re-dial next time (a refusal is an answer, not a broken connection).
                    if !matches!(source, CallError::Refused(_)) {
                        self.calls.lock().await.remove(&to);
                    }
                    Err(PeerCallError::Call { node: to, source })
                }
            }
        };
        match tokio::time::timeout(wait, attempt).await {
            Ok(r) => r,
            Err(_) => Err(PeerCallError::Timeout(to)),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The local peer address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Queues `message` of group `group_id` for its destination (`message.to`). Never blocks.
    pub fn send(&self, group_id: u64, message: Message) -> Result<(), SendError> {
        let to = message.to.0;
        let links = self.links.read().unwrap_or_else(|e| e.into_inner());
        let (_, link) = links.get(&to).ok_or(SendError::UnknownPeer(to))?;
        link.try_send(GroupMessage { group_id, message })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::QueueFull(to),
                mpsc::error::TrySendError::Closed(_) => SendError::Stopped,
            })
    }

    /// Stops the link tasks and the server, drops the call connections and closes the
    /// endpoint. Takes `&self` because the node's parts share the transport.
    pub async fn shutdown(&self) {
        self.links
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.calls.lock().await.clear();
        self.unary.set(None);
        self.endpoint.close(0, b"shutdown");
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Dials `peer`, writes each queued message on its group's lane, re-dials on failure.
async fn run_link(
    endpoint: Endpoint,
    peer: PeerAddress,
    mut rx: mpsc::Receiver<GroupMessage>,
    options: TransportOptions,
) {
    let mut backoff = options.backoff_min;
    // A message taken from the queue but not written when the connection failed.
    let mut carried: Option<GroupMessage> = None;
    loop {
        let conn = match endpoint.connect(peer.addr, &peer.server_name).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(peer = %peer.addr, error = %e, "peer connect failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.backoff_max);
                // What queued meanwhile is stale: Raft resends what still matters.
                carried = None;
                loop {
                    match rx.try_recv() {
                        Ok(_) => {}
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                continue;
            }
        };
        backoff = options.backoff_min;
        let mut lanes: HashMap<u64, FrameWriter> = HashMap::new();
        loop {
            let next = match carried.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => {
                        for lane in lanes.values_mut() {
                            let _ = lane.finish();
                        }
                        return;
                    }
                },
            };
            if let Err(e) = write(&conn, &mut lanes, &next, options.write_timeout).await {
                tracing::debug!(peer = %peer.addr, error = %e, "peer link failed; re-dialling");
                carried = Some(next);
                break;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("opening a lane failed: {0}")]
    Open(#[from] floe_net::quinn::ConnectionError),
    #[error("writing a frame failed: {0}")]
    Write(#[from] floe_net::StreamError),
    #[error("writing a frame timed out")]
    Timeout,
}

async fn write(
    conn: &floe_net::quinn::Connection,
    lanes: &mut HashMap<u64, FrameWriter>,
    m: &GroupMessage,
    write_timeout: Duration,
) -> Result<(), LinkError> {
    let lane = match lanes.entry(m.group_id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(floe_net::open_frame_stream(conn).await?)
        }
    };
    let mut chunks = to_request(m.group_id, &m.message).encode_frame_chunks(0);
    match tokio::time::timeout(write_timeout, lane.write_frame(&mut chunks)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::Timeout),
    }
}

/// Serves inbound lanes: decode, map, hand to the router.
#[derive(Debug)]
struct Inbound {
    node_id: u64,
    tx: mpsc::Sender<GroupMessage>,
    limits: FrameLimits,
    unary: Arc<UnarySlot>,
}

impl floe_net::Handler for Inbound {
    async fn handle(&self, request: IncomingRequest) {
        let cid = request.header.correlation_id;
        let decoded = match decode_peer_frame(&request.frame, self.limits) {
            Ok((_, PeerFrame::Request(r), _)) => r,
            _ => {
                let _ = request
                    .responder
                    .respond_error(ErrorCode::InvalidRequest)
                    .await;
                return;
            }
        };
        let answer = match self.unary.get() {
            Some(handler) => handler(decoded).await,
            None => None,
        };
        let _ = match answer {
            Some(response) => {
                request
                    .responder
                    .respond(&mut response.encode_frame_chunks(cid))
                    .await
            }
            // Hello and Forward are not served; nor is anything before the node is ready.
            None => {
                request
                    .responder
                    .respond_error(ErrorCode::UnsupportedVersion)
                    .await
            }
        };
    }

    async fn handle_stream(&self, mut stream: IncomingStream) {
        while let Ok(Some(frame)) = stream.reader.read_frame().await {
            let messages = match decode_peer_frame(&frame, self.limits) {
                Ok((_, PeerFrame::Request(req), _)) => from_request(req).ok(),
                _ => None,
            };
            let Some(messages) = messages else {
                tracing::warn!(remote = %stream.connection.remote_address(), "bad peer frame; stopping the lane");
                stream.reader.stop(StreamCode::MALFORMED_FRAME);
                return;
            };
            for (group_id, message) in messages {
                if message.to.0 != self.node_id {
                    continue;
                }
                if self
                    .tx
                    .send(GroupMessage { group_id, message })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

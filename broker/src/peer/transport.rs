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
//! Not yet: the `PeerHello` handshake (cluster id, checking that a sender's node id matches its
//! certificate), coalescing heartbeats across groups, one writer task per lane.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use floe_net::{Endpoint, FrameWriter, IncomingRequest, IncomingStream, ServeOptions, StreamCode};
use floe_protocol::peer::{PeerFrame, decode_peer_frame};
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

/// A node's peer transport. See the module docs.
#[derive(Debug)]
pub struct PeerTransport {
    node_id: u64,
    endpoint: Endpoint,
    links: HashMap<u64, mpsc::Sender<GroupMessage>>,
    tasks: JoinSet<()>,
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
        let handler = Arc::new(Inbound {
            node_id,
            tx: in_tx,
            limits: options.limits,
        });
        let serve_options = ServeOptions {
            limits: options.limits,
            ..ServeOptions::default()
        };
        tasks.spawn(floe_net::serve(endpoint.clone(), handler, serve_options));
        let mut links = HashMap::new();
        for (id, addr) in peers.into_iter().filter(|(id, _)| *id != node_id) {
            let (tx, rx) = mpsc::channel(options.queue_per_peer.max(1));
            links.insert(id, tx);
            tasks.spawn(run_link(endpoint.clone(), addr, rx, options.clone()));
        }
        let transport = PeerTransport {
            node_id,
            endpoint,
            links,
            tasks,
        };
        (transport, in_rx)
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
        let link = self.links.get(&to).ok_or(SendError::UnknownPeer(to))?;
        link.try_send(GroupMessage { group_id, message })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::QueueFull(to),
                mpsc::error::TrySendError::Closed(_) => SendError::Stopped,
            })
    }

    /// Stops the link tasks and the server and closes the endpoint.
    pub async fn shutdown(mut self) {
        self.links.clear();
        self.endpoint.close(0, b"shutdown");
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
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
}

impl floe_net::Handler for Inbound {
    async fn handle(&self, request: IncomingRequest) {
        // Unary peer calls (Hello, Forward) are not served yet.
        let _ = request
            .responder
            .respond_error(ErrorCode::UnsupportedVersion)
            .await;
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

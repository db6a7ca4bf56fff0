//! Unary calls and the server's stream dispatcher.
//!
//! The requester side is [`call`] (raw frames) and its typed forms [`call_client`] and
//! [`call_peer`]: open a bidirectional stream, write one request frame, finish, read one
//! response frame. The server side is [`serve_connection`]: it accepts every bidirectional
//! stream of a connection, reads its first frame, checks the envelope, and runs the
//! [`Handler`] for it in a task of its own, so one slow request never holds up another.
//! Unidirectional streams ([`open_frame_stream`] / [`IncomingStream`]) carry one-way frames
//! in order, for the peer protocol's Raft lanes.
//! QUIC's `max_concurrent_bidi_streams` bounds how many run at once per connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use floe_protocol::client::{ClientFrame, Request, Response, decode_client_frame};
use floe_protocol::frame::{FrameHeader, FrameKind, decode_envelope, encode_error_frame};
use floe_protocol::peer::{PeerFrame, PeerRequest, PeerResponse, decode_peer_frame};
use floe_protocol::{DecodeError, ErrorCode, FrameLimits};
use quinn::{Connection, ConnectionError};
use tokio::task::JoinSet;

use crate::endpoint::{Endpoint, connection_error_is_retryable};
use crate::stream::{FrameReader, FrameWriter, StreamCode, StreamError};

/// A unary call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No stream could be opened: the connection is gone.
    #[error("cannot open a stream: {0}")]
    Open(#[source] ConnectionError),
    /// Writing the request failed.
    #[error("sending the request: {0}")]
    Send(#[source] StreamError),
    /// Reading the response failed (including a response over the frame limit).
    #[error("receiving the response: {0}")]
    Receive(#[source] StreamError),
    /// The responder finished the stream without a response frame.
    #[error("the stream ended without a response")]
    NoResponse,
    /// The response frame could not be decoded.
    #[error("undecodable response: {0}")]
    Decode(#[from] DecodeError),
    /// The responder answered with a frame-level error (empty body).
    #[error("request refused: {}", .0.name())]
    Refused(ErrorCode),
    /// The response did not answer this request (another kind, api or correlation id).
    #[error("unexpected response: api {api_key} kind {kind:?} correlation id {correlation_id}")]
    Unexpected {
        /// Its api key.
        api_key: u16,
        /// Its kind.
        kind: FrameKind,
        /// Its correlation id.
        correlation_id: u32,
    },
}

impl CallError {
    /// Whether sending the same request again may succeed (after reconnecting if the
    /// connection is gone). Decoding failures and refusals other than retryable error codes
    /// are fatal for this request.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Open(e) => connection_error_is_retryable(e),
            CallError::Send(e) | CallError::Receive(e) => e.is_retryable(),
            CallError::Refused(code) => code.is_retryable(),
            CallError::NoResponse | CallError::Decode(_) | CallError::Unexpected { .. } => false,
        }
    }
}

/// One unary call with raw frames: opens a bidirectional stream, writes `request` (one whole
/// frame as chunks), finishes, and returns the first frame the responder writes (length
/// prefix included), refusing one above `limits`.
pub async fn call(
    conn: &Connection,
    request: &mut [Bytes],
    limits: FrameLimits,
) -> Result<Bytes, CallError> {
    let (send, recv) = conn.open_bi().await.map_err(CallError::Open)?;
    let mut writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv, limits);
    writer.write_frame(request).await.map_err(CallError::Send)?;
    writer.finish().map_err(CallError::Send)?;
    reader
        .read_frame()
        .await
        .map_err(CallError::Receive)?
        .ok_or(CallError::NoResponse)
}

fn check_answer(header: &FrameHeader, api_key: u16, correlation_id: u32) -> Result<(), CallError> {
    if header.kind != FrameKind::Response
        || header.api_key != api_key
        || header.correlation_id != correlation_id
    {
        return Err(CallError::Unexpected {
            api_key: header.api_key,
            kind: header.kind,
            correlation_id: header.correlation_id,
        });
    }
    Ok(())
}

/// A typed client-protocol call (`floe/1`).
///
/// ```no_run
/// # async fn demo(conn: quinn::Connection) -> Result<(), floe_net::CallError> {
/// use floe_protocol::client::{ApiVersionsRequest, Request, Response};
/// let request = Request::from(ApiVersionsRequest {
///     client_name: "floe-client".into(),
///     client_version: "0.1.0".into(),
///     client_id: None,
///     apis: vec![],
/// });
/// let response = floe_net::call_client(&conn, &request, 1, Default::default()).await?;
/// assert!(matches!(response, Response::ApiVersions(_)));
/// # Ok(())
/// # }
/// ```
pub async fn call_client(
    conn: &Connection,
    request: &Request,
    correlation_id: u32,
    limits: FrameLimits,
) -> Result<Response, CallError> {
    let frame = call(
        conn,
        &mut request.encode_frame_chunks(correlation_id),
        limits,
    )
    .await?;
    let (header, decoded, _) = decode_client_frame(&frame, limits)?;
    check_answer(&header, request.api_key() as u16, correlation_id)?;
    match decoded {
        ClientFrame::Response(r) => Ok(r),
        ClientFrame::Error(code) => Err(CallError::Refused(code)),
        ClientFrame::Request(_) | ClientFrame::Push(_) => Err(CallError::Unexpected {
            api_key: header.api_key,
            kind: header.kind,
            correlation_id: header.correlation_id,
        }),
    }
}

/// A typed peer-protocol call (`floe-peer/1`): [`PeerRequest::Hello`] or
/// [`PeerRequest::Forward`].
pub async fn call_peer(
    conn: &Connection,
    request: &PeerRequest,
    correlation_id: u32,
    limits: FrameLimits,
) -> Result<PeerResponse, CallError> {
    let frame = call(
        conn,
        &mut request.encode_frame_chunks(correlation_id),
        limits,
    )
    .await?;
    let (header, decoded, _) = decode_peer_frame(&frame, limits)?;
    check_answer(&header, request.api_key() as u16, correlation_id)?;
    match decoded {
        PeerFrame::Response(r) => Ok(r),
        PeerFrame::Error(code) => Err(CallError::Refused(code)),
        PeerFrame::Request(_) => Err(CallError::Unexpected {
            api_key: header.api_key,
            kind: header.kind,
            correlation_id: header.correlation_id,
        }),
    }
}

/// How a server reads requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Largest request frame accepted (length prefix included).
    pub limits: FrameLimits,
    /// Time a requester has to deliver its whole first frame after opening a stream; a
    /// stream that stays silent longer is reset with [`StreamCode::TIMED_OUT`], so idle
    /// streams cannot pin tasks (each connection has at most `max_concurrent_bidi_streams`).
    pub request_timeout: Duration,
    /// Connections one remote IP address may have open at once (0: no limit). One more is
    /// closed right after its handshake with [`CloseCode::TOO_MANY_CONNECTIONS`] and the
    /// reason [`TOO_MANY_CONNECTIONS_REASON`].
    pub max_connections_per_ip: u32,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: FrameLimits::default(),
            request_timeout: Duration::from_secs(30),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

/// The default [`ServeOptions::max_connections_per_ip`]: a bound against a runaway client,
/// high enough for load generators that open one connection per simulated producer from one
/// host (floe-bench allows 1024 producers plus consumers).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 4096;

/// The reason text of a connection closed for [`CloseCode::TOO_MANY_CONNECTIONS`].
pub const TOO_MANY_CONNECTIONS_REASON: &[u8] = b"too many connections from this address";

/// Application error codes a server closes a whole connection with (QUIC
/// `CONNECTION_CLOSE`, with a human-readable reason alongside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u32);

impl CloseCode {
    /// A normal close (the endpoint shuts down).
    pub const NO_ERROR: CloseCode = CloseCode(0);
    /// The remote address already has [`ServeOptions::max_connections_per_ip`] connections.
    pub const TOO_MANY_CONNECTIONS: CloseCode = CloseCode(1);

    /// The code as a QUIC varint.
    pub fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.0)
    }
}

/// Removes a served connection from its endpoint's table when its serving task ends (also
/// when it is cancelled).
struct ServedGuard {
    endpoint: Endpoint,
    id: usize,
    ip: std::net::IpAddr,
}

impl Drop for ServedGuard {
    fn drop(&mut self) {
        let mut served = self
            .endpoint
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        served.connections.remove(&self.id);
        if let Some(n) = served.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                served.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Registers `conn` as served on `endpoint` unless its address is at the limit.
fn admit(endpoint: &Endpoint, conn: &Connection, limit: u32) -> Option<ServedGuard> {
    let ip = conn.remote_address().ip();
    let mut served = endpoint.served.lock().unwrap_or_else(|e| e.into_inner());
    let n = served.per_ip.entry(ip).or_insert(0);
    if limit != 0 && *n >= limit {
        return None;
    }
    *n += 1;
    let id = conn.stable_id();
    served.connections.insert(id, conn.clone());
    Some(ServedGuard {
        endpoint: endpoint.clone(),
        id,
        ip,
    })
}

/// A request that arrived on a new bidirectional stream.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The connection it came on (for the peer's identity and address).
    pub connection: Connection,
    /// Its envelope, already checked: kind `Request`, flags zero. The api key, version and
    /// body are the protocol decoder's to check.
    pub header: FrameHeader,
    /// The whole frame, length prefix included: give it to `decode_client_frame` or
    /// `decode_peer_frame`.
    pub frame: Bytes,
    /// Where the answer goes.
    pub responder: Responder,
    /// Further frames from the requester on the same stream (a subscription's credit).
    pub reader: FrameReader,
}

/// The send side of a request's stream.
#[derive(Debug)]
pub struct Responder {
    writer: FrameWriter,
    header: FrameHeader,
}

impl Responder {
    /// Writes the response frame and finishes the stream (a unary call's answer).
    pub async fn respond(mut self, frame: &mut [Bytes]) -> Result<(), StreamError> {
        self.writer.write_frame(frame).await?;
        self.writer.finish()
    }

    /// Answers with a frame-level error (empty body) echoing the request's envelope, and
    /// finishes the stream.
    pub async fn respond_error(self, error: ErrorCode) -> Result<(), StreamError> {
        let mut buf = BytesMut::new();
        encode_error_frame(
            self.header.api_key,
            self.header.api_version,
            self.header.correlation_id,
            error,
            &mut buf,
        );
        self.respond(&mut [buf.freeze()]).await
    }

    /// Writes one more frame without finishing (a subscription's response and pushes). QUIC
    /// flow control paces it: this waits while the requester is not reading.
    pub async fn send(&mut self, frame: &mut [Bytes]) -> Result<(), StreamError> {
        self.writer.write_frame(frame).await
    }

    /// Ends the stream cleanly.
    pub fn finish(mut self) -> Result<(), StreamError> {
        self.writer.finish()
    }

    /// Abandons the stream with `code`.
    pub fn reset(mut self, code: StreamCode) {
        self.writer.reset(code);
    }
}

/// A unidirectional stream the remote side opened: a sequence of one-way frames (the peer
/// protocol's Raft lanes). Read them with `reader.read_frame()` until it returns `None`.
#[derive(Debug)]
pub struct IncomingStream {
    /// The connection it came on.
    pub connection: Connection,
    /// The stream's frames.
    pub reader: FrameReader,
}

/// Opens a unidirectional stream for one-way frames (see [`IncomingStream`]). Frames written
/// on one stream arrive in order; use several streams so one slow lane blocks no other.
pub async fn open_frame_stream(conn: &Connection) -> Result<FrameWriter, ConnectionError> {
    Ok(FrameWriter::new(conn.open_uni().await?))
}

/// Serves the streams of a connection. Each stream runs in a task of its own.
///
/// A broker's peer side implements both methods; a client listener usually only
/// [`Handler::handle`] (or uses [`handler_fn`]).
///
/// ```
/// use floe_net::{Handler, IncomingRequest, IncomingStream};
/// use floe_protocol::peer::{decode_peer_frame, PeerFrame};
/// use floe_protocol::{ErrorCode, FrameLimits};
///
/// struct Peer;
///
/// impl Handler for Peer {
///     async fn handle(&self, request: IncomingRequest) {
///         // Hello / Forward would be decoded and answered here.
///         let _ = request.responder.respond_error(ErrorCode::UnsupportedVersion).await;
///     }
///
///     async fn handle_stream(&self, mut stream: IncomingStream) {
///         // One Raft lane: frames in order until the sender finishes the stream.
///         while let Ok(Some(frame)) = stream.reader.read_frame().await {
///             match decode_peer_frame(&frame, FrameLimits::default()) {
///                 Ok((_, PeerFrame::Request(_message), _)) => { /* feed the Raft host */ }
///                 _ => break,
///             }
///         }
///     }
/// }
/// # let _ = Peer;
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one request; answer through `request.responder`. Dropping the responder
    /// without answering finishes the stream, which the requester sees as
    /// [`CallError::NoResponse`].
    fn handle(&self, request: IncomingRequest) -> impl Future<Output = ()> + Send;

    /// Handles a unidirectional stream of one-way frames. The default refuses it (stops it
    /// with [`StreamCode::NO_ERROR`]): the client protocol has none.
    fn handle_stream(&self, stream: IncomingStream) -> impl Future<Output = ()> + Send {
        let mut reader = stream.reader;
        reader.stop(StreamCode::NO_ERROR);
        std::future::ready(())
    }
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
#[derive(Debug, Clone)]
pub struct FnHandler<F>(F);

/// Makes a [`Handler`] from `f(request)`.
///
/// ```
/// use bytes::Bytes;
/// let echo = floe_net::handler_fn(|req: floe_net::IncomingRequest| async move {
///     let _ = req.responder.respond(&mut [req.frame]).await;
/// });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(IncomingRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(IncomingRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    fn handle(&self, request: IncomingRequest) -> impl Future<Output = ()> + Send {
        (self.0)(request)
    }
}

/// Answers a first frame whose envelope is unusable with an `InvalidRequest` error frame,
/// echoing what the raw bytes say (the length check already guaranteed the 16-byte envelope).
async fn refuse_malformed(mut writer: FrameWriter, frame: &[u8]) {
    let Some(envelope) = frame.first_chunk::<16>() else {
        writer.reset(StreamCode::MALFORMED_FRAME);
        return;
    };
    let u16_at = |i: usize| u16::from_le_bytes([envelope[i], envelope[i + 1]]);
    let correlation_id =
        u32::from_le_bytes([envelope[12], envelope[13], envelope[14], envelope[15]]);
    let mut buf = BytesMut::new();
    encode_error_frame(
        u16_at(4),
        u16_at(6),
        correlation_id,
        ErrorCode::InvalidRequest,
        &mut buf,
    );
    if writer.write_frame_bytes(&buf).await.is_ok() {
        let _ = writer.finish();
    }
}

async fn serve_stream<H: Handler>(
    connection: Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    options: ServeOptions,
    handler: Arc<H>,
) {
    let limits = options.limits;
    let mut reader = FrameReader::new(recv, limits);
    let mut writer = FrameWriter::new(send);
    let first = tokio::time::timeout(options.request_timeout, reader.read_frame()).await;
    let Ok(first) = first else {
        tracing::debug!(remote = %connection.remote_address(), "request not received in time");
        reader.stop(StreamCode::TIMED_OUT);
        writer.reset(StreamCode::TIMED_OUT);
        return;
    };
    let frame = match first {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            // Opened and finished without a request: nothing to answer.
            let _ = writer.finish();
            return;
        }
        Err(e) => {
            tracing::debug!(remote = %connection.remote_address(), error = %e, "bad request stream");
            let code = match e {
                StreamError::BadLength { .. } => StreamCode::FRAME_TOO_LARGE,
                _ => StreamCode::MALFORMED_FRAME,
            };
            writer.reset(code);
            return;
        }
    };
    let header = match decode_envelope(&frame, limits) {
        Ok((header, _, _)) if header.kind == FrameKind::Request => header,
        Ok(_) | Err(_) => {
            tracing::debug!(remote = %connection.remote_address(), "malformed request envelope");
            reader.stop(StreamCode::MALFORMED_FRAME);
            refuse_malformed(writer, &frame).await;
            return;
        }
    };
    let request = IncomingRequest {
        connection,
        header,
        frame,
        responder: Responder { writer, header },
        reader,
    };
    handler.handle(request).await;
}

/// Serves every stream `conn` opens until the connection ends, and returns why it ended:
/// bidirectional streams as requests ([`Handler::handle`]), unidirectional ones as one-way
/// frame streams ([`Handler::handle_stream`]). Each runs concurrently in a task of its own;
/// they are cancelled when this future is dropped or returns.
pub async fn serve_connection<H: Handler>(
    conn: Connection,
    handler: Arc<H>,
    options: ServeOptions,
) -> ConnectionError {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    tasks.spawn(serve_stream(conn.clone(), send, recv, options, handler.clone()));
                }
                Err(e) => return e,
            },
            uni = conn.accept_uni() => match uni {
                Ok(recv) => {
                    let handler = handler.clone();
                    let stream = IncomingStream {
                        connection: conn.clone(),
                        reader: FrameReader::new(recv, options.limits),
                    };
                    tasks.spawn(async move { handler.handle_stream(stream).await });
                }
                Err(e) => return e,
            },
        }
        // Reap finished requests so the set holds only the running ones.
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!(remote = %conn.remote_address(), "request handler panicked");
            }
        }
    }
}

/// Accepts connections on `endpoint` until it is closed, serving each with
/// [`serve_connection`] in a task of its own. Failed handshakes are logged and dropped; a
/// connection from an address that already has [`ServeOptions::max_connections_per_ip`] is
/// closed with [`CloseCode::TOO_MANY_CONNECTIONS`]. Served connections are visible through
/// [`Endpoint::served_rtts`] while they last.
pub async fn serve<H: Handler>(endpoint: Endpoint, handler: Arc<H>, options: ServeOptions) {
    let mut connections = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        let endpoint = endpoint.clone();
        let handler = handler.clone();
        connections.spawn(async move {
            match endpoint.establish(incoming).await {
                Ok(conn) => {
                    let remote = conn.remote_address();
                    let Some(_served) = admit(&endpoint, &conn, options.max_connections_per_ip)
                    else {
                        tracing::info!(%remote, limit = options.max_connections_per_ip, "refusing a connection: too many from this address");
                        conn.close(
                            CloseCode::TOO_MANY_CONNECTIONS.varint(),
                            TOO_MANY_CONNECTIONS_REASON,
                        );
                        return;
                    };
                    let reason = serve_connection(conn, handler, options).await;
                    tracing::debug!(%remote, %reason, "connection ended");
                }
                Err(e) => tracing::info!(error = %e, "connection attempt failed"),
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

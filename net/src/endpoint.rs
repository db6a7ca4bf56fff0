//! QUIC endpoints: the UDP socket, quinn's endpoint, and the TLS side each role needs.
//!
//! | role | constructor | serves | dials |
//! |---|---|---|---|
//! | floe-client | [`Endpoint::client`] | — | `floe/1`, trusting the CA |
//! | broker, client listener | [`Endpoint::client_listener`] | `floe/1`, server auth | — |
//! | broker, peer link | [`Endpoint::peer`] | `floe-peer/1`, mutual TLS | `floe-peer/1`, mutual TLS |
//!
//! [`Endpoint::builder`] assembles anything else, including an endpoint over an abstract
//! socket ([`SocketSource::Abstract`]) for deterministic simulation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, Connection, ConnectionError, Runtime, TokioRuntime};
use rustls_pki_types::CertificateDer;

use crate::tls::{Alpn, CaCerts, Identity, TlsError, client_crypto, server_crypto};
use crate::transport::{
    SocketBuffers, SocketOptions, TransportOptions, TransportOptionsError, bind_udp,
};

/// The TLS alert a QUIC peer sends when it speaks none of the offered ALPN protocols.
pub const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Settings for the convenience constructors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOptions {
    /// QUIC transport tuning.
    pub transport: TransportOptions,
    /// UDP socket buffers.
    pub socket: SocketOptions,
}

impl EndpointOptions {
    /// [`TransportOptions::loopback`] with the default socket buffers.
    pub fn loopback() -> Self {
        EndpointOptions {
            transport: TransportOptions::loopback(),
            socket: SocketOptions::default(),
        }
    }
}

/// Where an endpoint's datagrams go.
#[derive(Debug)]
pub enum SocketSource {
    /// A real UDP socket bound here (made by [`bind_udp`] with these buffers).
    Bind(SocketAddr, SocketOptions),
    /// Any quinn socket, for example a simulated network's (TESTING.md, Tier B).
    Abstract(Arc<dyn AsyncUdpSocket>),
}

/// Building an endpoint failed. Always fatal: a configuration or environment problem.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The UDP socket could not be created or bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// quinn could not take over the socket.
    #[error("cannot start the QUIC endpoint: {0}")]
    Start(#[source] std::io::Error),
    /// The transport options are inconsistent.
    #[error(transparent)]
    Transport(#[from] TransportOptionsError),
    /// quinn rejected the endpoint configuration.
    #[error("endpoint configuration: {0}")]
    Config(#[from] quinn::ConfigError),
    /// The TLS side could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// quinn refused to start the attempt (bad server name, endpoint closing, no client side).
    #[error("cannot connect to {addr} as {server_name:?}: {source}")]
    Start {
        /// Remote address.
        addr: SocketAddr,
        /// Name the certificate must carry.
        server_name: String,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The handshake failed or the connection closed during it.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// Remote address.
        addr: SocketAddr,
        /// quinn's reason (a TLS alert, a close, a timeout).
        source: ConnectionError,
    },
    /// No handshake completed within the connect timeout.
    #[error("handshake with {addr} timed out after {after:?}")]
    Timeout {
        /// Remote address.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
}

impl ConnectError {
    /// Whether trying again later may succeed (the peer was unreachable, busy or restarting).
    /// A TLS failure (untrusted certificate, wrong name, wrong ALPN) or a local configuration
    /// problem is not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Start { source, .. } => {
                matches!(source, quinn::ConnectError::CidsExhausted)
            }
            ConnectError::Handshake { source, .. } => connection_error_is_retryable(source),
            ConnectError::Timeout { .. } => true,
        }
    }

    /// The TLS alert that ended the handshake, if that is what happened (for example
    /// [`ALERT_NO_APPLICATION_PROTOCOL`], or 42..=49 for certificate problems).
    pub fn tls_alert(&self) -> Option<u8> {
        match self {
            ConnectError::Handshake { source, .. } => tls_alert(source),
            _ => None,
        }
    }
}

/// Accepting a connection failed (the attempt is dropped; the endpoint keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The handshake failed.
    #[error("handshake from {remote} failed: {source}")]
    Handshake {
        /// Remote address.
        remote: SocketAddr,
        /// quinn's reason.
        source: ConnectionError,
    },
    /// The handshake did not complete in time.
    #[error("handshake from {remote} timed out after {after:?}")]
    Timeout {
        /// Remote address.
        remote: SocketAddr,
        /// The timeout.
        after: Duration,
    },
}

impl AcceptError {
    /// The TLS alert that ended the handshake, if that is what happened.
    pub fn tls_alert(&self) -> Option<u8> {
        match self {
            AcceptError::Handshake { source, .. } => tls_alert(source),
            AcceptError::Timeout { .. } => None,
        }
    }
}

/// The TLS alert carried by a QUIC crypto error (codes 0x100..=0x1ff), if any.
pub fn tls_alert(err: &ConnectionError) -> Option<u8> {
    let code = match err {
        ConnectionError::TransportError(e) => u64::from(e.code),
        ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        _ => return None,
    };
    if (0x100..=0x1ff).contains(&code) {
        Some((code - 0x100) as u8)
    } else {
        None
    }
}

/// Whether a connection that ended with `err` is worth re-establishing: the network or the
/// peer went away. TLS failures, protocol violations and local closes are not.
pub fn connection_error_is_retryable(err: &ConnectionError) -> bool {
    match err {
        ConnectionError::TimedOut | ConnectionError::Reset => true,
        ConnectionError::ApplicationClosed(_) => true,
        // Closed by the peer for a reason other than TLS: it may be restarting.
        ConnectionError::ConnectionClosed(_) => tls_alert(err).is_none(),
        // Detected locally: a protocol or TLS problem that a retry would meet again.
        ConnectionError::TransportError(_)
        | ConnectionError::VersionMismatch
        | ConnectionError::LocallyClosed
        | ConnectionError::CidsExhausted => false,
    }
}

/// Assembles an [`Endpoint`] from parts.
pub struct EndpointBuilder {
    socket: SocketSource,
    transport: TransportOptions,
    server: Option<Arc<QuicServerConfig>>,
    client: Option<Arc<QuicClientConfig>>,
    rng_seed: Option<[u8; 32]>,
}

impl std::fmt::Debug for EndpointBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointBuilder")
            .field("socket", &self.socket)
            .field("transport", &self.transport)
            .field("server", &self.server.is_some())
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl EndpointBuilder {
    /// QUIC transport tuning (both directions).
    pub fn transport(mut self, transport: TransportOptions) -> Self {
        self.transport = transport;
        self
    }

    /// Accept connections with this TLS side (see [`server_crypto`]).
    pub fn server(mut self, crypto: Arc<QuicServerConfig>) -> Self {
        self.server = Some(crypto);
        self
    }

    /// Dial connections with this TLS side (see [`client_crypto`]).
    pub fn client(mut self, crypto: Arc<QuicClientConfig>) -> Self {
        self.client = Some(crypto);
        self
    }

    /// Seed quinn's randomness (connection ids, reset tokens) for reproducible simulation.
    pub fn rng_seed(mut self, seed: [u8; 32]) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Creates the socket (if needed) and starts the endpoint on the current tokio runtime.
    pub fn build(self) -> Result<Endpoint, EndpointError> {
        let transport = self.transport.quinn_config()?;
        let mut config = quinn::EndpointConfig::default();
        config.max_udp_payload_size(self.transport.max_udp_payload)?;
        config.rng_seed(self.rng_seed);
        let server = self.server.map(|crypto| {
            let mut s = quinn::ServerConfig::with_crypto(crypto);
            s.transport_config(transport.clone());
            s
        });
        let runtime: Arc<dyn Runtime> = Arc::new(TokioRuntime);
        let (socket, buffers) = match self.socket {
            SocketSource::Bind(addr, options) => {
                let (socket, buffers) = bind_udp(addr, &options)
                    .map_err(|source| EndpointError::Bind { addr, source })?;
                let socket = runtime
                    .wrap_udp_socket(socket)
                    .map_err(EndpointError::Start)?;
                (socket, Some(buffers))
            }
            SocketSource::Abstract(socket) => (socket, None),
        };
        let mut inner = quinn::Endpoint::new_with_abstract_socket(config, server, socket, runtime)
            .map_err(EndpointError::Start)?;
        if let Some(crypto) = self.client {
            let mut c = quinn::ClientConfig::new(crypto);
            c.transport_config(transport);
            inner.set_default_client_config(c);
        }
        Ok(Endpoint {
            inner,
            buffers,
            served: Arc::default(),
            connect_timeout: self.transport.connect_timeout,
        })
    }
}

/// The longest a peer link may stay silent before it counts as dead (see [`Endpoint::peer`]).
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a peer link waits before sending a keep-alive.
pub const PEER_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// A QUIC endpoint: one UDP socket, any number of connections.
#[derive(Debug, Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    buffers: Option<SocketBuffers>,
    /// The connections [`crate::serve`] is serving on this endpoint, by quinn's stable id
    /// (each entry is removed when its connection ends), for [`Endpoint::served_rtts`] and the
    /// per-address connection limit.
    pub(crate) served: Arc<std::sync::Mutex<Served>>,
    connect_timeout: Duration,
}

/// Connections being served, and how many per remote IP address.
#[derive(Debug, Default)]
pub(crate) struct Served {
    pub(crate) connections: std::collections::HashMap<usize, Connection>,
    pub(crate) per_ip: std::collections::HashMap<std::net::IpAddr, u32>,
}

impl Endpoint {
    /// Starts assembling an endpoint on `socket`.
    pub fn builder(socket: SocketSource) -> EndpointBuilder {
        EndpointBuilder {
            socket,
            transport: TransportOptions::default(),
            server: None,
            client: None,
            rng_seed: None,
        }
    }

    /// A client's endpoint: dials brokers with ALPN `floe/1`, trusting `ca` and verifying
    /// the broker's name. Bind to `0.0.0.0:0` (or `127.0.0.1:0` in tests).
    pub fn client(
        bind: SocketAddr,
        ca: &CaCerts,
        options: &EndpointOptions,
    ) -> Result<Self, EndpointError> {
        Self::builder(SocketSource::Bind(bind, options.socket.clone()))
            .transport(options.transport.clone())
            .client(client_crypto(ca, Alpn::Client, None)?)
            .build()
    }

    /// A broker's listener for clients: ALPN `floe/1`, presenting `identity`, no client
    /// certificates.
    pub fn client_listener(
        bind: SocketAddr,
        identity: &Identity,
        options: &EndpointOptions,
    ) -> Result<Self, EndpointError> {
        Self::builder(SocketSource::Bind(bind, options.socket.clone()))
            .transport(options.transport.clone())
            .server(server_crypto(identity, Alpn::Client, None)?)
            .build()
    }

    /// A broker's peer endpoint: accepts and dials `floe-peer/1` with mutual TLS. Both sides
    /// present `identity` and require the other's certificate to be signed by `ca`.
    ///
    /// Peer links declare a connection dead after at most [`PEER_IDLE_TIMEOUT`] of silence
    /// (keep-alives at most every [`PEER_KEEP_ALIVE`]): Raft heartbeats flow every tick, so
    /// silence means the peer is gone, and a node that was killed and restarted is only
    /// reachable again once its peers drop the connection to its old incarnation and dial
    /// anew. With the client default (30 s) a restarted node waited that long to rejoin.
    pub fn peer(
        bind: SocketAddr,
        identity: &Identity,
        ca: &CaCerts,
        options: &EndpointOptions,
    ) -> Result<Self, EndpointError> {
        let mut transport = options.transport.clone();
        transport.idle_timeout = transport.idle_timeout.min(PEER_IDLE_TIMEOUT);
        transport.keep_alive = Some(
            transport
                .keep_alive
                .map_or(PEER_KEEP_ALIVE, |k| k.min(PEER_KEEP_ALIVE)),
        );
        Self::builder(SocketSource::Bind(bind, options.socket.clone()))
            .transport(transport)
            .server(server_crypto(identity, Alpn::Peer, Some(ca))?)
            .client(client_crypto(ca, Alpn::Peer, Some(identity))?)
            .build()
    }

    /// Dials `addr`; the server's certificate must carry `server_name` (a DNS name or an IP
    /// address). Bounded by the transport's connect timeout.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, ConnectError> {
        let connecting =
            self.inner
                .connect(addr, server_name)
                .map_err(|source| ConnectError::Start {
                    addr,
                    server_name: server_name.to_string(),
                    source,
                })?;
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(ConnectError::Handshake { addr, source }),
            Err(_) => Err(ConnectError::Timeout {
                addr,
                after: self.connect_timeout,
            }),
        }
    }

    /// The next connection attempt, or `None` once the endpoint is closed. Complete it with
    /// [`Endpoint::establish`] in a task of its own, so one slow handshake does not hold up
    /// the next.
    pub async fn accept(&self) -> Option<quinn::Incoming> {
        self.inner.accept().await
    }

    /// Completes an accepted attempt's handshake, bounded by the connect timeout.
    pub async fn establish(&self, incoming: quinn::Incoming) -> Result<Connection, AcceptError> {
        let remote = incoming.remote_address();
        match tokio::time::timeout(self.connect_timeout, incoming).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(AcceptError::Handshake { remote, source }),
            Err(_) => Err(AcceptError::Timeout {
                remote,
                after: self.connect_timeout,
            }),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The socket buffers asked for and granted (`None` for an abstract socket).
    pub fn socket_buffers(&self) -> Option<SocketBuffers> {
        self.buffers
    }

    /// Connections open on this endpoint, both dialled and accepted (quinn's count: closed
    /// ones leave it once fully drained).
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }

    /// The current round-trip time estimate of every connection [`crate::serve`] is
    /// serving on this endpoint (accepted connections).
    pub fn served_rtts(&self) -> Vec<Duration> {
        let served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.connections.values().map(Connection::rtt).collect()
    }

    /// The underlying quinn endpoint.
    pub fn quinn(&self) -> &quinn::Endpoint {
        &self.inner
    }

    /// Closes every connection with `code` and stops accepting.
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.inner.close(quinn::VarInt::from_u32(code), reason);
    }

    /// Waits until every connection has been closed cleanly (after [`Endpoint::close`]).
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }
}

/// The certificate chain the remote side presented (leaf first); on a peer connection this
/// is the other node's certificate, already verified against the cluster CA.
pub fn peer_certificates(conn: &Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

/// The ALPN protocol the handshake agreed on.
pub fn negotiated_alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

//! floe-net: the QUIC transport shared by the broker and the client.
//!
//! Everything needed to talk floe over QUIC, and nothing about what is said: TLS material
//! and configurations, tuned quinn endpoints on well-buffered UDP sockets, whole
//! floe-protocol frames on streams, unary calls and a concurrent stream dispatcher. TLS is
//! always on; there is no plaintext mode.
//!
//! # Tour
//!
//! * [`tls`]: [`Identity`] (certificate chain + key) and [`CaCerts`] (the cluster CA), loaded
//!   from PEM files with errors that name the file; [`tls::server_crypto`] and
//!   [`tls::client_crypto`] build the rustls sides (TLS 1.3, ring), with mutual TLS for peer
//!   links, and the ALPN of each protocol ([`Alpn::Client`] = `floe/1`,
//!   [`Alpn::Peer`] = `floe-peer/1`).
//! * [`transport`]: [`TransportOptions`] (MTU, flow-control windows, stream limits,
//!   keep-alive, timeouts; [`TransportOptions::loopback`] for 6000-byte datagrams) and
//!   [`SocketOptions`] (UDP buffers of several MiB, created with socket2; a warning is
//!   logged when the kernel clamps them).
//! * [`endpoint`]: [`Endpoint`] with one constructor per role: [`Endpoint::client`] (a
//!   floe-client), [`Endpoint::client_listener`] (a broker's listener for clients),
//!   [`Endpoint::peer`] (a broker's mutually authenticated peer side, which both accepts and
//!   dials); [`Endpoint::builder`] for anything else, including an abstract socket for
//!   simulation. [`Endpoint::connect`] and [`Endpoint::accept`] / [`Endpoint::establish`]
//!   are bounded by the connect timeout.
//! * [`stream`]: [`FrameReader`] / [`FrameWriter`]: whole frames on a QUIC stream; a length
//!   prefix over the limit is a typed error that stops that stream before anything is
//!   allocated.
//! * [`rpc`]: [`call`] (raw) and [`call_client`] / [`call_peer`] (typed) for unary calls;
//!   [`serve_connection`] / [`serve`] run a [`Handler`] per incoming stream, concurrently,
//!   reading requests under [`ServeOptions`] (frame limit, request timeout);
//!   [`open_frame_stream`] / [`IncomingStream`] for ordered one-way frames (peer Raft lanes).
//!
//! Errors are small enums per operation ([`TlsError`], [`EndpointError`], [`ConnectError`],
//! [`AcceptError`], [`StreamError`], [`CallError`]) with fields, and each says whether a
//! retry can help (`is_retryable`).
//!
//! # Example: a broker answering the handshake, and a client calling it
//!
//! ```no_run
//! use std::sync::Arc;
//! use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity, IncomingRequest};
//! use floe_protocol::client::*;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Broker side.
//! let me = Identity::from_pem_files("certs/node-1.pem", "certs/node-1.key")?;
//! let listener = Endpoint::client_listener("0.0.0.0:9092".parse()?, &me, &EndpointOptions::default())?;
//! let handler = floe_net::handler_fn(|req: IncomingRequest| async move {
//!     let response = Response::from(ApiVersionsResponse {
//!         error: floe_protocol::ErrorCode::None,
//!         cluster_id: "demo".into(),
//!         node_id: 1,
//!         apis: vec![],
//!         max_frame_len: floe_protocol::frame::DEFAULT_MAX_FRAME_LEN,
//!         max_batch_len: 1 << 20,
//!     });
//!     let mut frame = response.encode_frame_chunks(req.header.correlation_id);
//!     let _ = req.responder.respond(&mut frame).await;
//! });
//! tokio::spawn(floe_net::serve(listener, Arc::new(handler), Default::default()));
//!
//! // Client side.
//! let ca = CaCerts::from_pem_file("certs/ca.pem")?;
//! let client = Endpoint::client("0.0.0.0:0".parse()?, &ca, &EndpointOptions::default())?;
//! let conn = client.connect("10.0.0.1:9092".parse()?, "node-1").await?;
//! let request = Request::from(ApiVersionsRequest {
//!     client_name: "demo".into(),
//!     client_version: "0".into(),
//!     client_id: None,
//!     apis: vec![],
//! });
//! let response = floe_net::call_client(&conn, &request, 1, Default::default()).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod endpoint;
pub mod rpc;
pub mod stream;
pub mod tls;
pub mod transport;

pub use endpoint::{
    AcceptError, ConnectError, Endpoint, EndpointBuilder, EndpointError, EndpointOptions,
    SocketSource, negotiated_alpn, peer_certificates,
};
pub use rpc::{
    CallError, CloseCode, DEFAULT_MAX_CONNECTIONS_PER_IP, FnHandler, Handler, IncomingRequest,
    IncomingStream, Responder, ServeOptions, TOO_MANY_CONNECTIONS_REASON, call, call_client,
    call_peer, handler_fn, open_frame_stream, serve, serve_connection,
};
pub use stream::{FrameReader, FrameWriter, StreamCode, StreamError};
pub use tls::{Alpn, CaCerts, Identity, TlsError};
pub use transport::{SocketBuffers, SocketOptions, TransportOptions};

/// quinn, re-exported so users name the same version (`quinn::Connection`, streams, errors).
pub use quinn;

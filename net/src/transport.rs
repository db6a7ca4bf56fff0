//! QUIC transport tuning and the UDP socket.
//!
//! The defaults follow PERFORMANCE.md: quinn's cost is per packet, so paths that carry larger
//! datagrams (loopback, jumbo frames) should say so ([`TransportOptions::loopback`]); the
//! kernel's default 208 KiB UDP buffers drop packets under load, so sockets ask for several
//! MiB ([`SocketOptions`]); flow-control windows bound memory per stream and per connection
//! without being so large that they only add latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

/// Largest UDP payload quinn may ever use here. Above ~6500 bytes throughput collapses on
/// this kind of host (quinn sends up to 10 GSO segments per call; the kernel's GSO limit is
/// 64 KiB), so the loopback preset stays at 6000.
pub const LOOPBACK_UDP_PAYLOAD: u16 = 6000;

/// QUIC transport settings shared by both ends of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Initial (and, with [`Self::mtu_discovery`] off, fixed) UDP payload size. 1200 is safe
    /// everywhere; [`LOOPBACK_UDP_PAYLOAD`] on loopback or jumbo-frame networks.
    pub initial_mtu: u16,
    /// Largest UDP payload this endpoint accepts (advertised to peers). Must be at least
    /// [`Self::initial_mtu`] on both sides for large datagrams to be used.
    pub max_udp_payload: u16,
    /// Probe for a larger path MTU (up to [`Self::max_udp_payload`]).
    pub mtu_discovery: bool,
    /// Bytes one stream may have in flight towards us (per-stream receive window).
    pub stream_receive_window: u32,
    /// Bytes all streams of a connection may have in flight towards us. Memory bound per
    /// connection for data received but not yet read.
    pub connection_receive_window: u32,
    /// Bytes we buffer for sending per connection before writes wait.
    pub send_window: u64,
    /// Bidirectional streams the peer may have open at once (each costs a task on a server:
    /// this is also the bound on concurrent requests per connection).
    pub max_concurrent_bidi_streams: u32,
    /// Unidirectional streams the peer may have open at once.
    pub max_concurrent_uni_streams: u32,
    /// Send a keep-alive when the connection is otherwise idle this long.
    pub keep_alive: Option<Duration>,
    /// Close a connection that heard nothing for this long.
    pub idle_timeout: Duration,
    /// Give up on a handshake that has not completed in this long.
    pub connect_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            initial_mtu: 1200,
            max_udp_payload: 1472,
            mtu_discovery: true,
            stream_receive_window: 4 * 1024 * 1024,
            connection_receive_window: 16 * 1024 * 1024,
            send_window: 16 * 1024 * 1024,
            max_concurrent_bidi_streams: 1024,
            max_concurrent_uni_streams: 64,
            keep_alive: Some(Duration::from_secs(5)),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportOptions {
    /// Settings for loopback-class paths: 6000-byte datagrams from the first packet, no MTU
    /// probing (≈ 2.9 GB/s instead of ≈ 1.0 GB/s per connection on this kind of host).
    ///
    /// ```
    /// let t = floe_net::TransportOptions::loopback();
    /// assert_eq!(t.initial_mtu, floe_net::transport::LOOPBACK_UDP_PAYLOAD);
    /// assert!(t.quinn_config().is_ok());
    /// ```
    pub fn loopback() -> Self {
        TransportOptions {
            initial_mtu: LOOPBACK_UDP_PAYLOAD,
            max_udp_payload: LOOPBACK_UDP_PAYLOAD,
            mtu_discovery: false,
            ..Self::default()
        }
    }

    /// quinn's transport configuration for these options.
    pub fn quinn_config(&self) -> Result<Arc<TransportConfig>, TransportOptionsError> {
        if self.initial_mtu < 1200 || self.initial_mtu > self.max_udp_payload {
            return Err(TransportOptionsError::Mtu {
                initial_mtu: self.initial_mtu,
                max_udp_payload: self.max_udp_payload,
            });
        }
        if self.stream_receive_window > self.connection_receive_window {
            return Err(TransportOptionsError::Windows {
                stream: self.stream_receive_window,
                connection: self.connection_receive_window,
            });
        }
        let idle = IdleTimeout::try_from(self.idle_timeout).map_err(|_| {
            TransportOptionsError::IdleTimeout {
                idle_timeout: self.idle_timeout,
            }
        })?;
        let mut t = TransportConfig::default();
        t.initial_mtu(self.initial_mtu)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_concurrent_uni_streams))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.connection_receive_window))
            .send_window(self.send_window)
            .keep_alive_interval(self.keep_alive)
            .max_idle_timeout(Some(idle));
        if self.mtu_discovery {
            let mut mtud = MtuDiscoveryConfig::default();
            mtud.upper_bound(self.max_udp_payload);
            t.mtu_discovery_config(Some(mtud));
        } else {
            t.mtu_discovery_config(None);
        }
        Ok(Arc::new(t))
    }
}

/// [`TransportOptions`] that quinn cannot use. Fatal (a configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportOptionsError {
    /// The MTU settings are inconsistent.
    #[error("initial_mtu {initial_mtu} must be in 1200..=max_udp_payload ({max_udp_payload})")]
    Mtu {
        /// Configured initial MTU.
        initial_mtu: u16,
        /// Configured largest UDP payload.
        max_udp_payload: u16,
    },
    /// A stream window larger than the connection window can never be used.
    #[error("stream receive window {stream} exceeds the connection receive window {connection}")]
    Windows {
        /// Stream window.
        stream: u32,
        /// Connection window.
        connection: u32,
    },
    /// The idle timeout does not fit QUIC's encoding.
    #[error("idle timeout {idle_timeout:?} is out of range")]
    IdleTimeout {
        /// The configured timeout.
        idle_timeout: Duration,
    },
}

/// UDP socket settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// Requested `SO_RCVBUF` in bytes.
    pub recv_buffer: usize,
    /// Requested `SO_SNDBUF` in bytes.
    pub send_buffer: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            recv_buffer: 8 * 1024 * 1024,
            send_buffer: 8 * 1024 * 1024,
        }
    }
}

/// The socket buffer sizes asked for and those the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBuffers {
    /// Requested receive buffer.
    pub recv_requested: usize,
    /// Granted receive buffer (as the application can use it).
    pub recv_granted: usize,
    /// Requested send buffer.
    pub send_requested: usize,
    /// Granted send buffer.
    pub send_granted: usize,
}

impl SocketBuffers {
    /// Whether the kernel gave less than was asked for (raise `net.core.rmem_max` /
    /// `net.core.wmem_max`).
    pub fn clamped(&self) -> bool {
        self.recv_granted < self.recv_requested || self.send_granted < self.send_requested
    }
}

/// What the kernel reports back: Linux doubles the requested value to account for its own
/// bookkeeping, so half of what it reports is what the application asked for.
fn usable(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// Creates a non-blocking UDP socket bound to `addr` with the requested buffers. Logs a
/// warning if the kernel clamps them.
pub fn bind_udp(
    addr: SocketAddr,
    options: &SocketOptions,
) -> std::io::Result<(std::net::UdpSocket, SocketBuffers)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Failing to enlarge a buffer is not fatal: the kernel clamps silently on Linux anyway;
    // the granted sizes below tell the truth.
    if let Err(e) = socket.set_recv_buffer_size(options.recv_buffer) {
        tracing::warn!(%addr, error = %e, "setting SO_RCVBUF failed");
    }
    if let Err(e) = socket.set_send_buffer_size(options.send_buffer) {
        tracing::warn!(%addr, error = %e, "setting SO_SNDBUF failed");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let buffers = SocketBuffers {
        recv_requested: options.recv_buffer,
        recv_granted: usable(socket.recv_buffer_size()?),
        send_requested: options.send_buffer,
        send_granted: usable(socket.send_buffer_size()?),
    };
    if buffers.clamped() {
        tracing::warn!(
            %addr,
            recv_requested = buffers.recv_requested,
            recv_granted = buffers.recv_granted,
            send_requested = buffers.send_requested,
            send_granted = buffers.send_granted,
            "the kernel clamped the UDP socket buffers; raise net.core.rmem_max and \
             net.core.wmem_max or expect packet drops under load"
        );
    }
    Ok((socket.into(), buffers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inconsistent_options_are_rejected() {
        let bad = TransportOptions {
            initial_mtu: 9000,
            ..TransportOptions::default()
        };
        assert!(matches!(
            bad.quinn_config(),
            Err(TransportOptionsError::Mtu { .. })
        ));
        let bad = TransportOptions {
            stream_receive_window: 64 << 20,
            ..TransportOptions::default()
        };
        assert!(matches!(
            bad.quinn_config(),
            Err(TransportOptionsError::Windows { .. })
        ));
        assert!(TransportOptions::default().quinn_config().is_ok());
    }

    #[test]
    fn bind_reports_granted_buffers() {
        let opts = SocketOptions {
            recv_buffer: 256 * 1024,
            send_buffer: 256 * 1024,
        };
        let (sock, buffers) = bind_udp("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        assert!(sock.local_addr().unwrap().port() != 0);
        assert_eq!(buffers.recv_requested, 256 * 1024);
        assert!(buffers.recv_granted > 0 && buffers.send_granted > 0);
        // A modest request is granted in full under any sane rmem_max.
        assert!(!buffers.clamped(), "{buffers:?}");
        // An absurd one is clamped and reported as such.
        let huge = SocketOptions {
            recv_buffer: 1 << 30,
            send_buffer: 1 << 30,
        };
        let (_sock, buffers) = bind_udp("127.0.0.1:0".parse().unwrap(), &huge).unwrap();
        assert!(buffers.clamped(), "{buffers:?}");
    }
}

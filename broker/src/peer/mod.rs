//! Peer-to-peer Raft traffic: the mapping between floe-raft [`floe_raft::Message`]s and the
//! protocol's peer frames ([`codec`]), and the QUIC transport that carries them between nodes
//! ([`transport`]: one connection per node pair, one lane per group).

pub mod codec;
pub mod transport;

pub use codec::{PeerCodecError, from_request, to_request};
pub use transport::{
    GroupMessage, PeerAddress, PeerCallError, PeerTransport, SendError, TransportOptions,
    UnaryFuture, UnaryHandler,
};

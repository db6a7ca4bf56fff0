//! Peer-to-peer Raft traffic: the mapping between floe-raft [`floe_raft::Message`]s and the
//! protocol's peer frames ([`codec`]).

pub mod codec;

pub use codec::{PeerCodecError, from_request, to_request};

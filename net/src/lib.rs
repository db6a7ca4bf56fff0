//! floe-net: QUIC transport shared by the broker and the client.
#![warn(missing_docs)]

//! floe-raft: a sans-IO Raft core.
#![warn(missing_docs)]

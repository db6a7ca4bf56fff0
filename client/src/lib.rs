//! floe-client: the Rust client for floe.
#![warn(missing_docs)]

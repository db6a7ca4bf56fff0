//! floe-broker: the floe server.
#![warn(missing_docs)]

//! floe-storage: the partition log.
#![warn(missing_docs)]

//! floe-check: a Jepsen-style fault-injection suite for floe.
//!
//! It starts real `floe serve` processes, drives them with idempotent producers and streaming
//! consumers while a nemesis injects faults, records everything in a [`history::History`], and
//! judges it with [`checker::check`]. See `check/README.md`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod replica;
pub mod rng;
pub mod run;
pub mod workload;

//! floe-client: the Rust client for floe.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod client;
mod consumer;
mod error;
mod metadata;
pub mod partitioner;
mod producer;
mod record;

pub use admin::{
    Admin, BrokerInfo, ClusterDescription, NewTopic, PartitionInfo, TopicDescription, TopicListing,
};
pub use client::{Client, ClientBuilder};
pub use consumer::{Consumer, ConsumerBuilder, RecordStream, StartFrom};
pub use error::{Error, Result};
pub use floe_net::{CaCerts, EndpointOptions};
pub use floe_protocol::ErrorCode;
pub use producer::{AckLevel, Compression, Delivery, Producer, ProducerBuilder, WhenFull};
pub use record::{ConsumerRecord, ProducerRecord, RecordMetadata, TopicPartition};

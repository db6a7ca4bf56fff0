//! floe-client: the Rust client for [floe], a replicated commit log.
//!
//! Everything is async (tokio), everything talks QUIC with TLS (floe has no plaintext
//! mode), and every error is a typed [`Error`] that says whether retrying can help.
//!
//! # Tour
//!
//! * [`Client`] — built with [`Client::builder`]: the bootstrap brokers, the cluster CA
//!   ([`ClientBuilder::ca_cert`] / [`ClientBuilder::ca_pem`]), timeouts. It keeps one QUIC
//!   connection per broker (reconnecting with backoff; a broker silent for
//!   [`ClientBuilder::idle_timeout`] is declared gone), a metadata cache of topics,
//!   partitions and leaders (refreshed on a timer, whenever a broker says a leader moved, and
//!   whenever a leader stops answering),
//!   and routes each request: produce and subscribe to the partition leader, metadata and
//!   administration to any broker. Cheap to clone; share one per process.
//! * [`Admin`] — [`Client::admin`]: create, delete, list and describe topics
//!   ([`NewTopic`], [`TopicDescription`]); describe the cluster.
//! * [`Producer`] — [`Producer::builder`]: records ([`ProducerRecord`]) are partitioned
//!   ([`partitioner`]: Kafka-compatible key hash, round robin or explicit), batched per
//!   partition (`linger`, `batch_size`), compressed (LZ4), held in a bounded buffer
//!   (`buffer_memory`; [`WhenFull`] says whether `send` waits or fails) and sent with one
//!   request per leader. [`Producer::send`] resolves to the record's [`RecordMetadata`];
//!   [`Producer::dispatch`] returns a [`Delivery`] future you may also drop (fire and
//!   forget); [`Producer::send_with_callback`] calls you back. Idempotence is on by default:
//!   retries never duplicate a record in the log.
//! * [`Consumer`] — [`Consumer::builder`]: assign partitions ([`Consumer::assign`]) from a
//!   [`StartFrom`] (earliest, latest, an offset, a timestamp), then read
//!   [`Consumer::stream`], a [`futures_core::Stream`] of [`ConsumerRecord`]s pushed by the
//!   brokers (or fetched with long-polls from a broker without subscriptions). The buffer is
//!   bounded (`max_buffered_bytes`): a slow reader slows the brokers instead of growing
//!   memory. [`Consumer::seek`], [`Consumer::position`],
//!   [`Consumer::pause`] / [`Consumer::resume`].
//! * [`Error`] — one enum; [`Error::is_retryable`] separates what may succeed later (a
//!   leader change, a timeout) from what will not (a fenced producer, an unknown topic, a
//!   bad certificate). Broker errors carry the wire [`ErrorCode`].
//!
//! # Example: produce, then read back
//!
//! ```no_run
//! use floe_client::{Client, Consumer, NewTopic, Producer, ProducerRecord, StartFrom, TopicPartition};
//! use futures_util::StreamExt;
//!
//! # async fn demo() -> floe_client::Result<()> {
//! let client = Client::builder()
//!     .brokers(["127.0.0.1:9092"])
//!     .ca_cert("certs/ca.pem")
//!     .build()
//!     .await?;
//! client.admin().create_topic(NewTopic::new("greetings", 1, 3)).await?;
//!
//! let producer = Producer::builder(&client).build().await?;
//! let meta = producer
//!     .send(ProducerRecord::new("greetings", "hello").key("en"))
//!     .await?;
//! println!("written at offset {}", meta.offset);
//! producer.close().await?;
//!
//! let consumer = Consumer::builder(&client).build()?;
//! consumer
//!     .assign(TopicPartition::new("greetings", 0), StartFrom::Earliest)
//!     .await?;
//! let mut records = consumer.stream();
//! if let Some(record) = records.next().await {
//!     let record = record?;
//!     assert_eq!(record.value.as_deref(), Some(&b"hello"[..]));
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Errors and retries
//!
//! ```
//! use floe_client::{Error, ErrorCode};
//! fn explain(e: &Error) -> &'static str {
//!     match e {
//!         Error::ProducerFenced { .. } => "another instance took over this producer",
//!         e if e.code() == Some(ErrorCode::TopicAlreadyExists) => "already there",
//!         e if e.is_retryable() => "try again later",
//!         _ => "fatal",
//!     }
//! }
//! assert_eq!(explain(&Error::Closed), "fatal");
//! ```
//!
//! [floe]: https://example.invalid/floe
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
pub use floe_protocol::client::Acks;
pub use producer::{Compression, Delivery, Producer, ProducerBuilder, WhenFull};
pub use record::{ConsumerRecord, ProducerRecord, RecordMetadata, TopicPartition};

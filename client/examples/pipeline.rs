//! A small pipeline: read `input`, upper-case each value, write it to `output` with the same
//! key (so per-key order is kept), and report progress; stop after `count` records if given.
//! `output` is created like `input` (partitions, replication factor) if it does not exist.
//!
//! ```text
//! FLOE_BROKERS=127.0.0.1:9092 FLOE_CA_CERT=certs/ca.pem \
//!     cargo run -p floe-client --example pipeline -- input output [count]
//! ```
//!
//! The consumer's bounded buffer and the producer's bounded buffer chain the backpressure:
//! if `output` is slow, `dispatch` waits, the stream is not polled, and `input`'s brokers
//! stop pushing.

use bytes::Bytes;
use floe_client::{Client, Consumer, ErrorCode, NewTopic, Producer, ProducerRecord, StartFrom};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().unwrap_or_else(|| "input".into());
    let output = args.next().unwrap_or_else(|| "output".into());
    let count: usize = args.next().map_or(Ok(usize::MAX), |n| n.parse())?;
    let client = Client::builder()
        .brokers(env("FLOE_BROKERS", "127.0.0.1:9092").split(','))
        .ca_cert(env("FLOE_CA_CERT", "ca.pem"))
        .build()
        .await?;
    let admin = client.admin();
    let like = admin.describe_topics(&[&input]).await?.remove(0);
    let output_topic = NewTopic::new(
        output.clone(),
        like.partitions.len() as u32,
        like.replication_factor() as u16,
    );
    match admin.create_topic(output_topic).await {
        Ok(()) => println!("created {output}"),
        Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => {}
        Err(e) => return Err(e.into()),
    }
    let consumer = Consumer::builder(&client).build()?;
    consumer.assign_topic(&input, StartFrom::Earliest).await?;
    let producer = Producer::builder(&client).build().await?;

    let mut records = consumer.stream().take(count);
    let mut moved = 0u64;
    while let Some(record) = records.next().await {
        let record = record?;
        let upper = record.value.map(|v| Bytes::from(v.to_ascii_uppercase()));
        let mut out = ProducerRecord::new(output.clone(), Bytes::new());
        out.value = upper;
        out.key = record.key;
        out.timestamp = Some(record.timestamp);
        // Fire and forget; failures are reported by the callback.
        producer
            .send_with_callback(out, |result| {
                if let Err(e) = result {
                    eprintln!("could not write: {e}");
                }
            })
            .await?;
        moved += 1;
        if moved.is_multiple_of(10_000) {
            producer.flush().await?;
            println!("{moved} records moved");
        }
    }
    // Delivers what is buffered.
    producer.close().await?;
    println!("{moved} records moved");
    client.close().await;
    Ok(())
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

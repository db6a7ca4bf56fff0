//! Produce `count` numbered records to a topic (keyed over 16 keys), all in flight at once,
//! and report how long they took.
//!
//! ```text
//! FLOE_BROKERS=127.0.0.1:9092 FLOE_CA_CERT=certs/ca.pem \
//!     cargo run -p floe-client --example producer -- orders 1000
//! ```

use std::time::{Duration, Instant};

use floe_client::{Client, Producer, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let count: u64 = args.next().map_or(Ok(100), |n| n.parse())?;
    let client = Client::builder()
        .brokers(env("FLOE_BROKERS", "127.0.0.1:9092").split(','))
        .ca_cert(env("FLOE_CA_CERT", "ca.pem"))
        .build()
        .await?;
    let producer = Producer::builder(&client)
        .linger(Duration::from_millis(5))
        .build()
        .await?;

    let started = Instant::now();
    // Keep every record in flight at once; the producer batches them per partition.
    let mut deliveries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let record = ProducerRecord::new(topic.clone(), format!("record {i}"))
            .key(format!("key-{}", i % 16));
        deliveries.push(producer.dispatch(record).await?);
    }
    let mut last = None;
    for d in deliveries {
        last = Some(d.await?);
    }
    producer.close().await?;
    println!(
        "{count} records in {:?}; last at {:?}",
        started.elapsed(),
        last.map(|m| (m.partition, m.offset))
    );
    client.close().await;
    Ok(())
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

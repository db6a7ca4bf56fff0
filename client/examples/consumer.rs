//! Print a topic's records from the beginning, every partition, until `count` are read.
//!
//! ```text
//! FLOE_BROKERS=127.0.0.1:9092 FLOE_CA_CERT=certs/ca.pem \
//!     cargo run -p floe-client --example consumer -- orders 1000
//! ```

use floe_client::{Client, Consumer, StartFrom};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let count: usize = args.next().map_or(Ok(usize::MAX), |n| n.parse())?;
    let client = Client::builder()
        .brokers(env("FLOE_BROKERS", "127.0.0.1:9092").split(','))
        .ca_cert(env("FLOE_CA_CERT", "ca.pem"))
        .build()
        .await?;
    let consumer = Consumer::builder(&client).build()?;
    consumer.assign_topic(&topic, StartFrom::Earliest).await?;

    let mut records = consumer.stream().take(count);
    while let Some(record) = records.next().await {
        let record = record?;
        let value = record.value.as_deref().map(String::from_utf8_lossy);
        println!(
            "{}/{}@{}\t{}",
            record.topic,
            record.partition,
            record.offset,
            value.unwrap_or_default()
        );
    }
    client.close().await;
    Ok(())
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

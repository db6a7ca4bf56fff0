//! `floe produce TOPIC`: one record per stdin line, a summary on stderr at the end.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use floe_client::{Acks, Delivery, Producer, ProducerRecord};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::{CliError, ClientArgs};

/// Records in flight (buffered or sent, not yet acknowledged) before reading waits for the
/// oldest; the producer's own buffer bounds the bytes.
const MAX_PENDING: usize = 16_384;
/// The longest line read as one record (the broker's batch limit is lower anyway).
const MAX_LINE: usize = 8 * 1024 * 1024;

/// `--acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AcksArg {
    /// Acknowledged once a quorum of replicas holds the record (durable).
    All,
    /// Acknowledged once the leader stored it.
    Leader,
}

/// `floe produce` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    pub(crate) topic: String,
    /// A key for every record (records with the same key go to the same partition).
    #[arg(long, value_name = "K")]
    pub(crate) key: Option<String>,
    /// Send every record to this partition (default: by key, else spread over partitions).
    #[arg(long, value_name = "N")]
    pub(crate) partition: Option<u32>,
    /// all: acknowledged when a quorum has it; leader: when the leader has it.
    #[arg(long, value_enum, default_value = "all")]
    pub(crate) acks: AcksArg,
}

/// What went out.
#[derive(Debug, Default)]
struct Tally {
    records: u64,
    bytes: u64,
    failed: u64,
    first_failure: Option<floe_client::Error>,
}

impl Tally {
    fn settle(&mut self, outcome: floe_client::Result<floe_client::RecordMetadata>) {
        if let Err(e) = outcome {
            self.failed += 1;
            self.first_failure.get_or_insert(e);
        }
    }
}

/// Runs `floe produce`.
pub(crate) fn run(args: &ClientArgs, produce: ProduceArgs) -> Result<(), CliError> {
    super::runtime()?.block_on(async {
        let client = args.connect().await?;
        let partitions = client.partition_count(&produce.topic).await?;
        if let Some(p) = produce.partition
            && p >= partitions
        {
            return Err(CliError::UnknownPartition {
                topic: produce.topic,
                partition: p,
                partitions,
            });
        }
        let producer = Producer::builder(&client)
            .acks(match produce.acks {
                AcksArg::All => Acks::All,
                AcksArg::Leader => Acks::Leader,
            })
            .build()
            .await?;
        let started = Instant::now();
        let tally = send_lines(&producer, &produce).await;
        let closed = producer.close().await;
        client.close().await;
        let mut tally = tally?;
        closed?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "floe: produced {} records, {} bytes to {} in {seconds:.3} s",
            tally.records - tally.failed,
            tally.bytes,
            produce.topic
        );
        match tally.first_failure.take() {
            Some(first) => Err(CliError::Undelivered {
                records: tally.records,
                failed: tally.failed,
                first,
            }),
            None => Ok(()),
        }
    })
}

/// Reads stdin to its end, one record per line, and waits for every acknowledgement.
async fn send_lines(producer: &Producer, produce: &ProduceArgs) -> Result<Tally, CliError> {
    let key = produce.key.clone().map(Bytes::from);
    let mut stdin = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    let mut tally = Tally::default();
    let mut line = Vec::new();
    // Ctrl-C ends the input like end of file: what was read is still delivered.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        line.clear();
        let mut limited = (&mut stdin).take(MAX_LINE as u64 + 1);
        let read = limited.read_until(b'\n', &mut line);
        let n = tokio::select! {
            n = read => n.map_err(|source| CliError::Io {
                what: "reading stdin",
                source,
            })?,
            _ = &mut ctrl_c => 0,
        };
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        } else if line.len() > MAX_LINE {
            return Err(CliError::Io {
                what: "reading stdin",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE} bytes"),
                ),
            });
        }
        let mut record = ProducerRecord::new(&produce.topic, Bytes::copy_from_slice(&line));
        if let Some(k) = &key {
            record = record.key(k.clone());
        }
        if let Some(p) = produce.partition {
            record = record.partition(p);
        }
        tally.records += 1;
        tally.bytes += line.len() as u64;
        pending.push_back(producer.dispatch(record).await?);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending.pop_front()
        {
            tally.settle(oldest.await);
        }
    }
    for delivery in pending {
        tally.settle(delivery.await);
    }
    Ok(tally)
}

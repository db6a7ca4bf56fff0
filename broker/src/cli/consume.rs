//! `floe consume TOPIC`: one line per record on stdout, formatted by `--format`.

use std::io::Write;

use floe_client::{Consumer, ConsumerRecord, StartFrom, TopicPartition};
use futures_util::{FutureExt, StreamExt};

use super::{CliError, ClientArgs};

/// `floe consume` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    pub(crate) topic: String,
    /// Start at the oldest record kept (default: only records produced from now on).
    #[arg(long, conflicts_with = "offset")]
    pub(crate) from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, value_name = "N")]
    pub(crate) offset: Option<u64>,
    /// Read only this partition (default: every partition of the topic).
    #[arg(long, value_name = "N")]
    pub(crate) partition: Option<u32>,
    /// Consumer group (not supported yet).
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// Exit after this many records (default: read until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Each record's line: %v value, %k key, %o offset, %p partition, %t timestamp (ms since
    /// the Unix epoch), %T topic, %% a percent sign; \n, \t and \\ escapes. A null key or
    /// value prints as "null".
    #[arg(long, value_name = "FMT", default_value = "%v")]
    pub(crate) format: String,
}

/// A `--format` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    /// `%` followed by something that is no placeholder.
    #[error("unknown placeholder %{0} (use %v %k %o %p %t %T or %%)")]
    UnknownPlaceholder(char),
    /// `\` followed by something that is no escape.
    #[error("unknown escape \\{0} (use \\n \\t or \\\\)")]
    UnknownEscape(char),
    /// The format ends in a lone `%` or `\`.
    #[error("ends with a lone {0:?}")]
    Dangling(char),
}

/// One piece of a parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Value,
    Key,
    Offset,
    Partition,
    Timestamp,
    Topic,
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    pieces: Vec<Piece>,
}

impl Format {
    /// Parses `%`-placeholders and `\` escapes.
    pub(crate) fn parse(spec: &str) -> Result<Format, FormatError> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = spec.chars();
        while let Some(c) = chars.next() {
            let placeholder = match c {
                '%' => match chars.next() {
                    Some('v') => Piece::Value,
                    Some('k') => Piece::Key,
                    Some('o') => Piece::Offset,
                    Some('p') => Piece::Partition,
                    Some('t') => Piece::Timestamp,
                    Some('T') => Piece::Topic,
                    Some('%') => {
                        text.push(b'%');
                        continue;
                    }
                    Some(other) => return Err(FormatError::UnknownPlaceholder(other)),
                    None => return Err(FormatError::Dangling('%')),
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('\\') => b'\\',
                        Some(other) => return Err(FormatError::UnknownEscape(other)),
                        None => return Err(FormatError::Dangling('\\')),
                    };
                    text.push(escaped);
                    continue;
                }
                c => {
                    let mut buf = [0u8; 4];
                    text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(placeholder);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format { pieces })
    }

    /// Appends `record`'s line (with its newline) to `out`.
    pub(crate) fn write(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        let bytes = |out: &mut Vec<u8>, b: &Option<bytes::Bytes>| match b {
            Some(b) => out.extend_from_slice(b),
            None => out.extend_from_slice(b"null"),
        };
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Value => bytes(out, &record.value),
                Piece::Key => bytes(out, &record.key),
                Piece::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Piece::Partition => out.extend_from_slice(record.partition.to_string().as_bytes()),
                Piece::Timestamp => out.extend_from_slice(record.timestamp.to_string().as_bytes()),
                Piece::Topic => out.extend_from_slice(record.topic.as_bytes()),
            }
        }
        out.push(b'\n');
    }
}

/// Runs `floe consume`.
pub(crate) fn run(args: &ClientArgs, consume: ConsumeArgs) -> Result<(), CliError> {
    if consume.group.is_some() {
        return Err(CliError::GroupsUnsupported);
    }
    let format = Format::parse(&consume.format)?;
    let start = match (consume.from_beginning, consume.offset) {
        (true, _) => StartFrom::Earliest,
        (false, Some(o)) => StartFrom::Offset(o),
        (false, None) => StartFrom::Latest,
    };
    super::runtime()?.block_on(async {
        let client = args.connect().await?;
        let partitions = client.partition_count(&consume.topic).await?;
        let chosen: Vec<u32> = match consume.partition {
            Some(p) if p >= partitions => {
                return Err(CliError::UnknownPartition {
                    topic: consume.topic,
                    partition: p,
                    partitions,
                });
            }
            Some(p) => vec![p],
            None => (0..partitions).collect(),
        };
        let consumer = Consumer::builder(&client).build()?;
        for p in chosen {
            consumer
                .assign(TopicPartition::new(&consume.topic, p), start)
                .await?;
        }
        let result = print_records(&consumer, &format, consume.count).await;
        consumer.close();
        client.close().await;
        result
    })
}

/// Prints records until `count` are printed, Ctrl-C, or stdout is closed. Output is flushed
/// whenever no further record is ready, so a slow topic's lines appear as they arrive.
async fn print_records(
    consumer: &Consumer,
    format: &Format,
    count: Option<u64>,
) -> Result<(), CliError> {
    let mut stream = consumer.stream();
    let mut stdout = std::io::stdout().lock();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while count.is_none_or(|c| printed < c) {
        let next = match stream.next().now_or_never() {
            Some(next) => next,
            None => {
                if !flush(&mut stdout, &mut buf)? {
                    return Ok(());
                }
                tokio::select! {
                    next = stream.next() => next,
                    _ = &mut ctrl_c => break,
                }
            }
        };
        let Some(record) = next else { break };
        format.write(&record?, &mut buf);
        printed += 1;
        if buf.len() >= 64 * 1024 && !flush(&mut stdout, &mut buf)? {
            return Ok(());
        }
    }
    flush(&mut stdout, &mut buf)?;
    Ok(())
}

/// Writes `buf` out; `false` when stdout is a closed pipe (`floe consume T | head`), which
/// ends the command successfully.
fn flush(out: &mut impl Write, buf: &mut Vec<u8>) -> Result<bool, CliError> {
    let written = out.write_all(buf).and_then(|()| out.flush());
    buf.clear();
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(source) => Err(CliError::Io {
            what: "writing to stdout",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(key: Option<&'static str>, value: Option<&'static str>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: value.map(|v| Bytes::from_static(v.as_bytes())),
            headers: vec![],
        }
    }

    fn line(spec: &str, r: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        Format::parse(spec).expect("valid").write(r, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn placeholders_and_escapes() {
        let r = record(Some("k1"), Some("héllo"));
        assert_eq!(line("%v", &r), "héllo\n");
        assert_eq!(
            line("%T/%p@%o %k=%v %t 100%%", &r),
            "orders/2@41 k1=héllo 1700000000000 100%\n"
        );
        assert_eq!(line("%k\\t%v\\\\", &r), "k1\théllo\\\n");
        assert_eq!(line("%k:%v", &record(None, None)), "null:null\n");
        assert_eq!(line("", &r), "\n");
    }

    #[test]
    fn bad_formats_are_typed_errors() {
        assert_eq!(
            Format::parse("%x"),
            Err(FormatError::UnknownPlaceholder('x'))
        );
        assert_eq!(Format::parse("a%"), Err(FormatError::Dangling('%')));
        assert_eq!(Format::parse("\\q"), Err(FormatError::UnknownEscape('q')));
        assert_eq!(Format::parse("\\"), Err(FormatError::Dangling('\\')));
    }
}

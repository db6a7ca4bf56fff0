//! The `floe` command line.
//!
//! Exit status 0 on success, non-zero with a one-line reason on stderr (DESIGN.md's contract).
//! The node (`serve`), certificates and offline log tools are here; `floe dev` and the verbs
//! that talk to a running cluster are in `cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use floe_broker::certs;
use floe_broker::log_inspect::{self, LogReport, SegmentEnd};
use floe_protocol::batch::{BatchLimits, BatchView};

/// floe: a replicated commit log and stream broker.
#[derive(Debug, Parser)]
#[command(name = "floe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline tools for a partition directory (read-only; safe on a stopped broker's data).
    #[command(subcommand)]
    Log(LogCommand),
    /// The cluster CA and node certificates (TLS is always on).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run a broker node until SIGINT or SIGTERM.
    Serve(Box<ServeFlags>),
    /// Run a local N-node cluster on loopback (child `floe serve` processes) until Ctrl-C.
    Dev(cli::dev::DevArgs),
    /// Create, list, describe and delete topics.
    Topic {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::topic::TopicCommand,
    },
    /// Send one record per stdin line until end of input (or Ctrl-C); a summary goes to stderr.
    Produce {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(flatten)]
        args: cli::produce::ProduceArgs,
    },
    /// Print one line per record (by default its value) until --count records or Ctrl-C.
    Consume {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(flatten)]
        args: cli::consume::ConsumeArgs,
    },
    /// The cluster's nodes, controller and partitions.
    Cluster {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::cluster::ClusterCommand,
    },
    /// Consumer groups (not supported yet).
    Group {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::GroupCommand,
    },
}

/// `floe serve` flags; each is also a `FLOE_*` variable and a key of the `--config` file.
#[derive(Debug, clap::Args)]
struct ServeFlags {
    /// TOML file with any of the settings below (kebab-case keys).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (> 0).
    #[arg(long, value_name = "N")]
    node_id: Option<String>,
    /// Where partition logs live.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Client QUIC listener (default 127.0.0.1:7400).
    #[arg(long, value_name = "IP:PORT")]
    client_addr: Option<String>,
    /// Peer QUIC listener (default 127.0.0.1:7401).
    #[arg(long, value_name = "IP:PORT")]
    peer_addr: Option<String>,
    /// Prometheus metrics listener, `GET /metrics` (default 127.0.0.1:7402).
    #[arg(long, value_name = "IP:PORT")]
    metrics_addr: Option<String>,
    /// The cluster's nodes: ID@HOST:PORT,... (peer addresses).
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    voters: Option<String>,
    /// This node's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The cluster CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Client connections one IP address may hold at once, 0 for no limit (default 4096).
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<String>,
    /// Concurrent requests (QUIC streams) per client connection (default 1024).
    #[arg(long, value_name = "N")]
    max_streams_per_connection: Option<String>,
    /// Partition log segment size in bytes (default 256 MiB).
    #[arg(long, value_name = "BYTES")]
    segment_bytes: Option<String>,
    /// Retention by size per partition log, in bytes (default: keep everything).
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<String>,
    /// Retention by age, in milliseconds (default: keep everything).
    #[arg(long, value_name = "MS")]
    retention_ms: Option<String>,
    /// The static topic table (TOML `[[topic]]` and `[[broker]]` entries; also FLOE_TOPICS)
    /// until the controller is connected.
    #[arg(long, value_name = "FILE")]
    topics: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Create a cluster CA: DIR/ca.pem (give it to every node and client) and DIR/ca.key.
    Init {
        /// Directory to write the CA into (created if missing; existing files are kept).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue DIR/NAME.pem and DIR/NAME.key signed by the CA, valid as a server and a client
    /// certificate (node certificates for peers' mutual TLS, or client certificates).
    Issue {
        /// Directory holding ca.pem and ca.key (made by `floe cert init`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Certificate name: a DNS name, always among its subject-alternative names.
        #[arg(long)]
        name: String,
        /// Directory to write NAME.pem and NAME.key into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// An IP address the certificate is valid for (repeatable).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<std::net::IpAddr>,
        /// One more DNS name the certificate is valid for (repeatable).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Check every batch's length and CRC, offset continuity and terms; exit 1 on damage.
    Verify {
        /// The partition directory.
        dir: PathBuf,
    },
    /// Print every batch header (and, with --records, every record).
    Dump {
        /// The partition directory.
        dir: PathBuf,
        /// Also print each record: offset, timestamp, key and value (lossy UTF-8).
        #[arg(long)]
        records: bool,
        /// Start at the batch containing this offset.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many batches.
        #[arg(long)]
        limit: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Log(LogCommand::Verify { dir }) => verify(&dir),
        Command::Log(LogCommand::Dump {
            dir,
            records,
            from,
            limit,
        }) => dump(&dir, records, from, limit.unwrap_or(u64::MAX)),
        Command::Cert(CertCommand::Init { out }) => cert_init(&out),
        Command::Cert(CertCommand::Issue {
            ca,
            name,
            out,
            ips,
            dns,
        }) => cert_issue(&ca, &name, &out, ips, &dns),
        Command::Serve(flags) => serve(*flags),
        Command::Dev(args) => cli::dev::run(args).or_else(|e| cli_failed(&e)),
        Command::Topic { client, command } => cli_done(cli::topic::run(&client, command)),
        Command::Produce { client, args } => cli_done(cli::produce::run(&client, args)),
        Command::Consume { client, args } => cli_done(cli::consume::run(&client, args)),
        Command::Cluster { client, command } => cli_done(cli::cluster::run(&client, command)),
        Command::Group { command, .. } => cli_done(cli::group(&command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the error (TOML errors span several).
            let reason = format!("{e:#}");
            let reason: Vec<&str> = reason.split_whitespace().collect();
            eprintln!("floe: {}", reason.join(" "));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap renders them; a bad argument is one line on stderr
/// (clap's own message, without its usage block) and exit status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // clap's first paragraph: the reason and, on its next lines, the missing arguments or
    // the possible values.
    let rendered = e.render().to_string();
    let paragraph: Vec<&str> = rendered
        .trim_start()
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let reason = paragraph.join(" ");
    let reason = reason.strip_prefix("error: ").unwrap_or(&reason);
    eprintln!("floe: {reason} (see --help)");
    ExitCode::from(2)
}

fn cli_done(result: Result<(), cli::CliError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => cli_failed(&e),
    }
}

/// A client verb's error on one line. Its message already names its causes, so unlike
/// other errors its source chain is not appended.
fn cli_failed(e: &cli::CliError) -> anyhow::Result<ExitCode> {
    let reason = e.to_string();
    let reason: Vec<&str> = reason.split_whitespace().collect();
    eprintln!("floe: {}", reason.join(" "));
    Ok(ExitCode::FAILURE)
}

fn serve(flags: ServeFlags) -> anyhow::Result<ExitCode> {
    use floe_broker::config::{ServeArgs, ServeConfig};
    use floe_broker::node::{Node, NodeConfig, StaticTable};
    use floe_net::{CaCerts, Endpoint, EndpointOptions, Identity};

    floe_broker::telemetry::init_logging();
    let args = ServeArgs {
        config: flags.config,
        node_id: flags.node_id,
        data_dir: flags.data_dir,
        client_addr: flags.client_addr,
        peer_addr: flags.peer_addr,
        metrics_addr: flags.metrics_addr,
        voters: flags.voters,
        tls_cert: flags.tls_cert,
        tls_key: flags.tls_key,
        ca_cert: flags.ca_cert,
        max_connections_per_ip: flags.max_connections_per_ip,
        max_streams_per_connection: flags.max_streams_per_connection,
        segment_bytes: flags.segment_bytes,
        retention_bytes: flags.retention_bytes,
        retention_ms: flags.retention_ms,
    };
    let config = ServeConfig::load(&args, |k| std::env::var(k).ok())?;
    let topics_file = flags
        .topics
        .or_else(|| std::env::var_os("FLOE_TOPICS").map(PathBuf::from));
    let table = match &topics_file {
        Some(path) => StaticTable::read(path)?,
        None => StaticTable::default(),
    };
    let (brokers, topics) = table.resolve(&config)?;
    let identity = Identity::from_pem_files(&config.tls_cert, &config.tls_key)
        .context("--tls-cert/--tls-key")?;
    let ca = CaCerts::from_pem_file(&config.ca_cert).context("--ca-cert")?;
    let mut node_config = NodeConfig::new(config.node_id, config.data_dir.clone(), brokers);
    node_config.topics = topics;
    node_config.max_connections_per_ip = config.max_connections_per_ip;
    node_config.log.segment_bytes = config.segment_bytes;
    node_config.log.retention_bytes = config.retention_bytes;
    node_config.log.retention_ms = config.retention_ms;
    node_config.voters = config.voters.iter().map(|v| v.id).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("floe-rt")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let options = EndpointOptions::default();
        let mut client_options = options.clone();
        client_options.transport.max_concurrent_bidi_streams = config.max_streams_per_connection;
        let client = Endpoint::client_listener(config.client_addr, &identity, &client_options)
            .with_context(|| format!("--client-addr {}", config.client_addr))?;
        let peer = Endpoint::peer(config.peer_addr, &identity, &ca, &options)
            .with_context(|| format!("--peer-addr {}", config.peer_addr))?;
        // Before the node: its partitions resolve their metric handles when they open.
        floe_broker::telemetry::install_prometheus(config.metrics_addr)
            .context("--metrics-addr")?;
        let node = Node::start(node_config, client, peer).await?;
        println!(
            "floe: node {} serving clients on {}, peers on {}, metrics on http://{}/metrics",
            config.node_id, config.client_addr, config.peer_addr, config.metrics_addr
        );
        wait_for_signal().await?;
        eprintln!("floe: stopping: closing listeners and replicas");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn cert_init(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let paths = certs::init_ca(out)?;
    println!(
        "wrote {} and {} (keep the key private)",
        paths.cert.display(),
        paths.key.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn cert_issue(
    ca: &std::path::Path,
    name: &str,
    out: &std::path::Path,
    ips: Vec<std::net::IpAddr>,
    dns: &[String],
) -> anyhow::Result<ExitCode> {
    let mut request = certs::IssueRequest::new(name)?;
    for d in dns {
        request = request.dns(d)?;
    }
    for ip in ips {
        request = request.ip(ip);
    }
    let paths = certs::issue(ca, &request, out)?;
    println!("wrote {} and {}", paths.cert.display(), paths.key.display());
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = log_inspect::inspect(dir)?;
    print_segments(&report);
    for f in &report.findings {
        println!("{} {f}", if f.is_damage() { "DAMAGE" } else { "warning" });
    }
    if let Some(first) = report.findings.iter().find(|f| f.is_damage()) {
        eprintln!("floe: log damaged: {first}");
        return Ok(ExitCode::FAILURE);
    }
    let records: u64 = report.segments.iter().map(|s| s.records()).sum();
    println!("ok: {} segments, {records} records", report.segments.len());
    Ok(ExitCode::SUCCESS)
}

fn print_segments(report: &LogReport) {
    for s in &report.segments {
        let range = match (s.batches.first(), s.batches.last()) {
            (Some(a), Some(b)) => format!(
                "offsets {}..={}",
                a.header.base_offset,
                b.header.last_offset()
            ),
            _ => "no batches".to_string(),
        };
        let end = match &s.end {
            SegmentEnd::Clean => String::new(),
            SegmentEnd::ZeroTail { bytes } => format!(", {bytes} bytes preallocated"),
            SegmentEnd::Damaged {
                position, error, ..
            } => format!(", INVALID at byte {position}: {error}"),
            SegmentEnd::Superseded { position, bytes } => format!(
                ", {bytes} bytes from byte {position} superseded by the next segment (truncated)"
            ),
        };
        println!(
            "{}: {} batches, {} records, {range}, {} bytes{end}",
            s.path.display(),
            s.batches.len(),
            s.records(),
            s.data_bytes()
        );
    }
}

fn dump(dir: &std::path::Path, records: bool, from: u64, limit: u64) -> anyhow::Result<ExitCode> {
    let report = log_inspect::inspect(dir)?;
    let mut printed = 0u64;
    for seg in &report.segments {
        for b in &seg.batches {
            let h = &b.header;
            if h.last_offset() < from {
                continue;
            }
            if printed == limit {
                return Ok(ExitCode::SUCCESS);
            }
            printed += 1;
            println!(
                "batch base_offset={} last_offset={} term={} records={} len={} crc={:#010x} control={} codec={:?} producer_id={} epoch={} base_sequence={} first_ts={} max_ts={} position={}",
                h.base_offset,
                h.last_offset(),
                h.term,
                h.record_count,
                h.batch_len,
                h.crc,
                h.attributes.is_control(),
                h.attributes.codec(),
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.first_timestamp,
                h.max_timestamp,
                b.position
            );
            if records {
                print_records(seg, b)?;
            }
        }
        if let SegmentEnd::Damaged {
            position, error, ..
        } = &seg.end
        {
            println!(
                "segment {} INVALID at byte {position}: {error}",
                seg.base_offset
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_records(
    seg: &log_inspect::SegmentReport,
    b: &log_inspect::BatchSummary,
) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    // The scan already bounded and validated this batch's length.
    let mut buf = vec![0u8; b.header.batch_len as usize];
    std::fs::File::open(&seg.path)?
        .read_exact_at(&mut buf, b.position)
        .with_context(|| format!("reading {}", seg.path.display()))?;
    let view = BatchView::parse(Bytes::from(buf), BatchLimits::default())?;
    for r in view.records()?.iter() {
        let r = r?;
        let show = |v: Option<&[u8]>| {
            v.map_or("null".to_string(), |v| {
                format!("{:?}", String::from_utf8_lossy(v))
            })
        };
        println!(
            "  offset={} ts={} key={} value={}",
            r.offset,
            r.timestamp,
            show(r.key),
            show(r.value)
        );
    }
    Ok(())
}

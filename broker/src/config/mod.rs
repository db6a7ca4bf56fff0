//! Configuration of `floe serve`.
//!
//! Every setting comes from one of four layers, highest first: a command-line flag, a `FLOE_*`
//! environment variable, the TOML file named by `--config` (or `FLOE_CONFIG`), and the
//! built-in default. Each setting is resolved on its own: a flag overrides the same setting
//! from the environment, which overrides the file.
//!
//! | setting | flag | environment | TOML key | default |
//! |---|---|---|---|---|
//! | node id (> 0) | `--node-id` | `FLOE_NODE_ID` | `node-id` | required |
//! | data directory | `--data-dir` | `FLOE_DATA_DIR` | `data-dir` | required |
//! | client listener | `--client-addr` | `FLOE_CLIENT_ADDR` | `client-addr` | `127.0.0.1:7400` |
//! | peer listener | `--peer-addr` | `FLOE_PEER_ADDR` | `peer-addr` | `127.0.0.1:7401` |
//! | metrics listener | `--metrics-addr` | `FLOE_METRICS_ADDR` | `metrics-addr` | `127.0.0.1:7402` |
//! | controller voters | `--voters` | `FLOE_VOTERS` | `voters` | required |
//! | node certificate | `--tls-cert` | `FLOE_TLS_CERT` | `tls-cert` | required |
//! | node key | `--tls-key` | `FLOE_TLS_KEY` | `tls-key` | required |
//! | cluster CA | `--ca-cert` | `FLOE_CA_CERT` | `ca-cert` | required |
//! | client connections per IP (0: no limit) | `--max-connections-per-ip` | `FLOE_MAX_CONNECTIONS_PER_IP` | `max-connections-per-ip` | 4096 |
//! | concurrent requests (streams) per client connection | `--max-streams-per-connection` | `FLOE_MAX_STREAMS_PER_CONNECTION` | `max-streams-per-connection` | 1024 |
//! | partition log segment size | `--segment-bytes` | `FLOE_SEGMENT_BYTES` | `segment-bytes` | 268435456 (256 MiB) |
//! | retention by size, per partition | `--retention-bytes` | `FLOE_RETENTION_BYTES` | `retention-bytes` | none (keep all) |
//! | retention by age | `--retention-ms` | `FLOE_RETENTION_MS` | `retention-ms` | none (keep all) |
//!
//! The log settings apply to every partition the node hosts; a topic's own `retention.bytes`
//! / `retention.ms` (set at creation, e.g. `floe topic create --config retention.bytes=N`)
//! take precedence over the retention defaults here. Retention discards whole sealed
//! segments, on every replica, only below the high watermark.
//!
//! `--voters` is `ID@HOST:PORT,...` (peer addresses of the controller voters); in the file it
//! may also be an array of `"ID@HOST:PORT"` strings.
//!
//! ```
//! use floe_broker::config::{ServeArgs, ServeConfig};
//! let args = ServeArgs {
//!     node_id: Some("1".into()),
//!     data_dir: Some("/var/lib/floe".into()),
//!     voters: Some("1@10.0.0.1:7401,2@10.0.0.2:7401,3@10.0.0.3:7401".into()),
//!     tls_cert: Some("n1.pem".into()),
//!     tls_key: Some("n1.key".into()),
//!     ca_cert: Some("ca.pem".into()),
//!     ..ServeArgs::default()
//! };
//! let cfg = ServeConfig::load(&args, |_| None)?; // no environment
//! assert_eq!(cfg.node_id, 1);
//! assert_eq!(cfg.voters.len(), 3);
//! assert!(cfg.is_voter());
//! # Ok::<(), floe_broker::config::ConfigError>(())
//! ```

mod error;
mod file;
mod voters;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use error::{ConfigError, Invalid, Origin, Setting};
pub use voters::{PeerAddr, Voter, parse_voters};

use file::FileConfig;

/// The raw values given on the command line (each `None` when the flag is absent). `floe serve`
/// fills it from clap; tests fill it by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeArgs {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--node-id N`.
    pub node_id: Option<String>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--client-addr HOST:PORT`.
    pub client_addr: Option<String>,
    /// `--peer-addr HOST:PORT`.
    pub peer_addr: Option<String>,
    /// `--metrics-addr HOST:PORT`.
    pub metrics_addr: Option<String>,
    /// `--voters ID@HOST:PORT,...`.
    pub voters: Option<String>,
    /// `--tls-cert FILE`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key FILE`.
    pub tls_key: Option<PathBuf>,
    /// `--ca-cert FILE`.
    pub ca_cert: Option<PathBuf>,
    /// `--max-connections-per-ip N`.
    pub max_connections_per_ip: Option<String>,
    /// `--max-streams-per-connection N`.
    pub max_streams_per_connection: Option<String>,
    /// `--segment-bytes N`.
    pub segment_bytes: Option<String>,
    /// `--retention-bytes N`.
    pub retention_bytes: Option<String>,
    /// `--retention-ms N`.
    pub retention_ms: Option<String>,
}

/// The resolved configuration of one `floe serve` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// This node's id (never 0).
    pub node_id: u64,
    /// Where partitions and the controller keep their logs.
    pub data_dir: PathBuf,
    /// The client QUIC listener.
    pub client_addr: SocketAddr,
    /// The peer QUIC listener.
    pub peer_addr: SocketAddr,
    /// The Prometheus `/metrics` HTTP listener.
    pub metrics_addr: SocketAddr,
    /// The controller voters with their peer addresses (ids unique, at least one).
    pub voters: Vec<Voter>,
    /// This node's certificate (PEM).
    pub tls_cert: PathBuf,
    /// This node's private key (PEM).
    pub tls_key: PathBuf,
    /// The cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Client connections one IP address may hold at once (0: no limit); one more is closed
    /// with a reason right after its handshake.
    pub max_connections_per_ip: u32,
    /// Requests (bidirectional streams) one client connection may have open at once: QUIC
    /// stream credit, so a client waits for a free stream rather than being refused.
    pub max_streams_per_connection: u32,
    /// Partition log segment size in bytes.
    pub segment_bytes: u64,
    /// Retention by size per partition log (`None`: keep everything).
    pub retention_bytes: Option<u64>,
    /// Retention by age in milliseconds (`None`: keep everything).
    pub retention_ms: Option<u64>,
}

/// Default client listener.
pub const DEFAULT_CLIENT_ADDR: &str = "127.0.0.1:7400";
/// Default peer listener.
pub const DEFAULT_PEER_ADDR: &str = "127.0.0.1:7401";
/// Default metrics listener.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:7402";
/// Default client connections per IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = floe_net::DEFAULT_MAX_CONNECTIONS_PER_IP;
/// Default concurrent requests per client connection.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Default partition log segment size (256 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 256 << 20;

impl ServeConfig {
    /// Resolves the configuration from `args`, the environment (`env(name)` returns the value
    /// of variable `name`; pass `|k| std::env::var(k).ok()` in the binary) and the config file.
    pub fn load(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let file_path = match &args.config {
            Some(p) => Some(p.clone()),
            None => env(Setting::Config.env()).map(PathBuf::from),
        };
        let file = match &file_path {
            Some(p) => FileConfig::read(p)?,
            None => FileConfig::default(),
        };
        let layers = Layers {
            args,
            env: &env,
            file: &file,
        };
        Ok(ServeConfig {
            node_id: layers.node_id()?,
            data_dir: layers.path(Setting::DataDir, args.data_dir.as_ref(), &file.data_dir)?,
            client_addr: layers.socket(
                Setting::ClientAddr,
                &args.client_addr,
                &file.client_addr,
                DEFAULT_CLIENT_ADDR,
            )?,
            peer_addr: layers.socket(
                Setting::PeerAddr,
                &args.peer_addr,
                &file.peer_addr,
                DEFAULT_PEER_ADDR,
            )?,
            metrics_addr: layers.socket(
                Setting::MetricsAddr,
                &args.metrics_addr,
                &file.metrics_addr,
                DEFAULT_METRICS_ADDR,
            )?,
            voters: layers.voters()?,
            tls_cert: layers.path(Setting::TlsCert, args.tls_cert.as_ref(), &file.tls_cert)?,
            tls_key: layers.path(Setting::TlsKey, args.tls_key.as_ref(), &file.tls_key)?,
            ca_cert: layers.path(Setting::CaCert, args.ca_cert.as_ref(), &file.ca_cert)?,
            max_connections_per_ip: layers.number(
                Setting::MaxConnectionsPerIp,
                &args.max_connections_per_ip,
                file.max_connections_per_ip,
                DEFAULT_MAX_CONNECTIONS_PER_IP,
                0..=1 << 20,
            )?,
            max_streams_per_connection: layers.number(
                Setting::MaxStreamsPerConnection,
                &args.max_streams_per_connection,
                file.max_streams_per_connection,
                DEFAULT_MAX_STREAMS_PER_CONNECTION,
                1..=1 << 16,
            )?,
            segment_bytes: layers
                .number_in(
                    Setting::SegmentBytes,
                    &args.segment_bytes,
                    file.segment_bytes,
                    1024..=floe_storage::LogConfig::MAX_SEGMENT_BYTES,
                )?
                .unwrap_or(DEFAULT_SEGMENT_BYTES),
            retention_bytes: layers.number_in(
                Setting::RetentionBytes,
                &args.retention_bytes,
                file.retention_bytes,
                0..=u64::MAX,
            )?,
            retention_ms: layers.number_in(
                Setting::RetentionMs,
                &args.retention_ms,
                file.retention_ms,
                0..=u64::MAX,
            )?,
        })
    }

    /// Whether this node is one of the controller voters (otherwise it joins as a broker only).
    pub fn is_voter(&self) -> bool {
        self.voters.iter().any(|v| v.id == self.node_id)
    }
}

/// The three non-default layers, consulted per setting.
struct Layers<'a, E: Fn(&str) -> Option<String>> {
    args: &'a ServeArgs,
    env: &'a E,
    file: &'a FileConfig,
}

impl<E: Fn(&str) -> Option<String>> Layers<'_, E> {
    /// The highest layer's string value for `setting`, with its origin.
    fn pick(
        &self,
        setting: Setting,
        flag: Option<&str>,
        file: Option<&str>,
    ) -> Option<(String, Origin)> {
        if let Some(v) = flag {
            return Some((v.to_owned(), Origin::Flag));
        }
        if let Some(v) = (self.env)(setting.env()) {
            return Some((v, Origin::Env));
        }
        file.map(|v| (v.to_owned(), Origin::File))
    }

    fn node_id(&self) -> Result<u64, ConfigError> {
        let setting = Setting::NodeId;
        let (id, origin, raw) = if let Some(v) = &self.args.node_id {
            (v.trim().parse::<u64>().ok(), Origin::Flag, v.clone())
        } else if let Some(v) = (self.env)(setting.env()) {
            (v.trim().parse::<u64>().ok(), Origin::Env, v)
        } else if let Some(id) = self.file.node_id {
            (Some(id), Origin::File, id.to_string())
        } else {
            return Err(ConfigError::Missing { setting });
        };
        match id {
            Some(0) => Err(setting.invalid(origin, raw, Invalid::ZeroId)),
            Some(id) => Ok(id),
            None => Err(setting.invalid(origin, raw, Invalid::NotANumber)),
        }
    }

    fn path(
        &self,
        setting: Setting,
        flag: Option<&PathBuf>,
        file: &Option<PathBuf>,
    ) -> Result<PathBuf, ConfigError> {
        let picked = match flag {
            Some(p) => Some((p.clone(), Origin::Flag)),
            None => match (self.env)(setting.env()) {
                Some(v) => Some((PathBuf::from(v), Origin::Env)),
                None => file.clone().map(|p| (p, Origin::File)),
            },
        };
        let Some((path, origin)) = picked else {
            return Err(ConfigError::Missing { setting });
        };
        if path.as_os_str().is_empty() {
            return Err(setting.invalid(origin, String::new(), Invalid::Empty));
        }
        Ok(path)
    }

    fn socket(
        &self,
        setting: Setting,
        flag: &Option<String>,
        file: &Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let (raw, origin) = self
            .pick(setting, flag.as_deref(), file.as_deref())
            .unwrap_or_else(|| (default.to_owned(), Origin::Default));
        raw.trim()
            .parse::<SocketAddr>()
            .map_err(|_| setting.invalid(origin, raw, Invalid::BadSocketAddr))
    }

    /// A whole number in `range` (the default when no layer sets it).
    fn number(
        &self,
        setting: Setting,
        flag: &Option<String>,
        file: Option<u64>,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<u32, ConfigError> {
        let range = u64::from(*range.start())..=u64::from(*range.end());
        let n = self.number_in(setting, flag, file, range)?;
        // In range, so it fits.
        Ok(n.map_or(default, |n| u32::try_from(n).unwrap_or(default)))
    }

    /// A whole number in `range`, if some layer sets it.
    fn number_in(
        &self,
        setting: Setting,
        flag: &Option<String>,
        file: Option<u64>,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let file = file.map(|n| n.to_string());
        let Some((raw, origin)) = self.pick(setting, flag.as_deref(), file.as_deref()) else {
            return Ok(None);
        };
        let n = raw
            .trim()
            .parse::<u64>()
            .map_err(|_| setting.invalid(origin, raw.clone(), Invalid::NotANumber))?;
        if !range.contains(&n) {
            return Err(setting.invalid(
                origin,
                raw,
                Invalid::OutOfRange {
                    min: *range.start(),
                    max: *range.end(),
                },
            ));
        }
        Ok(Some(n))
    }

    fn voters(&self) -> Result<Vec<Voter>, ConfigError> {
        let setting = Setting::Voters;
        let file = self.file.voters.as_ref().map(file::VotersValue::joined);
        let Some((raw, origin)) = self.pick(setting, self.args.voters.as_deref(), file.as_deref())
        else {
            return Err(ConfigError::Missing { setting });
        };
        parse_voters(&raw).map_err(|why| setting.invalid(origin, raw, why))
    }
}

#[cfg(test)]
mod tests;

//! Typed configuration errors: which setting, from which layer, and what is wrong.

use std::fmt;
use std::path::PathBuf;

/// One setting of `floe serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// `--config`.
    Config,
    /// `--node-id`.
    NodeId,
    /// `--data-dir`.
    DataDir,
    /// `--client-addr`.
    ClientAddr,
    /// `--peer-addr`.
    PeerAddr,
    /// `--metrics-addr`.
    MetricsAddr,
    /// `--voters`.
    Voters,
    /// `--tls-cert`.
    TlsCert,
    /// `--tls-key`.
    TlsKey,
    /// `--ca-cert`.
    CaCert,
    /// `--max-connections-per-ip`.
    MaxConnectionsPerIp,
    /// `--max-streams-per-connection`.
    MaxStreamsPerConnection,
    /// `--segment-bytes`.
    SegmentBytes,
    /// `--retention-bytes`.
    RetentionBytes,
    /// `--retention-ms`.
    RetentionMs,
}

impl Setting {
    /// The command-line flag, without dashes (also the TOML key).
    pub fn key(self) -> &'static str {
        match self {
            Setting::Config => "config",
            Setting::NodeId => "node-id",
            Setting::DataDir => "data-dir",
            Setting::ClientAddr => "client-addr",
            Setting::PeerAddr => "peer-addr",
            Setting::MetricsAddr => "metrics-addr",
            Setting::Voters => "voters",
            Setting::TlsCert => "tls-cert",
            Setting::TlsKey => "tls-key",
            Setting::CaCert => "ca-cert",
            Setting::MaxConnectionsPerIp => "max-connections-per-ip",
            Setting::MaxStreamsPerConnection => "max-streams-per-connection",
            Setting::SegmentBytes => "segment-bytes",
            Setting::RetentionBytes => "retention-bytes",
            Setting::RetentionMs => "retention-ms",
        }
    }

    /// The environment variable.
    pub fn env(self) -> &'static str {
        match self {
            Setting::Config => "FLOE_CONFIG",
            Setting::NodeId => "FLOE_NODE_ID",
            Setting::DataDir => "FLOE_DATA_DIR",
            Setting::ClientAddr => "FLOE_CLIENT_ADDR",
            Setting::PeerAddr => "FLOE_PEER_ADDR",
            Setting::MetricsAddr => "FLOE_METRICS_ADDR",
            Setting::Voters => "FLOE_VOTERS",
            Setting::TlsCert => "FLOE_TLS_CERT",
            Setting::TlsKey => "FLOE_TLS_KEY",
            Setting::CaCert => "FLOE_CA_CERT",
            Setting::MaxConnectionsPerIp => "FLOE_MAX_CONNECTIONS_PER_IP",
            Setting::MaxStreamsPerConnection => "FLOE_MAX_STREAMS_PER_CONNECTION",
            Setting::SegmentBytes => "FLOE_SEGMENT_BYTES",
            Setting::RetentionBytes => "FLOE_RETENTION_BYTES",
            Setting::RetentionMs => "FLOE_RETENTION_MS",
        }
    }

    pub(crate) fn invalid(self, origin: Origin, value: String, why: Invalid) -> ConfigError {
        ConfigError::Invalid {
            setting: self,
            origin,
            value,
            why,
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}", self.key())
    }
}

/// Which layer a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The command line.
    Flag,
    /// A `FLOE_*` environment variable.
    Env,
    /// The TOML config file.
    File,
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Flag => "command line",
            Origin::Env => "environment",
            Origin::File => "config file",
            Origin::Default => "default",
        })
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not an unsigned integer.
    #[error("not a number")]
    NotANumber,
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved")]
    ZeroId,
    /// Empty where a value is needed.
    #[error("empty")]
    Empty,
    /// Not `IP:PORT`.
    #[error("not an IP:PORT socket address")]
    BadSocketAddr,
    /// A `--voters` entry is not `ID@HOST:PORT`.
    #[error("voter entry {entry:?} is not ID@HOST:PORT")]
    BadVoter {
        /// The offending entry.
        entry: String,
    },
    /// A voter id appears twice.
    #[error("voter id {id} is listed twice")]
    DuplicateVoter {
        /// The repeated id.
        id: u64,
    },
    /// `--voters` lists no voter.
    #[error("no voters listed")]
    NoVoters,
    /// A limit outside its allowed range.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
}

/// Why `floe serve`'s configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is in no layer.
    #[error(
        "missing {setting} (set the flag, {env}, or `{key}` in the config file)",
        env = setting.env(),
        key = setting.key()
    )]
    Missing {
        /// The setting.
        setting: Setting,
    },
    /// A setting's value is wrong.
    #[error("invalid {setting} {value:?} (from {origin}): {why}")]
    Invalid {
        /// The setting.
        setting: Setting,
        /// Where the value came from.
        origin: Origin,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        why: Invalid,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("config file {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The TOML error (it names the key and line).
        #[source]
        source: Box<toml::de::Error>,
    },
}

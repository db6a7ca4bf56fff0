//! The TOML config file layer.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// The settings a TOML file may hold (keys as the flags, kebab-case). Unknown keys are errors,
/// so a typo is reported instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileConfig {
    pub(super) node_id: Option<u64>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) client_addr: Option<String>,
    pub(super) peer_addr: Option<String>,
    pub(super) metrics_addr: Option<String>,
    pub(super) voters: Option<VotersValue>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) ca_cert: Option<PathBuf>,
    pub(super) max_connections_per_ip: Option<u64>,
    pub(super) max_streams_per_connection: Option<u64>,
    pub(super) segment_bytes: Option<u64>,
    pub(super) retention_bytes: Option<u64>,
    pub(super) retention_ms: Option<u64>,
}

/// `voters = "1@h:p,2@h:p"` or `voters = ["1@h:p", "2@h:p"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum VotersValue {
    One(String),
    Many(Vec<String>),
}

impl VotersValue {
    /// The value in `--voters` form.
    pub(super) fn joined(&self) -> String {
        match self {
            VotersValue::One(s) => s.clone(),
            VotersValue::Many(v) => v.join(","),
        }
    }
}

impl FileConfig {
    pub(super) fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    pub(super) fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

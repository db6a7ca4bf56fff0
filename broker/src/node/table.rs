//! The bootstrap table of `floe serve --topics FILE`: topics the node creates through the
//! controller at start if they do not exist yet.
//!
//! ```toml
//! # Client addresses the other brokers advertise (this node's own comes from --client-addr).
//! [[broker]]
//! id = 2
//! client-addr = "10.0.0.2:7400"
//!
//! [[topic]]
//! name = "events"
//! partitions = 3
//! replication-factor = 3     # placed over the voters, rotating preferred leaders
//!
//! [[topic]]
//! name = "audit"
//! replicas = [[1, 2, 3]]     # or each partition's replicas explicitly
//! ```
//!
//! Placement is the controller's: a topic's explicit `replicas` only give its partition count
//! and replication factor. `[[broker]]` entries are optional (brokers advertise their client
//! addresses when they register with the controller).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BrokerSpec, NodeError, TopicSpec};
use crate::config::ServeConfig;
use crate::peer::PeerAddress;

/// The parsed file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTable {
    /// Other brokers' client addresses.
    #[serde(default)]
    pub broker: Vec<StaticBroker>,
    /// The topics.
    #[serde(default)]
    pub topic: Vec<StaticTopic>,
}

/// A `[[broker]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticBroker {
    /// Node id (one of the voters).
    pub id: u64,
    /// The client address it advertises (`IP:PORT`).
    pub client_addr: String,
}

/// A `[[topic]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticTopic {
    /// The topic name.
    pub name: String,
    /// Partition count (with `replication-factor`).
    pub partitions: Option<u32>,
    /// Replicas per partition (with `partitions`).
    pub replication_factor: Option<u16>,
    /// Each partition's replicas (instead of `partitions` and `replication-factor`).
    pub replicas: Option<Vec<Vec<u64>>>,
}

/// Why the table is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file cannot be read.
    #[error("cannot read --topics file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid table.
    #[error("--topics file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, on one line.
        message: String,
    },
    /// A `[[broker]]` entry is wrong.
    #[error("--topics file: broker {id}: {reason}")]
    Broker {
        /// Its id.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A `[[topic]]` entry is wrong.
    #[error("--topics file: {0}")]
    Topic(#[from] NodeError),
    /// A voter's peer address does not resolve.
    #[error("--voters: cannot resolve {addr}: {reason}")]
    Resolve {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl StaticTable {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<StaticTable, TableError> {
        let text = std::fs::read_to_string(path).map_err(|source| TableError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e: toml::de::Error| TableError::Parse {
            path: path.to_owned(),
            message: e.message().replace('\n', " "),
        })
    }

    /// The nodes known at start (every voter with its peer address, and this node) and the
    /// bootstrap topics, for node `config.node_id`. Only this node's client address matters:
    /// the others advertise theirs when they register with the controller.
    pub fn resolve(
        &self,
        config: &ServeConfig,
    ) -> Result<(Vec<BrokerSpec>, Vec<TopicSpec>), TableError> {
        for b in &self.broker {
            if !config.voters.iter().any(|v| v.id == b.id) {
                return Err(TableError::Broker {
                    id: b.id,
                    reason: "not among --voters".into(),
                });
            }
        }
        let mut brokers = Vec::new();
        for v in &config.voters {
            let shown = v.addr.to_string();
            let addr = (v.addr.host.as_str(), v.addr.port)
                .to_socket_addrs()
                .map_err(|e| TableError::Resolve {
                    addr: shown.clone(),
                    reason: e.to_string(),
                })?
                .next()
                .ok_or_else(|| TableError::Resolve {
                    addr: shown.clone(),
                    reason: "no address".into(),
                })?;
            // Other brokers advertise their client addresses when they register with the
            // controller; a `[[broker]]` entry is only checked (it predates the controller).
            let client_addr = if v.id == config.node_id {
                config.client_addr
            } else {
                match self.broker.iter().find(|b| b.id == v.id) {
                    Some(b) => {
                        b.client_addr
                            .parse::<SocketAddr>()
                            .map_err(|_| TableError::Broker {
                                id: b.id,
                                reason: format!("client-addr {:?} is not IP:PORT", b.client_addr),
                            })?
                    }
                    None => SocketAddr::from(([0, 0, 0, 0], 0)),
                }
            };
            brokers.push(BrokerSpec {
                id: v.id,
                client_addr,
                peer: PeerAddress {
                    addr,
                    server_name: v.addr.host.clone(),
                },
            });
        }
        if !config.is_voter() {
            // A broker-only node: its own entry (what it registers with the controller).
            brokers.push(BrokerSpec {
                id: config.node_id,
                client_addr: config.client_addr,
                peer: PeerAddress {
                    addr: config.peer_addr,
                    server_name: config.peer_addr.ip().to_string(),
                },
            });
        }
        let ids: Vec<u64> = config.voters.iter().map(|v| v.id).collect();
        let mut topics = Vec::new();
        for t in &self.topic {
            let spec = match (&t.replicas, t.partitions, t.replication_factor) {
                (Some(r), None, None) => TopicSpec {
                    name: t.name.clone(),
                    replicas: r.clone(),
                },
                (None, Some(p), Some(rf)) => TopicSpec::placed(&t.name, p, rf, &ids)?,
                _ => {
                    return Err(NodeError::InvalidTopic {
                        name: t.name.clone(),
                        reason: "give either `replicas` or both `partitions` and \
                                 `replication-factor`",
                    }
                    .into());
                }
            };
            topics.push(spec);
        }
        Ok((brokers, topics))
    }
}

//! `--voters ID@HOST:PORT,...`.

use std::fmt;

use super::Invalid;

/// A peer address: a host name or IP and a port (resolved when connecting).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One controller voter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voter {
    /// Its node id (never 0).
    pub id: u64,
    /// Its peer address.
    pub addr: PeerAddr,
}

/// Parses `ID@HOST:PORT,...` (spaces around entries allowed; IPv6 hosts in brackets). Ids must
/// be unique and non-zero, and at least one voter must be listed.
///
/// ```
/// let v = floe_broker::config::parse_voters("1@a.example:7401, 2@[::1]:7401").unwrap();
/// assert_eq!((v[0].id, v[0].addr.host.as_str(), v[1].addr.port), (1, "a.example", 7401));
/// assert_eq!(v[1].addr.to_string(), "[::1]:7401");
/// ```
pub fn parse_voters(s: &str) -> Result<Vec<Voter>, Invalid> {
    let mut out: Vec<Voter> = Vec::new();
    for entry in s.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let voter = parse_voter(entry).ok_or_else(|| Invalid::BadVoter {
            entry: entry.to_owned(),
        })?;
        if out.iter().any(|v| v.id == voter.id) {
            return Err(Invalid::DuplicateVoter { id: voter.id });
        }
        out.push(voter);
    }
    if out.is_empty() {
        return Err(Invalid::NoVoters);
    }
    Ok(out)
}

fn parse_voter(entry: &str) -> Option<Voter> {
    let (id, addr) = entry.split_once('@')?;
    let id: u64 = id.trim().parse().ok().filter(|&id| id != 0)?;
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None, // IPv6 needs brackets
        None => host,
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return None;
    }
    Some(Voter {
        id,
        addr: PeerAddr {
            host: host.to_owned(),
            port,
        },
    })
}

//! Tunables of one Raft group.

use crate::types::NodeId;

/// Options for one replica. Time is in ticks: the caller decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's id.
    pub id: NodeId,
    /// Base election timeout; the real one is drawn from `election_ticks..2*election_ticks`.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`.
    pub heartbeat_ticks: u32,
    /// Campaign with a pre-vote round first (no term bump unless a quorum would vote).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an election timeout, and
    /// voters ignore vote requests while they hear from a leader (leader lease).
    pub check_quorum: bool,
    /// Most append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Most entry bytes in flight to one follower.
    pub max_inflight_bytes: usize,
    /// Most entry bytes in one append message (at least one entry is always sent).
    pub max_append_bytes: usize,
    /// Seed for the randomised election timeout.
    pub seed: u64,
}

impl Config {
    /// Defaults for replica `id`: election 10 ticks, heartbeat 1 tick, pre-vote and
    /// check-quorum on, 64 messages / 8 MiB in flight, 1 MiB per append.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 64,
            max_inflight_bytes: 8 << 20,
            max_append_bytes: 1 << 20,
            seed: id.0,
        }
    }
}

impl Config {
    /// Checks that the options can work together.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return Err(crate::error::ConfigError::Timing {
                heartbeat_ticks: self.heartbeat_ticks,
                election_ticks: self.election_ticks,
            });
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_bytes == 0 {
            return Err(crate::error::ConfigError::FlowControl);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_timing_is_refused() {
        let mut c = Config::new(NodeId(1));
        assert_eq!(c.validate(), Ok(()));
        c.heartbeat_ticks = c.election_ticks;
        assert!(c.validate().is_err());
    }
}

//! The leader's view of one follower: what it holds, what is in flight.

use std::collections::VecDeque;

use crate::types::Offset;

/// How the leader is sending to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendState {
    /// One append at a time until the follower's log end is found.
    Probe,
    /// Pipelined appends, bounded by the in-flight limits.
    Replicate,
    /// A snapshot is on its way; wait for its answer.
    Snapshot { pending_end: Offset },
}

/// Per-follower replication state.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_end: Offset,
    pub(crate) next_end: Offset,
    pub(crate) state: SendState,
    inflight: VecDeque<(Offset, usize)>,
    inflight_bytes: usize,
    probe_sent: bool,
    pub(crate) recent_active: bool,
    /// The highest commit end this follower was told about (and can use).
    pub(crate) commit_sent: Offset,
}

impl Progress {
    pub(crate) fn new(next_end: Offset) -> Self {
        Progress {
            match_end: Offset(0),
            next_end,
            state: SendState::Probe,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            probe_sent: false,
            recent_active: true,
            commit_sent: Offset(0),
        }
    }

    pub(crate) fn is_paused(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.state {
            SendState::Probe => self.probe_sent,
            SendState::Replicate => {
                self.inflight.len() >= max_msgs || self.inflight_bytes >= max_bytes
            }
            SendState::Snapshot { .. } => true,
        }
    }

    /// An append ending at `end` carrying `bytes` of entries went out.
    pub(crate) fn sent(&mut self, end: Offset, bytes: usize) {
        match self.state {
            SendState::Replicate if end > self.next_end => {
                self.next_end = end;
                self.inflight.push_back((end, bytes));
                self.inflight_bytes += bytes;
            }
            SendState::Probe => self.probe_sent = true,
            _ => {}
        }
    }

    pub(crate) fn in_flight(&self) -> (usize, usize) {
        (self.inflight.len(), self.inflight_bytes)
    }

    /// The follower holds everything before `match_end`. Returns whether `match_end` grew.
    pub(crate) fn ack(&mut self, match_end: Offset) -> bool {
        let grew = match_end > self.match_end;
        if grew {
            self.match_end = match_end;
        }
        self.probe_sent = false;
        while let Some(&(end, bytes)) = self.inflight.front() {
            if end > self.match_end {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        match self.state {
            SendState::Probe => self.become_replicate(),
            SendState::Snapshot { pending_end } if self.match_end >= pending_end => {
                self.become_replicate();
            }
            _ => self.next_end = self.next_end.max(self.match_end),
        }
        grew
    }

    fn become_replicate(&mut self) {
        self.state = SendState::Replicate;
        self.next_end = self.match_end;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Is a rejection of `prev_end` out of date?
    pub(crate) fn is_stale_reject(&self, prev_end: Offset) -> bool {
        match self.state {
            SendState::Replicate => prev_end < self.match_end,
            SendState::Probe => prev_end != self.next_end,
            SendState::Snapshot { .. } => true,
        }
    }

    /// Back off to probing at `next_end`. A follower that lost data (corruption) may report
    /// less than it held: `match_end` follows it down.
    pub(crate) fn back_off(&mut self, next_end: Offset) {
        self.state = SendState::Probe;
        self.next_end = next_end;
        self.match_end = self.match_end.min(next_end);
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.probe_sent = false;
    }

    /// A heartbeat answer: a probing follower may be probed again; a lost snapshot is resent;
    /// a full pipeline frees one slot (its appends may have been lost: the next one sent will
    /// be rejected and start a probe).
    pub(crate) fn heard(&mut self, max_msgs: usize, max_bytes: usize) {
        self.recent_active = true;
        self.probe_sent = false;
        match self.state {
            SendState::Snapshot { .. } => self.back_off(self.match_end),
            SendState::Replicate if self.is_paused(max_msgs, max_bytes) => {
                if let Some((_, bytes)) = self.inflight.pop_front() {
                    self.inflight_bytes -= bytes;
                }
            }
            _ => {}
        }
    }

    pub(crate) fn start_snapshot(&mut self, pending_end: Offset) {
        self.state = SendState::Snapshot { pending_end };
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelining_is_bounded_by_messages_and_bytes() {
        let mut p = Progress::new(Offset(0));
        p.ack(Offset(0));
        assert_eq!(p.state, SendState::Replicate);
        p.sent(Offset(5), 100);
        p.sent(Offset(9), 100);
        assert!(p.is_paused(2, 1000));
        assert!(p.is_paused(10, 200));
        assert!(!p.is_paused(3, 1000));
        p.ack(Offset(5));
        assert_eq!(p.in_flight(), (1, 100));
        assert!(p.is_stale_reject(Offset(4)));
        p.back_off(Offset(5));
        assert_eq!((p.state, p.next_end), (SendState::Probe, Offset(5)));
    }
}

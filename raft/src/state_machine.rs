//! Application state machines on top of a group: the controller is one, the lock example is
//! another.

use bytes::Bytes;

use crate::engine::Raft;
use crate::entry::EntryKind;
use crate::error::RaftError;
use crate::log::Log;
use crate::types::Offset;

/// A deterministic state machine fed the committed log.
pub trait StateMachine {
    /// What applying one command yields (returned to whoever proposed it).
    type Output;
    /// Applies the command in the batch covering `[first, end)`. Must be deterministic.
    fn apply(&mut self, first: Offset, command: &Bytes) -> Self::Output;
    /// The state as bytes, for compaction and catch-up.
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &Bytes);
}

/// Feeds a [`Raft`]'s committed entries (and installed snapshots) into a [`StateMachine`].
#[derive(Debug)]
pub struct Applier<S> {
    machine: S,
}

impl<S: StateMachine> Applier<S> {
    /// Wraps a state machine.
    pub fn new(machine: S) -> Self {
        Applier { machine }
    }

    /// The state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// Restores installed snapshots, applies newly committed data entries, reports them
    /// applied, and returns each command's output with its first offset.
    pub fn apply_committed<L: Log>(
        &mut self,
        raft: &mut Raft<L>,
    ) -> Result<Vec<(Offset, S::Output)>, RaftError> {
        if let Some(snapshot) = raft.poll_snapshot()? {
            self.machine.restore(&snapshot.data);
            raft.handle_applied(snapshot.meta.end);
        }
        let mut outputs = Vec::new();
        loop {
            let entries = raft.poll_committed(1 << 20)?;
            let Some(last) = entries.last().map(|e| e.end()) else {
                break;
            };
            for e in &entries {
                if let EntryKind::Data { payload, .. } = e.kind() {
                    outputs.push((e.first(), self.machine.apply(e.first(), payload)));
                }
            }
            raft.handle_applied(last);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::HardState;
    use crate::log::MemLog;
    use crate::membership::Membership;
    use crate::types::NodeId;

    /// Sums the first byte of every command.
    #[derive(Debug, Default)]
    struct Sum(u64);

    impl StateMachine for Sum {
        type Output = u64;
        fn apply(&mut self, _first: Offset, command: &Bytes) -> u64 {
            self.0 += u64::from(command[0]);
            self.0
        }
        fn snapshot(&self) -> Bytes {
            Bytes::copy_from_slice(&self.0.to_le_bytes())
        }
        fn restore(&mut self, snapshot: &Bytes) {
            let mut b = [0u8; 8];
            b.copy_from_slice(&snapshot[..8]);
            self.0 = u64::from_le_bytes(b);
        }
    }

    #[test]
    fn applies_data_entries_in_order_and_skips_control_entries() {
        let id = NodeId(1);
        let m = Membership::new([id], []);
        let mut raft = Raft::new(Config::new(id), MemLog::new(), HardState::default(), m).unwrap();
        while raft.role() != crate::Role::Leader {
            raft.handle_tick().unwrap();
        }
        raft.propose(Bytes::from_static(&[2]), 1).unwrap();
        raft.propose(Bytes::from_static(&[5]), 4).unwrap();
        while let Some(p) = raft.poll_persist() {
            raft.handle_persisted(p.id).unwrap();
        }
        let mut applier = Applier::new(Sum::default());
        let out = applier.apply_committed(&mut raft).unwrap();
        assert_eq!(out, vec![(Offset(1), 2), (Offset(2), 7)]);
        assert_eq!(raft.applied_end(), Offset(6));
        assert_eq!(applier.machine().0, 7);
        let mut restored = Sum::default();
        restored.restore(&applier.machine().snapshot());
        assert_eq!(restored.0, 7);
    }
}

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

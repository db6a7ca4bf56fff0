//! The membership as the log says: the snapshot's, then every configuration entry in the log.

use crate::membership::Membership;
use crate::types::Offset;

/// Configurations by offset. The latest one is in effect, committed or not.
#[derive(Clone, Debug, Default)]
pub(crate) struct Members {
    base: Membership,
    entries: Vec<(Offset, Membership)>,
}

impl Members {
    pub(crate) fn new(base: Membership, entries: Vec<(Offset, Membership)>) -> Self {
        Members { base, entries }
    }

    pub(crate) fn current(&self) -> &Membership {
        self.entries.last().map_or(&self.base, |(_, m)| m)
    }

    /// Offset of the latest configuration entry in the log, if any.
    pub(crate) fn latest_offset(&self) -> Option<Offset> {
        self.entries.last().map(|(o, _)| *o)
    }

    pub(crate) fn push(&mut self, at: Offset, m: Membership) {
        self.entries.push((at, m));
    }

    pub(crate) fn truncate(&mut self, at: Offset) {
        self.entries.retain(|(o, _)| *o < at);
    }

    /// The membership in effect for a snapshot ending at `end`.
    pub(crate) fn at(&self, end: Offset) -> Membership {
        self.entries
            .iter()
            .rev()
            .find(|(o, _)| *o < end)
            .map_or(&self.base, |(_, m)| m)
            .clone()
    }

    pub(crate) fn compact(&mut self, end: Offset) {
        self.base = self.at(end);
        self.entries.retain(|(o, _)| *o >= end);
    }

    pub(crate) fn reset(&mut self, base: Membership) {
        self.base = base;
        self.entries.clear();
    }
}

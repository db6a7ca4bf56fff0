//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! [`PRODUCER_WINDOW`] batches it appended (sequences and offsets), so a retried batch is
//! answered with its original offset instead of being appended twice.
//!
//! The state is derived from the batch headers in the log only (producer id, epoch, base
//! sequence, record count, offsets): [`ProducerStates::apply`] folds one appended batch in,
//! [`ProducerStates::check`] decides what to do with a new one. The replica keeps one instance
//! for the committed log (rebuilt by a header scan at open, advanced as entries commit, on
//! every replica) and, on the leader, an overlay for its uncommitted tail (see
//! `Replica::produce`).
//!
//! Rules for a batch with `producer_id >= 0` (others and control batches skip them):
//! - unknown producer: it must start at sequence 0;
//! - older epoch than the one recorded: fenced;
//! - newer epoch: a reset, it must start at sequence 0;
//! - same epoch: `base_sequence` right after the last batch's last sequence is appended; a
//!   batch whose first and last sequences equal one in the window is a duplicate (answered
//!   with the original offsets); anything else is out of order.
//!
//! Sequences wrap from `i32::MAX` to 0 (as Kafka's and as [`BatchHeader::last_sequence`]).

use std::collections::{HashMap, VecDeque};

use floe_protocol::batch::BatchHeader;

/// How many of a producer's last batches are remembered for deduplication (as Kafka: a
/// producer has at most this many batches in flight per partition).
pub const PRODUCER_WINDOW: usize = 5;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqBatch {
    /// Sequence of its first record.
    pub(crate) first_seq: i32,
    /// Sequence of its last record (wrapped).
    pub(crate) last_seq: i32,
    /// Offset of its first record.
    pub(crate) base_offset: u64,
    /// Offset of its last record.
    pub(crate) last_offset: u64,
    /// The term it was appended in (to tell it from an overwritten batch at the same offset).
    pub(crate) term: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first; at most [`PRODUCER_WINDOW`].
    window: VecDeque<SeqBatch>,
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqCheck {
    /// No producer id, or a control batch: no idempotence checks.
    NotIdempotent,
    /// The next batch of the producer: append it.
    Append,
    /// Already appended: answer with the original, append nothing.
    Duplicate(SeqBatch),
}

/// Why a producer's batch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqError {
    /// An older epoch than the partition has seen for this producer id.
    Fenced {
        /// The epoch recorded.
        current_epoch: i16,
    },
    /// A gap or a step back outside the window (or not 0 for a new producer or epoch).
    OutOfOrder {
        /// The sequence the batch should have started at.
        expected: i32,
    },
    /// A producer id with a negative epoch or sequence.
    InvalidFields,
}

/// The sequence after `seq`, wrapping at `i32::MAX`.
pub(crate) fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// Idempotent-producer state of a partition (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Number of producers known.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Decides what to do with the batch `h` (not yet stamped).
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<SeqCheck, SeqError> {
        if h.producer_id < 0 || h.is_control() {
            return Ok(SeqCheck::NotIdempotent);
        }
        let Some(last_seq) = h.last_sequence() else {
            return Err(SeqError::InvalidFields);
        };
        if h.producer_epoch < 0 {
            return Err(SeqError::InvalidFields);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return starts_at_zero(h);
        };
        if h.producer_epoch < entry.epoch {
            return Err(SeqError::Fenced {
                current_epoch: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return starts_at_zero(h);
        }
        if let Some(dup) = entry
            .window
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SeqCheck::Duplicate(*dup));
        }
        let expected = entry.window.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence == expected {
            Ok(SeqCheck::Append)
        } else {
            Err(SeqError::OutOfOrder { expected })
        }
    }

    /// Folds in a batch the log holds (stamped: base offset and term set). The log is the
    /// truth, so nothing is refused here; a batch of an older epoch (which the leader's check
    /// never lets in) is ignored.
    pub(crate) fn apply(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.is_control() || h.producer_epoch < 0 {
            return;
        }
        let Some(last_seq) = h.last_sequence() else {
            return;
        };
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                window: VecDeque::new(),
            });
        if h.producer_epoch < entry.epoch {
            return;
        }
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.window.clear();
        }
        if entry.window.len() == PRODUCER_WINDOW {
            entry.window.pop_front();
        }
        entry.window.push_back(SeqBatch {
            first_seq: h.base_sequence,
            last_seq,
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            term: h.term,
        });
    }

    /// Copies producer `id`'s state from `from` into `self` unless `self` has it already
    /// (seeding the leader's overlay before it applies an uncommitted batch of `id`).
    pub(crate) fn seed_from(&mut self, from: &ProducerStates, id: i64) {
        if let (false, Some(e)) = (self.producers.contains_key(&id), from.producers.get(&id)) {
            self.producers.insert(id, e.clone());
        }
    }

    /// Whether producer `id` is known.
    pub(crate) fn contains(&self, id: i64) -> bool {
        self.producers.contains_key(&id)
    }

    /// Forgets producer `id`.
    pub(crate) fn remove(&mut self, id: i64) {
        self.producers.remove(&id);
    }
}

fn starts_at_zero(h: &BatchHeader) -> Result<SeqCheck, SeqError> {
    if h.base_sequence == 0 {
        Ok(SeqCheck::Append)
    } else {
        Err(SeqError::OutOfOrder { expected: 0 })
    }
}

#[cfg(test)]
mod tests;

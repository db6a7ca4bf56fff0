//! The consumer's check that it saw every produced record exactly once and, per partition, in
//! the order each producer sent them.
//!
//! Each consumer task keeps its own [`Verifier`] (its partitions are its own); the run merges
//! them at the end, which also catches a record delivered to two consumers. A failure is a
//! typed [`VerifyError`]; the run prints the first few and exits non-zero.

use std::collections::HashMap;

use crate::value::{self, ValueError, ValueHeader};

/// Highest sequence a record may carry: a bound on the seen-set before it grows (a corrupt or
/// hostile value must not make the checker allocate without limit). 2^30 records per producer
/// is a terabyte of 1000-byte records, far beyond any run here; the set is 128 MiB at most.
const MAX_SEQ: u64 = 1 << 30;

/// Errors kept for printing; the rest are only counted.
const KEEP_ERRORS: usize = 20;

/// (run id, producer index).
pub(crate) type ProducerKey = (u64, u32);

/// One way the consumed records differ from what was produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifyError {
    /// A record whose value is not a floe-bench value.
    #[error("partition {partition} offset {offset}: {source}")]
    Foreign {
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
        /// What is wrong with the value.
        source: ValueError,
    },
    /// A record of another run where only this run's records may be (e2e reads from the end
    /// of the log as it was when the run started).
    #[error("partition {partition} offset {offset}: record of another run ({run_id:#x})")]
    OtherRun {
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
        /// The record's run id.
        run_id: u64,
    },
    /// A sequence beyond [`MAX_SEQ`].
    #[error("partition {partition} offset {offset}: sequence {seq} is beyond any plausible run")]
    SeqOutOfRange {
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
        /// The sequence.
        seq: u64,
    },
    /// The same record read twice.
    #[error(
        "producer {producer} of run {run_id:#x}: record {seq} read twice (again at partition {partition} offset {offset})"
    )]
    Duplicate {
        /// Run id.
        run_id: u64,
        /// Producer index.
        producer: u32,
        /// Sequence.
        seq: u64,
        /// Partition of the second copy.
        partition: u32,
        /// Offset of the second copy.
        offset: u64,
    },
    /// Within one partition, a producer's record after a later one of the same producer.
    #[error(
        "partition {partition} offset {offset}: producer {producer} of run {run_id:#x} record {seq} after its record {previous}"
    )]
    OutOfOrder {
        /// Run id.
        run_id: u64,
        /// Producer index.
        producer: u32,
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
        /// This record's sequence.
        seq: u64,
        /// The sequence read before it in this partition.
        previous: u64,
    },
    /// Records a producer wrote (or was acknowledged for) that were never read.
    #[error(
        "producer {producer} of run {run_id:#x}: {missing} records never read (first: {first})"
    )]
    Missing {
        /// Run id.
        run_id: u64,
        /// Producer index.
        producer: u32,
        /// How many.
        missing: u64,
        /// The lowest missing sequence.
        first: u64,
    },
}

/// A growable bit set of sequences.
#[derive(Debug, Clone, Default)]
struct SeqSet {
    words: Vec<u64>,
    len: u64,
    max: u64,
}

impl SeqSet {
    /// Inserts `seq` (< MAX_SEQ, checked by the caller); false if it was already there.
    fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            self.words.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.words[word] & bit != 0 {
            return false;
        }
        self.words[word] |= bit;
        self.len += 1;
        self.max = self.max.max(seq);
        true
    }

    fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Sequences below `end` that are absent: (how many, the first).
    fn missing_below(&self, end: u64) -> Option<(u64, u64)> {
        let mut count = 0;
        let mut first = None;
        for seq in 0..end {
            if !self.contains(seq) {
                count += 1;
                first.get_or_insert(seq);
            }
        }
        first.map(|f| (count, f))
    }
}

/// What one consumer has read.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    /// When set, only this run's records are accepted.
    only_run: Option<u64>,
    seen: HashMap<ProducerKey, SeqSet>,
    last: HashMap<(u64, u32, u32), u64>,
    errors: Vec<VerifyError>,
    error_count: u64,
    records: u64,
}

impl Verifier {
    /// A verifier accepting records of any run (`consume` over a topic that earlier
    /// `produce` runs filled), or only of `only_run` (e2e).
    pub(crate) fn new(only_run: Option<u64>) -> Self {
        Verifier {
            only_run,
            ..Verifier::default()
        }
    }

    fn fail(&mut self, e: VerifyError) {
        self.error_count += 1;
        if self.errors.len() < KEEP_ERRORS {
            self.errors.push(e);
        }
    }

    /// Checks one consumed record; returns its header when it is a benchmark record.
    pub(crate) fn check(
        &mut self,
        partition: u32,
        offset: u64,
        value: Option<&[u8]>,
    ) -> Option<ValueHeader> {
        self.records += 1;
        let h = match value::decode(value.unwrap_or_default()) {
            Ok(h) => h,
            Err(source) => {
                self.fail(VerifyError::Foreign {
                    partition,
                    offset,
                    source,
                });
                return None;
            }
        };
        if self.only_run.is_some_and(|r| r != h.run_id) {
            self.fail(VerifyError::OtherRun {
                partition,
                offset,
                run_id: h.run_id,
            });
            return None;
        }
        if h.seq >= MAX_SEQ {
            self.fail(VerifyError::SeqOutOfRange {
                partition,
                offset,
                seq: h.seq,
            });
            return None;
        }
        if !self
            .seen
            .entry((h.run_id, h.producer))
            .or_default()
            .insert(h.seq)
        {
            self.fail(VerifyError::Duplicate {
                run_id: h.run_id,
                producer: h.producer,
                seq: h.seq,
                partition,
                offset,
            });
        }
        if let Some(previous) = self
            .last
            .insert((h.run_id, h.producer, partition), h.seq)
            .filter(|&p| p >= h.seq)
        {
            self.fail(VerifyError::OutOfOrder {
                run_id: h.run_id,
                producer: h.producer,
                partition,
                offset,
                seq: h.seq,
                previous,
            });
        }
        Some(h)
    }

    /// Records checked so far (benchmark records or not).
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Folds another consumer's verifier in (their partitions are disjoint); a record both
    /// read is a duplicate.
    pub(crate) fn merge(&mut self, other: Verifier) {
        self.records += other.records;
        self.error_count += other.error_count;
        for e in other.errors {
            if self.errors.len() < KEEP_ERRORS {
                self.errors.push(e);
            }
        }
        for (key, set) in other.seen {
            let mine = self.seen.entry(key).or_default();
            for (w, &bits) in set.words.iter().enumerate() {
                if bits == 0 {
                    continue;
                }
                for b in 0..64 {
                    if bits & (1 << b) != 0 && !mine.insert(w as u64 * 64 + b) {
                        self.error_count += 1;
                        if self.errors.len() < KEEP_ERRORS {
                            self.errors.push(VerifyError::Duplicate {
                                run_id: key.0,
                                producer: key.1,
                                seq: w as u64 * 64 + b,
                                partition: u32::MAX,
                                offset: u64::MAX,
                            });
                        }
                    }
                }
            }
        }
        self.last.extend(other.last);
    }

    /// The final verdict. A producer in `expected` (records acknowledged per producer) must
    /// have all of `0..n` read; any other producer read must have no hole below its highest
    /// sequence read (a lost tail cannot be seen without knowing what was written).
    pub(crate) fn finish(
        mut self,
        expected: Option<&HashMap<ProducerKey, u64>>,
    ) -> Result<VerifySummary, VerifyFailure> {
        let mut keys: Vec<ProducerKey> = self.seen.keys().copied().collect();
        if let Some(exp) = expected {
            keys.extend(exp.keys().copied());
        }
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let empty = SeqSet::default();
            let set = self.seen.get(&key).unwrap_or(&empty);
            let end = match expected.and_then(|exp| exp.get(&key)) {
                Some(&n) => n,
                None if set.len == 0 => 0,
                None => set.max + 1,
            };
            // Records read beyond `end` (written, acknowledgement not seen) are not an error.
            if let Some((missing, first)) = set.missing_below(end) {
                self.error_count += 1;
                if self.errors.len() < KEEP_ERRORS {
                    self.errors.push(VerifyError::Missing {
                        run_id: key.0,
                        producer: key.1,
                        missing,
                        first,
                    });
                }
            }
        }
        if self.error_count > 0 {
            return Err(VerifyFailure {
                errors: self.errors,
                count: self.error_count,
            });
        }
        Ok(VerifySummary {
            records: self.records,
            producers: self.seen.len() as u64,
        })
    }
}

/// A clean verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerifySummary {
    /// Records read.
    pub(crate) records: u64,
    /// Distinct producers whose records were read.
    pub(crate) producers: u64,
}

/// A failed verdict: the first errors and how many there were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verification failed: {count} problems; first: {}", errors.first().map(ToString::to_string).unwrap_or_default())]
pub(crate) struct VerifyFailure {
    /// The first [`KEEP_ERRORS`] problems.
    pub(crate) errors: Vec<VerifyError>,
    /// All problems.
    pub(crate) count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ValueFactory;

    fn v(run_id: u64, producer: u32, seq: u64) -> bytes::Bytes {
        ValueFactory::new(40, 1).make(ValueHeader {
            run_id,
            producer,
            seq,
            intended_ns: 0,
        })
    }

    #[test]
    fn a_complete_ordered_read_passes() {
        let mut ver = Verifier::new(Some(9));
        // Producer 0 round robin over two partitions, producer 1 on partition 1 only.
        for seq in 0..10u64 {
            ver.check((seq % 2) as u32, seq, Some(&v(9, 0, seq)));
            ver.check(1, 100 + seq, Some(&v(9, 1, seq)));
        }
        let exp = HashMap::from([((9, 0), 10), ((9, 1), 10)]);
        let s = ver.finish(Some(&exp)).unwrap();
        assert_eq!(s.records, 20);
        assert_eq!(s.producers, 2);
    }

    #[test]
    fn duplicates_reorders_gaps_and_foreign_records_fail() {
        let mut ver = Verifier::new(None);
        ver.check(0, 0, Some(&v(1, 0, 0)));
        ver.check(0, 1, Some(&v(1, 0, 2)));
        ver.check(0, 2, Some(&v(1, 0, 2)));
        let e = ver.finish(None).unwrap_err();
        assert!(matches!(e.errors[0], VerifyError::Duplicate { seq: 2, .. }));
        assert!(e.errors.iter().any(|e| matches!(
            e,
            VerifyError::OutOfOrder {
                seq: 2,
                previous: 2,
                ..
            }
        )));
        assert!(e.errors.iter().any(|e| matches!(
            e,
            VerifyError::Missing {
                missing: 1,
                first: 1,
                ..
            }
        )));

        let mut ver = Verifier::new(None);
        ver.check(0, 0, Some(&v(1, 0, 1)));
        ver.check(0, 1, Some(&v(1, 0, 0)));
        let e = ver.finish(None).unwrap_err();
        assert!(matches!(e.errors[0], VerifyError::OutOfOrder { .. }));

        let mut ver = Verifier::new(Some(1));
        ver.check(0, 0, Some(b"hello"));
        ver.check(0, 1, Some(&v(2, 0, 0)));
        ver.check(0, 2, None);
        let e = ver.finish(None).unwrap_err();
        assert_eq!(e.count, 3);
        assert!(matches!(
            e.errors[1],
            VerifyError::OtherRun { run_id: 2, .. }
        ));
    }

    #[test]
    fn expected_counts_catch_a_lost_tail_and_merge_catches_a_record_read_twice() {
        let mut a = Verifier::new(Some(1));
        for seq in 0..5 {
            a.check(0, seq, Some(&v(1, 0, seq)));
        }
        let exp = HashMap::from([((1, 0), 6)]);
        let e = a.finish(Some(&exp)).unwrap_err();
        assert_eq!(
            e.errors,
            vec![VerifyError::Missing {
                run_id: 1,
                producer: 0,
                missing: 1,
                first: 5
            }]
        );

        let mut a = Verifier::new(Some(1));
        let mut b = Verifier::new(Some(1));
        a.check(0, 0, Some(&v(1, 0, 0)));
        b.check(1, 0, Some(&v(1, 0, 0)));
        a.merge(b);
        let e = a.finish(Some(&HashMap::from([((1, 0), 1)]))).unwrap_err();
        assert!(matches!(e.errors[0], VerifyError::Duplicate { seq: 0, .. }));
    }

    #[test]
    fn absurd_sequences_are_refused_before_allocating() {
        let mut ver = Verifier::new(None);
        ver.check(0, 0, Some(&v(1, 0, u64::MAX)));
        let e = ver.finish(None).unwrap_err();
        assert!(matches!(e.errors[0], VerifyError::SeqOutOfRange { .. }));
    }
}

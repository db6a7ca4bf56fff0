//! Choosing a record's partition.
//!
//! [`Partitioner::key_hash`] is compatible with Kafka's default partitioner for keyed records:
//! `murmur2(key) & 0x7fffffff % partitions`, so a key lands on the same partition number as
//! it would in a Kafka topic with the same partition count, which keeps per-key order when a
//! pipeline moves from Kafka to floe. Records without a key are spread round robin.
//!
//! ```
//! use floe_client::partitioner::Partitioner;
//! let mut p = Partitioner::key_hash();
//! // A key always maps to the same partition...
//! let a = p.partition(Some(b"customer-7"), 12).unwrap();
//! assert_eq!(p.partition(Some(b"customer-7"), 12).unwrap(), a);
//! // ...keyless records take turns.
//! assert_eq!(p.partition(None, 3).unwrap(), 0);
//! assert_eq!(p.partition(None, 3).unwrap(), 1);
//! assert!(Partitioner::Explicit(5).partition(None, 3).is_err());
//! ```

use thiserror::Error;

/// Why no partition could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PartitionerError {
    /// The topic has no partitions (metadata not loaded, or a bad topic).
    #[error("topic has no partitions")]
    NoPartitions,
    /// An explicit partition outside the topic.
    #[error("partition {partition} out of range: topic has {partitions}")]
    OutOfRange {
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
}

/// How a producer spreads records over a topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioner {
    /// Keyed records by murmur2 of the key; keyless ones round robin.
    KeyHash {
        /// Next partition for a keyless record.
        next: u32,
    },
    /// Every record round robin, key or not.
    RoundRobin {
        /// Next partition.
        next: u32,
    },
    /// Every record to one partition.
    Explicit(u32),
}

impl Partitioner {
    /// The default: keyed by murmur2, keyless round robin.
    pub fn key_hash() -> Self {
        Partitioner::KeyHash { next: 0 }
    }

    /// Round robin regardless of key.
    pub fn round_robin() -> Self {
        Partitioner::RoundRobin { next: 0 }
    }

    /// The partition for a record with `key` in a topic of `partitions` partitions.
    pub fn partition(
        &mut self,
        key: Option<&[u8]>,
        partitions: u32,
    ) -> Result<u32, PartitionerError> {
        if partitions == 0 {
            return Err(PartitionerError::NoPartitions);
        }
        let rr = |next: &mut u32| {
            let p = *next % partitions;
            *next = next.wrapping_add(1);
            p
        };
        match (self, key) {
            (Partitioner::KeyHash { .. }, Some(key)) => Ok(to_positive(murmur2(key)) % partitions),
            (Partitioner::KeyHash { next } | Partitioner::RoundRobin { next }, _) => Ok(rr(next)),
            (Partitioner::Explicit(p), _) if *p < partitions => Ok(*p),
            (Partitioner::Explicit(p), _) => Err(PartitionerError::OutOfRange {
                partition: *p,
                partitions,
            }),
        }
    }
}

fn to_positive(h: i32) -> u32 {
    (h & 0x7fff_ffff) as u32
}

/// MurmurHash2 (32-bit), with the seed Kafka uses, returning the signed value Kafka's
/// `Utils.murmur2` returns.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Published values of Kafka's Utils.murmur2; matching them is what makes key placement
    // compatible.
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keyless_records_go_round_robin() {
        let mut p = Partitioner::key_hash();
        let got: Vec<u32> = (0..7).map(|_| p.partition(None, 3).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
        let mut p = Partitioner::round_robin();
        let got: Vec<u32> = (0..4)
            .map(|_| p.partition(Some(b"k"), 2).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 0, 1]);
    }

    #[test]
    fn bad_partition_counts_are_typed_errors() {
        assert_eq!(
            Partitioner::key_hash().partition(Some(b"k"), 0),
            Err(PartitionerError::NoPartitions)
        );
        assert_eq!(
            Partitioner::Explicit(5).partition(None, 5),
            Err(PartitionerError::OutOfRange {
                partition: 5,
                partitions: 5
            })
        );
        assert_eq!(Partitioner::Explicit(4).partition(None, 5), Ok(4));
    }

    proptest! {
        #[test]
        fn keyed_placement_is_stable_and_in_range(key in proptest::collection::vec(any::<u8>(), 0..64), n in 1u32..1000) {
            let mut a = Partitioner::key_hash();
            let mut b = Partitioner::key_hash();
            let pa = a.partition(Some(&key), n).unwrap();
            prop_assert!(pa < n);
            // Interleaved keyless records must not disturb keyed placement.
            let _ = b.partition(None, n);
            prop_assert_eq!(pa, b.partition(Some(&key), n).unwrap());
        }
    }
}

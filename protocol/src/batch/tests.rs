//! Batch-level tests: builder ↔ reader round trips, CRC, control records, hostile input.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct OwnedRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

fn arb_record() -> impl Strategy<Value = OwnedRecord> {
    (
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(
            (".{0,8}", proptest::collection::vec(any::<u8>(), 0..16)),
            0..4,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| OwnedRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

fn arb_codec() -> impl Strategy<Value = CompressionCodec> {
    prop_oneof![Just(CompressionCodec::None), Just(CompressionCodec::Lz4)]
}

fn build(codec: CompressionCodec, records: &[OwnedRecord]) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_producer(42, 3, 1000);
    for r in records {
        let headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers)
            .unwrap();
    }
    b.finish().unwrap()
}

fn sample_records(n: usize) -> Vec<OwnedRecord> {
    (0..n)
        .map(|i| OwnedRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: (i % 3 != 0).then(|| format!("key-{i}").into_bytes()),
            value: (i % 5 != 4).then(|| vec![i as u8; i % 50]),
            headers: (0..i % 3)
                .map(|h| (format!("h{h}"), vec![h as u8]))
                .collect(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

    #[test]
    fn round_trip(codec in arb_codec(), records in proptest::collection::vec(arb_record(), 1..20),
                  base in any::<u64>(), term in any::<u64>()) {
        let bytes = build(codec, &records);
        let mut stamped = bytes.to_vec();
        stamp(&mut stamped, base, term);
        let view = BatchView::parse(Bytes::from(stamped), BatchLimits::default()).unwrap();
        let h = *view.header();
        prop_assert_eq!(h.record_count as usize, records.len());
        prop_assert_eq!((h.base_offset, h.term), (base, term));
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42, 3, 1000));
        prop_assert_eq!(h.first_timestamp, records[0].timestamp);
        prop_assert_eq!(h.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!(h.attributes.codec(), Some(codec));
        let recs = view.records().unwrap();
        let got: Vec<_> = recs.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), records.len());
        for (i, (g, want)) in got.iter().zip(&records).enumerate() {
            prop_assert_eq!(g.offset, base.wrapping_add(i as u64));
            prop_assert_eq!(g.timestamp, want.timestamp);
            prop_assert_eq!(g.key, want.key.as_deref());
            prop_assert_eq!(g.value, want.value.as_deref());
            let hs: Vec<(String, Vec<u8>)> =
                g.headers().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
            prop_assert_eq!(&hs, &want.headers);
            if let Some(v) = g.value {
                prop_assert_eq!(recs.bytes_of(v).unwrap(), Bytes::copy_from_slice(v));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), seal: bool) {
        let mut bytes = bytes;
        // Half the time make the header and CRC plausible so the record parser is reached.
        if seal && bytes.len() >= HEADER_LEN {
            let len = bytes.len() as u32;
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            bytes[20] = BATCH_MAGIC;
            bytes[25] &= 0x01;
            bytes[26] = 0;
            let count = u32::from(bytes[27] % 4);
            bytes[27..31].copy_from_slice(&count.to_le_bytes());
            bytes[61..65].copy_from_slice(&(count + 1).to_le_bytes());
            seal_crc(&mut bytes);
        }
        let limits = BatchLimits { max_batch_len: 1 << 20, max_uncompressed_len: 1 << 16 };
        for view in BatchIter::new(Bytes::from(bytes), limits) {
            let Ok(view) = view else { break };
            if let Ok(recs) = view.records() {
                for r in recs.iter().flatten() {
                    let _ = r.headers().count();
                    let _ = ControlRecord::decode(&r);
                }
            }
        }
    }

    #[test]
    fn mutated_valid_batches_never_panic(codec in arb_codec(), idx in any::<usize>(), byte: u8) {
        // Corrupt a real batch, reseal the CRC, so the damage reaches the record parser.
        let good = build(codec, &sample_records(6));
        let mut bad = good.to_vec();
        let at = HEADER_LEN + idx % (bad.len() - HEADER_LEN);
        bad[at] = byte;
        seal_crc(&mut bad);
        let view = BatchView::parse(Bytes::from(bad), BatchLimits::default()).unwrap();
        if let Ok(recs) = view.records() {
            let n = recs.iter().take_while(Result::is_ok).count();
            prop_assert!(n <= 6);
        }
    }
}

#[test]
fn flipped_bits_in_producer_part_are_detected_both_codecs() {
    for codec in [CompressionCodec::None, CompressionCodec::Lz4] {
        let good = build(codec, &sample_records(3));
        for byte in CRC_START..good.len() {
            for bit in 0..8 {
                let mut bad = good.to_vec();
                bad[byte] ^= 1 << bit;
                assert!(
                    BatchView::parse(Bytes::from(bad), BatchLimits::default()).is_err(),
                    "{codec:?} byte {byte} bit {bit}"
                );
            }
        }
        // The stored CRC field itself is checked too.
        let mut bad = good.to_vec();
        bad[21] ^= 1;
        assert!(matches!(
            BatchView::parse(Bytes::from(bad), BatchLimits::default()),
            Err(BatchError::Header(HeaderError::CrcMismatch { .. }))
        ));
    }
}

#[test]
fn stamping_does_not_change_crc() {
    let good = build(CompressionCodec::Lz4, &sample_records(5));
    let crc = BatchHeader::parse(&good).unwrap().crc;
    let mut s = good.to_vec();
    stamp(&mut s, u64::MAX - 4, 99);
    assert_eq!(compute_crc(&s), crc);
    let view = BatchView::parse(Bytes::from(s), BatchLimits::default()).unwrap();
    assert_eq!(view.header().last_offset(), u64::MAX);
    assert_eq!(view.header().crc, crc);
}

#[test]
fn lz4_compresses_and_limits_apply() {
    let records: Vec<OwnedRecord> = (0..100)
        .map(|i| OwnedRecord {
            timestamp: i,
            key: None,
            value: Some(vec![b'a'; 500]),
            headers: vec![],
        })
        .collect();
    let plain = build(CompressionCodec::None, &records);
    let lz4 = build(CompressionCodec::Lz4, &records);
    assert!(
        lz4.len() * 10 < plain.len(),
        "{} vs {}",
        lz4.len(),
        plain.len()
    );
    let tight = BatchLimits {
        max_batch_len: MAX_BATCH_LEN,
        max_uncompressed_len: plain.len() - HEADER_LEN - 1,
    };
    let view = BatchView::parse(lz4.clone(), tight).unwrap();
    assert!(matches!(
        view.records(),
        Err(BatchError::Compression(CompressionError::TooLarge { .. }))
    ));
    let view = BatchView::parse(lz4, BatchLimits::default()).unwrap();
    view.validate_records().unwrap();
    assert!(matches!(
        BatchView::parse(
            plain.clone(),
            BatchLimits {
                max_batch_len: 100,
                ..tight
            }
        ),
        Err(BatchError::Header(HeaderError::BadLength { .. }))
    ));
}

#[test]
fn unknown_codec_is_a_typed_error() {
    let mut b = build(CompressionCodec::None, &sample_records(2)).to_vec();
    b[25] = 0b010; // codec 2: unknown
    seal_crc(&mut b);
    assert_eq!(
        BatchView::parse(Bytes::from(b), BatchLimits::default()).unwrap_err(),
        BatchError::Header(HeaderError::BadAttributes(2))
    );
}

#[test]
fn record_count_mismatch_is_detected() {
    let good = build(CompressionCodec::None, &sample_records(3)).to_vec();
    // Claim 2 records while 3 are present.
    let mut bad = good.clone();
    bad[27..31].copy_from_slice(&1u32.to_le_bytes());
    bad[61..65].copy_from_slice(&2u32.to_le_bytes());
    seal_crc(&mut bad);
    let view = BatchView::parse(Bytes::from(bad), BatchLimits::default()).unwrap();
    let err = view.validate_records().unwrap_err();
    assert!(
        matches!(
            err,
            BatchError::Record {
                index: 2,
                source: RecordError::CountMismatch {
                    expected: 2,
                    found: 2,
                    ..
                }
            }
        ),
        "{err:?}"
    );
    // Claim 4 records while 3 are present.
    let mut bad = good;
    bad[27..31].copy_from_slice(&3u32.to_le_bytes());
    bad[61..65].copy_from_slice(&4u32.to_le_bytes());
    seal_crc(&mut bad);
    let view = BatchView::parse(Bytes::from(bad), BatchLimits::default()).unwrap();
    assert!(view.validate_records().is_err());
}

#[test]
fn builder_limits() {
    assert_eq!(
        BatchBuilder::new(CompressionCodec::None).finish(),
        Err(BuildError::Empty)
    );
    let mut b = BatchBuilder::new(CompressionCodec::None).with_max_len(HEADER_LEN + 20);
    b.append(0, None, Some(&[0; 10]), &[]).unwrap();
    let size = b.size();
    assert!(matches!(
        b.append(0, None, Some(&[0; 10]), &[]),
        Err(BuildError::TooLarge { .. })
    ));
    assert_eq!((b.size(), b.record_count()), (size, 1));
    let bytes = b.finish().unwrap();
    assert_eq!(bytes.len(), size);
}

#[test]
fn control_batches_round_trip() {
    let config = ControlRecord::RaftConfig(RaftConfig {
        voters: vec![1, 2, 3],
        learners: vec![4],
        outgoing_voters: vec![],
    });
    let mut b = BatchBuilder::control();
    b.append_control(5, &ControlRecord::NoOp).unwrap();
    b.append_control(6, &config).unwrap();
    let view = BatchView::parse(b.finish().unwrap(), BatchLimits::default()).unwrap();
    assert!(view.is_control());
    let recs = view.records().unwrap();
    let got: Vec<ControlRecord> = recs
        .iter()
        .map(|r| ControlRecord::decode(&r.unwrap()).unwrap())
        .collect();
    assert_eq!(got, vec![ControlRecord::NoOp, config]);
}

#[test]
fn batch_iter_walks_consecutive_batches_and_stops_on_error() {
    let a = build(CompressionCodec::None, &sample_records(2));
    let b = build(CompressionCodec::Lz4, &sample_records(4));
    let mut all = a.to_vec();
    all.extend_from_slice(&b);
    let views: Vec<_> = BatchIter::new(Bytes::from(all.clone()), BatchLimits::default())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(views[1].as_bytes(), &b);
    all.push(0);
    let results: Vec<_> = BatchIter::new(Bytes::from(all), BatchLimits::default()).collect();
    assert_eq!(results.len(), 3);
    assert!(matches!(
        results[2],
        Err(BatchError::Header(HeaderError::Truncated { .. }))
    ));
}

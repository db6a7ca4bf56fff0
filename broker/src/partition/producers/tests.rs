//! The sequence rules, one by one, on headers alone.

use floe_protocol::batch::{Attributes, BatchBuilder, BatchHeader, CompressionCodec};

use super::{PRODUCER_WINDOW, ProducerStates, SeqCheck, SeqError, next_seq};

/// A header of `records` records from producer `pid`/`epoch` starting at `seq`, as if stamped
/// at `base` in term 1.
fn header(pid: i64, epoch: i16, seq: i32, records: u32, base: u64) -> BatchHeader {
    let mut b = BatchBuilder::new(CompressionCodec::None).with_producer(pid, epoch, seq);
    for _ in 0..records {
        b.append(0, None, Some(b"v"), &[]).expect("append");
    }
    let mut h = BatchHeader::parse(&b.finish().expect("finish")).expect("header");
    h.base_offset = base;
    h.term = 1;
    h
}

/// Checks `h` and, if it is to be appended, applies it.
fn offer(s: &mut ProducerStates, h: &BatchHeader) -> Result<SeqCheck, SeqError> {
    let r = s.check(h)?;
    if r == SeqCheck::Append {
        s.apply(h);
    }
    Ok(r)
}

#[test]
fn consecutive_batches_are_appended() {
    let mut s = ProducerStates::default();
    assert_eq!(offer(&mut s, &header(7, 0, 0, 3, 0)), Ok(SeqCheck::Append));
    assert_eq!(offer(&mut s, &header(7, 0, 3, 2, 3)), Ok(SeqCheck::Append));
    assert_eq!(offer(&mut s, &header(7, 0, 5, 1, 5)), Ok(SeqCheck::Append));
    // Another producer is independent.
    assert_eq!(offer(&mut s, &header(8, 0, 0, 1, 6)), Ok(SeqCheck::Append));
    assert_eq!(s.len(), 2);
}

#[test]
fn a_retry_in_the_window_is_a_duplicate_with_the_original_offsets() {
    let mut s = ProducerStates::default();
    for i in 0..PRODUCER_WINDOW as i32 + 2 {
        let h = header(7, 0, i * 2, 2, 100 + i as u64 * 2);
        assert_eq!(offer(&mut s, &h), Ok(SeqCheck::Append));
    }
    // The newest and the oldest batch still in the window.
    let last = PRODUCER_WINDOW as i32 + 1;
    for i in [last, 2] {
        match s.check(&header(7, 0, i * 2, 2, 999)) {
            Ok(SeqCheck::Duplicate(b)) => {
                assert_eq!(b.base_offset, 100 + i as u64 * 2);
                assert_eq!(b.last_offset, 101 + i as u64 * 2);
                assert_eq!((b.first_seq, b.last_seq), (i * 2, i * 2 + 1));
            }
            other => panic!("batch {i}: {other:?}"),
        }
    }
    // Fallen out of the window: no longer recognised, and behind: out of order.
    assert_eq!(
        s.check(&header(7, 0, 2, 2, 999)),
        Err(SeqError::OutOfOrder {
            expected: (last + 1) * 2
        })
    );
    // Same first sequence, different length: not the same batch.
    assert_eq!(
        s.check(&header(7, 0, last * 2, 1, 999)),
        Err(SeqError::OutOfOrder {
            expected: (last + 1) * 2
        })
    );
}

#[test]
fn a_gap_is_out_of_order() {
    let mut s = ProducerStates::default();
    offer(&mut s, &header(7, 0, 0, 2, 0)).expect("first");
    assert_eq!(
        s.check(&header(7, 0, 3, 1, 2)),
        Err(SeqError::OutOfOrder { expected: 2 })
    );
}

#[test]
fn an_unknown_producer_must_start_at_zero() {
    let s = ProducerStates::default();
    assert_eq!(
        s.check(&header(7, 0, 5, 1, 0)),
        Err(SeqError::OutOfOrder { expected: 0 })
    );
    assert_eq!(s.check(&header(7, 0, 0, 1, 0)), Ok(SeqCheck::Append));
}

#[test]
fn an_older_epoch_is_fenced() {
    let mut s = ProducerStates::default();
    offer(&mut s, &header(7, 3, 0, 1, 0)).expect("first");
    assert_eq!(
        s.check(&header(7, 2, 1, 1, 1)),
        Err(SeqError::Fenced { current_epoch: 3 })
    );
    // Even a retry of a batch it did write is fenced once a newer epoch wrote.
    offer(&mut s, &header(7, 4, 0, 1, 1)).expect("new epoch");
    assert_eq!(
        s.check(&header(7, 3, 0, 1, 0)),
        Err(SeqError::Fenced { current_epoch: 4 })
    );
}

#[test]
fn a_newer_epoch_resets_and_must_start_at_zero() {
    let mut s = ProducerStates::default();
    offer(&mut s, &header(7, 0, 0, 5, 0)).expect("first");
    assert_eq!(
        s.check(&header(7, 1, 5, 1, 5)),
        Err(SeqError::OutOfOrder { expected: 0 })
    );
    assert_eq!(offer(&mut s, &header(7, 1, 0, 1, 5)), Ok(SeqCheck::Append));
    // The old epoch's window is gone: its batch at sequence 0 is not a duplicate of epoch 1's.
    assert_eq!(
        s.check(&header(7, 1, 0, 5, 9)),
        Err(SeqError::OutOfOrder { expected: 1 })
    );
    assert_eq!(offer(&mut s, &header(7, 1, 1, 1, 6)), Ok(SeqCheck::Append));
}

#[test]
fn sequences_wrap_at_i32_max() {
    assert_eq!(next_seq(i32::MAX), 0);
    assert_eq!(next_seq(4), 5);
    let mut s = ProducerStates::default();
    // Rebuilt from the log: a producer far along.
    s.apply(&header(7, 0, i32::MAX - 3, 2, 0)); // MAX-3, MAX-2
    // A batch crossing the wrap: MAX-1, MAX, 0.
    let crossing = header(7, 0, i32::MAX - 1, 3, 2);
    assert_eq!(offer(&mut s, &crossing), Ok(SeqCheck::Append));
    match s.check(&crossing) {
        Ok(SeqCheck::Duplicate(b)) => assert_eq!((b.last_seq, b.base_offset), (0, 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.check(&header(7, 0, i32::MAX, 1, 5)),
        Err(SeqError::OutOfOrder { expected: 1 })
    );
    assert_eq!(offer(&mut s, &header(7, 0, 1, 1, 5)), Ok(SeqCheck::Append));
    // Ending exactly at MAX: the next starts at 0.
    s.apply(&header(9, 0, i32::MAX - 1, 2, 6));
    assert_eq!(s.check(&header(9, 0, 0, 1, 8)), Ok(SeqCheck::Append));
}

#[test]
fn control_and_non_idempotent_batches_skip_the_rules() {
    let mut s = ProducerStates::default();
    let plain = header(-1, -1, -1, 2, 0);
    assert_eq!(s.check(&plain), Ok(SeqCheck::NotIdempotent));
    s.apply(&plain);
    assert_eq!(s.check(&plain), Ok(SeqCheck::NotIdempotent));
    let mut control = header(7, 0, 9, 1, 2);
    control.attributes = Attributes(control.attributes.0 | Attributes::CONTROL);
    assert!(control.is_control());
    assert_eq!(s.check(&control), Ok(SeqCheck::NotIdempotent));
    s.apply(&control);
    assert_eq!(s.len(), 0);
}

#[test]
fn a_producer_id_with_negative_fields_is_invalid() {
    let s = ProducerStates::default();
    assert_eq!(
        s.check(&header(7, -1, 0, 1, 0)),
        Err(SeqError::InvalidFields)
    );
    assert_eq!(
        s.check(&header(7, 0, -1, 1, 0)),
        Err(SeqError::InvalidFields)
    );
}

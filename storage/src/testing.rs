//! Helpers for tests, examples and benchmarks: building valid record batches without the
//! protocol crate's record encoder. The payload is opaque to the storage.

use floe_protocol::batch::{Attributes, BATCH_MAGIC, BatchHeader, HEADER_LEN, seal_crc};

/// A valid, sealed batch of `records` records (at least 1) carrying `payload` as its record
/// bytes, with both timestamps `ts`. Base offset and term are 0 (the log stamps them).
///
/// ```
/// let b = floe_storage::testing::batch(3, b"abc", 10);
/// let h = floe_protocol::batch::validate_batch(&b, u32::MAX).unwrap();
/// assert_eq!((h.record_count, h.max_timestamp), (3, 10));
/// ```
pub fn batch(records: u32, payload: &[u8], ts: i64) -> Vec<u8> {
    stamped_batch(0, 0, records, payload, ts)
}

/// Like [`batch`], with base offset and term already stamped (a follower's input).
pub fn stamped_batch(base: u64, term: u64, records: u32, payload: &[u8], ts: i64) -> Vec<u8> {
    let records = records.max(1);
    let header = BatchHeader {
        base_offset: base,
        batch_len: (HEADER_LEN + payload.len()) as u32,
        term,
        magic: BATCH_MAGIC,
        crc: 0,
        attributes: Attributes::default(),
        last_offset_delta: records - 1,
        first_timestamp: ts,
        max_timestamp: ts,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: records,
    };
    let mut buf = vec![0u8; header.batch_len as usize];
    header.write(&mut buf);
    buf[HEADER_LEN..].copy_from_slice(payload);
    seal_crc(&mut buf);
    buf
}

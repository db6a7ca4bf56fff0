//! Arbitrary bytes as one or more record batches: validation, decompression, record and
//! control-record decoding must never panic, and what decodes must be self-consistent.
#![no_main]

use bytes::Bytes;
use floe_protocol::batch::{BatchIter, BatchLimits, ControlRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = BatchLimits {
        max_batch_len: 1 << 20,
        max_uncompressed_len: 4 << 20,
    };
    for view in BatchIter::new(Bytes::copy_from_slice(data), limits) {
        let Ok(view) = view else { break };
        let header = *view.header();
        assert_eq!(view.as_bytes().len(), header.batch_len as usize);
        let Ok(records) = view.records() else { continue };
        let mut n = 0u64;
        for record in records.iter() {
            let Ok(record) = record else { break };
            assert_eq!(record.offset, header.base_offset.wrapping_add(n));
            assert!(record.headers().count() as u32 == record.header_count());
            if view.is_control() {
                let _ = ControlRecord::decode(&record);
            }
            n += 1;
        }
        assert!(n <= u64::from(header.record_count));
    }
});

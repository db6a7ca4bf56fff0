//! Arbitrary bytes as varints: never panic, and decoding is canonical (re-encoding gives back
//! exactly the bytes consumed).
#![no_main]

use floe_protocol::varint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((v, n)) = varint::get_u64(data) {
        let mut out = Vec::new();
        varint::put_u64(&mut out, v);
        assert_eq!(&out[..], &data[..n]);
        assert_eq!(varint::len_u64(v), n);
    }
    if let Ok((v, n)) = varint::get_i64(data) {
        let mut out = Vec::new();
        varint::put_i64(&mut out, v);
        assert_eq!(&out[..], &data[..n]);
    }
});

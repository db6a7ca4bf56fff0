//! Arbitrary bytes as client and peer frames: decoding must never panic, and whatever decodes
//! must re-encode to a frame that decodes to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use floe_protocol::FrameLimits;
use floe_protocol::client::{ClientFrame, decode_client_frame};
use floe_protocol::frame::encode_error_frame;
use floe_protocol::peer::{PeerFrame, decode_peer_frame};
use libfuzzer_sys::fuzz_target;

fn client_round_trip(frame: &ClientFrame, cid: u32, key: u16, version: u16) {
    let mut out = BytesMut::new();
    match frame {
        ClientFrame::Request(m) => m.encode_frame(cid, &mut out),
        ClientFrame::Response(m) => m.encode_frame(cid, &mut out),
        ClientFrame::Push(m) => m.encode_frame(cid, &mut out),
        ClientFrame::Error(e) => encode_error_frame(key, version, cid, *e, &mut out),
    }
    let (_, again, used) = decode_client_frame(&out.freeze(), FrameLimits::default())
        .expect("re-encoded frame decodes");
    assert_eq!(&again, frame);
    let _ = used;
}

fn peer_round_trip(frame: &PeerFrame, cid: u32, key: u16, version: u16) {
    let mut out = BytesMut::new();
    match frame {
        PeerFrame::Request(m) => m.encode_frame(cid, &mut out),
        PeerFrame::Response(m) => m.encode_frame(cid, &mut out),
        PeerFrame::Error(e) => encode_error_frame(key, version, cid, *e, &mut out),
    }
    let (_, again, _) = decode_peer_frame(&out.freeze(), FrameLimits::default())
        .expect("re-encoded frame decodes");
    assert_eq!(&again, frame);
}

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits {
        max_frame_len: 1 << 20,
    };
    let buf = Bytes::copy_from_slice(data);
    if let Ok((h, frame, used)) = decode_client_frame(&buf, limits) {
        assert!(used <= data.len());
        client_round_trip(&frame, h.correlation_id, h.api_key, h.api_version);
    }
    if let Ok((h, frame, used)) = decode_peer_frame(&buf, limits) {
        assert!(used <= data.len());
        peer_round_trip(&frame, h.correlation_id, h.api_key, h.api_version);
    }
});

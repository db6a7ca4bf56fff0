//! Round trips and hostile input for every peer message.

use super::*;
use crate::frame::{FrameKind, FrameLimits};
use crate::wire::testing::Arb;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

    #[test]
    fn request_round_trip(req in PeerRequest::arb(), cid: u32) {
        let mut buf = BytesMut::new();
        req.encode_frame(cid, &mut buf);
        let flat = buf.freeze();
        let (h, frame, used) = decode_peer_frame(&flat, FrameLimits::default()).unwrap();
        prop_assert_eq!((used, h.kind, h.correlation_id), (flat.len(), FrameKind::Request, cid));
        prop_assert_eq!(frame, PeerFrame::Request(req));
    }

    #[test]
    fn response_round_trip(resp in PeerResponse::arb(), cid: u32) {
        let mut buf = BytesMut::new();
        resp.encode_frame(cid, &mut buf);
        let (h, frame, _) = decode_peer_frame(&buf.freeze(), FrameLimits::default()).unwrap();
        prop_assert_eq!(h.kind, FrameKind::Response);
        prop_assert_eq!(frame, PeerFrame::Response(resp));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_peer_frame(&Bytes::from(bytes), FrameLimits::default());
    }

    #[test]
    fn mutated_frames_never_panic(req in PeerRequest::arb(), idx: usize, byte: u8) {
        let mut buf = Vec::new();
        req.encode_frame(0, &mut buf);
        let i = idx % buf.len();
        buf[i] = byte;
        let _ = decode_peer_frame(&Bytes::from(buf), FrameLimits::default());
    }
}

#[test]
fn coalesced_heartbeat_with_many_groups_is_compact_and_bounded() {
    let hb = CoalescedHeartbeat {
        from: 1,
        to: 2,
        entries: (0..10_000)
            .map(|g| HeartbeatEntry {
                group_id: g,
                term: 3,
                commit_end: g * 10,
                read_ctx: 0,
                quiesce: g % 2 == 0,
            })
            .collect(),
    };
    let mut buf = Vec::new();
    PeerRequest::from(hb.clone()).encode_frame(0, &mut buf);
    // 33 bytes per group: group id, term, commit end, read ctx (8 each) and the quiesce flag.
    assert_eq!(buf.len(), 16 + 8 + 8 + 4 + 10_000 * 33);
    // A lying count is rejected before allocation.
    let mut bad = buf.clone();
    bad[16 + 16..16 + 20].copy_from_slice(&10_001u32.to_le_bytes());
    let err = decode_peer_frame(&Bytes::from(bad), FrameLimits::default()).unwrap_err();
    assert_eq!(err.offset, 32);
    // A frame above the configured limit is rejected from its length prefix alone.
    let small = FrameLimits {
        max_frame_len: 1024,
    };
    let err = decode_peer_frame(&Bytes::from(buf), small).unwrap_err();
    assert_eq!(err.offset, 0);
}

#[test]
fn peer_api_keys_are_pinned() {
    for (i, k) in PeerApiKey::ALL.iter().enumerate() {
        assert_eq!(*k as usize, i);
    }
    assert_eq!(PeerApiKey::AppendEntries as u16, 1);
    assert_eq!(PeerApiKey::Forward as u16, 10);
}

//! Round trips and hostile input for every client message.

use super::*;
use crate::ErrorCode;
use crate::frame::{FrameKind, FrameLimits, encode_error_frame};
use crate::wire::testing::Arb;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn limits() -> FrameLimits {
    FrameLimits::default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

    #[test]
    fn request_round_trip(req in Request::arb(), cid: u32) {
        let mut buf = BytesMut::new();
        req.encode_frame(cid, &mut buf);
        let flat = buf.freeze();
        let (h, frame, used) = decode_client_frame(&flat, limits()).unwrap();
        prop_assert_eq!(used, flat.len());
        prop_assert_eq!((h.correlation_id, h.kind, h.api_key), (cid, FrameKind::Request, req.api_key() as u16));
        prop_assert_eq!(frame, ClientFrame::Request(req.clone()));
        let chunks: Vec<u8> = req.encode_frame_chunks(cid).concat();
        prop_assert_eq!(&chunks[..], &flat[..]);
    }

    #[test]
    fn response_round_trip(resp in Response::arb(), cid: u32) {
        let mut buf = BytesMut::new();
        resp.encode_frame(cid, &mut buf);
        let flat = buf.freeze();
        let (h, frame, used) = decode_client_frame(&flat, limits()).unwrap();
        prop_assert_eq!((used, h.kind), (flat.len(), FrameKind::Response));
        prop_assert_eq!(frame, ClientFrame::Response(resp));
    }

    #[test]
    fn push_round_trip(push in Push::arb(), cid: u32) {
        let mut buf = BytesMut::new();
        push.encode_frame(cid, &mut buf);
        let (h, frame, _) = decode_client_frame(&buf.freeze(), limits()).unwrap();
        prop_assert_eq!(h.kind, FrameKind::Push);
        prop_assert_eq!(frame, ClientFrame::Push(push));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_client_frame(&Bytes::from(bytes), limits());
    }

    #[test]
    fn mutated_frames_never_panic(req in Request::arb(), idx: usize, byte: u8, cut: usize) {
        let mut buf = Vec::new();
        req.encode_frame(1, &mut buf);
        let i = idx % buf.len();
        buf[i] = byte;
        let _ = decode_client_frame(&Bytes::from(buf.clone()), limits());
        buf.truncate(cut % (buf.len() + 1));
        let _ = decode_client_frame(&Bytes::from(buf), limits());
    }
}

#[test]
fn batches_are_zero_copy_slices_of_the_frame() {
    let batch = Bytes::from(vec![9u8; 5000]);
    let req = Request::from(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: "t".into(),
            partitions: vec![ProducePartition {
                partition: 3,
                batches: batch.clone(),
            }],
        }],
    });
    let chunks = req.encode_frame_chunks(7);
    assert!(
        chunks.iter().any(|c| c.as_ptr() == batch.as_ptr()),
        "encode copied the batch"
    );
    let flat = Bytes::from(chunks.concat());
    let (_, frame, _) = decode_client_frame(&flat, limits()).unwrap();
    let ClientFrame::Request(Request::Produce(p)) = frame else {
        panic!("wrong frame")
    };
    let got = &p.topics[0].partitions[0].batches;
    let start = flat.as_ptr() as usize;
    let at = got.as_ptr() as usize;
    assert!(
        at >= start && at + got.len() <= start + flat.len(),
        "decode copied the batch"
    );
    assert_eq!(got, &batch);
}

#[test]
fn error_frames_and_envelope_checks() {
    let mut buf = Vec::new();
    encode_error_frame(
        ApiKey::Fetch as u16,
        1,
        77,
        ErrorCode::UnsupportedVersion,
        &mut buf,
    );
    let (h, frame, used) = decode_client_frame(&Bytes::from(buf.clone()), limits()).unwrap();
    assert_eq!((h.correlation_id, used), (77, 16));
    assert_eq!(frame, ClientFrame::Error(ErrorCode::UnsupportedVersion));
    // Echoing an api key and version this side does not know is still a decodable error frame.
    let mut buf = Vec::new();
    encode_error_frame(999, 9, 78, ErrorCode::UnsupportedVersion, &mut buf);
    let (h, frame, _) = decode_client_frame(&Bytes::from(buf), limits()).unwrap();
    assert_eq!((h.api_key, h.api_version), (999, 9));
    assert_eq!(frame, ClientFrame::Error(ErrorCode::UnsupportedVersion));

    let mut req = Vec::new();
    Request::from(HeartbeatRequest::default()).encode_frame(5, &mut req);
    let decode = |b: &[u8]| decode_client_frame(&Bytes::copy_from_slice(b), limits()).unwrap_err();
    // Unknown api key.
    let mut bad = req.clone();
    bad[4] = 0xff;
    assert_eq!(decode(&bad).offset, 4);
    // Unsupported version.
    let mut bad = req.clone();
    bad[6] = 9;
    assert!(matches!(
        decode(&bad).kind,
        crate::wire::DecodeErrorKind::UnsupportedVersion { version: 9, .. }
    ));
    // Reserved flags.
    let mut bad = req.clone();
    bad[9] = 1;
    assert_eq!(decode(&bad).offset, 9);
    // Request kind for a push-only... SubscribeCredit has no response: a response frame for it is rejected.
    let mut bad = Vec::new();
    Request::from(SubscribeCredit { bytes: 1 }).encode_frame(1, &mut bad);
    bad[8] = FrameKind::Response as u8;
    assert!(matches!(
        decode(&bad).kind,
        crate::wire::DecodeErrorKind::BadKind { .. }
    ));
    // Oversized frame length is rejected before anything else.
    let mut bad = req.clone();
    bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = decode(&bad);
    assert_eq!(e.offset, 0);
    assert!(matches!(
        e.kind,
        crate::wire::DecodeErrorKind::BadFrameLength { .. }
    ));
    // Truncated.
    assert!(matches!(
        decode(&req[..req.len() - 1]).kind,
        crate::wire::DecodeErrorKind::Truncated { needed: 1 }
    ));
    // A body with trailing bytes (length says more than the body uses).
    let mut bad = req.clone();
    bad.push(0);
    let n = (bad.len() - 4) as u32;
    bad[0..4].copy_from_slice(&n.to_le_bytes());
    assert!(matches!(
        decode(&bad).kind,
        crate::wire::DecodeErrorKind::TrailingBytes(1)
    ));
}

#[test]
fn api_keys_are_pinned() {
    let names: Vec<(u16, ApiKey)> = ApiKey::ALL.iter().map(|&k| (k as u16, k)).collect();
    for (i, (n, k)) in names.iter().enumerate() {
        assert_eq!(*n as usize, i, "{k:?}");
        assert_eq!(ApiKey::from_u16(*n), Some(*k));
    }
    assert_eq!(ApiKey::Produce as u16, 6);
    assert_eq!(ApiKey::Fetch as u16, 7);
    assert_eq!(ApiKey::DescribeCluster as u16, 20);
    assert_eq!(ApiKey::AlterPartitionReplicas as u16, 21);
}

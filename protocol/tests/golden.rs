//! Golden byte vectors: a format change must be deliberate.
//!
//! Each case encodes a fixed value and compares it with `tests/vectors/<name>.hex`, then
//! decodes the checked-in bytes and compares with the value. To accept a deliberate format
//! change, run `FLOE_BLESS=1 cargo test -p floe-protocol --test golden` and review the diff.
//! The lz4 vector also pins lz4_flex's compressor output; an lz4_flex upgrade that changes it
//! needs a re-bless (old bytes still decode, which the test checks first).

use bytes::{Bytes, BytesMut};
use floe_protocol::batch::{
    BatchBuilder, BatchLimits, BatchView, CompressionCodec, ControlRecord, RaftConfig, stamp,
};
use floe_protocol::client::*;
use floe_protocol::frame::encode_error_frame;
use floe_protocol::peer::*;
use floe_protocol::{ErrorCode, FrameLimits, varint};
use std::path::PathBuf;

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(format!("{name}.hex"))
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(32) {
        for b in line {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Compares `bytes` with the stored vector (or writes it when blessing); returns the stored
/// bytes so the caller can check they decode.
fn check(name: &str, bytes: &[u8]) -> Bytes {
    let path = vector_path(name);
    if std::env::var_os("FLOE_BLESS").is_some() {
        std::fs::write(&path, to_hex(bytes)).unwrap();
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with FLOE_BLESS=1 to create)", path.display()));
    let stored = from_hex(&stored);
    assert_eq!(
        to_hex(&stored),
        to_hex(bytes),
        "{name}: encoding changed; if deliberate, re-bless with FLOE_BLESS=1"
    );
    Bytes::from(stored)
}

fn check_request(name: &str, req: Request) {
    let mut buf = BytesMut::new();
    req.encode_frame(0x0102_0304, &mut buf);
    let stored = check(name, &buf);
    let (_, frame, used) = decode_client_frame(&stored, FrameLimits::default()).unwrap();
    assert_eq!(used, stored.len());
    assert_eq!(frame, ClientFrame::Request(req), "{name}");
}

fn check_response(name: &str, resp: Response) {
    let mut buf = BytesMut::new();
    resp.encode_frame(0x0102_0304, &mut buf);
    let stored = check(name, &buf);
    let (_, frame, _) = decode_client_frame(&stored, FrameLimits::default()).unwrap();
    assert_eq!(frame, ClientFrame::Response(resp), "{name}");
}

fn check_peer(name: &str, req: PeerRequest) {
    let mut buf = BytesMut::new();
    req.encode_frame(0, &mut buf);
    let stored = check(name, &buf);
    let (_, frame, _) = decode_peer_frame(&stored, FrameLimits::default()).unwrap();
    assert_eq!(frame, PeerFrame::Request(req), "{name}");
}

fn check_peer_response(name: &str, resp: PeerResponse) {
    let mut buf = BytesMut::new();
    resp.encode_frame(9, &mut buf);
    let stored = check(name, &buf);
    let (_, frame, _) = decode_peer_frame(&stored, FrameLimits::default()).unwrap();
    assert_eq!(frame, PeerFrame::Response(resp), "{name}");
}

const TS: i64 = 1_700_000_000_000;

fn sample_batch(codec: CompressionCodec) -> Bytes {
    let mut b = BatchBuilder::new(codec).with_producer(1000, 2, 40);
    b.append(TS, Some(b"user-1"), Some(b"hello"), &[("trace", b"abc")])
        .unwrap();
    b.append(TS + 5, None, Some(b"world world world world"), &[])
        .unwrap();
    b.append(
        TS - 1,
        Some(b"user-1"),
        None,
        &[("a", b""), ("b", b"\x00\xff")],
    )
    .unwrap();
    let mut bytes = b.finish().unwrap().to_vec();
    stamp(&mut bytes, 100, 7);
    Bytes::from(bytes)
}

fn check_batch(name: &str, bytes: Bytes) -> BatchView {
    let stored = check(name, &bytes);
    let view = BatchView::parse(stored, BatchLimits::default()).unwrap();
    view.validate_records().unwrap();
    view
}

#[test]
fn varints() {
    let mut out = Vec::new();
    for v in [
        0u64,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        varint::put_u64(&mut out, v);
    }
    for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
        varint::put_i64(&mut out, v);
    }
    check("varints", &out);
}

#[test]
fn batches() {
    for (name, codec) in [
        ("batch_none", CompressionCodec::None),
        ("batch_lz4", CompressionCodec::Lz4),
    ] {
        let view = check_batch(name, sample_batch(codec));
        let records = view.records().unwrap();
        let r: Vec<_> = records.iter().map(Result::unwrap).collect();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].offset, r[0].timestamp), (100, TS));
        assert_eq!(r[0].headers().collect::<Vec<_>>(), [("trace", &b"abc"[..])]);
        assert_eq!((r[1].key, r[1].timestamp), (None, TS + 5));
        assert_eq!((r[2].offset, r[2].value), (102, None));
        assert_eq!(view.header().max_timestamp, TS + 5);
    }
    let mut b = BatchBuilder::control();
    b.append_control(TS, &ControlRecord::NoOp).unwrap();
    b.append_control(
        TS,
        &ControlRecord::RaftConfig(RaftConfig {
            voters: vec![1, 2, 3],
            learners: vec![4],
            outgoing_voters: vec![1, 2],
        }),
    )
    .unwrap();
    let mut bytes = b.finish().unwrap().to_vec();
    stamp(&mut bytes, 0, 1);
    let view = check_batch("batch_control", Bytes::from(bytes));
    assert!(view.is_control());
}

fn string(s: &str) -> String {
    s.to_string()
}

fn versions() -> Vec<ApiVersionRange> {
    vec![
        ApiVersionRange {
            api_key: 6,
            min_version: 1,
            max_version: 1,
        },
        ApiVersionRange {
            api_key: 7,
            min_version: 1,
            max_version: 2,
        },
    ]
}

fn partition_md() -> PartitionMetadata {
    PartitionMetadata {
        error: ErrorCode::None,
        partition: 0,
        leader: Some(2),
        leader_term: 4,
        replicas: vec![1, 2, 3],
        in_sync: vec![2, 3],
    }
}

fn broker(id: u64) -> BrokerInfo {
    BrokerInfo {
        node_id: id,
        host: format!("10.0.0.{id}"),
        port: 9092,
        rack: (id == 1).then(|| string("a")),
    }
}

fn fetch_topic() -> FetchTopic {
    FetchTopic {
        name: string("orders"),
        partitions: vec![FetchPartition {
            partition: 1,
            fetch_offset: 100,
            max_bytes: 1 << 20,
        }],
    }
}

fn fetch_result() -> FetchTopicResult {
    FetchTopicResult {
        name: string("orders"),
        partitions: vec![
            FetchPartitionResult {
                partition: 1,
                error: ErrorCode::None,
                high_watermark: 103,
                log_start_offset: 0,
                current_leader: None,
                batches: sample_batch(CompressionCodec::None),
            },
            FetchPartitionResult {
                partition: 2,
                error: ErrorCode::NotLeader,
                high_watermark: 0,
                log_start_offset: 0,
                current_leader: Some(3),
                batches: Bytes::new(),
            },
        ],
    }
}

#[test]
fn client_frames() {
    check_request(
        "c_api_versions_req",
        ApiVersionsRequest {
            client_name: string("floe-client"),
            client_version: string("0.1.0"),
            client_id: Some(string("app")),
            apis: versions(),
        }
        .into(),
    );
    check_response(
        "c_api_versions_resp",
        ApiVersionsResponse {
            error: ErrorCode::None,
            cluster_id: string("c1"),
            node_id: 1,
            apis: versions(),
            max_frame_len: 16 << 20,
            max_batch_len: 8 << 20,
        }
        .into(),
    );
    check_request(
        "c_metadata_req",
        MetadataRequest {
            topics: Some(vec![string("orders")]),
        }
        .into(),
    );
    check_response(
        "c_metadata_resp",
        MetadataResponse {
            brokers: vec![broker(1), broker(2)],
            cluster_id: string("c1"),
            controller_id: Some(1),
            topics: vec![TopicMetadata {
                error: ErrorCode::None,
                name: string("orders"),
                internal: false,
                partitions: vec![partition_md()],
            }],
        }
        .into(),
    );
    check_request(
        "c_create_topics_req",
        CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: string("orders"),
                partitions: 3,
                replication_factor: 3,
                configs: vec![ConfigEntry {
                    name: string("retention.ms"),
                    value: string("86400000"),
                }],
            }],
            timeout_ms: 5000,
            validate_only: false,
        }
        .into(),
    );
    let results = vec![TopicResult {
        name: string("orders"),
        error: ErrorCode::TopicAlreadyExists,
        message: Some(string("exists")),
    }];
    check_response(
        "c_create_topics_resp",
        CreateTopicsResponse {
            results: results.clone(),
        }
        .into(),
    );
    check_request(
        "c_delete_topics_req",
        DeleteTopicsRequest {
            names: vec![string("orders")],
            timeout_ms: 5000,
        }
        .into(),
    );
    check_response(
        "c_delete_topics_resp",
        DeleteTopicsResponse { results }.into(),
    );
    check_request(
        "c_alter_partition_replicas_req",
        AlterPartitionReplicasRequest {
            topic: string("orders"),
            partition: 2,
            replicas: vec![4, 1, 2],
            timeout_ms: 5000,
        }
        .into(),
    );
    check_response(
        "c_alter_partition_replicas_resp",
        AlterPartitionReplicasResponse {
            error: ErrorCode::BrokerNotAvailable,
            message: Some(string("broker 9 is not registered")),
        }
        .into(),
    );
    check_request(
        "c_list_topics_req",
        ListTopicsRequest {
            include_internal: true,
        }
        .into(),
    );
    check_response(
        "c_list_topics_resp",
        ListTopicsResponse {
            error: ErrorCode::None,
            topics: vec![TopicListing {
                name: string("orders"),
                partitions: 3,
                replication_factor: 3,
                internal: false,
            }],
        }
        .into(),
    );
    check_request(
        "c_describe_topics_req",
        DescribeTopicsRequest {
            names: vec![string("orders")],
        }
        .into(),
    );
    check_response(
        "c_describe_topics_resp",
        DescribeTopicsResponse {
            topics: vec![TopicDescription {
                error: ErrorCode::None,
                name: string("orders"),
                internal: false,
                partitions: vec![partition_md()],
                configs: vec![],
            }],
        }
        .into(),
    );
    check_request(
        "c_produce_req",
        ProduceRequest {
            acks: Acks::All,
            timeout_ms: 30_000,
            topics: vec![ProduceTopic {
                name: string("orders"),
                partitions: vec![ProducePartition {
                    partition: 1,
                    batches: sample_batch(CompressionCodec::None),
                }],
            }],
        }
        .into(),
    );
    check_response(
        "c_produce_resp",
        ProduceResponse {
            topics: vec![ProduceTopicResult {
                name: string("orders"),
                partitions: vec![ProducePartitionResult {
                    partition: 1,
                    error: ErrorCode::None,
                    base_offset: 100,
                    log_start_offset: 0,
                    current_leader: None,
                    message: None,
                }],
            }],
        }
        .into(),
    );
    check_request(
        "c_fetch_req",
        FetchRequest {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 << 20,
            topics: vec![fetch_topic()],
        }
        .into(),
    );
    check_response(
        "c_fetch_resp",
        FetchResponse {
            topics: vec![fetch_result()],
        }
        .into(),
    );
    check_request(
        "c_subscribe_req",
        SubscribeRequest {
            topics: vec![fetch_topic()],
            initial_credit: 0,
        }
        .into(),
    );
    check_response(
        "c_subscribe_resp",
        SubscribeResponse {
            topics: vec![SubscribeTopicStatus {
                name: string("orders"),
                partitions: vec![SubscribePartitionStatus {
                    partition: 1,
                    error: ErrorCode::None,
                    high_watermark: 103,
                    log_start_offset: 0,
                    current_leader: None,
                }],
            }],
        }
        .into(),
    );
    check_request(
        "c_subscribe_credit",
        SubscribeCredit { bytes: 1 << 20 }.into(),
    );
    let push = Push::from(SubscribeEvent {
        topics: vec![fetch_result()],
    });
    let mut buf = BytesMut::new();
    push.encode_frame(0x0102_0304, &mut buf);
    let stored = check("c_subscribe_event", &buf);
    let (_, frame, _) = decode_client_frame(&stored, FrameLimits::default()).unwrap();
    assert_eq!(frame, ClientFrame::Push(push));
    check_request(
        "c_list_offsets_req",
        ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                name: string("orders"),
                partitions: vec![
                    ListOffsetsPartition {
                        partition: 0,
                        spec: OffsetSpec::Earliest,
                    },
                    ListOffsetsPartition {
                        partition: 1,
                        spec: OffsetSpec::Latest,
                    },
                    ListOffsetsPartition {
                        partition: 2,
                        spec: OffsetSpec::Timestamp(TS),
                    },
                ],
            }],
        }
        .into(),
    );
    check_response(
        "c_list_offsets_resp",
        ListOffsetsResponse {
            topics: vec![ListOffsetsTopicResult {
                name: string("orders"),
                partitions: vec![ListOffsetsPartitionResult {
                    partition: 2,
                    error: ErrorCode::None,
                    offset: 100,
                    timestamp: TS,
                    current_leader: None,
                }],
            }],
        }
        .into(),
    );
    check_request(
        "c_init_producer_id_req",
        InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
        }
        .into(),
    );
    check_response(
        "c_init_producer_id_resp",
        InitProducerIdResponse {
            error: ErrorCode::None,
            producer_id: 1000,
            producer_epoch: 0,
        }
        .into(),
    );
    check_request(
        "c_join_group_req",
        JoinGroupRequest {
            group_id: string("g"),
            member_id: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: string("consumer"),
            protocols: vec![GroupProtocol {
                name: string("range"),
                metadata: Bytes::from_static(b"orders"),
            }],
        }
        .into(),
    );
    check_response(
        "c_join_group_resp",
        JoinGroupResponse {
            error: ErrorCode::None,
            generation_id: 1,
            protocol_name: Some(string("range")),
            leader_id: string("m-1"),
            member_id: string("m-1"),
            members: vec![JoinGroupMember {
                member_id: string("m-1"),
                metadata: Bytes::from_static(b"orders"),
            }],
        }
        .into(),
    );
    check_request(
        "c_sync_group_req",
        SyncGroupRequest {
            group_id: string("g"),
            generation_id: 1,
            member_id: string("m-1"),
            assignments: vec![SyncGroupAssignment {
                member_id: string("m-1"),
                assignment: Bytes::from_static(b"\x00\x01"),
            }],
        }
        .into(),
    );
    check_response(
        "c_sync_group_resp",
        SyncGroupResponse {
            error: ErrorCode::None,
            assignment: Bytes::from_static(b"\x00\x01"),
        }
        .into(),
    );
    check_request(
        "c_heartbeat_req",
        HeartbeatRequest {
            group_id: string("g"),
            generation_id: 1,
            member_id: string("m-1"),
        }
        .into(),
    );
    check_response(
        "c_heartbeat_resp",
        HeartbeatResponse {
            error: ErrorCode::RebalanceInProgress,
        }
        .into(),
    );
    check_request(
        "c_leave_group_req",
        LeaveGroupRequest {
            group_id: string("g"),
            member_id: string("m-1"),
        }
        .into(),
    );
    check_response(
        "c_leave_group_resp",
        LeaveGroupResponse {
            error: ErrorCode::None,
        }
        .into(),
    );
    check_request(
        "c_offset_commit_req",
        OffsetCommitRequest {
            group_id: string("g"),
            generation_id: 1,
            member_id: string("m-1"),
            topics: vec![OffsetCommitTopic {
                name: string("orders"),
                partitions: vec![OffsetCommitPartition {
                    partition: 1,
                    offset: 103,
                    metadata: None,
                }],
            }],
        }
        .into(),
    );
    check_response(
        "c_offset_commit_resp",
        OffsetCommitResponse {
            topics: vec![TopicPartitionErrors {
                name: string("orders"),
                partitions: vec![PartitionError {
                    partition: 1,
                    error: ErrorCode::None,
                }],
            }],
        }
        .into(),
    );
    check_request(
        "c_offset_fetch_req",
        OffsetFetchRequest {
            group_id: string("g"),
            topics: Some(vec![OffsetFetchTopic {
                name: string("orders"),
                partitions: vec![1, 2],
            }]),
        }
        .into(),
    );
    check_response(
        "c_offset_fetch_resp",
        OffsetFetchResponse {
            error: ErrorCode::None,
            topics: vec![OffsetFetchTopicResult {
                name: string("orders"),
                partitions: vec![
                    OffsetFetchPartition {
                        partition: 1,
                        error: ErrorCode::None,
                        offset: Some(103),
                        metadata: Some(string("m")),
                    },
                    OffsetFetchPartition {
                        partition: 2,
                        error: ErrorCode::None,
                        offset: None,
                        metadata: None,
                    },
                ],
            }],
        }
        .into(),
    );
    check_request(
        "c_list_groups_req",
        ListGroupsRequest { states: vec![] }.into(),
    );
    check_response(
        "c_list_groups_resp",
        ListGroupsResponse {
            error: ErrorCode::None,
            groups: vec![GroupListing {
                group_id: string("g"),
                protocol_type: string("consumer"),
                state: string("Stable"),
            }],
        }
        .into(),
    );
    check_request(
        "c_describe_groups_req",
        DescribeGroupsRequest {
            group_ids: vec![string("g")],
        }
        .into(),
    );
    check_response(
        "c_describe_groups_resp",
        DescribeGroupsResponse {
            groups: vec![GroupDescription {
                error: ErrorCode::None,
                group_id: string("g"),
                state: string("Stable"),
                protocol_type: string("consumer"),
                protocol: string("range"),
                members: vec![GroupMemberDescription {
                    member_id: string("m-1"),
                    client_id: string("app"),
                    client_host: string("10.0.0.9"),
                    metadata: Bytes::from_static(b"orders"),
                    assignment: Bytes::from_static(b"\x00\x01"),
                }],
            }],
        }
        .into(),
    );
    check_request("c_describe_cluster_req", DescribeClusterRequest {}.into());
    check_response(
        "c_describe_cluster_resp",
        DescribeClusterResponse {
            error: ErrorCode::None,
            cluster_id: string("c1"),
            controller_id: Some(1),
            brokers: vec![broker(1), broker(2), broker(3)],
        }
        .into(),
    );
    let mut buf = Vec::new();
    encode_error_frame(
        ApiKey::Produce as u16,
        9,
        0x0102_0304,
        ErrorCode::UnsupportedVersion,
        &mut buf,
    );
    check("c_error_frame", &buf);
}

#[test]
fn peer_frames() {
    check_peer(
        "p_hello",
        PeerHello {
            cluster_id: string("c1"),
            node_id: 2,
            apis: versions(),
        }
        .into(),
    );
    check_peer_response(
        "p_hello_resp",
        PeerHelloResponse {
            error: ErrorCode::None,
            node_id: 1,
            apis: versions(),
        }
        .into(),
    );
    check_peer(
        "p_append_entries",
        AppendEntries {
            group_id: 42,
            from: 1,
            to: 2,
            term: 7,
            prev_end: 100,
            prev_term: 6,
            commit_end: 100,
            batches: sample_batch(CompressionCodec::Lz4),
        }
        .into(),
    );
    check_peer(
        "p_append_entries_resp",
        AppendEntriesResponse {
            group_id: 42,
            from: 2,
            to: 1,
            term: 7,
            success: false,
            match_end: 0,
            rejected_prev_end: 100,
            hint_end: 90,
            hint_term: 5,
        }
        .into(),
    );
    check_peer(
        "p_vote",
        VoteRequest {
            group_id: 42,
            from: 3,
            to: 1,
            term: 8,
            last_end: 103,
            last_term: 7,
            pre_vote: true,
            leadership_transfer: false,
        }
        .into(),
    );
    check_peer(
        "p_vote_resp",
        VoteResponse {
            group_id: 42,
            from: 1,
            to: 3,
            term: 8,
            granted: true,
            pre_vote: true,
        }
        .into(),
    );
    check_peer(
        "p_heartbeat",
        CoalescedHeartbeat {
            from: 1,
            to: 2,
            entries: vec![
                HeartbeatEntry {
                    group_id: 1,
                    term: 3,
                    commit_end: 10,
                    read_ctx: 0,
                    quiesce: true,
                },
                HeartbeatEntry {
                    group_id: 42,
                    term: 7,
                    commit_end: 103,
                    read_ctx: 17,
                    quiesce: false,
                },
            ],
        }
        .into(),
    );
    check_peer(
        "p_heartbeat_resp",
        CoalescedHeartbeatResponse {
            from: 2,
            to: 1,
            entries: vec![
                HeartbeatResponseEntry {
                    group_id: 42,
                    term: 7,
                    read_ctx: 17,
                    repair_from: None,
                },
                HeartbeatResponseEntry {
                    group_id: 1,
                    term: 3,
                    read_ctx: 0,
                    repair_from: Some(4),
                },
            ],
        }
        .into(),
    );
    check_peer(
        "p_timeout_now",
        TimeoutNow {
            group_id: 42,
            from: 1,
            to: 2,
            term: 7,
        }
        .into(),
    );
    check_peer(
        "p_install_snapshot",
        InstallSnapshot {
            group_id: 0,
            from: 1,
            to: 4,
            term: 2,
            kind: SnapshotKind::StateMachine,
            end: 501,
            snapshot_term: 2,
            membership: PeerMembership {
                voters: vec![1, 2, 3],
                learners: vec![4],
            },
            chunk_offset: 0,
            data: Bytes::from_static(b"snapshot-bytes"),
            done: true,
        }
        .into(),
    );
    check_peer(
        "p_install_snapshot_resp",
        InstallSnapshotResponse {
            group_id: 0,
            from: 4,
            to: 1,
            term: 2,
            end: 501,
            next_chunk_offset: 14,
            error: ErrorCode::None,
        }
        .into(),
    );
    let mut client_frame = BytesMut::new();
    Request::from(CreateTopicsRequest::default()).encode_frame(5, &mut client_frame);
    check_peer(
        "p_forward",
        ForwardRequest {
            origin_node: 2,
            principal: Some(string("CN=app")),
            frame: client_frame.freeze(),
        }
        .into(),
    );
    check_peer_response(
        "p_forward_resp",
        ForwardResponse {
            error: ErrorCode::NotController,
            leader: Some(1),
            frame: Bytes::new(),
        }
        .into(),
    );
    check_peer(
        "p_controller_call",
        ControllerCallRequest {
            origin_node: 4,
            command: Bytes::from_static(&[1, 5, 1, 0, 0, 0, b't']),
        }
        .into(),
    );
    check_peer_response(
        "p_controller_call_resp",
        ControllerCallResponse {
            error: ErrorCode::TopicAlreadyExists,
            leader: None,
            message: Some(string("topic already exists")),
            value: 0,
            count: 0,
            version: 17,
        }
        .into(),
    );
    check_peer(
        "p_controller_fetch",
        ControllerFetchRequest {
            origin_node: 4,
            known_version: 16,
            max_wait_ms: 5000,
        }
        .into(),
    );
    check_peer_response(
        "p_controller_fetch_resp",
        ControllerFetchResponse {
            error: ErrorCode::None,
            leader: Some(2),
            version: 17,
            state: Bytes::from_static(b"state"),
        }
        .into(),
    );
}

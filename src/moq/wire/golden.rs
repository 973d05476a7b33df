//! Golden byte vectors written by hand from the draft-16 field tables (message layouts in
//! docs/PROTOCOL.md §3), never produced by our encoder, so a bug shared by encoder and decoder
//! cannot pass. Each control vector is decoded and compared with the expected value, then the
//! value is encoded and compared with the bytes.

use super::*;
use crate::moq::types::*;
use crate::moq::wire::control::FetchKind;

const V: Version = Version::Draft16;

fn ns_ec() -> TrackNamespace {
    TrackNamespace::from_strs(&["ec"])
}

fn track_t() -> FullTrackName {
    FullTrackName {
        namespace: ns_ec(),
        name: b"t".to_vec(),
    }
}

fn check(bytes: &[u8], expected: ControlMessage) {
    let (msg, used) = decode_control(V, bytes).expect("valid").expect("complete");
    assert_eq!(msg, expected);
    assert_eq!(used, bytes.len());
    let mut out = Vec::new();
    encode_control(V, &expected, &mut out).unwrap();
    assert_eq!(out, bytes, "encoding of {expected:?}");
    // Every strict prefix is incomplete, never an error or a different message.
    for n in 0..bytes.len() {
        assert_eq!(
            decode_control(V, &bytes[..n]),
            Ok(None),
            "prefix {n} of {expected:?}"
        );
    }
}

fn code_of(bytes: &[u8]) -> u64 {
    decode_control(V, bytes)
        .unwrap_err()
        .session_code()
        .unwrap()
}

#[test]
fn client_setup() {
    #[rustfmt::skip]
    let b = [
        0x20, 0x00, 0x0b,       // type CLIENT_SETUP, length 11
        0x03,                   // 3 parameters
        0x01, 0x01, 0x2f,       // delta 1 -> PATH (0x01), length 1, "/"
        0x01, 0x40, 0x64,       // delta 1 -> MAX_REQUEST_ID (0x02), 100
        0x05, 0x02, 0x65, 0x63, // delta 5 -> MOQT_IMPLEMENTATION (0x07), length 2, "ec"
    ];
    let p = SetupParams {
        path: Some(b"/".to_vec()),
        max_request_id: Some(100),
        implementation: Some(b"ec".to_vec()),
        ..Default::default()
    };
    check(&b, ControlMessage::ClientSetup(p));
}

#[test]
fn server_setup() {
    #[rustfmt::skip]
    let b = [
        0x21, 0x00, 0x03, // type SERVER_SETUP, length 3
        0x01,             // 1 parameter
        0x02, 0x01,       // delta 2 -> MAX_REQUEST_ID, 1
    ];
    check(
        &b,
        ControlMessage::ServerSetup(SetupParams {
            max_request_id: Some(1),
            ..Default::default()
        }),
    );
}

#[test]
fn goaway_max_request_id_requests_blocked() {
    check(
        &[0x10, 0x00, 0x01, /* uri length 0 */ 0x00],
        ControlMessage::Goaway { uri: vec![] },
    );
    check(
        &[0x10, 0x00, 0x03, /* uri length 2 */ 0x02, b'h', b'i'],
        ControlMessage::Goaway {
            uri: b"hi".to_vec(),
        },
    );
    check(
        &[
            0x15, 0x00, 0x02, /* max 64, two-byte varint */ 0x40, 0x40,
        ],
        ControlMessage::MaxRequestId(64),
    );
    check(
        &[0x1a, 0x00, 0x01, /* max 10 */ 0x0a],
        ControlMessage::RequestsBlocked(10),
    );
}

#[test]
fn subscribe_with_every_subscriber_parameter() {
    #[rustfmt::skip]
    let b = [
        0x03, 0x00, 0x15,                   // type SUBSCRIBE, length 21
        0x00,                               // request id 0
        0x01, 0x02, 0x65, 0x63,             // namespace: 1 field, "ec"
        0x01, 0x74,                         // name "t"
        0x04,                               // 4 parameters
        0x10, 0x01,                         // delta 0x10 -> FORWARD, 1
        0x10, 0x40, 0x80,                   // delta 0x10 -> SUBSCRIBER_PRIORITY (0x20), 128
        0x01, 0x04, 0x04, 0x05, 0x00, 0x09, // delta 1 -> SUBSCRIPTION_FILTER (0x21), length 4:
                                            //   AbsoluteRange, start {5, 0}, end group 9
        0x01, 0x01,                         // delta 1 -> GROUP_ORDER (0x22), ascending
    ];
    let params = MessageParams {
        forward: Some(true),
        subscriber_priority: Some(128),
        filter: Some(SubscriptionFilter::AbsoluteRange(
            Location::new(5, 0),
            GroupId(9),
        )),
        group_order: Some(GroupOrder::Ascending),
        ..Default::default()
    };
    check(
        &b,
        ControlMessage::Subscribe(Subscribe {
            request: RequestId(0),
            track: track_t(),
            params,
        }),
    );
}

#[test]
fn subscribe_filters_each_type() {
    // SUBSCRIBE req 2, ns "ec", name "t", one parameter SUBSCRIPTION_FILTER (0x21) with each type.
    let cases: [(&[u8], SubscriptionFilter); 3] = [
        (&[0x01], SubscriptionFilter::NextGroupStart),
        (&[0x02], SubscriptionFilter::LargestObject),
        (
            &[0x03, 0x07, 0x01],
            SubscriptionFilter::AbsoluteStart(Location::new(7, 1)),
        ),
    ];
    for (filter, expected) in cases {
        let mut b = vec![
            0x03,
            0x00,
            (10 + filter.len()) as u8,
            0x02,
            0x01,
            0x02,
            0x65,
            0x63,
            0x01,
            0x74,
            0x01,
            0x21,
        ];
        b.push(filter.len() as u8);
        b.extend_from_slice(filter);
        let params = MessageParams {
            filter: Some(expected),
            ..Default::default()
        };
        check(
            &b,
            ControlMessage::Subscribe(Subscribe {
                request: RequestId(2),
                track: track_t(),
                params,
            }),
        );
    }
}

#[test]
fn subscribe_ok_with_largest_and_extensions() {
    #[rustfmt::skip]
    let b = [
        0x04, 0x00, 0x0d,       // type SUBSCRIBE_OK, length 13
        0x00,                   // request id 0
        0x07,                   // track alias 7
        0x02,                   // 2 parameters
        0x08, 0x00,             // delta 8 -> EXPIRES, 0
        0x01, 0x02, 0x0c, 0x00, // delta 1 -> LARGEST_OBJECT (0x09), length 2, {12, 0}
        0x0e, 0x20,             // extension: delta 0x0e -> DEFAULT_PUBLISHER_PRIORITY, 32
        0x14, 0x01,             // extension: delta 0x14 -> 0x22 DEFAULT_PUBLISHER_GROUP_ORDER, 1
    ];
    let ok = SubscribeOk {
        request: RequestId(0),
        alias: TrackAlias(7),
        params: MessageParams {
            expires: Some(0),
            largest_object: Some(Location::new(12, 0)),
            ..Default::default()
        },
        extensions: vec![KeyValue::int(0x0e, 0x20), KeyValue::int(0x22, 1)],
    };
    check(&b, ControlMessage::SubscribeOk(ok));
}

#[test]
fn subscribe_ok_with_every_publisher_parameter() {
    #[rustfmt::skip]
    let b = [
        0x04, 0x00, 0x14,       // type SUBSCRIBE_OK, length 20
        0x02,                   // request id 2
        0x00,                   // track alias 0
        0x07,                   // 7 parameters
        0x02, 0x40, 0xc8,       // delta 2 -> DELIVERY_TIMEOUT, 200
        0x02, 0x0a,             // delta 2 -> MAX_CACHE_DURATION (0x04), 10
        0x04, 0x00,             // delta 4 -> EXPIRES (0x08), 0
        0x01, 0x02, 0x03, 0x00, // delta 1 -> LARGEST_OBJECT (0x09), length 2, {3, 0}
        0x05, 0x20,             // delta 5 -> PUBLISHER_PRIORITY (0x0E), 32
        0x14, 0x02,             // delta 0x14 -> GROUP_ORDER (0x22), descending
        0x0e, 0x01,             // delta 0x0e -> DYNAMIC_GROUPS (0x30), 1
    ];
    let params = MessageParams {
        delivery_timeout: Some(200),
        max_cache_duration: Some(10),
        expires: Some(0),
        largest_object: Some(Location::new(3, 0)),
        publisher_priority: Some(32),
        group_order: Some(GroupOrder::Descending),
        dynamic_groups: Some(1),
        ..Default::default()
    };
    let ok = SubscribeOk {
        request: RequestId(2),
        alias: TrackAlias(0),
        params,
        extensions: vec![],
    };
    check(&b, ControlMessage::SubscribeOk(ok));
}

#[test]
fn request_update_unsubscribe_publish_done() {
    #[rustfmt::skip]
    let b = [
        0x02, 0x00, 0x05, // type REQUEST_UPDATE, length 5
        0x02,             // request id 2
        0x00,             // existing request id 0
        0x01, 0x10, 0x00, // 1 parameter: FORWARD 0
    ];
    let params = MessageParams {
        forward: Some(false),
        ..Default::default()
    };
    check(
        &b,
        ControlMessage::RequestUpdate {
            request: RequestId(2),
            existing: RequestId(0),
            params,
        },
    );
    check(
        &[0x0a, 0x00, 0x01, /* request id */ 0x00],
        ControlMessage::Unsubscribe {
            request: RequestId(0),
        },
    );
    #[rustfmt::skip]
    let b = [
        0x0b, 0x00, 0x06, // type PUBLISH_DONE, length 6
        0x00,             // request id 0
        0x03,             // status SUBSCRIPTION_ENDED
        0x05,             // stream count 5
        0x02, 0x6f, 0x6b, // reason "ok"
    ];
    check(
        &b,
        ControlMessage::PublishDone {
            request: RequestId(0),
            status: 3,
            stream_count: 5,
            reason: "ok".into(),
        },
    );
}

#[test]
fn namespace_messages() {
    #[rustfmt::skip]
    let b = [
        0x06, 0x00, 0x09,                         // type PUBLISH_NAMESPACE, length 9
        0x01,                                     // request id 1
        0x02, 0x02, 0x65, 0x63, 0x02, 0x61, 0x62, // namespace ("ec", "ab")
        0x00,                                     // 0 parameters
    ];
    let namespace = TrackNamespace::from_strs(&["ec", "ab"]);
    check(
        &b,
        ControlMessage::PublishNamespace {
            request: RequestId(1),
            namespace,
            params: MessageParams::default(),
        },
    );
    check(
        &[0x09, 0x00, 0x01, /* request id */ 0x01],
        ControlMessage::PublishNamespaceDone {
            request: RequestId(1),
        },
    );
    check(
        &[
            0x0c, 0x00, 0x03, /* request id */ 0x01, /* code DOES_NOT_EXIST */ 0x10,
            /* empty reason */ 0x00,
        ],
        ControlMessage::PublishNamespaceCancel {
            request: RequestId(1),
            code: 0x10,
            reason: String::new(),
        },
    );
    #[rustfmt::skip]
    let b = [
        0x11, 0x00, 0x07,       // type SUBSCRIBE_NAMESPACE, length 7
        0x02,                   // request id 2
        0x01, 0x02, 0x65, 0x63, // prefix ("ec")
        0x01,                   // options: NAMESPACE
        0x00,                   // 0 parameters
    ];
    check(
        &b,
        ControlMessage::SubscribeNamespace {
            request: RequestId(2),
            prefix: ns_ec(),
            options: 1,
            params: MessageParams::default(),
        },
    );
    let ab = TrackNamespace::from_strs(&["ab"]);
    check(
        &[
            0x08, 0x00, 0x04, /* suffix ("ab") */ 0x01, 0x02, 0x61, 0x62,
        ],
        ControlMessage::Namespace { suffix: ab.clone() },
    );
    check(
        &[
            0x0e, 0x00, 0x04, /* suffix ("ab") */ 0x01, 0x02, 0x61, 0x62,
        ],
        ControlMessage::NamespaceDone { suffix: ab },
    );
}

#[test]
fn request_ok_and_error() {
    check(
        &[
            0x07, 0x00, 0x02, /* request id */ 0x01, /* 0 parameters */ 0x00,
        ],
        ControlMessage::RequestOk {
            request: RequestId(1),
            params: MessageParams::default(),
        },
    );
    #[rustfmt::skip]
    let b = [
        0x07, 0x00, 0x06,       // type REQUEST_OK, length 6
        0x01,                   // request id 1
        0x01,                   // 1 parameter
        0x09, 0x02, 0x03, 0x00, // delta 9 -> LARGEST_OBJECT, length 2, {3, 0}
    ];
    let params = MessageParams {
        largest_object: Some(Location::new(3, 0)),
        ..Default::default()
    };
    check(
        &b,
        ControlMessage::RequestOk {
            request: RequestId(1),
            params,
        },
    );
    #[rustfmt::skip]
    let b = [
        0x05, 0x00, 0x06, // type REQUEST_ERROR, length 6
        0x02,             // request id 2
        0x10,             // code DOES_NOT_EXIST
        0x00,             // retry interval 0: do not retry
        0x02, 0x6e, 0x6f, // reason "no"
    ];
    check(
        &b,
        ControlMessage::RequestError {
            request: RequestId(2),
            code: 0x10,
            retry_interval: 0,
            reason: "no".into(),
        },
    );
}

#[test]
fn fetch_each_type_and_fetch_ok_cancel() {
    #[rustfmt::skip]
    let b = [
        0x16, 0x00, 0x0f,       // type FETCH, length 15
        0x04,                   // request id 4
        0x01,                   // fetch type Standalone
        0x01, 0x02, 0x65, 0x63, // namespace ("ec")
        0x01, 0x74,             // name "t"
        0x01, 0x00,             // start {1, 0}
        0x03, 0x00,             // end {3, 0}
        0x01, 0x20, 0x01,       // 1 parameter: delta 0x20 -> SUBSCRIBER_PRIORITY, 1
    ];
    let kind = FetchKind::Standalone {
        track: track_t(),
        start: Location::new(1, 0),
        end: Location::new(3, 0),
    };
    let params = MessageParams {
        subscriber_priority: Some(1),
        ..Default::default()
    };
    check(
        &b,
        ControlMessage::Fetch {
            request: RequestId(4),
            kind,
            params,
        },
    );
    check(
        &[
            0x16, 0x00, 0x05, /* req */ 0x06, /* relative */ 0x02,
            /* joining req */ 0x00, /* offset */ 0x02, /* params */ 0x00,
        ],
        ControlMessage::Fetch {
            request: RequestId(6),
            kind: FetchKind::RelativeJoining {
                joining: RequestId(0),
                offset: 2,
            },
            params: MessageParams::default(),
        },
    );
    check(
        &[
            0x16, 0x00, 0x05, /* req */ 0x08, /* absolute */ 0x03,
            /* joining req */ 0x00, /* start */ 0x0a, /* params */ 0x00,
        ],
        ControlMessage::Fetch {
            request: RequestId(8),
            kind: FetchKind::AbsoluteJoining {
                joining: RequestId(0),
                start: 10,
            },
            params: MessageParams::default(),
        },
    );
    #[rustfmt::skip]
    let b = [
        0x18, 0x00, 0x05, // type FETCH_OK, length 5
        0x04,             // request id 4
        0x00,             // end of track: no
        0x03, 0x00,       // end location {3, 0}
        0x00,             // 0 parameters; no track extensions
    ];
    check(
        &b,
        ControlMessage::FetchOk {
            request: RequestId(4),
            end_of_track: false,
            end: Location::new(3, 0),
            params: MessageParams::default(),
            extensions: vec![],
        },
    );
    check(
        &[0x17, 0x00, 0x01, /* request id */ 0x04],
        ControlMessage::FetchCancel {
            request: RequestId(4),
        },
    );
}

#[test]
fn track_status_publish_publish_ok() {
    check(
        &[
            0x0d, 0x00, 0x08, /* req */ 0x0a, /* ns */ 0x01, 0x02, 0x65, 0x63,
            /* name */ 0x01, 0x74, /* params */ 0x00,
        ],
        ControlMessage::TrackStatus(Subscribe {
            request: RequestId(10),
            track: track_t(),
            params: MessageParams::default(),
        }),
    );
    #[rustfmt::skip]
    let b = [
        0x1d, 0x00, 0x09,       // type PUBLISH, length 9
        0x01,                   // request id 1
        0x01, 0x02, 0x65, 0x63, // namespace ("ec")
        0x01, 0x74,             // name "t"
        0x03,                   // track alias 3
        0x00,                   // 0 parameters, no extensions
    ];
    let ok = SubscribeOk {
        request: RequestId(1),
        alias: TrackAlias(3),
        params: MessageParams::default(),
        extensions: vec![],
    };
    check(
        &b,
        ControlMessage::Publish {
            request: RequestId(1),
            track: track_t(),
            ok,
        },
    );
    check(
        &[
            0x1e, 0x00, 0x04, /* req */ 0x01, /* 1 param: FORWARD 1 */ 0x01, 0x10, 0x01,
        ],
        ControlMessage::PublishOk {
            request: RequestId(1),
            params: MessageParams {
                forward: Some(true),
                ..Default::default()
            },
        },
    );
}

#[test]
fn malformed_control_messages_carry_draft_codes() {
    assert_eq!(code_of(&[0x3f, 0x00, 0x00]), 3, "unknown type");
    assert_eq!(
        code_of(&[0x0a, 0x00, 0x02, 0x00, 0x00]),
        3,
        "length longer than fields"
    );
    assert_eq!(
        code_of(&[0x0b, 0x00, 0x02, 0x00, 0x03]),
        3,
        "length shorter than fields"
    );
    assert_eq!(
        code_of(&[0x05, 0x00, 0x05, 0x02, 0x10, 0x00, 0x01, 0xff]),
        3,
        "reason not UTF-8"
    );
    assert_eq!(
        code_of(&[0x16, 0x00, 0x03, 0x04, 0x04, 0x00]),
        3,
        "unknown fetch type"
    );
    assert_eq!(
        code_of(&[0x18, 0x00, 0x05, 0x04, 0x02, 0x03, 0x00, 0x00]),
        3,
        "end of track 2"
    );
    // SUBSCRIBE with FORWARD = 5.
    let b = [
        0x03, 0x00, 0x0a, 0x00, 0x01, 0x02, 0x65, 0x63, 0x01, 0x74, 0x01, 0x10, 0x05,
    ];
    assert_eq!(code_of(&b), 6, "FORWARD 5 is a key-value formatting error");
    assert_eq!(
        decode_control(V, &[0x0a, 0x00, 0x01]),
        Ok(None),
        "incomplete frame waits"
    );
}

fn header(
    alias: u64,
    group: u64,
    subgroup: SubgroupIdMode,
    priority: Option<u8>,
    ext: bool,
    eog: bool,
) -> DataItem {
    DataItem::SubgroupHeader(SubgroupHeader {
        alias: TrackAlias(alias),
        group: GroupId(group),
        subgroup,
        priority,
        has_extensions: ext,
        end_of_group: eog,
    })
}

fn object(
    group: u64,
    subgroup: Option<u64>,
    id: u64,
    priority: Option<u8>,
    status: ObjectStatus,
    payload: &[u8],
) -> DataItem {
    DataItem::Object(DataObject {
        group: GroupId(group),
        subgroup: subgroup.map(SubgroupId),
        object: ObjectId(id),
        priority,
        extensions: vec![],
        status,
        payload: payload.to_vec(),
    })
}

fn stream(bytes: &[u8]) -> Result<Vec<DataItem>, MoqError> {
    decode_data_stream(V, bytes, 1 << 20)
}

#[test]
fn subgroup_stream_type_0x18_one_object() {
    #[rustfmt::skip]
    let b = [
        0x18, 0x07, 0x0c, 0x80, // type 0x18 (subgroup 0, end of group, priority), alias 7, group 12, priority 128
        0x00, 0x03, b'a', b'b', b'c', // object delta 0 -> id 0, length 3, "abc"
    ];
    assert_eq!(
        stream(&b).unwrap(),
        vec![
            header(7, 12, SubgroupIdMode::Zero, Some(128), false, true),
            object(12, Some(0), 0, Some(128), ObjectStatus::Normal, b"abc")
        ]
    );
    let mut out = Vec::new();
    let SubgroupHeader { .. } = match &stream(&b).unwrap()[0] {
        DataItem::SubgroupHeader(h) => {
            data::encode_subgroup_header(V, h, &mut out);
            *h
        }
        _ => unreachable!("first item is the header"),
    };
    data::encode_subgroup_object_head(V, 0, None, ObjectStatus::Normal, 3, &mut out);
    out.extend_from_slice(b"abc");
    assert_eq!(out, b);
}

#[test]
fn subgroup_stream_type_0x3d_extensions_explicit_subgroup_status() {
    #[rustfmt::skip]
    let b = [
        0x3d, 0x07, 0x0c, 0x05, // type 0x3D (extensions, explicit subgroup, end of group, no priority), alias 7, group 12, subgroup 5
        0x02,                   // object delta 2 -> id 2
        0x02, 0x02, 0x07,       // extension block length 2: delta 2 -> type 2, value 7
        0x01, b'x',             // length 1, "x"
        0x00,                   // object delta 0 -> id 3
        0x00,                   // empty extension block
        0x00, 0x03,             // length 0, status END_OF_GROUP
    ];
    let mut first = object(12, Some(5), 2, None, ObjectStatus::Normal, b"x");
    if let DataItem::Object(o) = &mut first {
        o.extensions = vec![KeyValue::int(2, 7)];
    }
    assert_eq!(
        stream(&b).unwrap(),
        vec![
            header(
                7,
                12,
                SubgroupIdMode::Explicit(SubgroupId(5)),
                None,
                true,
                true
            ),
            first,
            object(12, Some(5), 3, None, ObjectStatus::EndOfGroup, b"")
        ]
    );
}

#[test]
fn subgroup_stream_type_0x12_subgroup_from_first_object() {
    #[rustfmt::skip]
    let b = [
        0x12, 0x01, 0x02, 0xff, // type 0x12 (subgroup = first object id, priority), alias 1, group 2, priority 255
        0x04, 0x01, b'A',       // delta 4 -> id 4, "A"
        0x00, 0x01, b'B',       // delta 0 -> id 5, "B"
    ];
    assert_eq!(
        stream(&b).unwrap(),
        vec![
            header(1, 2, SubgroupIdMode::FirstObject, Some(255), false, false),
            object(2, Some(4), 4, Some(255), ObjectStatus::Normal, b"A"),
            object(2, Some(4), 5, Some(255), ObjectStatus::Normal, b"B")
        ]
    );
}

#[test]
fn all_24_subgroup_header_types() {
    let valid: Vec<u64> = (0x10..=0x15)
        .chain(0x18..=0x1d)
        .chain(0x30..=0x35)
        .chain(0x38..=0x3d)
        .collect();
    assert_eq!(valid.len(), 24);
    for t in 0u64..0x40 {
        // Fields by the table: alias 1, group 2, subgroup 3 if mode 2, priority 9 unless bit 0x20.
        let mut b = vec![t as u8, 0x01, 0x02];
        if t & 0x06 == 0x04 {
            b.push(0x03);
        }
        if t & 0x20 == 0 {
            b.push(0x09);
        }
        let res = stream(&b);
        if valid.contains(&t) {
            let items = res.unwrap_or_else(|e| panic!("type 0x{t:x}: {e}"));
            let DataItem::SubgroupHeader(h) = &items[0] else {
                panic!("header expected")
            };
            assert_eq!(h.type_code(), t);
            assert_eq!(h.has_extensions, t & 0x01 != 0);
            assert_eq!(h.end_of_group, t & 0x08 != 0);
            assert_eq!(h.priority, (t & 0x20 == 0).then_some(9));
        } else if t != 0x05 {
            assert_eq!(
                res.unwrap_err().session_code(),
                Some(3),
                "type 0x{t:x} must be refused"
            );
        }
    }
}

#[test]
fn fetch_stream_with_compact_flags_end_of_range_and_datagram_object() {
    #[rustfmt::skip]
    let b = [
        0x05, 0x04,                   // FETCH_HEADER, request id 4
        0x1c, 0x01, 0x00, 0x80,       // flags 0x1C: group 1, subgroup 0, object 0, priority 128
        0x02, b'h', b'i',             //   length 2, "hi"
        0x00,                         // flags 0x00: same group, subgroup 0, object prior+1 = 1, same priority
        0x01, b'!',                   //   length 1, "!"
        0x0c, 0x02, 0x00,             // flags 0x0C: group 2, object 0
        0x00,                         //   length 0: empty payload (fetch objects carry no status)
        0x23, 0x07,                   // flags 0x23: extensions, explicit subgroup 7, object prior+1 = 1
        0x02, 0x02, 0x04,             //   extension block length 2: type 2, value 4
        0x01, b'z',                   //   length 1, "z"
        0x40, 0x8c, 0x05, 0x00,       // flags 0x8C (two-byte varint): end of non-existent range at {5, 0}
        0x40, 0x4c, 0x06, 0x01,       // flags 0x4C: datagram object, group 6, object 1
        0x00,                         //   length 0
    ];
    let mut ext = object(2, Some(7), 1, Some(128), ObjectStatus::Normal, b"z");
    if let DataItem::Object(o) = &mut ext {
        o.extensions = vec![KeyValue::int(2, 4)];
    }
    assert_eq!(
        stream(&b).unwrap(),
        vec![
            DataItem::FetchHeader(RequestId(4)),
            object(1, Some(0), 0, Some(128), ObjectStatus::Normal, b"hi"),
            object(1, Some(0), 1, Some(128), ObjectStatus::Normal, b"!"),
            object(2, Some(0), 0, Some(128), ObjectStatus::Normal, b""),
            ext,
            DataItem::EndOfRange {
                end: Location::new(5, 0),
                unknown: false
            },
            object(6, None, 1, Some(128), ObjectStatus::Normal, b""),
        ]
    );
    // Our encoder's explicit form (flags 0x1F) decodes to the same first object.
    let mut out = Vec::new();
    data::encode_fetch_header(V, RequestId(4), &mut out);
    data::encode_fetch_object_head(V, GroupId(1), SubgroupId(0), ObjectId(0), 128, 2, &mut out);
    out.extend_from_slice(b"hi");
    #[rustfmt::skip]
    let explicit = [0x05, 0x04, 0x1f, 0x01, 0x00, 0x00, 0x80, 0x02, b'h', b'i'];
    assert_eq!(out, explicit);
}

#[test]
fn malformed_data_streams_are_protocol_violations() {
    let pv = |b: &[u8]| stream(b).unwrap_err().session_code();
    assert_eq!(
        pv(&[0x16, 0x01, 0x02, 0x09]),
        Some(3),
        "reserved subgroup id mode"
    );
    assert_eq!(
        pv(&[0x18, 0x01, 0x02, 0x09, 0x00, 0x00, 0x01]),
        Some(3),
        "status 1 is draft-14 only"
    );
    assert_eq!(
        pv(&[0x05, 0x04, 0x00, 0x00]),
        Some(3),
        "first fetch object refers to a prior one"
    );
    assert_eq!(
        pv(&[0x05, 0x04, 0x40, 0x80]),
        Some(3),
        "fetch flags 0x80 are unassigned"
    );
    assert_eq!(
        pv(&[0x19, 0x01, 0x02, 0x09, 0x00, 0x01, 0x02, 0x00]),
        Some(6),
        "truncated extension pair"
    );
    assert_eq!(
        pv(&[0x39, 0x01, 0x02, 0x00, 0x02, 0x02, 0x07, 0x00, 0x03]),
        Some(3),
        "status object with extensions"
    );
    // A payload length above the limit is refused before any payload byte arrives.
    assert_eq!(
        decode_data_stream(V, &[0x18, 0x01, 0x02, 0x09, 0x00, 0x44, 0x00], 16)
            .unwrap_err()
            .session_code(),
        Some(3)
    );
}

#[test]
fn datagrams() {
    #[rustfmt::skip]
    let b = [0x00, 0x02, 0x03, 0x04, 0x10, b'a', b'b']; // type 0, alias 2, group 3, object 4, priority 16, payload "ab"
    let d = decode_datagram(V, &b).unwrap();
    assert_eq!((d.alias, d.end_of_group), (TrackAlias(2), false));
    assert_eq!(
        d.object,
        match object(3, None, 4, Some(16), ObjectStatus::Normal, b"ab") {
            DataItem::Object(o) => o,
            _ => unreachable!("built as an object"),
        }
    );
    // type 0x2C: status, object id 0 omitted, priority omitted; alias 2, group 3, status END_OF_TRACK.
    let d = decode_datagram(V, &[0x2c, 0x02, 0x03, 0x04]).unwrap();
    assert_eq!(
        (d.object.object, d.object.status, d.object.priority),
        (ObjectId(0), ObjectStatus::EndOfTrack, None)
    );
    assert_eq!(
        decode_datagram(V, &[0x22, 0x02, 0x03, 0x04, 0x10, 0x03])
            .unwrap_err()
            .session_code(),
        Some(3)
    );
    assert_eq!(
        decode_datagram(V, &[0x10, 0x02, 0x03])
            .unwrap_err()
            .session_code(),
        Some(3)
    );
}

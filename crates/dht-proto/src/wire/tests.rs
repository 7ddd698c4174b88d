//! Codec tests: byte-exact examples, receiver rules, round trips and hostile input.

use super::*;
use crate::InfoHash;
use crate::msgpack::write;
use crate::prelude::*;
use crate::value::tests::arb_value;
use crate::value::{Field, FieldRow, FieldValue, Query, Select, Value, Where};
use core::net::SocketAddr;
use proptest::prelude::*;
use std::string::ToString;

fn id() -> InfoHash {
    let mut b = [0u8; 20];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8 + 1;
    }
    InfoHash(b)
}

fn hex(s: &str) -> Vec<u8> {
    let id_hex: String = id().to_string();
    let s = s.replace("01…14", &id_hex).replace(' ', "");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn spec_example_ping() {
    let bytes = hex(
        "85 a1 61 81 a2 69 64 c4 14 01…14 a1 71 a4 70 69 6e 67 a1 74 ce 12 34 56 78 a1 79 a1 71 a1 76 a2 6f 32",
    );
    let msg = Message::request(0x12345678, id(), RequestKind::Ping);
    assert_eq!(msg.encode_to_vec(), bytes);
    assert_eq!(decode(&bytes).unwrap(), msg);
}

#[test]
fn spec_example_pong() {
    let bytes = hex(
        "84 a1 72 82 a2 69 64 c4 14 01…14 a2 73 61 c4 04 c0 00 02 07 a1 74 ce 12 34 56 78 a1 79 a1 72 a1 76 a2 6f 32",
    );
    let msg = Message::reply(
        0x12345678,
        Reply {
            id: id(),
            addr: Some("192.0.2.7".parse().unwrap()),
            ..Reply::default()
        },
    );
    assert_eq!(msg.encode_to_vec(), bytes);
    assert_eq!(decode(&bytes).unwrap(), msg);
}

#[test]
fn spec_example_value_data() {
    let bytes = hex("83 a1 79 a1 70 a1 74 07 a1 70 81 00 82 a1 6f 00 a1 64 c4 02 82 a2");
    let msg = Message {
        tid: 7,
        network: 0,
        is_client: false,
        body: Body::ValueData(vec![ValuePart {
            index: 0,
            offset: 0,
            data: vec![0x82, 0xa2],
        }]),
    };
    assert_eq!(msg.encode_to_vec(), bytes);
    assert_eq!(decode(&bytes).unwrap(), msg);
}

#[test]
fn spec_example_error() {
    let mut s = String::from("85 a1 65 92 cd 01 91 b8 ");
    for b in b"Put with incorrect token" {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(" a1 72 81 a2 69 64 c4 14 01…14 a1 74 07 a1 79 a1 65 a1 76 a2 6f 32");
    let bytes = hex(&s);
    let msg = Message::error(7, id(), ErrorCode::UNAUTHORIZED, "Put with incorrect token");
    assert_eq!(msg.encode_to_vec(), bytes);
    assert_eq!(decode(&bytes).unwrap(), msg);
}

/// Builds a top-level map from (key, encoded value) pairs.
fn raw_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    write::map(&mut out, entries.len() as u32);
    for (k, v) in entries {
        write::str(&mut out, k);
        out.extend_from_slice(v);
    }
    out
}

fn enc_str(s: &str) -> Vec<u8> {
    let mut o = Vec::new();
    write::str(&mut o, s);
    o
}

fn enc_uint(v: u64) -> Vec<u8> {
    let mut o = Vec::new();
    write::uint(&mut o, v);
    o
}

fn enc_bin(b: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    write::bin(&mut o, b);
    o
}

fn body(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    raw_map(entries)
}

#[test]
fn classification_follows_key_presence() {
    let a = body(&[("id", enc_bin(id().as_bytes()))]);
    // "e" wins over "r", which wins over "p".
    let mut e = Vec::new();
    write::array(&mut e, 1);
    write::uint(&mut e, 404);
    let msg = raw_map(&[("r", a.clone()), ("e", e.clone()), ("t", enc_uint(1))]);
    match decode(&msg).unwrap().body {
        Body::Error(err) => {
            assert_eq!(err.code, 404);
            assert_eq!(err.id, id());
        }
        other => panic!("{other:?}"),
    }
    // Keys in any order; unknown and non-str keys ignored.
    let mut odd = Vec::new();
    write::map(&mut odd, 5);
    write::uint(&mut odd, 99);
    write::uint(&mut odd, 1);
    write::str(&mut odd, "zz");
    write::array(&mut odd, 0);
    write::str(&mut odd, "t");
    write::uint(&mut odd, 5);
    write::str(&mut odd, "q");
    write::str(&mut odd, "ping");
    write::str(&mut odd, "a");
    odd.extend_from_slice(&a);
    let m = decode(&odd).unwrap();
    assert_eq!(m, Message::request(5, id(), RequestKind::Ping));
    // y other than q on a request: rejected. Unknown q: rejected.
    let bad_y = raw_map(&[("a", a.clone()), ("q", enc_str("ping")), ("y", enc_str("x"))]);
    assert_eq!(decode(&bad_y), Err(DecodeError::UnknownKind));
    let bad_q = raw_map(&[("a", a.clone()), ("q", enc_str("frobnicate"))]);
    assert_eq!(decode(&bad_q), Err(DecodeError::UnknownKind));
    // q must be a str.
    let q_int = raw_map(&[("a", a.clone()), ("q", enc_uint(1))]);
    assert!(matches!(
        decode(&q_int),
        Err(DecodeError::WrongType { field: "q", .. })
    ));
    // No body at all.
    assert_eq!(
        decode(&raw_map(&[("q", enc_str("ping"))])),
        Err(DecodeError::NoBody)
    );
    // A non-string "v" rejects the whole message.
    let v_int = raw_map(&[("a", a.clone()), ("q", enc_str("ping")), ("v", enc_uint(2))]);
    assert!(decode(&v_int).is_err());
    // A legacy 4-byte tid.
    let legacy = raw_map(&[
        ("a", a.clone()),
        ("q", enc_str("ping")),
        ("t", enc_bin(&[0, 0, 1, 2])),
    ]);
    assert_eq!(decode(&legacy).unwrap().tid, 0x0102);
    // Empty error array; non-map body; non-map top level.
    let mut empty_e = Vec::new();
    write::array(&mut empty_e, 0);
    assert!(decode(&raw_map(&[("e", empty_e)])).is_err());
    assert!(decode(&raw_map(&[("a", enc_uint(1)), ("q", enc_str("ping"))])).is_err());
    assert!(decode(&enc_uint(1)).is_err());
    assert_eq!(decode(&[]), Err(DecodeError::Truncated));
}

#[test]
fn body_field_rules() {
    let q = enc_str("get");
    // Bad id length and type.
    let short = raw_map(&[("a", body(&[("id", enc_bin(&[1; 19]))])), ("q", q.clone())]);
    assert_eq!(
        decode(&short),
        Err(DecodeError::BadIdLength { field: "id", len: 19 })
    );
    let strid = raw_map(&[("a", body(&[("id", enc_str("x"))])), ("q", q.clone())]);
    assert!(matches!(
        decode(&strid),
        Err(DecodeError::WrongType { field: "id", .. })
    ));
    // A get with no h decodes with a zero key (the node answers 203).
    let no_h = raw_map(&[("a", body(&[("id", enc_bin(id().as_bytes()))])), ("q", q.clone())]);
    match decode(&no_h).unwrap().body {
        Body::Request(Request {
            kind: RequestKind::Get { key, .. },
            ..
        }) => assert!(key.is_zero()),
        other => panic!("{other:?}"),
    }
    // sa: non-bin rejects, odd length is ignored.
    let r = |sa: Vec<u8>| raw_map(&[("r", body(&[("id", enc_bin(id().as_bytes())), ("sa", sa)]))]);
    assert!(decode(&r(enc_str("1.2.3.4"))).is_err());
    match decode(&r(enc_bin(&[1, 2, 3]))).unwrap().body {
        Body::Reply(reply) => assert_eq!(reply.addr, None),
        other => panic!("{other:?}"),
    }
    // n4 of a bad length.
    let bad_n4 = raw_map(&[(
        "r",
        body(&[("id", enc_bin(id().as_bytes())), ("n4", enc_bin(&[0; 27]))]),
    )]);
    assert!(matches!(
        decode(&bad_n4),
        Err(DecodeError::BadNodeListLength { .. })
    ));
    // want: 2 and any IPv6 family number, non-ints ignored; absent = None.
    let mut w = Vec::new();
    write::array(&mut w, 3);
    write::uint(&mut w, 30);
    write::str(&mut w, "x");
    write::uint(&mut w, 2);
    let find = raw_map(&[
        (
            "a",
            body(&[
                ("id", enc_bin(id().as_bytes())),
                ("target", enc_bin(&[3; 20])),
                ("w", w),
            ]),
        ),
        ("q", enc_str("find")),
    ]);
    match decode(&find).unwrap().body {
        Body::Request(Request {
            kind: RequestKind::Find { want, .. },
            ..
        }) => {
            assert_eq!(want, Some(Want::BOTH))
        }
        other => panic!("{other:?}"),
    }
    // Token as an int array.
    let mut tok = Vec::new();
    write::array(&mut tok, 2);
    write::uint(&mut tok, 7);
    write::uint(&mut tok, 8);
    let reply = raw_map(&[("r", body(&[("id", enc_bin(id().as_bytes())), ("token", tok)]))]);
    match decode(&reply).unwrap().body {
        Body::Reply(r) => assert_eq!(r.token, Some(vec![7, 8].into())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn values_array_rules() {
    let good = Value::new(5, b"ok".to_vec());
    let mut values = Vec::new();
    write::array(&mut values, 3);
    good.encode(&mut values);
    // A map that is not a value is skipped.
    write::map(&mut values, 1);
    write::str(&mut values, "id");
    write::uint(&mut values, 1);
    good.encode(&mut values);
    let m = raw_map(&[("r", body(&[("id", enc_bin(id().as_bytes())), ("values", values)]))]);
    match decode(&m).unwrap().body {
        Body::Reply(r) => assert_eq!(
            r.values,
            Some(Values::Inline(vec![good.clone(), good.clone()].into()))
        ),
        other => panic!("{other:?}"),
    }
    // "values" must be an array.
    let m = raw_map(&[(
        "r",
        body(&[("id", enc_bin(id().as_bytes())), ("values", enc_uint(3))]),
    )]);
    assert!(decode(&m).is_err());
    // Sizes.
    let mut sizes = Vec::new();
    write::array(&mut sizes, 2);
    write::uint(&mut sizes, 700);
    write::uint(&mut sizes, 70_000);
    let m = raw_map(&[("r", body(&[("id", enc_bin(id().as_bytes())), ("values", sizes)]))]);
    match decode(&m).unwrap().body {
        Body::Reply(r) => assert_eq!(r.values, Some(Values::Sizes(vec![700, 70_000]))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fields_reply_rules() {
    let rows = FieldRows {
        fields: vec![Field::Id, Field::OwnerPk, Field::UserType],
        rows: vec![
            FieldRow {
                values: vec![
                    FieldValue::Id(1),
                    FieldValue::OwnerPk(InfoHash::get("k")),
                    FieldValue::UserType(b"t".to_vec()),
                ],
            },
            FieldRow {
                values: vec![
                    FieldValue::Id(2),
                    FieldValue::OwnerPk(InfoHash::ZERO),
                    FieldValue::UserType(vec![]),
                ],
            },
        ],
    };
    let msg = Message::reply(
        3,
        Reply {
            id: id(),
            fields: Some(rows.clone()),
            ..Reply::default()
        },
    );
    assert_eq!(decode(&msg.encode_to_vec()).unwrap(), msg);
    // An owner sent as a full key (as OpenDHT does) is reduced to its short id.
    let mut f = Vec::new();
    write::map(&mut f, 2);
    write::str(&mut f, "f");
    write::array(&mut f, 1);
    write::uint(&mut f, 3);
    write::str(&mut f, "v");
    write::array(&mut f, 1);
    write::bin(&mut f, b"a long DER public key");
    let m = raw_map(&[("r", body(&[("id", enc_bin(id().as_bytes())), ("fileds", f)]))]);
    match decode(&m).unwrap().body {
        Body::Reply(r) => assert_eq!(
            r.fields.unwrap().rows[0].values,
            vec![FieldValue::OwnerPk(InfoHash::get(b"a long DER public key"))]
        ),
        other => panic!("{other:?}"),
    }
    // An empty selection is rejected.
    let mut f = Vec::new();
    write::map(&mut f, 2);
    write::str(&mut f, "f");
    write::array(&mut f, 0);
    write::str(&mut f, "v");
    write::array(&mut f, 0);
    let m = raw_map(&[("r", body(&[("id", enc_bin(id().as_bytes())), ("fileds", f)]))]);
    assert!(decode(&m).is_err());
}

#[test]
fn value_data_entry_without_d_is_ignored() {
    let mut p = Vec::new();
    write::map(&mut p, 2);
    write::uint(&mut p, 0);
    write::map(&mut p, 1);
    write::str(&mut p, "o");
    write::uint(&mut p, 0);
    write::uint(&mut p, 1);
    write::map(&mut p, 2);
    write::str(&mut p, "o");
    write::uint(&mut p, 0);
    write::str(&mut p, "d");
    write::bin(&mut p, b"x");
    let m = raw_map(&[("y", enc_str("p")), ("t", enc_uint(1)), ("p", p)]);
    assert_eq!(
        decode(&m).unwrap().body,
        Body::ValueData(vec![ValuePart {
            index: 1,
            offset: 0,
            data: b"x".to_vec()
        }])
    );
    // "p" must be a map.
    assert!(decode(&raw_map(&[("p", enc_uint(1))])).is_err());
}

#[test]
fn oversize_datagram_is_rejected() {
    let big = vec![0u8; MAX_DATAGRAM + 1];
    assert_eq!(decode(&big), Err(DecodeError::TooLarge(MAX_DATAGRAM + 1)));
}

// --- property tests ---------------------------------------------------------------------------

fn arb_hash() -> impl Strategy<Value = InfoHash> {
    any::<[u8; 20]>().prop_map(InfoHash)
}

fn arb_want() -> impl Strategy<Value = Option<Want>> {
    proptest::option::of((any::<bool>(), any::<bool>()).prop_map(|(a, b)| Want { ipv4: a, ipv6: b }))
}

fn arb_values() -> impl Strategy<Value = Values> {
    prop_oneof![
        proptest::collection::vec(arb_value(), 0..4).prop_map(|v| Values::Inline(v.into())),
        proptest::collection::vec(0u64..100_000, 1..6).prop_map(Values::Sizes),
    ]
}

fn arb_token() -> impl Strategy<Value = Token> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Token::from_vec)
}

fn arb_payload() -> impl Strategy<Value = UpdatePayload> {
    prop_oneof![
        (arb_values(), proptest::option::of(any::<i64>()))
            .prop_map(|(values, created)| UpdatePayload::Values { values, created }),
        proptest::collection::vec(any::<u64>(), 0..5).prop_map(UpdatePayload::Refreshed),
        proptest::collection::vec(any::<u64>(), 0..5).prop_map(UpdatePayload::Expired),
    ]
}

fn arb_kind() -> impl Strategy<Value = RequestKind> {
    prop_oneof![
        Just(RequestKind::Ping),
        (arb_hash(), arb_want()).prop_map(|(target, want)| RequestKind::Find { target, want }),
        (arb_hash(), crate::value::query::tests::arb_query(), arb_want())
            .prop_map(|(key, query, want)| RequestKind::Get { key, query, want }),
        (
            arb_hash(),
            arb_token(),
            any::<u32>(),
            proptest::option::of(0u32..3),
            crate::value::query::tests::arb_query()
        )
            .prop_map(
                |(key, token, sid, version, query)| RequestKind::Listen(ListenRequest {
                    key,
                    token,
                    sid,
                    version,
                    query
                })
            ),
        (
            arb_hash(),
            arb_values(),
            proptest::option::of(any::<i64>()),
            arb_token()
        )
            .prop_map(|(key, values, created, token)| RequestKind::Put(PutRequest {
                key,
                values,
                created,
                token
            })),
        (arb_hash(), any::<u64>(), arb_token()).prop_map(|(key, vid, token)| RequestKind::Refresh {
            key,
            vid,
            token
        }),
        (
            arb_hash(),
            any::<u32>(),
            proptest::option::of(0u32..3),
            proptest::option::of(arb_token()),
            arb_payload()
        )
            .prop_map(
                |(key, sid, version, token, payload)| RequestKind::Update(UpdateRequest {
                    key,
                    sid,
                    version,
                    token,
                    payload
                })
            ),
    ]
}

fn arb_node(v6: bool) -> impl Strategy<Value = NodeInfo> {
    (arb_hash(), any::<[u8; 16]>(), any::<u16>()).prop_map(move |(id, ip, port)| {
        let addr: SocketAddr = if v6 {
            (core::net::Ipv6Addr::from(ip), port).into()
        } else {
            (core::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]), port).into()
        };
        NodeInfo { id, addr }
    })
}

fn arb_rows() -> impl Strategy<Value = FieldRows> {
    (
        proptest::collection::btree_set(crate::value::query::tests::arb_field(), 1..5),
        any::<u64>(),
        0usize..4,
    )
        .prop_map(|(fields, seed, n)| {
            let fields: Vec<Field> = fields.into_iter().collect();
            let mut v = Value::new(seed, vec![]);
            v.user_type = format!("u{seed}");
            v.seq = seed as u16;
            v.owner = Some(seed.to_be_bytes().to_vec());
            let select = fields.iter().copied().fold(Select::all(), Select::field);
            let rows = (0..n).map(|_| select.project(&v)).collect();
            FieldRows { fields, rows }
        })
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    (
        arb_hash(),
        proptest::option::of(prop_oneof![
            any::<[u8; 4]>().prop_map(core::net::IpAddr::from),
            any::<[u8; 16]>().prop_map(core::net::IpAddr::from),
        ]),
        proptest::collection::vec(arb_node(false), 0..9),
        proptest::collection::vec(arb_node(true), 0..9),
        proptest::option::of(arb_token()),
        prop_oneof![
            Just((None, None)),
            arb_values().prop_map(|v| (Some(v), None)),
            arb_rows().prop_map(|f| (None, Some(f))),
        ],
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(id, addr, nodes4, nodes6, token, (values, fields), vid)| Reply {
            id,
            addr,
            nodes4: nodes4.into(),
            nodes6: nodes6.into(),
            token,
            values,
            fields,
            vid,
        })
}

pub(crate) fn arb_message() -> impl Strategy<Value = Message> {
    let body =
        prop_oneof![
            (arb_hash(), arb_kind()).prop_map(|(id, kind)| Body::Request(Request { id, kind })),
            arb_reply().prop_map(Body::Reply),
            (arb_hash(), any::<u16>(), "[ -~]{0,40}")
                .prop_map(|(id, code, message)| Body::Error(ErrorReply { id, code, message })),
            proptest::collection::vec(
                (
                    0u32..4,
                    any::<u32>(),
                    proptest::collection::vec(any::<u8>(), 1..64)
                )
                    .prop_map(|(index, offset, data)| ValuePart { index, offset, data }),
                0..4
            )
            .prop_map(|mut parts| {
                let mut seen = alloc::collections::BTreeSet::new();
                parts.retain(|p| seen.insert(p.index));
                Body::ValueData(parts)
            }),
            (arb_hash(), proptest::option::of(arb_token()), arb_payload())
                .prop_map(|(id, token, payload)| Body::LegacyUpdate(LegacyUpdate { id, token, payload })),
        ];
    (
        any::<u32>(),
        prop_oneof![Just(0u32), any::<u32>()],
        any::<bool>(),
        body,
    )
        .prop_map(|(tid, network, is_client, body)| Message {
            tid,
            network,
            is_client,
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip(m in arb_message()) {
        let bytes = m.encode_to_vec();
        prop_assert!(bytes.len() < MAX_DATAGRAM);
        prop_assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        m in arb_message(),
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = m.encode_to_vec();
        for (at, b) in &muts {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        let _ = decode(&bytes);
        let c = cut.index(bytes.len());
        let _ = decode(&bytes[..c]);
    }

    #[test]
    fn truncated_messages_are_errors(m in arb_message(), cut in any::<prop::sample::Index>()) {
        let bytes = m.encode_to_vec();
        let c = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..c]).is_err());
    }
}

#[test]
fn query_in_get_is_sent_only_when_non_empty() {
    let get = |query: Query| {
        Message::request(
            1,
            id(),
            RequestKind::Get {
                key: InfoHash::get("k"),
                query,
                want: None,
            },
        )
        .encode_to_vec()
    };
    let plain = get(Query::default());
    assert!(!plain.windows(3).any(|w| w == [0xa1, b'q', 0x82]));
    let with = get(Query::new(Select::all().field(Field::Id), Where::any()));
    assert!(with.len() > plain.len());
}

/// Every way a datagram can be wrong surfaces as its own variant.
#[test]
fn each_decode_error_is_reachable() {
    let idb = enc_bin(id().as_bytes());
    let get_with = |extra: (&str, Vec<u8>)| {
        raw_map(&[("a", body(&[("id", idb.clone()), extra])), ("q", enc_str("get"))])
    };
    // Truncated.
    assert_eq!(decode(&[0xde, 0x00]), Err(DecodeError::Truncated));
    assert!(matches!(decode(&[0x81]), Err(DecodeError::LengthTooLarge { .. })));
    // TooLarge.
    assert!(matches!(
        decode(&vec![0; MAX_DATAGRAM + 1]),
        Err(DecodeError::TooLarge(_))
    ));
    // WrongType.
    assert!(matches!(
        decode(&get_with(("h", enc_uint(1)))),
        Err(DecodeError::WrongType { field: "h", .. })
    ));
    // LengthTooLarge: a bin declaring more bytes than remain.
    assert!(matches!(
        decode(&get_with(("token", vec![0xc6, 0x7f, 0xff, 0xff, 0xff]))),
        Err(DecodeError::LengthTooLarge { .. })
    ));
    // TooDeep: a deep tower under an unknown key.
    let mut deep = vec![0x91u8; 100];
    deep.push(0xc0);
    assert_eq!(decode(&get_with(("zz", deep))), Err(DecodeError::TooDeep));
    // IntegerOutOfRange: a negative value id, a network id over u32.
    assert!(matches!(
        decode(&get_with(("vid", vec![0xff]))),
        Err(DecodeError::IntegerOutOfRange { .. })
    ));
    let mut big = Vec::new();
    write::uint(&mut big, 1 << 40);
    let m = raw_map(&[
        ("a", body(&[("id", idb.clone())])),
        ("q", enc_str("ping")),
        ("n", big),
    ]);
    assert_eq!(decode(&m), Err(DecodeError::IntegerOutOfRange { field: "n" }));
    // BadIdLength.
    assert!(matches!(
        decode(&get_with(("h", enc_bin(&[1; 21])))),
        Err(DecodeError::BadIdLength { .. })
    ));
    // BadNodeListLength.
    let m = raw_map(&[("r", body(&[("id", idb.clone()), ("n6", enc_bin(&[0; 39]))]))]);
    assert!(matches!(
        decode(&m),
        Err(DecodeError::BadNodeListLength { field: "n6", .. })
    ));
    // UnknownKind, NoBody.
    assert_eq!(
        decode(&raw_map(&[("q", enc_str("gte")), ("a", body(&[]))])),
        Err(DecodeError::UnknownKind)
    );
    assert_eq!(
        decode(&raw_map(&[("t", enc_uint(1))])),
        Err(DecodeError::UnknownKind)
    );
    assert_eq!(
        decode(&raw_map(&[("q", enc_str("get"))])),
        Err(DecodeError::NoBody)
    );
    // MissingField: a query without "w".
    let mut q = Vec::new();
    write::map(&mut q, 1);
    write::str(&mut q, "s");
    write::array(&mut q, 0);
    assert_eq!(
        decode(&get_with(("q", q))),
        Err(DecodeError::MissingField("query.w"))
    );
    // BadQuery: an unknown select field.
    let mut q = Vec::new();
    write::map(&mut q, 2);
    write::str(&mut q, "s");
    write::array(&mut q, 1);
    write::uint(&mut q, 9);
    write::str(&mut q, "w");
    write::array(&mut q, 0);
    assert!(matches!(
        decode(&get_with(("q", q))),
        Err(DecodeError::BadQuery(_))
    ));
    // BadValue: a values array mixing sizes and values.
    let mut vals = Vec::new();
    write::array(&mut vals, 2);
    write::uint(&mut vals, 700);
    Value::new(1, vec![1]).encode(&mut vals);
    assert!(matches!(
        decode(&get_with(("values", vals))),
        Err(DecodeError::BadValue(_))
    ));
}

#[test]
fn repeated_keys_first_wins() {
    let first = body(&[
        ("id", enc_bin(id().as_bytes())),
        ("h", enc_bin(&[1; 20])),
        ("h", enc_bin(&[2; 20])),
    ]);
    let m = raw_map(&[
        ("a", first),
        ("q", enc_str("get")),
        ("q", enc_str("ping")),
        ("t", enc_uint(1)),
        ("t", enc_uint(2)),
    ]);
    let msg = decode(&m).unwrap();
    assert_eq!(msg.tid, 1);
    match msg.body {
        Body::Request(Request {
            kind: RequestKind::Get { key, .. },
            ..
        }) => assert_eq!(key, InfoHash([1; 20])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_body_opendht_uses_is_checked() {
    // With both "a" and "r", OpenDHT classifies a reply but reads its fields from "a": a malformed
    // "r" placed first must not reject the message.
    let bad = body(&[("id", enc_bin(&[1; 19]))]);
    let good = body(&[("id", enc_bin(id().as_bytes()))]);
    let m = raw_map(&[("r", bad.clone()), ("a", good), ("t", enc_uint(3))]);
    match decode(&m).unwrap().body {
        Body::Reply(r) => assert_eq!(r.id, id()),
        other => panic!("{other:?}"),
    }
    // When the malformed body is the one used, the message is rejected.
    let m = raw_map(&[("r", bad), ("t", enc_uint(3))]);
    assert!(decode(&m).is_err());
}

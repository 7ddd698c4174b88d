//! Golden vectors: every datagram captured between real OpenDHT 2.4.12 nodes decodes to the
//! expected typed message, and every one a C++ node sent re-encodes byte for byte.

use std::collections::BTreeSet;

use dht_proto::value::{Field, Value};
use dht_proto::wire::fragment::{Progress, Reassembler};
use dht_proto::wire::{
    self, Body, ErrorCode, ListenRequest, Message, PutRequest, RequestKind, UpdatePayload, UpdateRequest,
    Values,
};
use dht_proto::{InfoHash, Instant};
use dht_tests::vectors::{Vector, opendht_2_4_12};

/// The raw client of the capture script; everything else is a C++ node.
const RAW_CLIENT_PORT: u16 = 4304;

fn decoded() -> Vec<(Vector, Message)> {
    opendht_2_4_12()
        .into_iter()
        .map(|v| {
            let m =
                wire::decode(&v.bytes).unwrap_or_else(|e| panic!("vector {} does not decode: {e}", v.index));
            (v, m)
        })
        .collect()
}

fn big_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + 7) % 256) as u8).collect()
}

#[test]
fn every_vector_decodes() {
    let all = decoded();
    assert!(all.len() > 200, "capture too small: {}", all.len());
}

/// OpenDHT 2.4.12 signs its messages `"v": "RNG1"`; we send `"o2"` as 4.x does. Everything else
/// must be identical.
fn with_user_agent(mut ours: Vec<u8>, theirs: &[u8]) -> Vec<u8> {
    let o2 = [0xa1, b'v', 0xa2, b'o', b'2'];
    let rng1 = [0xa1, b'v', 0xa4, b'R', b'N', b'G', b'1'];
    if theirs.windows(rng1.len()).any(|w| w == rng1)
        && let Some(p) = ours.windows(o2.len()).position(|w| w == o2)
    {
        ours.splice(p..p + o2.len(), rng1);
    }
    ours
}

#[test]
fn cpp_datagrams_re_encode_byte_for_byte() {
    let mut checked = 0;
    for (v, m) in decoded() {
        if v.from.port() == RAW_CLIENT_PORT {
            continue;
        }
        let ours = with_user_agent(m.encode_to_vec(), &v.bytes);
        assert_eq!(ours, v.bytes, "vector {} re-encodes differently: {m:?}", v.index);
        checked += 1;
    }
    assert!(checked > 200);
}

#[test]
fn capture_covers_every_message_kind() {
    let mut seen = BTreeSet::new();
    for (_, m) in decoded() {
        let tag = match &m.body {
            Body::Request(r) => match &r.kind {
                RequestKind::Ping => "ping",
                RequestKind::Find { .. } => "find",
                RequestKind::Get { query, .. } if query.select.fields() == [Field::Id] => "get select id",
                RequestKind::Get { query, .. } if !query.where_.is_empty() => "get where id",
                RequestKind::Get { .. } => "get",
                RequestKind::Listen(ListenRequest { version: Some(1), .. }) => "listen v1",
                RequestKind::Put(PutRequest {
                    values: Values::Inline(_),
                    ..
                }) => "put inline",
                RequestKind::Put(PutRequest {
                    values: Values::Sizes(_),
                    ..
                }) => "put fragmented",
                RequestKind::Refresh { .. } => "refresh",
                RequestKind::Update(UpdateRequest {
                    payload: UpdatePayload::Values { .. },
                    ..
                }) => "update values",
                RequestKind::Update(UpdateRequest {
                    payload: UpdatePayload::Refreshed(_),
                    ..
                }) => "update re",
                RequestKind::Update(_) => "update other",
                _ => "request other",
            },
            Body::Reply(r) => {
                if !r.nodes4.is_empty() {
                    seen.insert("reply n4");
                }
                if !r.nodes6.is_empty() {
                    seen.insert("reply n6");
                }
                if r.token.is_some() {
                    seen.insert("reply token");
                }
                if r.vid.is_some() {
                    seen.insert("reply vid");
                }
                if r.fields.is_some() {
                    seen.insert("reply fields");
                }
                match &r.values {
                    Some(Values::Inline(v)) if !v.is_empty() => "reply values inline",
                    Some(Values::Sizes(_)) => "reply values fragmented",
                    _ => "reply",
                }
            }
            Body::Error(e) => match e.code {
                ErrorCode::UNAUTHORIZED => "error 401",
                ErrorCode::NOT_FOUND => "error 404",
                ErrorCode::NON_AUTHORITATIVE_INFORMATION => "error 203",
                _ => "error other",
            },
            Body::ValueData(_) => "value data",
            _ => "other",
        };
        seen.insert(tag);
    }
    for want in [
        "ping",
        "find",
        "get select id",
        "get where id",
        "listen v1",
        "put inline",
        "put fragmented",
        "refresh",
        "update values",
        "update re",
        "reply",
        "reply n4",
        "reply n6",
        "reply token",
        "reply vid",
        "reply fields",
        "reply values inline",
        "reply values fragmented",
        "value data",
        "error 401",
        "error 404",
        "error 203",
    ] {
        assert!(seen.contains(want), "capture has no {want}; seen {seen:?}");
    }
}

#[test]
fn error_replies_say_what_opendht_says() {
    let errors: Vec<_> = decoded()
        .into_iter()
        .filter_map(|(_, m)| match m.body {
            Body::Error(e) => Some((e.code, e.message, e.id)),
            _ => None,
        })
        .collect();
    let has = |code: u16, text: &str| {
        errors
            .iter()
            .any(|(c, m, id)| *c == code && m == text && !id.is_zero())
    };
    // OpenDHT 2.4.12's texts; 4.x rewords two of them ("Put with incorrect token", "… invalid ID").
    assert!(has(401, "Put with wrong token"), "{errors:?}");
    assert!(has(203, "Get_values with no info_hash"), "{errors:?}");
    assert!(has(203, "Put with invalid id"), "{errors:?}");
    assert!(has(404, "Access operation for unknown storage"), "{errors:?}");
}

#[test]
fn small_value_travels_inline() {
    let key = InfoHash::get("golden-small");
    let found = decoded().into_iter().any(|(_, m)| match m.body {
        Body::Request(r) => match r.kind {
            RequestKind::Put(PutRequest {
                key: k,
                values: Values::Inline(vs),
                ..
            }) if k == key => vs.iter().any(|v| v.id == 0x1111 && v.data == b"hello opendht"),
            _ => false,
        },
        _ => false,
    });
    assert!(found);
}

/// Feeds every fragmented header and value-data packet through the reassembler, in capture
/// order, and collects the completed messages' values.
fn reassemble_all() -> Vec<Value> {
    let mut r = Reassembler::default();
    let mut out = Vec::new();
    for (v, m) in decoded() {
        let progress = match &m.body {
            Body::ValueData(parts) => r.on_parts(Instant::ZERO, v.from, m.tid, parts.clone()),
            _ if wire::fragment::is_fragmented(&m) => r.on_header(Instant::ZERO, v.from, m),
            _ => continue,
        };
        if let Ok(Progress::Complete(done)) = progress {
            match done.body {
                Body::Reply(rep) => {
                    if let Some(Values::Inline(vs)) = rep.values {
                        out.extend(vs)
                    }
                }
                Body::Request(req) => match req.kind {
                    RequestKind::Put(PutRequest {
                        values: Values::Inline(vs),
                        ..
                    }) => out.extend(vs),
                    RequestKind::Update(UpdateRequest {
                        payload:
                            UpdatePayload::Values {
                                values: Values::Inline(vs),
                                ..
                            },
                        ..
                    }) => out.extend(vs),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

#[test]
fn fragmented_32k_value_reassembles_from_real_fragments() {
    let values = reassemble_all();
    let big: Vec<_> = values.iter().filter(|v| v.id == 0x3232).collect();
    // At least the put from B and the get reply to C.
    assert!(big.len() >= 2, "found {} copies", big.len());
    for v in big {
        assert_eq!(v.data, big_data(32 * 1024));
    }
}

#[test]
fn listener_is_pushed_the_value() {
    let pushed = decoded().into_iter().any(|(_, m)| match m.body {
        Body::Request(r) => match r.kind {
            RequestKind::Update(UpdateRequest {
                payload:
                    UpdatePayload::Values {
                        values: Values::Inline(vs),
                        ..
                    },
                ..
            }) => vs
                .iter()
                .any(|v| v.id == 0x3333 && v.data == b"pushed to listener"),
            _ => false,
        },
        _ => false,
    });
    assert!(pushed);
}

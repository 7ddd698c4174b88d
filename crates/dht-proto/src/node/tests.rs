//! Scripted peers: datagrams in, transmits and events out.

use super::*;
use crate::wire::{ErrorReply, Token};

const ME: InfoHash = InfoHash([0x11; 20]);
const SEED: [u8; 32] = [7; 32];

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn node_with(config: Config) -> Node {
    Node::new(
        Config {
            node_id: Some(ME),
            ..config
        },
        SEED,
        Instant::ZERO,
    )
}

fn node() -> Node {
    node_with(Config::default())
}

/// A node that knows `peers` (in its routing table) and has sent nothing yet.
fn node_knowing(peers: &[(InfoHash, SocketAddr)]) -> Node {
    let mut n = node();
    for p in peers {
        n.insert_node(t(0), NodeInfo { id: p.0, addr: p.1 });
    }
    let _ = drain(&mut n);
    n
}

fn peer(i: u8) -> (InfoHash, SocketAddr) {
    (
        InfoHash([i; 20]),
        // Each on a /24 of its own, so no Sybil limit applies.
        SocketAddr::from(([10, 0, i, i], 4000 + u16::from(i))),
    )
}

fn send(n: &mut Node, now: Instant, from: SocketAddr, msg: &Message) {
    n.handle_datagram(now, from, &msg.encode_to_vec());
}

fn request(from_id: InfoHash, tid: Tid, kind: RequestKind) -> Message {
    Message::request(tid, from_id, kind)
}

/// Every datagram the node wants to send, decoded.
fn drain(n: &mut Node) -> Vec<(SocketAddr, Message)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(tx) = n.poll_transmit(Instant::ZERO, &mut buf) {
        assert_eq!(tx.len, buf.len());
        out.push((
            tx.destination,
            wire::decode(&buf).expect("we send only valid datagrams"),
        ));
    }
    out
}

fn events(n: &mut Node) -> Vec<Event> {
    core::iter::from_fn(|| n.poll_event()).collect()
}

fn only_reply(out: &[(SocketAddr, Message)]) -> &Reply {
    assert_eq!(out.len(), 1, "{out:?}");
    match &out[0].1.body {
        Body::Reply(r) => r,
        b => panic!("expected a reply, got {b:?}"),
    }
}

fn only_error(out: &[(SocketAddr, Message)]) -> &ErrorReply {
    assert_eq!(out.len(), 1, "{out:?}");
    match &out[0].1.body {
        Body::Error(e) => e,
        b => panic!("expected an error, got {b:?}"),
    }
}

/// A token for `from`: asked with a find, as a real requester would.
fn token_for(n: &mut Node, now: Instant, from: (InfoHash, SocketAddr)) -> Token {
    send(
        n,
        now,
        from.1,
        &request(
            from.0,
            999,
            RequestKind::Find {
                target: ME,
                want: None,
            },
        ),
    );
    let out = drain(n);
    only_reply(&out)
        .token
        .clone()
        .expect("find replies carry a token")
}

fn put_req(key: InfoHash, v: Value, token: Token) -> RequestKind {
    RequestKind::Put(PutRequest {
        key,
        values: Values::Inline(vec![v].into()),
        created: None,
        token,
    })
}

#[test]
fn ping_is_answered_with_our_id_and_the_senders_address() {
    let mut n = node();
    let p = peer(1);
    send(&mut n, t(1), p.1, &request(p.0, 42, RequestKind::Ping));
    let out = drain(&mut n);
    assert_eq!(out[0].0, p.1);
    assert_eq!(out[0].1.tid, 42);
    let r = only_reply(&out);
    assert_eq!(r.id, ME);
    assert_eq!(r.addr, Some(p.1.ip()));
    assert_eq!(n.stats().received(MessageKind::Ping), 1);
    assert_eq!(n.stats().sent(MessageKind::Reply), 1);
    // The pinger is now a (dubious) node of our table.
    assert_eq!(n.stats().nodes.v4, 1);
    assert_eq!(n.status(Family::V4), Status::Connecting);
}

/// A node holding 8 values of 8 KB at `key` (its own), with 3 good peers in its table.
fn node_holding_big_values(key: InfoHash) -> Node {
    // The anti-amplification guard is opt-in: these tests turn it on.
    let mut n = node_with(Config {
        amplification_factor: Some(2),
        ..Config::default()
    });
    n.set_unix_time(t(0), 1_767_225_600);
    for i in 1..=8u8 {
        n.put(
            t(0),
            key,
            Value::new(u64::from(i), vec![i; 8000]),
            PutOptions::default(),
        )
        .unwrap();
    }
    let _ = drain(&mut n);
    n
}

fn get_req(from: (InfoHash, SocketAddr), tid: Tid, key: InfoHash) -> Message {
    request(
        from.0,
        tid,
        RequestKind::Get {
            key,
            query: Query::default(),
            want: None,
        },
    )
}

#[test]
fn an_unproven_address_gets_at_most_twice_its_bytes_until_it_answers_our_ping() {
    let key = InfoHash::get("big");
    let mut n = node_holding_big_values(key);
    let asker = peer(9);
    let get = get_req(asker, 5, key).encode_to_vec();
    n.handle_datagram(t(10), asker.1, &get);
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    while let Some(tx) = n.poll_transmit(t(10), &mut buf) {
        assert_eq!(tx.destination, asker.1);
        sent.push(buf.clone());
    }
    let bytes: usize = sent.iter().map(Vec::len).sum();
    assert!(
        bytes <= 2 * get.len(),
        "{bytes} bytes sent for {} received",
        get.len()
    );
    // What went out is the probe: a ping.
    let msgs: Vec<Message> = sent.iter().map(|d| wire::decode(d).unwrap()).collect();
    let ping = msgs
        .iter()
        .find(|m| matches!(&m.body, Body::Request(r) if r.kind == RequestKind::Ping))
        .unwrap_or_else(|| panic!("a probe: {msgs:?} {:?}", n.stats()));
    assert!(n.stats().amplification_held > 0);
    // The pong proves the address: the whole answer follows at once.
    let pong = Reply {
        id: asker.0,
        addr: Some(asker.1.ip()),
        ..Reply::default()
    };
    send(&mut n, t(11), asker.1, &Message::reply(ping.tid, pong));
    let out = drain(&mut n);
    let parts = out
        .iter()
        .filter(|(_, m)| m.tid == 5 && matches!(m.body, Body::ValueData(_)))
        .count();
    assert!(
        parts >= 8 * 8000_usize.div_ceil(1280),
        "{parts} value-data datagrams"
    );
    let header: Vec<_> = msgs
        .iter()
        .chain(out.iter().map(|(_, m)| m))
        .filter(|m| m.tid == 5 && matches!(m.body, Body::Reply(_)))
        .collect();
    assert_eq!(header.len(), 1, "one header, before or after the proof");
    // Proven now: answered at once, whatever the size.
    send(&mut n, t(12), asker.1, &get_req(asker, 6, key));
    assert!(drain(&mut n).len() > 8);
}

#[test]
fn what_an_address_that_never_answers_was_owed_is_given_up() {
    let key = InfoHash::get("big");
    let mut n = node_holding_big_values(key);
    let victims: Vec<SocketAddr> = (0..50u16)
        .map(|i| SocketAddr::from(([192, 0, 2, 7], 1000 + i)))
        .collect();
    let (mut received, mut sent) = (0usize, 0usize);
    let mut now = 10;
    for _ in 0..3 {
        for (i, v) in victims.iter().enumerate() {
            let g = get_req((InfoHash([i as u8 + 1; 20]), *v), i as Tid, key).encode_to_vec();
            received += g.len();
            n.handle_datagram(t(now), *v, &g);
        }
        let mut buf = Vec::new();
        loop {
            while let Some(tx) = n.poll_transmit(t(now), &mut buf) {
                if victims.contains(&tx.destination) {
                    sent += tx.len;
                }
            }
            match n.poll_timeout() {
                Some(at) if at <= t(now + 4000) => {
                    now = now.max(at.as_micros().div_ceil(1000));
                    n.handle_timeout(t(now));
                }
                _ => break,
            }
        }
        now += 4000;
    }
    assert!(sent <= 2 * received, "{sent} bytes sent for {received} received");
    assert!(n.stats().amplification_dropped > 0);
    assert_eq!(n.guard.held_bytes(), 0, "nothing left held");
}

#[test]
fn a_find_reply_to_an_unproven_address_names_only_the_nodes_that_fit() {
    // 20 good nodes: we ping them and they answer.
    let good = |n: &mut Node| {
        for i in 20..40u8 {
            n.bootstrap(t(0), SocketAddr::from(([10, 2, i, 1], 4222)));
        }
        for (to, msg) in drain(n) {
            let IpAddr::V4(v4) = to.ip() else { panic!() };
            let r = Reply {
                id: InfoHash([v4.octets()[2]; 20]),
                addr: Some(to.ip()),
                ..Reply::default()
            };
            send(n, t(1), to, &Message::reply(msg.tid, r));
        }
        let _ = drain(n);
    };
    let mut n = node_with(Config {
        amplification_factor: Some(2),
        ..Config::default()
    });
    good(&mut n);
    let asker = peer(9);
    let find = request(
        asker.0,
        5,
        RequestKind::Find {
            target: InfoHash([30; 20]),
            want: None,
        },
    );
    let len = find.encode_to_vec().len();
    send(&mut n, t(2), asker.1, &find);
    let mut buf = Vec::new();
    let tx = n.poll_transmit(t(2), &mut buf).unwrap();
    assert!(tx.len <= 2 * len);
    let Body::Reply(r) = wire::decode(&buf).unwrap().body else {
        panic!()
    };
    assert!(
        !r.nodes4.is_empty() && r.nodes4.len() < 8,
        "{} nodes",
        r.nodes4.len()
    );
    assert_eq!(r.nodes4[0].id, InfoHash([30; 20]), "the closest kept");
    // Off: all 8.
    let mut open = node_with(Config {
        amplification_factor: None,
        ..Config::default()
    });
    good(&mut open);
    send(&mut open, t(2), asker.1, &find);
    let out = drain(&mut open);
    assert_eq!(only_reply(&out).nodes4.len(), 8);
}

#[test]
fn our_find_and_get_requests_are_padded_so_an_unproven_answer_names_all_8_nodes() {
    // 20 good nodes: we ping them and they answer.
    let good = |n: &mut Node| {
        for i in 20..40u8 {
            n.bootstrap(t(0), SocketAddr::from(([10, 2, i, 1], 4222)));
        }
        for (to, msg) in drain(n) {
            let IpAddr::V4(v4) = to.ip() else { panic!() };
            let r = Reply {
                id: InfoHash([v4.octets()[2]; 20]),
                addr: Some(to.ip()),
                ..Reply::default()
            };
            send(n, t(1), to, &Message::reply(msg.tid, r));
        }
        let _ = drain(n);
    };
    let mut storer = node_with(Config::default());
    good(&mut storer);
    let storer_addr = SocketAddr::from(([10, 9, 9, 9], 4222));
    for on in [true, false] {
        let mut asker = Node::new(
            Config {
                node_id: Some(InfoHash([9; 20])),
                amplification_factor: if on { Some(2) } else { None },
                ..Config::default()
            },
            [9; 32],
            t(0),
        );
        let asker_addr = peer(9).1;
        for kind in [
            RequestKind::Find {
                target: InfoHash([30; 20]),
                want: None,
            },
            RequestKind::Get {
                key: InfoHash([30; 20]),
                query: Query::default(),
                want: None,
            },
        ] {
            asker.send_request(t(2), storer_addr, ME, kind, Purpose::Ping, &[]);
            let mut buf = Vec::new();
            let tx = asker.poll_transmit(t(2), &mut buf).expect("the request");
            assert_eq!(tx.destination, storer_addr);
            assert!(asker.poll_transmit(t(2), &mut buf).is_none());
            let req = buf.clone();
            let plain = wire::decode(&req)
                .expect("the padding is an ignored key")
                .encode_to_vec();
            assert_eq!(req.len() > plain.len(), on, "padded only with the guard on");
            // The storer has never had a round trip with the asker.
            storer.handle_datagram(t(2), asker_addr, &req);
            let mut sent = 0;
            let mut replies = Vec::new();
            while let Some(tx) = storer.poll_transmit(t(2), &mut buf) {
                sent += tx.len;
                replies.push(wire::decode(&buf).unwrap());
            }
            assert!(sent <= 2 * req.len(), "{sent} bytes for {}", req.len());
            let [
                Message {
                    body: Body::Reply(r), ..
                },
            ] = replies.as_slice()
            else {
                panic!("{replies:?}")
            };
            // Guard on: padded, all 8; off (as OpenDHT asks): trimmed to what fits.
            assert_eq!(r.nodes4.len() == 8, on, "{} nodes", r.nodes4.len());
        }
    }
}

#[test]
fn find_returns_closest_good_nodes_of_the_wanted_family_and_a_token() {
    // Amplification limits would trim the list for this unproven asker (tested above).
    let mut n = node_with(Config {
        amplification_factor: None,
        ..Config::default()
    });
    // Make 3 IPv4 and 1 IPv6 node good: we ping them (as bootstrap nodes) and they reply.
    let v6: (InfoHash, SocketAddr) = (InfoHash([0x60; 20]), "[2001:db8::6]:6000".parse().unwrap());
    let all = [peer(1), peer(2), peer(3), v6];
    for p in all {
        n.bootstrap(t(1), p.1);
    }
    for (to, msg) in drain(&mut n) {
        let id = all.into_iter().find(|p| p.1 == to).unwrap().0;
        let r = Reply {
            id,
            addr: Some(to.ip()),
            ..Reply::default()
        };
        send(&mut n, t(20), to, &Message::reply(msg.tid, r));
    }
    let _ = drain(&mut n);
    let asker = peer(9);
    let target = InfoHash([0x02; 20]);
    send(
        &mut n,
        t(7000),
        asker.1,
        &request(asker.0, 5, RequestKind::Find { target, want: None }),
    );
    let out: Vec<_> = drain(&mut n).into_iter().filter(|(_, m)| m.tid == 5).collect();
    let r = only_reply(&out);
    let ids: Vec<InfoHash> = r.nodes4.iter().map(|n| n.id).collect();
    assert_eq!(
        ids,
        vec![peer(2).0, peer(3).0, peer(1).0],
        "closest first, good only"
    );
    assert!(r.nodes6.is_empty(), "no want: the requester's family only");
    assert_eq!(r.token.as_ref().map(|t| t.len()), Some(20));
    send(
        &mut n,
        t(7000),
        asker.1,
        &request(
            asker.0,
            6,
            RequestKind::Find {
                target,
                want: Some(Want::BOTH),
            },
        ),
    );
    let out: Vec<_> = drain(&mut n).into_iter().filter(|(_, m)| m.tid == 6).collect();
    let r = only_reply(&out);
    assert_eq!(r.nodes6.len(), 1);
    assert_eq!(r.nodes4.len(), 3);
}

#[test]
fn get_put_and_their_errors() {
    let mut n = node();
    let p = peer(1);
    let key = InfoHash::get("k");
    send(
        &mut n,
        t(1),
        p.1,
        &request(
            p.0,
            1,
            RequestKind::Get {
                key: InfoHash::ZERO,
                query: Query::default(),
                want: None,
            },
        ),
    );
    let out = drain(&mut n);
    let e = only_error(&out);
    assert_eq!(
        (e.code, e.message.as_str()),
        (203, "Get_values with no info_hash")
    );
    assert_eq!(e.id, ME);

    // A put without a valid token is refused with 401, and nothing is stored.
    send(
        &mut n,
        t(2),
        p.1,
        &request(
            p.0,
            2,
            put_req(key, Value::new(5, b"v".to_vec()), vec![0; 20].into()),
        ),
    );
    let out = drain(&mut n);
    assert_eq!(only_error(&out).code, 401);
    assert_eq!(n.stats().stored_values, 0);

    // A token from another address does not work either.
    let other = peer(2);
    let tok_other = token_for(&mut n, t(3), other);
    send(
        &mut n,
        t(3),
        p.1,
        &request(p.0, 3, put_req(key, Value::new(5, b"v".to_vec()), tok_other)),
    );
    assert_eq!(only_error(&drain(&mut n)).code, 401);

    let tok = token_for(&mut n, t(4), p);
    send(
        &mut n,
        t(4),
        p.1,
        &request(p.0, 4, put_req(key, Value::new(0, b"v".to_vec()), tok.clone())),
    );
    let out = drain(&mut n);
    let e = only_error(&out);
    assert_eq!((e.code, e.message.as_str()), (203, "Put with invalid id"));
    send(
        &mut n,
        t(5),
        p.1,
        &request(
            p.0,
            5,
            put_req(InfoHash::ZERO, Value::new(5, b"v".to_vec()), tok.clone()),
        ),
    );
    assert_eq!(only_error(&drain(&mut n)).code, 203);

    send(
        &mut n,
        t(6),
        p.1,
        &request(p.0, 6, put_req(key, Value::new(5, b"v".to_vec()), tok.clone())),
    );
    let out = drain(&mut n);
    let r = only_reply(&out);
    assert_eq!(r.vid, Some(5));
    assert_eq!(n.local_values(&key).len(), 1);

    // Get: the value inline, nodes and a token.
    send(
        &mut n,
        t(7),
        p.1,
        &request(
            p.0,
            7,
            RequestKind::Get {
                key,
                query: Query::default(),
                want: None,
            },
        ),
    );
    let out = drain(&mut n);
    let r = only_reply(&out);
    assert_eq!(
        r.values,
        Some(Values::Inline(vec![Value::new(5, b"v".to_vec())].into()))
    );
    assert!(r.token.is_some());
    // SELECT id: field rows instead of values.
    let q = Query::parse("SELECT id").unwrap();
    send(
        &mut n,
        t(8),
        p.1,
        &request(
            p.0,
            8,
            RequestKind::Get {
                key,
                query: q,
                want: None,
            },
        ),
    );
    let out = drain(&mut n);
    let r = only_reply(&out);
    assert!(r.values.is_none());
    let rows = r.fields.as_ref().unwrap();
    assert_eq!(rows.fields, vec![crate::value::Field::Id]);
    assert_eq!(rows.rows[0].values, vec![FieldValue::Id(5)]);
    // WHERE id=6 matches nothing: no values at all.
    let q = Query::parse("WHERE id=6").unwrap();
    send(
        &mut n,
        t(9),
        p.1,
        &request(
            p.0,
            9,
            RequestKind::Get {
                key,
                query: q,
                want: None,
            },
        ),
    );
    assert!(only_reply(&drain(&mut n)).values.is_none());
}

#[test]
fn a_large_get_reply_is_sent_as_fragments() {
    let mut n = node();
    let p = peer(1);
    let key = InfoHash::get("big");
    let tok = token_for(&mut n, t(1), p);
    let big = Value::new(3, vec![9; 40_000]);
    // The put arrives as a header and value data, as a C++ node sends it.
    let out = fragment::prepare(core::slice::from_ref(&big));
    let mut header = request(
        p.0,
        10,
        RequestKind::Put(PutRequest {
            key,
            values: out.values,
            created: None,
            token: tok,
        }),
    );
    header.tid = 10;
    send(&mut n, t(2), p.1, &header);
    assert!(drain(&mut n).is_empty(), "waits for the parts");
    for parts in fragment::slices(&out.data) {
        let m = Message {
            tid: 10,
            network: 0,
            is_client: false,
            body: Body::ValueData(parts),
        };
        send(&mut n, t(3), p.1, &m);
    }
    assert_eq!(only_reply(&drain(&mut n)).vid, Some(3));
    send(
        &mut n,
        t(4),
        p.1,
        &request(
            p.0,
            11,
            RequestKind::Get {
                key,
                query: Query::default(),
                want: None,
            },
        ),
    );
    let out = drain(&mut n);
    let Body::Reply(r) = &out[0].1.body else { panic!() };
    assert!(matches!(r.values, Some(Values::Sizes(ref s)) if s.len() == 1));
    assert_eq!(
        out.len(),
        1 + big.encode_to_vec().len().div_ceil(1280),
        "header, then one datagram per 1280-byte slice"
    );
    assert!(
        out[1..]
            .iter()
            .all(|(_, m)| m.tid == 11 && matches!(m.body, Body::ValueData(_)))
    );
}

/// The datagrams the node hands out at `now` (decoded).
fn drain_at(n: &mut Node, now: Instant) -> Vec<(SocketAddr, Message)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(tx) = n.poll_transmit(now, &mut buf) {
        out.push((tx.destination, wire::decode(&buf[..tx.len]).expect("valid")));
    }
    out
}

#[test]
fn reply_data_is_paced_round_robin_and_a_retransmitted_get_is_not_answered_twice() {
    // 1 MB/s: a 1280-byte slice holds the uplink for about 1.3 ms.
    // The peers here are proven by nothing: the anti-amplification guard is off, so that
    // only the pacing is seen.
    let mut n = node_with(Config {
        uplink_bytes_per_sec: Some(1_000_000),
        amplification_factor: None,
        ..Config::default()
    });
    let key = InfoHash::get("paced");
    let big = Value::new(3, vec![9; 20_000]);
    n.put(t(0), key, big.clone(), PutOptions::default()).unwrap();
    let _ = drain_at(&mut n, t(0));
    let get = |tid| {
        request(
            InfoHash([tid as u8; 20]),
            tid,
            RequestKind::Get {
                key,
                query: Query::default(),
                want: None,
            },
        )
    };
    let (a, b) = (peer(1).1, peer(2).1);
    send(&mut n, t(1000), a, &get(11));
    send(&mut n, t(1000), b, &get(21));
    // The headers go out at once; the value data waits for the uplink.
    let out = drain_at(&mut n, t(1000));
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|(_, m)| matches!(m.body, Body::Reply(_))));
    assert_eq!(n.next_timer().map(|x| x.1), Some(TimerReason::Pacing));
    // A retransmission of a's get while its data is queued: no second answer.
    send(&mut n, t(1000), a, &get(11));
    assert!(drain_at(&mut n, t(1000)).is_empty());
    assert_eq!(n.stats().duplicate_gets, 1);
    // Then one slice at a time, alternating between the two replies.
    let slices = big.encode_to_vec().len().div_ceil(1280);
    let mut order = Vec::new();
    let mut now = t(1000);
    while order.len() < 2 * slices {
        let at = n.poll_timeout().unwrap();
        assert!(at > now, "paced");
        now = at;
        n.handle_timeout(now);
        let out = drain_at(&mut n, now);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(matches!(out[0].1.body, Body::ValueData(_)));
        order.push(out[0].0);
    }
    assert!(order.chunks(2).all(|c| c == [a, b] || c == [b, a]), "{order:?}");
    // 2 × 16 slices at 1 MB/s: about 42 ms of uplink.
    assert!(now - t(1000) >= Duration::from_millis(40), "{:?}", now - t(1000));
    // Once it is all out, the same tid is answered again (the first answer may have been lost).
    send(&mut n, now, a, &get(11));
    assert_eq!(drain_at(&mut n, now).len(), 1);
    assert_eq!(n.stats().duplicate_gets, 1);
}

#[test]
fn listen_pushes_existing_new_refreshed_and_expired_values() {
    let mut n = node();
    let (listener, putter) = (peer(1), peer(2));
    let key = InfoHash::get("room");
    let tok_p = token_for(&mut n, t(1), putter);
    send(
        &mut n,
        t(1),
        putter.1,
        &request(
            putter.0,
            1,
            put_req(key, Value::new(1, b"old".to_vec()), tok_p.clone()),
        ),
    );
    let _ = drain(&mut n);

    let listen = |token: Token| {
        RequestKind::Listen(ListenRequest {
            key,
            token,
            sid: 77,
            version: Some(1),
            query: Query::default(),
        })
    };
    send(
        &mut n,
        t(2),
        listener.1,
        &request(listener.0, 2, listen(vec![1; 20].into())),
    );
    assert_eq!(only_error(&drain(&mut n)).code, 401);
    let tok_l = token_for(&mut n, t(2), listener);
    send(
        &mut n,
        t(3),
        listener.1,
        &request(listener.0, 3, listen(tok_l.clone())),
    );
    let out = drain(&mut n);
    assert_eq!(out.len(), 2, "{out:?}");
    let Body::Reply(r) = &out[0].1.body else { panic!() };
    assert!(r.token.is_some(), "a listen reply carries a fresh token");
    let Body::Request(Request {
        kind:
            RequestKind::Update(UpdateRequest {
                sid,
                payload,
                key: k,
                version,
                token,
            }),
        ..
    }) = &out[1].1.body
    else {
        panic!("{:?}", out[1])
    };
    assert_eq!((*sid, *k, *version), (77, key, Some(1)));
    assert!(token.is_some());
    assert!(matches!(payload, UpdatePayload::Values { values: Values::Inline(v), .. } if v[0].id == 1));
    // The listener acknowledges; a re-sent listen with the same sid pushes nothing again.
    send(
        &mut n,
        t(4),
        listener.1,
        &Message::reply(
            out[1].1.tid,
            Reply {
                id: listener.0,
                ..Reply::default()
            },
        ),
    );
    send(&mut n, t(5), listener.1, &request(listener.0, 4, listen(tok_l)));
    let out = drain(&mut n);
    assert!(
        out.iter()
            .any(|(_, m)| m.tid == 4 && matches!(m.body, Body::Reply(_)))
    );
    assert!(!out.iter().any(|(_, m)| matches!(
        &m.body,
        Body::Request(Request {
            kind: RequestKind::Update(_),
            ..
        })
    )));

    // A new value: pushed.
    send(
        &mut n,
        t(6),
        putter.1,
        &request(
            putter.0,
            5,
            put_req(key, Value::new(2, b"new".to_vec()), tok_p.clone()),
        ),
    );
    let out = drain(&mut n);
    let push = out.iter().find(|(to, _)| *to == listener.1).expect("pushed");
    assert!(matches!(
        &push.1.body,
        Body::Request(Request {
            kind: RequestKind::Update(UpdateRequest {
                payload: UpdatePayload::Values { .. },
                ..
            }),
            ..
        })
    ));
    // A refresh: `re`.
    send(
        &mut n,
        t(7),
        putter.1,
        &request(
            putter.0,
            6,
            RequestKind::Refresh {
                key,
                vid: 2,
                token: tok_p.clone(),
            },
        ),
    );
    let out = drain(&mut n);
    assert!(out.iter().any(|(to, m)| *to == listener.1
        && matches!(&m.body, Body::Request(Request { kind: RequestKind::Update(UpdateRequest { payload: UpdatePayload::Refreshed(v), .. }), .. }) if v == &vec![2])));
    assert!(
        out.iter()
            .any(|(to, m)| *to == putter.1 && matches!(&m.body, Body::Reply(r) if r.vid == Some(2)))
    );
    // Expiry (10 min for type 0): `exp` for both values.
    n.handle_timeout(Instant::from_secs(11 * 60));
    let out = drain(&mut n);
    let expired: Vec<u64> = out
        .iter()
        .filter(|(to, _)| *to == listener.1)
        .filter_map(|(_, m)| match &m.body {
            Body::Request(Request {
                kind:
                    RequestKind::Update(UpdateRequest {
                        payload: UpdatePayload::Expired(v),
                        ..
                    }),
                ..
            }) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(expired.contains(&1) && expired.contains(&2), "{out:?}");
}

#[test]
fn refresh_of_unknown_storage_is_404() {
    let mut n = node();
    let p = peer(1);
    let tok = token_for(&mut n, t(1), p);
    send(
        &mut n,
        t(2),
        p.1,
        &request(
            p.0,
            2,
            RequestKind::Refresh {
                key: InfoHash::get("none"),
                vid: 1,
                token: tok.clone(),
            },
        ),
    );
    let out = drain(&mut n);
    let e = only_error(&out);
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "Access operation for unknown storage")
    );
    send(
        &mut n,
        t(3),
        p.1,
        &request(
            p.0,
            3,
            RequestKind::Refresh {
                key: InfoHash::get("none"),
                vid: 1,
                token: Token::new(),
            },
        ),
    );
    assert_eq!(only_error(&drain(&mut n)).code, 401);
}

#[test]
fn an_update_for_an_unknown_socket_is_still_answered() {
    let mut n = node();
    let p = peer(1);
    let kind = RequestKind::Update(UpdateRequest {
        key: InfoHash::get("x"),
        sid: 12345,
        version: Some(1),
        token: Some(vec![1].into()),
        payload: UpdatePayload::Values {
            values: Values::Inline(vec![Value::new(1, vec![1])].into()),
            created: None,
        },
    });
    send(&mut n, t(1), p.1, &request(p.0, 9, kind));
    let r = only_reply(&drain(&mut n)).clone();
    assert_eq!(r.id, ME);
    assert!(
        !events(&mut n)
            .iter()
            .any(|e| matches!(e, Event::ListenAdded { .. }))
    );
}

#[test]
fn bootstrap_ping_is_retransmitted_then_times_out() {
    let mut n = node();
    let boot: SocketAddr = "192.0.2.1:4222".parse().unwrap();
    n.bootstrap(t(0), boot);
    assert_eq!(n.status(Family::V4), Status::Connecting);
    let first = drain(&mut n);
    assert_eq!(first.len(), 1);
    assert!(matches!(
        &first[0].1.body,
        Body::Request(Request {
            kind: RequestKind::Ping,
            ..
        })
    ));
    let mut sends = vec![0u64];
    let mut now = Instant::ZERO;
    while let Some(d) = n.poll_timeout() {
        if d > Instant::from_secs(9) {
            break;
        }
        now = d;
        n.handle_timeout(now);
        let out = drain(&mut n);
        if out.iter().any(|(to, m)| *to == boot && m.tid == first[0].1.tid) {
            sends.push(now.as_micros() / 1000);
        }
    }
    assert_eq!(sends.len(), 3, "{sends:?}");
    assert!((1000..1250).contains(&(sends[1] - sends[0])), "{sends:?}");
    assert!((2000..2750).contains(&(sends[2] - sends[1])), "{sends:?}");
    assert_eq!(n.stats().retransmits, 2);
    // Expired ≈4–5.75 s after the third send.
    n.handle_timeout(Instant::from_secs(9));
    assert_eq!(n.stats().timeouts, 1);
    assert_eq!(n.stats().pending_requests, 0);
    let _ = now;
    // Bootstrap pings again 10 s after the start, then after 20 s more.
    n.handle_timeout(Instant::from_secs(10));
    assert_eq!(drain(&mut n).len(), 1);
}

#[test]
fn bootstrap_reply_connects_and_reports_status_and_public_address() {
    let mut n = node();
    let p = peer(1);
    n.bootstrap(t(0), p.1);
    let out = drain(&mut n);
    let my_public: IpAddr = "203.0.113.9".parse().unwrap();
    let r = Reply {
        id: p.0,
        addr: Some(my_public),
        ..Reply::default()
    };
    send(&mut n, t(20), p.1, &Message::reply(out[0].1.tid, r));
    assert_eq!(n.status(Family::V4), Status::Connected);
    let ev = events(&mut n);
    assert!(ev.contains(&Event::StatusChanged {
        family: Family::V4,
        status: Status::Connecting
    }));
    assert!(ev.contains(&Event::StatusChanged {
        family: Family::V4,
        status: Status::Connected
    }));
    assert!(ev.contains(&Event::PublicAddressChanged {
        family: Family::V4,
        addr: my_public
    }));
    assert_eq!(n.public_addresses(Family::V4), vec![my_public]);
    // Connected: a lookup of our own id goes out to the bootstrap node.
    let out = drain(&mut n);
    assert!(out.iter().any(|(to, m)| *to == p.1
        && matches!(&m.body, Body::Request(Request { kind: RequestKind::Find { target, .. }, .. }) if *target == ME)));
}

#[test]
fn a_search_reply_without_a_token_blacklists_the_replier() {
    let p = peer(1);
    let mut n = node_knowing(&[p]);
    let op = n.get(t(1), InfoHash::get("k"), Query::default()).unwrap();
    let out = drain(&mut n);
    let (_, get) = out
        .iter()
        .find(|(to, _)| *to == p.1)
        .expect("the get goes to the only node");
    send(
        &mut n,
        t(2),
        p.1,
        &Message::reply(
            get.tid,
            Reply {
                id: p.0,
                ..Reply::default()
            },
        ),
    );
    // Blacklisted: its next datagram is dropped.
    send(&mut n, t(3), p.1, &request(p.0, 1, RequestKind::Ping));
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.stats().dropped(DropReason::Blacklisted), 1);
    let ev = events(&mut n);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::GetDone { op: o, ok: false, .. } if *o == op)),
        "{ev:?}"
    );
}

#[test]
fn a_401_on_put_clears_the_token_and_gets_again() {
    let p = peer(1);
    let mut n = node_knowing(&[p]);
    let key = InfoHash::get("k");
    n.put(t(1), key, Value::new(1, b"x".to_vec()), PutOptions::default())
        .unwrap();
    let out = drain(&mut n);
    let (_, find) = out.iter().find(|(to, _)| *to == p.1).unwrap();
    let find_tid = find.tid;
    send(
        &mut n,
        t(2),
        p.1,
        &Message::reply(
            find_tid,
            Reply {
                id: p.0,
                token: Some(vec![5; 20].into()),
                ..Reply::default()
            },
        ),
    );
    let out = drain(&mut n);
    let (_, put) = out
        .iter()
        .find(|(_, m)| {
            matches!(
                &m.body,
                Body::Request(Request {
                    kind: RequestKind::Put(_),
                    ..
                })
            )
        })
        .expect("synced: the put goes out");
    send(
        &mut n,
        t(3),
        p.1,
        &Message::error(put.tid, p.0, 401, "Put with wrong token"),
    );
    let out = drain(&mut n);
    assert!(
        out.iter().any(|(_, m)| matches!(
            &m.body,
            Body::Request(Request {
                kind: RequestKind::Find { .. },
                ..
            })
        )),
        "a new find fetches a fresh token: {out:?}"
    );
}

#[test]
fn put_done_reports_how_many_acknowledged() {
    let peers: Vec<_> = (1..=3).map(peer).collect();
    let (_, outcome) = put_asking(&peers, None, None);
    assert_eq!(outcome.acked, PerFamily::new(3, 0));
    assert_eq!(outcome.targeted, PerFamily::new(3, 0));
    assert!(outcome.ok());
}

#[test]
fn a_flood_from_one_address_is_limited_while_others_are_answered() {
    let mut n = node();
    let flooder = peer(1);
    let honest = peer(2);
    for i in 0..3000u32 {
        send(
            &mut n,
            t(100),
            flooder.1,
            &request(flooder.0, i, RequestKind::Ping),
        );
    }
    let answered = drain(&mut n).len();
    assert_eq!(answered, 1024, "per-IP limit");
    assert_eq!(n.stats().dropped(DropReason::RateLimitedPeer), 3000 - 1024);
    send(&mut n, t(100), honest.1, &request(honest.0, 1, RequestKind::Ping));
    assert_eq!(drain(&mut n).len(), 1, "another peer is still answered");
    // Garbage costs nothing but a counter, and is never answered.
    for i in 0..1000u32 {
        let junk = [0x85, 0xa1, 0x79, 0xa1, (i % 256) as u8];
        n.handle_datagram(t(200), flooder.1, &junk);
        n.handle_datagram(t(200), flooder.1, &i.to_be_bytes());
    }
    assert!(drain(&mut n).is_empty());
    assert!(n.stats().dropped(DropReason::Malformed) >= 1900);
    // Two seconds later the flooder is served again.
    send(
        &mut n,
        t(2500),
        flooder.1,
        &request(flooder.0, 1, RequestKind::Ping),
    );
    assert_eq!(drain(&mut n).len(), 1);
    // The global limit holds across many addresses.
    let mut n = node_with(Config {
        max_req_per_sec: Some(100),
        max_peer_req_per_sec: Some(10),
        ..Config::default()
    });
    for i in 0..200u8 {
        let a = SocketAddr::from(([10, 1, 0, i], 1000));
        send(
            &mut n,
            t(100),
            a,
            &request(InfoHash::get([i]), 1, RequestKind::Ping),
        );
    }
    let replies = drain(&mut n)
        .iter()
        .filter(|(_, m)| matches!(m.body, Body::Reply(_)))
        .count();
    assert_eq!(replies, 100);
    assert_eq!(n.stats().dropped(DropReason::RateLimitedGlobal), 100);
}

#[test]
fn bad_sources_and_senders_are_dropped() {
    let mut n = node_with(Config {
        network: 7,
        ..Config::default()
    });
    let p = peer(1);
    let mut ping = request(p.0, 1, RequestKind::Ping);
    send(&mut n, t(1), p.1, &ping);
    assert_eq!(n.stats().dropped(DropReason::WrongNetwork), 1);
    ping.network = 7;
    send(&mut n, t(1), "0.0.0.1:5".parse().unwrap(), &ping);
    send(&mut n, t(1), "224.0.0.1:5".parse().unwrap(), &ping);
    send(&mut n, t(1), "10.0.0.1:0".parse().unwrap(), &ping);
    assert_eq!(n.stats().dropped(DropReason::Martian), 3);
    let mut own = request(ME, 1, RequestKind::Ping);
    own.network = 7;
    send(&mut n, t(1), p.1, &own);
    let mut zero = request(InfoHash::ZERO, 1, RequestKind::Ping);
    zero.network = 7;
    send(&mut n, t(1), p.1, &zero);
    assert_eq!(n.stats().dropped(DropReason::BadSenderId), 2);
    n.handle_datagram(t(1), p.1, &vec![0u8; wire::MAX_DATAGRAM + 1]);
    assert_eq!(n.stats().dropped(DropReason::TooLarge), 1);
    assert!(drain(&mut n).is_empty());
    // An IPv4-mapped source is the IPv4 address.
    send(&mut n, t(1), "[::ffff:10.0.1.1]:4001".parse().unwrap(), &ping);
    let out = drain(&mut n);
    assert_eq!(out[0].0, p.1);
    assert_eq!(out[0].1.network, 7, "our messages carry our network id");
}

#[test]
fn a_reply_announcing_parts_is_accepted_only_when_expected() {
    let mut n = node();
    let p = peer(1);
    let reply = Message::reply(
        4242,
        Reply {
            id: p.0,
            values: Some(Values::Sizes(vec![2000])),
            ..Reply::default()
        },
    );
    send(&mut n, t(1), p.1, &reply);
    assert_eq!(n.stats().dropped(DropReason::Unexpected), 1);
}

#[test]
fn storage_quota_holds_against_one_address() {
    let mut n = node_with(Config {
        max_store_size: 100_000,
        max_store_size_per_ip: 20_000,
        ..Config::default()
    });
    let p = peer(1);
    let tok = token_for(&mut n, t(1), p);
    for i in 1..200u64 {
        let key = InfoHash::get(i.to_be_bytes());
        send(
            &mut n,
            t(2),
            p.1,
            &request(
                p.0,
                i as u32,
                put_req(key, Value::new(i, vec![1; 500]), tok.clone()),
            ),
        );
    }
    let s = n.stats();
    assert!(s.stored_bytes <= 20_000, "{}", s.stored_bytes);
    assert!(s.store_refused > 100);
    // Every put is still acknowledged (OpenDHT's rule: never tell a putter its value was dropped).
    let replies = drain(&mut n)
        .iter()
        .filter(|(_, m)| matches!(&m.body, Body::Reply(r) if r.vid.is_some()))
        .count();
    assert_eq!(replies, 199);
    // Another address still gets room.
    let q = peer(2);
    let tok = token_for(&mut n, t(3), q);
    send(
        &mut n,
        t(3),
        q.1,
        &request(
            q.0,
            1,
            put_req(InfoHash::get("other"), Value::new(1, vec![1; 500]), tok),
        ),
    );
    assert_eq!(n.local_values(&InfoHash::get("other")).len(), 1);
}

#[test]
fn bounded_queues_count_what_they_drop() {
    // Pending requests.
    let mut n = node_with(Config {
        max_pending_requests: 4,
        ..Config::default()
    });
    for i in 1..=10u8 {
        n.bootstrap(t(0), SocketAddr::from(([10, 9, 0, i], 4222)));
    }
    assert_eq!(n.stats().pending_requests, 4);
    assert_eq!(n.stats().pending_overflow, 6);
    // Transmit queue.
    let mut n = node_with(Config {
        max_transmit_queue: 5,
        ..Config::default()
    });
    for i in 0..20u32 {
        send(&mut n, t(1), peer(1).1, &request(peer(1).0, i, RequestKind::Ping));
    }
    assert_eq!(drain(&mut n).len(), 5);
    assert_eq!(n.stats().transmit_overflow, 15);
    // Event queue.
    let mut n = node_with(Config {
        max_event_queue: 3,
        ..Config::default()
    });
    for i in 0..10u64 {
        n.put(
            t(1),
            InfoHash::get(i.to_be_bytes()),
            Value::new(1, vec![1]),
            PutOptions::default(),
        )
        .unwrap();
    }
    assert_eq!(events(&mut n).len(), 3);
    assert!(n.stats().event_overflow > 0);
    // Searches.
    let mut n = node_with(Config {
        max_searches: 4,
        ..Config::default()
    });
    n.listen(t(1), InfoHash::get("a"), Query::default()).unwrap();
    n.listen(t(1), InfoHash::get("b"), Query::default()).unwrap();
    assert_eq!(
        n.listen(t(1), InfoHash::get("c"), Query::default()),
        Err(CommandError::TooManySearches(4))
    );
    assert!(
        n.get(t(1), InfoHash::get("a"), Query::default()).is_ok(),
        "an existing search is shared"
    );
    // Bootstrap list.
    let mut n = node_with(Config {
        max_bootstrap: 2,
        ..Config::default()
    });
    for i in 1..=5u8 {
        n.bootstrap(t(0), SocketAddr::from(([10, 9, 0, i], 4222)));
    }
    assert_eq!(n.connectivity.bootstrap_nodes().len(), 2);
    // Reported public addresses.
    let mut n = node();
    for i in 0..100u8 {
        n.tally_public_address(IpAddr::from([198, 51, 100, i]));
    }
    assert_eq!(n.public_addresses(Family::V4).len(), MAX_PUBLIC_ADDRS);
}

#[test]
fn commands_reject_caller_mistakes() {
    let mut n = node();
    assert_eq!(
        n.get(t(0), InfoHash::ZERO, Query::default()),
        Err(CommandError::ZeroKey)
    );
    assert_eq!(
        n.put(
            t(0),
            InfoHash::get("k"),
            Value::new(1, vec![0; 70_000]),
            PutOptions::default()
        ),
        Err(CommandError::ValueTooLarge {
            size: Value::new(1, vec![0; 70_000]).size(),
            max: 65_536
        })
    );
    assert_eq!(
        n.cancel_listen(t(0), ListenToken(99)),
        Err(CommandError::UnknownOperation)
    );
    assert_eq!(
        n.cancel_put(t(0), InfoHash::get("k"), 5),
        Err(CommandError::UnknownOperation)
    );
    n.shutdown(t(0));
    assert!(events(&mut n).contains(&Event::ShutdownComplete));
    assert_eq!(
        n.get(t(0), InfoHash::get("k"), Query::default()),
        Err(CommandError::ShuttingDown)
    );
}

/// The same seed and the same inputs give byte-identical outputs.
#[test]
fn same_seed_same_inputs_same_bytes() {
    fn run() -> (Vec<(SocketAddr, Vec<u8>)>, Vec<Event>) {
        let mut n = Node::new(Config::default(), [42; 32], Instant::ZERO);
        let mut wire_out = Vec::new();
        let mut evs = Vec::new();
        let mut buf = Vec::new();
        let mut pump = |n: &mut Node| {
            while let Some(tx) = n.poll_transmit(Instant::ZERO, &mut buf) {
                wire_out.push((tx.destination, buf.clone()));
            }
            evs.extend(core::iter::from_fn(|| n.poll_event()));
        };
        n.bootstrap(t(0), peer(1).1);
        pump(&mut n);
        for i in 2..6 {
            n.insert_node(
                t(1),
                NodeInfo {
                    id: peer(i).0,
                    addr: peer(i).1,
                },
            );
        }
        n.put(
            t(2),
            InfoHash::get("k"),
            Value::new(0, b"v".to_vec()),
            PutOptions::default(),
        )
        .unwrap();
        n.listen(t(3), InfoHash::get("l"), Query::default()).unwrap();
        send(
            &mut n,
            t(4),
            peer(7).1,
            &request(
                peer(7).0,
                1,
                RequestKind::Find {
                    target: ME,
                    want: None,
                },
            ),
        );
        pump(&mut n);
        while let Some(d) = n.poll_timeout() {
            if d > Instant::from_secs(600) {
                break;
            }
            n.handle_timeout(d);
            pump(&mut n);
        }
        (wire_out, evs)
    }
    let a = run();
    let b = run();
    assert!(a.0.len() > 20, "the scenario does something: {}", a.0.len());
    assert_eq!(a, b);
    // A different seed changes the bytes (tids, ids, tokens).
    let mut other = Node::new(Config::default(), [43; 32], Instant::ZERO);
    other.bootstrap(t(0), peer(1).1);
    let mut buf = Vec::new();
    let _ = other.poll_transmit(t(0), &mut buf);
    assert_ne!(buf, a.0[0].1);
}

#[test]
fn a_get_delivers_at_most_its_bound_of_values() {
    let mut n = node_with(Config {
        max_values_per_get: 3,
        ..Config::default()
    });
    let key = InfoHash::get("many");
    for i in 1..=10 {
        n.put(t(0), key, Value::new(i, vec![i as u8]), PutOptions::default())
            .unwrap();
    }
    let _ = events(&mut n);
    let op = n.get(t(1), key, Query::default()).unwrap();
    let delivered: usize = events(&mut n)
        .iter()
        .map(|e| match e {
            Event::Values { op: o, values, .. } if *o == op => values.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(delivered, 3);
}

/// A node we listen to, scripted: returns the listen's sid.
fn listen_through_peer(n: &mut Node, key: InfoHash, p: (InfoHash, SocketAddr)) -> Tid {
    n.insert_node(t(0), NodeInfo { id: p.0, addr: p.1 });
    let _ = drain(n);
    n.listen(t(1), key, Query::default()).unwrap();
    let out = drain(n);
    let (_, find) = out
        .iter()
        .find(|(to, _)| *to == p.1)
        .expect("a find goes to the peer");
    send(
        n,
        t(2),
        p.1,
        &Message::reply(
            find.tid,
            Reply {
                id: p.0,
                token: Some(vec![3; 20].into()),
                ..Reply::default()
            },
        ),
    );
    let out = drain(n);
    let (tid, sid) = out
        .iter()
        .find_map(|(_, m)| match &m.body {
            Body::Request(Request {
                kind: RequestKind::Listen(ListenRequest { sid, .. }),
                ..
            }) => Some((m.tid, *sid)),
            _ => None,
        })
        .expect("synced: the listen goes out");
    send(
        n,
        t(3),
        p.1,
        &Message::reply(
            tid,
            Reply {
                id: p.0,
                token: Some(vec![4; 20].into()),
                ..Reply::default()
            },
        ),
    );
    let _ = drain(n);
    sid
}

#[test]
fn the_listen_cache_is_bounded_and_evictions_are_reported() {
    let mut n = node_with(Config {
        max_listen_cache: 4,
        ..Config::default()
    });
    let p = peer(1);
    let key = InfoHash::get("busy");
    let sid = listen_through_peer(&mut n, key, p);
    let _ = events(&mut n);
    let values: Vec<Value> = (1..=10).map(|i| Value::new(i, vec![i as u8])).collect();
    let kind = RequestKind::Update(UpdateRequest {
        key,
        sid,
        version: Some(1),
        token: Some(vec![1].into()),
        payload: UpdatePayload::Values {
            values: Values::Inline(values.into()),
            created: None,
        },
    });
    send(&mut n, t(4), p.1, &request(p.0, 50, kind));
    let ev = events(&mut n);
    let added: usize = ev
        .iter()
        .map(|e| {
            if let Event::ListenAdded { values, .. } = e {
                values.len()
            } else {
                0
            }
        })
        .sum();
    let expired: usize = ev
        .iter()
        .map(|e| {
            if let Event::ListenExpired { values, .. } = e {
                values.len()
            } else {
                0
            }
        })
        .sum();
    assert_eq!((added, expired), (10, 6));
    // `exp` from the node removes what it still holds; an unknown vid is ignored.
    let kind = RequestKind::Update(UpdateRequest {
        key: InfoHash::ZERO,
        sid,
        version: None,
        token: None,
        payload: UpdatePayload::Expired(vec![10, 999]),
    });
    send(&mut n, t(5), p.1, &request(p.0, 51, kind));
    let ev = events(&mut n);
    assert!(
        matches!(&ev[..], [Event::ListenExpired { values, .. }] if values.len() == 1 && values[0].id == 10),
        "{ev:?}"
    );
    // A listen is re-sent 20 s after its confirmation.
    n.handle_timeout(Instant::from_secs(24));
    let out = drain(&mut n);
    let relisten = out
        .iter()
        .find(|(to, m)| *to == p.1
            && matches!(&m.body, Body::Request(Request { kind: RequestKind::Listen(ListenRequest { sid: s, .. }), .. }) if *s == sid))
        .expect("listen renewed");
    send(
        &mut n,
        t(24_100),
        p.1,
        &Message::reply(
            relisten.1.tid,
            Reply {
                id: p.0,
                token: Some(vec![4; 20].into()),
                ..Reply::default()
            },
        ),
    );
    // Cancelled: the values it held expire, and no listen goes out any more.
    let token = n.ops.listen_tokens()[0];
    let _ = events(&mut n);
    n.cancel_listen(Instant::from_secs(25), token).unwrap();
    assert_eq!(n.stats().searches, 0);
    while let Some(d) = n.poll_timeout() {
        if d > Instant::from_secs(600) {
            break;
        }
        n.handle_timeout(d);
        assert!(
            !drain(&mut n).iter().any(|(_, m)| matches!(
                &m.body,
                Body::Request(Request {
                    kind: RequestKind::Listen(_),
                    ..
                })
            )),
            "listen traffic after cancel"
        );
    }
}

#[test]
fn export_and_import_of_nodes_and_values() {
    let mut a = node();
    let p = peer(1);
    a.bootstrap(t(0), p.1);
    let out = drain(&mut a);
    send(
        &mut a,
        t(1),
        p.1,
        &Message::reply(
            out[0].1.tid,
            Reply {
                id: p.0,
                ..Reply::default()
            },
        ),
    );
    let key = InfoHash::get("kept");
    a.put(t(2), key, Value::new(8, b"v".to_vec()), PutOptions::default())
        .unwrap();
    let nodes = a.export_nodes();
    assert_eq!(nodes, vec![NodeInfo { id: p.0, addr: p.1 }]);
    let values = a.export_values();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].key, key);
    assert!(values[0].remaining.is_some_and(|r| r <= Duration::from_secs(600)));

    let mut b = Node::new(Config::default(), [9; 32], Instant::ZERO);
    b.import_nodes(t(0), &nodes);
    b.import_values(t(0), values);
    assert_eq!(b.stats().nodes.v4, 1);
    assert_eq!(b.local_values(&key), vec![Value::new(8, b"v".to_vec())]);
    // Imported values keep their remaining life: gone 10 minutes later.
    b.handle_timeout(Instant::from_secs(601));
    assert!(b.local_values(&key).is_empty());
}

#[test]
fn connectivity_change_makes_nodes_dubious_and_restarts_bootstrap() {
    let mut n = node();
    let p = peer(1);
    n.bootstrap(t(0), p.1);
    let out = drain(&mut n);
    send(
        &mut n,
        t(1),
        p.1,
        &Message::reply(
            out[0].1.tid,
            Reply {
                id: p.0,
                addr: Some("203.0.113.1".parse().unwrap()),
                ..Reply::default()
            },
        ),
    );
    assert_eq!(n.status(Family::V4), Status::Connected);
    let _ = drain(&mut n);
    n.connectivity_changed(t(2), Family::V4);
    assert_eq!(n.status(Family::V4), Status::Connecting);
    assert!(n.public_addresses(Family::V4).is_empty());
    n.handle_timeout(t(3));
    let out = drain(&mut n);
    // The node is contacted again (the restarted lookup's find; the bootstrap ping waits while
    // a request to the same address is pending).
    assert!(
        out.iter()
            .any(|(to, m)| *to == p.1 && matches!(&m.body, Body::Request(_))),
        "{out:?}"
    );
    assert_eq!(
        n.timers.get(Timer::Bootstrap),
        Some(t(3) + BOOTSTRAP_PERIOD * 2),
        "bootstrap is running again"
    );
}

#[test]
fn shutdown_waits_for_puts_in_progress() {
    let p = peer(1);
    let mut n = node_knowing(&[p]);
    let key = InfoHash::get("last words");
    let h = n
        .put(t(1), key, Value::new(1, b"bye".to_vec()), PutOptions::default())
        .unwrap();
    let out = drain(&mut n);
    n.shutdown(t(2));
    assert!(
        !events(&mut n).contains(&Event::ShutdownComplete),
        "a put is still in flight"
    );
    let (_, find) = out.iter().find(|(to, _)| *to == p.1).unwrap();
    send(
        &mut n,
        t(3),
        p.1,
        &Message::reply(
            find.tid,
            Reply {
                id: p.0,
                token: Some(vec![3; 20].into()),
                ..Reply::default()
            },
        ),
    );
    let out = drain(&mut n);
    let (_, put) = out
        .iter()
        .find(|(_, m)| {
            matches!(
                &m.body,
                Body::Request(Request {
                    kind: RequestKind::Put(_),
                    ..
                })
            )
        })
        .expect("the put goes out during shutdown");
    send(
        &mut n,
        t(4),
        p.1,
        &Message::reply(
            put.tid,
            Reply {
                id: p.0,
                vid: Some(1),
                ..Reply::default()
            },
        ),
    );
    let ev = events(&mut n);
    let done = ev
        .iter()
        .position(|e| matches!(e, Event::PutDone { op, .. } if *op == h.op))
        .expect("put done");
    let complete = ev
        .iter()
        .position(|e| *e == Event::ShutdownComplete)
        .expect("then shutdown complete");
    assert!(done < complete);
}

#[test]
fn a_flood_of_fragments_from_one_address_is_bounded() {
    let mut n = node_with(Config {
        max_peer_req_per_sec: Some(100),
        ..Config::default()
    });
    let flooder = peer(1);
    // 5000 value-data packets, each opening a new session (a new tid) with no header.
    for tid in 0..5000u32 {
        let parts = vec![wire::ValuePart {
            index: 0,
            offset: 0,
            data: vec![0xee; 1000],
        }];
        let m = Message {
            tid,
            network: 0,
            is_client: false,
            body: Body::ValueData(parts),
        };
        send(&mut n, t(10), flooder.1, &m);
    }
    // Only as many sessions as the per-IP rate allows were opened.
    assert_eq!(n.reassembler.sessions(), 100);
    assert_eq!(n.stats().dropped(DropReason::RateLimitedPeer), 4900);
    let honest = peer(2);
    send(&mut n, t(10), honest.1, &request(honest.0, 1, RequestKind::Ping));
    assert_eq!(drain(&mut n).len(), 1);
    // The sessions time out (3 s without a fragment).
    n.handle_timeout(Instant::from_secs(4));
    assert_eq!(n.reassembler.sessions(), 0);
}

#[test]
fn a_put_made_while_bootstrapping_over_ipv4_does_not_wait_for_ipv6() {
    // Found with Debian's dhtnode: a put issued at start, bootstrapping from an IPv4 node, took
    // 10 s because the IPv6 half waited for a bootstrap that would never connect IPv6.
    let mut n = node();
    let p = peer(1);
    n.bootstrap(t(0), p.1);
    let key = InfoHash::get("early");
    let h = n
        .put(t(1), key, Value::new(1, b"x".to_vec()), PutOptions::default())
        .unwrap();
    let mut now = 2;
    let mut done_at = None;
    // Answer everything, for at most 3 virtual seconds.
    while now < 3000 && done_at.is_none() {
        for (to, m) in drain(&mut n) {
            let mut r = Reply {
                id: p.0,
                addr: Some(to.ip()),
                token: Some(vec![1; 20].into()),
                ..Reply::default()
            };
            if let Body::Request(Request {
                kind:
                    RequestKind::Put(PutRequest {
                        values: Values::Inline(v),
                        ..
                    }),
                ..
            }) = &m.body
            {
                r.vid = Some(v[0].id);
            }
            if to == p.1 {
                send(&mut n, t(now), to, &Message::reply(m.tid, r));
            }
        }
        now += 10;
        n.handle_timeout(t(now));
        done_at = events(&mut n).iter().find_map(|e| match e {
            Event::PutDone { op, outcome, .. } if *op == h.op => Some((now, *outcome)),
            _ => None,
        });
    }
    let (at, outcome) = done_at.expect("the put finished within 3 s, not after IPv6's 10 s wait");
    assert_eq!(outcome.acked, PerFamily::new(1, 0), "at {at} ms");
}

fn signed(id: &crate::crypto::Identity, vid: u64, seq: u16, data: &[u8]) -> Value {
    let mut v = Value::new(vid, data.to_vec());
    v.seq = seq;
    crate::crypto::sign_value(&mut v, id);
    v
}

#[test]
fn signed_puts_are_checked_and_only_their_owner_edits_them_with_a_higher_seq() {
    use crate::crypto::Identity;
    let mut n = node();
    let p = peer(1);
    let key = InfoHash::get("signed");
    let alice = Identity::from_seed(&[1; 32]);
    let mallory = Identity::from_seed(&[2; 32]);
    let token = token_for(&mut n, t(1), p);
    let mut tid = 10;
    let mut put = |n: &mut Node, v: Value| {
        tid += 1;
        send(n, t(2), p.1, &request(p.0, tid, put_req(key, v, token.clone())));
        // Every put is acknowledged, stored or not (OpenDHT's rule).
        let out = drain(n);
        assert!(only_reply(&out).vid.is_some());
    };
    // A forgery: alice's signature over other data.
    let mut forged = signed(&alice, 7, 1, b"real");
    forged.data = b"fake".to_vec();
    put(&mut n, forged);
    assert!(n.local_values(&key).is_empty());
    assert_eq!(n.stats().bad_signatures, 1);
    // Alice's genuine value is stored.
    put(&mut n, signed(&alice, 7, 5, b"v5"));
    assert_eq!(n.local_values(&key)[0].data, b"v5");
    // Mallory, validly signed with a higher seq, cannot replace it; nor can alice with a lower
    // or equal seq; alice with a higher seq can.
    put(&mut n, signed(&mallory, 7, 9, b"mallory"));
    put(&mut n, signed(&alice, 7, 4, b"v4"));
    put(&mut n, signed(&alice, 7, 5, b"v5 again, edited"));
    assert_eq!(n.local_values(&key)[0].data, b"v5");
    put(&mut n, signed(&alice, 7, 6, b"v6"));
    assert_eq!(n.local_values(&key)[0].data, b"v6");
    assert_eq!(n.stats().bad_signatures, 1);
}

#[test]
fn forged_values_in_get_replies_and_listen_updates_are_never_delivered() {
    use crate::crypto::Identity;
    let alice = Identity::from_seed(&[1; 32]);
    let good = signed(&alice, 1, 1, b"good");
    let mut bad = signed(&alice, 2, 1, b"good too");
    bad.data = b"tampered".to_vec();

    let p = peer(1);
    let mut n = node_knowing(&[p]);
    let key = InfoHash::get("replied");
    let op = n.get(t(1), key, Query::default()).unwrap();
    for (to, m) in drain(&mut n) {
        let r = Reply {
            id: p.0,
            token: Some(vec![1; 20].into()),
            values: Some(Values::Inline(vec![good.clone(), bad.clone()].into())),
            ..Reply::default()
        };
        send(&mut n, t(2), to, &Message::reply(m.tid, r));
    }
    let delivered: Vec<Value> = events(&mut n)
        .into_iter()
        .filter_map(|e| match e {
            Event::Values { op: o, values, .. } if o == op => Some(values),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(delivered, vec![good.clone()]);
    assert!(n.stats().bad_signatures >= 1);

    // A listen update carrying a forgery: the good value is reported, the forgery not.
    let mut n = node();
    let key = InfoHash::get("listened");
    let sid = listen_through_peer(&mut n, key, p);
    let before = n.stats().bad_signatures;
    send(
        &mut n,
        t(3),
        p.1,
        &request(
            p.0,
            77,
            RequestKind::Update(UpdateRequest {
                key,
                sid,
                version: Some(1),
                token: Some(vec![1].into()),
                payload: UpdatePayload::Values {
                    values: Values::Inline(vec![good.clone(), bad].into()),
                    created: None,
                },
            }),
        ),
    );
    let added: Vec<Value> = events(&mut n)
        .into_iter()
        .filter_map(|e| match e {
            Event::ListenAdded { values, .. } => Some(values),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(added, vec![good]);
    assert_eq!(n.stats().bad_signatures, before + 1);
}

/// Twelve peers at XOR distance 1 to 12 from `key`: peer `i` is the `i`-th closest.
fn ranked_peers(key: InfoHash) -> Vec<(InfoHash, SocketAddr)> {
    (1..=12u8)
        .map(|i| {
            let mut id = key;
            id.0[19] ^= i;
            (id, SocketAddr::from(([10, 1, i, i], 5000 + u16::from(i))))
        })
        .collect()
}

/// The reply of the peer ranked `rank` (1-based) among `peers`: a token, and as a real node
/// would, the 8 closest peers but itself. With `ninth_from`, the list holds only the closest 8,
/// and that peer's the 9th as well.
fn ranked_reply(peers: &[(InfoHash, SocketAddr)], rank: usize, ninth_from: Option<usize>) -> Reply {
    let closest = peers
        .iter()
        .enumerate()
        .filter(|&(i, _)| i + 1 != rank)
        .filter(|&(i, _)| ninth_from.is_none_or(|from| i < 8 || (i == 8 && from == rank)))
        .take(8)
        .map(|(_, p)| NodeInfo { id: p.0, addr: p.1 })
        .collect();
    Reply {
        id: peers[rank - 1].0,
        token: Some(vec![1; 20].into()),
        nodes4: closest,
        ..Reply::default()
    }
}

/// Drives a put over `peers`, answering every request except those to `silent`, until the put
/// is done; returns the 1-based rank of every peer that was sent a find, in order. Replies as
/// [`ranked_reply`].
fn put_asking(
    peers: &[(InfoHash, SocketAddr)],
    silent: Option<usize>,
    ninth_from: Option<usize>,
) -> (Vec<usize>, PutOutcome) {
    let mut n = node_knowing(peers);
    let mut now = 1;
    put_on(&mut n, peers, &mut now, 1, silent, &|rank| {
        ranked_reply(peers, rank, ninth_from)
    })
}

/// A put of value `vid` under key "k" on `n`, from `*now` (in ms, advanced), answering every
/// request but those to `silent`: a find or get by peer `rank` (1-based) with `reply(rank)`.
/// Once the put is done, answers what is still in flight until the node sends nothing more.
/// Returns the rank of every peer sent a find, in order, and the put's outcome.
fn put_on(
    n: &mut Node,
    peers: &[(InfoHash, SocketAddr)],
    now: &mut u64,
    vid: u64,
    silent: Option<usize>,
    reply: &dyn Fn(usize) -> Reply,
) -> (Vec<usize>, PutOutcome) {
    let key = InfoHash::get("k");
    let h = n
        .put(
            t(*now),
            key,
            Value::new(vid, b"x".to_vec()),
            PutOptions::default(),
        )
        .unwrap();
    let (mut asked, mut outcome) = (Vec::new(), None);
    *now += 1;
    for _ in 0..200 {
        let out = drain(n);
        let idle = out.is_empty();
        if idle && let Some(done) = outcome {
            return (asked, done);
        }
        for (to, m) in out {
            let rank = peers.iter().position(|p| p.1 == to).expect("a known peer") + 1;
            let Body::Request(req) = &m.body else { continue };
            match &req.kind {
                RequestKind::Find { target, .. } if *target == key => asked.push(rank),
                RequestKind::Ping | RequestKind::Find { .. } => {}
                RequestKind::Put(_) => {}
                k => panic!("unexpected request {k:?}"),
            }
            if silent == Some(rank) {
                continue;
            }
            let mut r = reply(rank);
            if let RequestKind::Put(PutRequest {
                values: Values::Inline(v),
                ..
            }) = &req.kind
            {
                r.vid = Some(v[0].id);
            }
            send(n, t(*now), to, &Message::reply(m.tid, r));
            *now += 1;
        }
        for e in events(n) {
            if let Event::PutDone {
                op,
                outcome: o,
                vid: v,
                ..
            } = e
                && op == h.op
            {
                assert_eq!(v, vid, "the put value's id");
                outcome = Some(o);
            }
        }
        // Nothing left to answer: let time run to the node's next deadline.
        if idle && let Some(next) = n.poll_timeout() {
            *now = (*now).max(next.as_micros().div_ceil(1000));
            n.handle_timeout(t(*now));
        }
    }
    panic!("the put never finished; finds sent to {asked:?}");
}

#[test]
fn puts_stop_asking_past_the_closest_eight_once_that_finds_nothing() {
    // Every peer names the true closest 8: the finds past the 8th (OpenDHT's speculation)
    // never find a node the others did not name.
    let peers = ranked_peers(InfoHash::get("k"));
    let mut n = node_knowing(&peers);
    let mut now = 1;
    let mut wide = Vec::new();
    for vid in 1..=160 {
        let (asked, outcome) = put_on(&mut n, &peers, &mut now, vid, None, &|rank| {
            ranked_reply(&peers, rank, None)
        });
        assert_eq!(outcome.acked, PerFamily::new(8, 0), "put {vid}: asked {asked:?}");
        wide.push(asked.iter().any(|&r| r > 8));
    }
    assert!(wide[0], "a new node asks past the closest 8");
    // Once the average says it does not pay, only probes still do, ever fewer (1 put in 8,
    // then 16, 32, and 64) while they find nothing.
    let probes: Vec<usize> = (1..wide.len()).filter(|&i| wide[i] && !wide[i - 1]).collect();
    let gaps: Vec<usize> = probes.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [16, 32, 64], "speculating puts at {probes:?}");
    let stats = n.stats();
    assert!(stats.speculative_searches >= 26, "{stats:?}");
    assert_eq!(stats.speculation_paid, 0);
}

#[test]
fn a_frugal_search_starts_with_one_request_and_hedges_with_a_second() {
    let peers = ranked_peers(InfoHash::get("k"));
    let gets = |out: &[(SocketAddr, Message)]| {
        out.iter()
            .filter(|(_, m)| matches!(&m.body, Body::Request(r) if matches!(r.kind, RequestKind::Get { .. })))
            .count()
    };
    // A new node explores as OpenDHT does: 4 at once.
    let mut new = node_knowing(&peers);
    new.get(t(100_000), InfoHash::get("k"), Query::default()).unwrap();
    assert_eq!(gets(&drain(&mut new)), 4);
    // Once 30 puts have shown that asking past the closest 8 finds nothing, 1.
    let mut n = node_knowing(&peers);
    let mut now = 1;
    for vid in 1..=30 {
        put_on(&mut n, &peers, &mut now, vid, None, &|rank| {
            ranked_reply(&peers, rank, None)
        });
    }
    let start = now + 1000;
    n.get(t(start), InfoHash::get("k"), Query::default()).unwrap();
    assert_eq!(gets(&drain(&mut n)), 1);
    // If that one goes unanswered for 100 ms, a second goes out; no more until a reply.
    let wake = n.poll_timeout().expect("a deadline").as_micros() / 1000;
    assert!(
        wake <= start + 100,
        "the node wakes for the hedge: {wake} from {start}"
    );
    n.handle_timeout(t(start + 99));
    assert_eq!(gets(&drain(&mut n)), 0, "not before 100 ms");
    n.handle_timeout(t(start + 100));
    // The hedge. The scripted peers answered within 1 ms, so the first node's retransmission
    // timeout is the 100 ms floor and fires now too: it is re-sent, and as it has gone
    // unanswered twice the search gives it up as slow and asks another in its place.
    assert_eq!(
        gets(&drain(&mut n)),
        3,
        "the hedge, a retransmission, a replacement"
    );
    n.handle_timeout(t(start + 199));
    assert_eq!(gets(&drain(&mut n)), 0, "two in flight are enough");
}

#[test]
fn speculation_that_finds_one_of_the_closest_eight_is_counted_as_paid() {
    // The closest peer is unknown to the node and to the next 8, which name the 10th
    // instead; only the 10th, asked speculatively, names it.
    let peers = ranked_peers(InfoHash::get("k"));
    let mut n = node_knowing(&peers[1..9]);
    let mut now = 1;
    let reply = |rank: usize| {
        let mut r = ranked_reply(&peers, rank, None);
        if rank <= 9 {
            r.nodes4 = (2..=10)
                .filter(|&i| i != rank)
                .take(8)
                .map(|i| NodeInfo {
                    id: peers[i - 1].0,
                    addr: peers[i - 1].1,
                })
                .collect();
        }
        r
    };
    let (asked, outcome) = put_on(&mut n, &peers, &mut now, 1, None, &reply);
    assert!(
        asked.contains(&1),
        "the closest peer is found and asked: {asked:?}"
    );
    assert!(outcome.ok() && outcome.acked.v4 >= 8, "{outcome:?}");
    let stats = n.stats();
    assert_eq!((stats.speculative_searches, stats.speculation_paid), (1, 1));
}

#[test]
fn a_synced_put_asks_no_further_than_the_closest_eight() {
    let peers = ranked_peers(InfoHash::get("k"));
    // The 9th is learned from the reply that syncs the search, the last of the closest 8.
    let (mut asked, outcome) = put_asking(&peers, None, Some(8));
    asked.sort_unstable();
    assert_eq!(
        asked,
        (1..=8).collect::<Vec<_>>(),
        "each of the closest 8 once, no other"
    );
    assert_eq!(outcome.acked, PerFamily::new(8, 0));
}

#[test]
fn a_silent_node_among_the_closest_eight_does_not_stall_a_put() {
    let peers = ranked_peers(InfoHash::get("k"));
    let (asked, outcome) = put_asking(&peers, Some(3), None);
    assert!(asked.contains(&9), "the 9th closest is asked: {asked:?}");
    assert_eq!(
        outcome.acked,
        PerFamily::new(8, 0),
        "8 others hold the value: {asked:?}"
    );
    assert!(outcome.ok());
}

/// Drives a get over `peers` until it is done, every peer answering, one reply at a time (as
/// replies arrive from a real network); the peers ranked in `holders` (1-based) reply with a
/// value. Returns the rank of every peer asked, in order, and whether the value came.
fn get_asking(peers: &[(InfoHash, SocketAddr)], holders: &[usize]) -> (Vec<usize>, bool) {
    let mut n = node_knowing(peers);
    let key = InfoHash::get("k");
    let op = n.get(t(1), key, Query::default()).unwrap();
    let (mut asked, mut found) = (Vec::new(), false);
    let mut queue = alloc::collections::VecDeque::new();
    let mut now = 2;
    for _ in 0..400 {
        for (to, m) in drain(&mut n) {
            let rank = peers.iter().position(|p| p.1 == to).expect("a known peer") + 1;
            if let Body::Request(Request {
                kind: RequestKind::Get { key: k, .. },
                ..
            }) = &m.body
                && *k == key
            {
                asked.push(rank);
            }
            queue.push_back((rank, to, m));
        }
        if let Some((rank, to, m)) = queue.pop_front() {
            let Body::Request(req) = &m.body else { continue };
            let mut r = ranked_reply(peers, rank, None);
            if matches!(req.kind, RequestKind::Get { .. }) && holders.contains(&rank) {
                r.values = Some(Values::Inline(vec![Value::new(7, b"x".to_vec())].into()));
            }
            send(&mut n, t(now), to, &Message::reply(m.tid, r));
            now += 1;
        } else if let Some(next) = n.poll_timeout() {
            now = now.max(next.as_micros().div_ceil(1000));
            n.handle_timeout(t(now));
        }
        for e in events(&mut n) {
            match e {
                Event::Values { op: o, .. } if o == op => found = true,
                Event::GetDone { op: o, .. } if o == op => return (asked, found),
                _ => {}
            }
        }
    }
    panic!("the get never finished; gets sent to {asked:?}");
}

#[test]
fn a_get_that_has_found_a_value_asks_only_the_closest_eight() {
    let peers = ranked_peers(InfoHash::get("k"));
    let (mut asked, found) = get_asking(&peers, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(found);
    asked.sort_unstable();
    assert_eq!(
        asked,
        (1..=8).collect::<Vec<_>>(),
        "each of the closest 8 once, no other"
    );
}

#[test]
fn a_get_that_has_found_nothing_looks_past_the_closest_eight() {
    let peers = ranked_peers(InfoHash::get("k"));
    let (asked, found) = get_asking(&peers, &[]);
    assert!(!found);
    assert!(asked.contains(&9), "the 9th closest is asked too: {asked:?}");
}

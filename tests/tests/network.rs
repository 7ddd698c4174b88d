//! An in-memory network of 20–50 `dht-proto` nodes: put, get, listen, expiry, refresh,
//! large values, cancel and two address families.

use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::{Event, Family, InfoHash, OpId, PutOptions, Status};
use dht_tests::memnet::{MemNet, Stack};

fn connected(net: &MemNet, fam: Family) -> bool {
    net.nodes.iter().all(|n| n.status(fam) == Status::Connected)
}

fn get_values(net: &MemNet, node: usize, op: OpId) -> Vec<Value> {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::Values { op: o, values, .. } if *o == op => Some(values.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn get_done(net: &MemNet, node: usize, op: OpId) -> Option<bool> {
    net.events[node].iter().find_map(|e| match e {
        Event::GetDone { op: o, ok, .. } if *o == op => Some(*ok),
        _ => None,
    })
}

fn put_done(net: &MemNet, node: usize, op: OpId) -> Option<dht_proto::PutOutcome> {
    net.events[node].iter().find_map(|e| match e {
        Event::PutDone { op: o, outcome, .. } if *o == op => Some(*outcome),
        _ => None,
    })
}

fn boot(seed: u64, stack: Stack, n: usize) -> MemNet {
    let mut net = MemNet::build(seed, stack, n);
    let fam = if stack == Stack::V6 {
        Family::V6
    } else {
        Family::V4
    };
    assert!(
        net.run_until(Duration::from_secs(60), |net| connected(net, fam)),
        "network did not connect"
    );
    net.run_for(Duration::from_secs(30));
    net
}

#[test]
fn put_then_get_from_every_other_node() {
    let mut net = boot(1, Stack::V4, 30);
    let key = InfoHash::get("hello");
    let put = net.with(3, |n, now| {
        n.put(now, key, Value::new(0, b"world".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(30), |net| put_done(net, 3, put.op).is_some()));
    let outcome = put_done(&net, 3, put.op).unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(outcome.acked[0], 8, "{outcome:?}");
    for i in 0..30 {
        let op = net.with(i, |n, now| n.get(now, key, Query::default()).unwrap());
        assert!(
            net.run_until(Duration::from_secs(30), |net| get_done(net, i, op).is_some()),
            "node {i}"
        );
        let values = get_values(&net, i, op);
        assert_eq!(values.len(), 1, "node {i}");
        assert_eq!(values[0].data, b"world");
        assert_eq!(values[0].id, put.vid);
    }
}

fn listen_added(net: &MemNet, node: usize) -> Vec<Value> {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::ListenAdded { values, .. } => Some(values.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn listen_expired(net: &MemNet, node: usize) -> Vec<Value> {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::ListenExpired { values, .. } => Some(values.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn listen_sees_puts_and_expiry() {
    let mut net = boot(2, Stack::V4, 25);
    let key = InfoHash::get("channel");
    let token = net.with(7, |n, now| n.listen(now, key, Query::default()).unwrap());
    net.run_for(Duration::from_secs(5));
    let mut vids = Vec::new();
    for (i, node) in [3usize, 12, 20].into_iter().enumerate() {
        let put = net.with(node, |n, now| {
            n.put(
                now,
                key,
                Value::new(0, format!("msg {i}").into_bytes()),
                PutOptions::default(),
            )
            .unwrap()
        });
        vids.push(put.vid);
        net.run_for(Duration::from_secs(2));
    }
    assert!(net.run_until(Duration::from_secs(10), |net| listen_added(net, 7).len() >= 3));
    let mut seen: Vec<_> = listen_added(&net, 7).iter().map(|v| v.id).collect();
    seen.sort_unstable();
    let mut want = vids.clone();
    want.sort_unstable();
    assert_eq!(seen, want, "each value reported once");
    assert!(listen_expired(&net, 7).is_empty());
    // Type 0 values live 10 minutes: their expiry is reported once, after that.
    net.run_for(Duration::from_secs(9 * 60));
    assert!(listen_expired(&net, 7).is_empty(), "expired too early");
    net.run_for(Duration::from_secs(3 * 60));
    let mut gone: Vec<_> = listen_expired(&net, 7).iter().map(|v| v.id).collect();
    gone.sort_unstable();
    assert_eq!(gone, want);
    // A cancelled listen hears nothing more.
    net.with(7, |n, now| n.cancel_listen(now, token).unwrap());
    let before = listen_added(&net, 7).len();
    net.with(3, |n, now| {
        n.put(now, key, Value::new(0, b"late".to_vec()), PutOptions::default())
            .unwrap()
    });
    net.run_for(Duration::from_secs(10));
    assert_eq!(listen_added(&net, 7).len(), before);
}

#[test]
fn values_expire_and_permanent_puts_are_refreshed() {
    let mut net = boot(3, Stack::V4, 20);
    let plain = InfoHash::get("plain");
    let forever = InfoHash::get("forever");
    let p1 = net.with(4, |n, now| {
        n.put(now, plain, Value::new(1, b"a".to_vec()), PutOptions::default())
            .unwrap()
    });
    let p2 = net.with(4, |n, now| {
        n.put(
            now,
            forever,
            Value::new(2, b"b".to_vec()),
            PutOptions::permanent(),
        )
        .unwrap()
    });
    assert!(
        net.run_until(Duration::from_secs(20), |net| put_done(net, 4, p1.op).is_some()
            && put_done(net, 4, p2.op).is_some())
    );
    let found = |net: &mut MemNet, key: InfoHash, from: usize| {
        let op = net.with(from, |n, now| n.get(now, key, Query::default()).unwrap());
        assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, from, op).is_some()));
        get_values(net, from, op).len()
    };
    net.run_for(Duration::from_secs(9 * 60));
    assert_eq!(found(&mut net, plain, 15), 1, "alive before its expiration");
    net.run_for(Duration::from_secs(2 * 60));
    assert_eq!(found(&mut net, plain, 15), 0, "gone after it");
    // The permanent value outlives several expirations; refreshes keep it on the storers.
    net.run_for(Duration::from_secs(30 * 60));
    assert_eq!(found(&mut net, forever, 16), 1);
    assert!(
        net.nodes[4].stats().sent(dht_proto::MessageKind::Refresh) > 0,
        "refresh used"
    );
    // Once cancelled, it expires.
    net.with(4, |n, now| n.cancel_put(now, forever, 2).unwrap());
    net.run_for(Duration::from_secs(11 * 60));
    assert_eq!(found(&mut net, forever, 16), 0);
}

#[test]
fn large_values_cross_as_fragments() {
    let mut net = boot(4, Stack::V4, 20);
    let key = InfoHash::get("big");
    let data: Vec<u8> = (0..60 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let put = net.with(2, |n, now| {
        n.put(now, key, Value::new(0, data.clone()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(30), |net| put_done(net, 2, put.op).is_some()));
    assert!(put_done(&net, 2, put.op).unwrap().ok());
    let op = net.with(17, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, 17, op).is_some()));
    let values = get_values(&net, 17, op);
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].data, data);
}

#[test]
fn ipv6_only_and_dual_stack_networks() {
    let mut net = boot(5, Stack::V6, 20);
    let key = InfoHash::get("six");
    let put = net.with(1, |n, now| {
        n.put(now, key, Value::new(0, b"v6".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(30), |net| put_done(net, 1, put.op).is_some()));
    let outcome = put_done(&net, 1, put.op).unwrap();
    assert!(
        outcome.ok() && outcome.acked[1] == 8 && outcome.acked[0] == 0,
        "{outcome:?}"
    );
    let op = net.with(19, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, 19, op).is_some()));
    assert_eq!(get_values(&net, 19, op).len(), 1);

    let mut net = boot(6, Stack::Dual, 20);
    assert!(net.run_until(Duration::from_secs(60), |net| connected(net, Family::V6)));
    let put = net.with(1, |n, now| {
        n.put(now, key, Value::new(0, b"both".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(30), |net| put_done(net, 1, put.op).is_some()));
    let outcome = put_done(&net, 1, put.op).unwrap();
    assert_eq!(outcome.acked, [8, 8], "{outcome:?}");
    let op = net.with(18, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, 18, op) == Some(true)));
    assert_eq!(
        get_values(&net, 18, op).len(),
        1,
        "the same value found on both families is delivered once"
    );
}

#[test]
fn queries_filter_and_select() {
    let mut net = boot(7, Stack::V4, 20);
    let key = InfoHash::get("typed");
    for (id, ut) in [(1u64, "a"), (2, "b"), (3, "a")] {
        let mut v = Value::new(id, vec![id as u8; 10]);
        v.user_type = ut.into();
        net.with(5, |n, now| n.put(now, key, v, PutOptions::default()).unwrap());
    }
    net.run_for(Duration::from_secs(10));
    let q = Query::parse("WHERE user_type=a").unwrap();
    let op = net.with(14, |n, now| n.get(now, key, q).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, 14, op).is_some()));
    let mut ids: Vec<u64> = get_values(&net, 14, op).iter().map(|v| v.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 3]);
    let q = Query::parse("SELECT id").unwrap();
    let op = net.with(15, |n, now| n.get(now, key, q).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, 15, op).is_some()));
    let values = get_values(&net, 15, op);
    let mut ids: Vec<u64> = values.iter().map(|v| v.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(values.iter().all(|v| v.data.is_empty()), "only ids were selected");
}

#[test]
fn a_lone_node_answers_from_its_own_storage() {
    let mut net = MemNet::build(8, Stack::V4, 1);
    let key = InfoHash::get("alone");
    let put = net.with(0, |n, now| {
        n.put(now, key, Value::new(5, b"x".to_vec()), PutOptions::default())
            .unwrap()
    });
    net.run_for(Duration::from_secs(1));
    let outcome = put_done(&net, 0, put.op).expect("put done");
    assert!(!outcome.ok());
    let op = net.with(0, |n, now| n.get(now, key, Query::default()).unwrap());
    net.run_for(Duration::from_secs(1));
    assert_eq!(get_done(&net, 0, op), Some(false));
    assert_eq!(get_values(&net, 0, op).len(), 1);
}

#[test]
fn values_survive_the_loss_of_their_first_storers() {
    let mut net = boot(9, Stack::V4, 40);
    let key = InfoHash::get("survivor");
    let put = net.with(0, |n, now| {
        n.put(
            now,
            key,
            Value::new(9, b"still here".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(20), |net| put_done(net, 0, put.op).is_some()));
    let holders = |net: &MemNet| -> Vec<usize> {
        (1..net.nodes.len())
            .filter(|&i| !net.nodes[i].local_values(&key).is_empty())
            .collect()
    };
    let first = holders(&net);
    assert_eq!(first.len(), 8, "{first:?}");
    // All eight storers leave, two at a time, a couple of minutes apart. The putter never
    // re-announces a non-permanent value, so only re-replication can keep it.
    for pair in first.chunks(2) {
        for &i in pair {
            net.take_down(i);
        }
        net.run_for(Duration::from_secs(150));
    }
    let now_holding: Vec<usize> = holders(&net).into_iter().filter(|i| !first.contains(i)).collect();
    assert!(now_holding.len() >= 4, "re-replicated to {now_holding:?}");
    let op = net.with(33, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(60), |net| get_done(net, 33, op).is_some()));
    assert_eq!(get_values(&net, 33, op).len(), 1);
    assert!(net.nodes.iter().map(|n| n.stats().replications).sum::<u64>() > 0);
}

#[test]
fn a_replaced_value_reaches_the_storers_and_cancel_stops_traffic() {
    let mut net = boot(10, Stack::V4, 20);
    let key = InfoHash::get("override");
    let p1 = net.with(2, |n, now| {
        n.put(now, key, Value::new(77, b"one".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(20), |net| put_done(net, 2, p1.op).is_some()));
    let p2 = net.with(2, |n, now| {
        n.put(now, key, Value::new(77, b"two".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(20), |net| put_done(net, 2, p2.op).is_some()));
    let op = net.with(11, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, 11, op).is_some()));
    let values = get_values(&net, 11, op);
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].data, b"two");

    // A permanent put cancelled at once sends nothing more after a short while.
    let p3 = net.with(5, |n, now| {
        n.put(
            now,
            InfoHash::get("p3"),
            Value::new(3, b"x".to_vec()),
            PutOptions::permanent(),
        )
        .unwrap()
    });
    net.with(5, |n, now| {
        n.cancel_put(now, InfoHash::get("p3"), p3.vid).unwrap()
    });
    assert!(put_done(&net, 5, p3.op).is_some(), "a cancelled put reports done");
    net.run_for(Duration::from_secs(30));
    let sent = net.nodes[5].stats().sent(dht_proto::MessageKind::Put);
    net.run_for(Duration::from_secs(30 * 60));
    assert_eq!(net.nodes[5].stats().sent(dht_proto::MessageKind::Put), sent);
    assert_eq!(net.nodes[5].stats().searches, 0, "no search left behind");
}

/// One seed, run twice: the same deliveries, byte for byte. Another seed: another run.
#[test]
fn a_network_run_is_replayed_exactly_from_its_seed() {
    let run = |seed: u64| {
        let mut net = boot(seed, Stack::Dual, 30);
        let key = InfoHash::get("replay");
        net.with(4, |n, now| {
            n.put(now, key, Value::new(0, b"same".to_vec()), PutOptions::default())
                .unwrap()
        });
        net.with(9, |n, now| n.listen(now, key, Query::default()).unwrap());
        net.run_for(Duration::from_secs(120));
        let op = net.with(20, |n, now| n.get(now, key, Query::default()).unwrap());
        net.run_for(Duration::from_secs(30));
        assert_eq!(get_values(&net, 20, op).len(), 1);
        (net.trace, net.delivered, net.events.clone())
    };
    let a = run(42);
    let b = run(42);
    assert!(a.1 > 1000, "the run did something: {} deliveries", a.1);
    assert_eq!(a.0, b.0, "trace hashes differ for the same seed");
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    assert_ne!(run(43).0, a.0);
}

#[test]
fn fifty_nodes_with_loss_put_and_get_everything() {
    let mut net = boot(12, Stack::V4, 50);
    net.set_loss(0.05);
    let mut puts = Vec::new();
    for i in 0..20usize {
        let key = InfoHash::get(format!("key {i}"));
        let from = (i * 7) % 50;
        let h = net.with(from, |n, now| {
            n.put(now, key, Value::new(0, vec![i as u8; 100]), PutOptions::default())
                .unwrap()
        });
        puts.push((key, from, h));
    }
    assert!(net.run_until(Duration::from_secs(60), |net| {
        puts.iter()
            .all(|(_, from, h)| put_done(net, *from, h.op).is_some())
    }));
    for (key, from, h) in &puts {
        let outcome = put_done(&net, *from, h.op).unwrap();
        assert!(outcome.acked[0] >= 6, "{key}: {outcome:?}");
    }
    for (i, (key, _, h)) in puts.iter().enumerate() {
        let at = (i * 13 + 5) % 50;
        let op = net.with(at, |n, now| n.get(now, *key, Query::default()).unwrap());
        assert!(net.run_until(Duration::from_secs(60), |net| get_done(net, at, op).is_some()));
        let values = get_values(&net, at, op);
        assert!(
            values.iter().any(|v| v.id == h.vid),
            "{key} not found from node {at}"
        );
    }
}

#[test]
fn signed_and_encrypted_values_hold_against_a_malicious_node() {
    use dht_proto::Config;
    use dht_proto::crypto::{self, Identity};
    let ids: Vec<Option<Identity>> = (0..20u8)
        .map(|i| (1..=4).contains(&i).then(|| Identity::from_seed(&[i; 32])))
        .collect();
    let (alice, bob, mallory, carol) = (1, 2, 3, 4);
    let mut net = MemNet::new(17, Stack::V4, Duration::from_millis(10));
    for id in &ids {
        let mut c = Config::default();
        c.identity = id.clone();
        net.add(c);
    }
    for i in 1..ids.len() {
        let now = net.now;
        net.nodes[i].bootstrap(now, MemNet::addr4(0));
        net.flush(i);
    }
    assert!(net.run_until(Duration::from_secs(60), |net| connected(net, Family::V4)));
    net.run_for(Duration::from_secs(30));
    let alice_key = ids[alice].as_ref().unwrap().public();
    let bob_key = ids[bob].as_ref().unwrap().public();

    // Alice signs a value; Bob reads it, verified as hers.
    let key = InfoHash::get("alice's notes");
    let put = net.with(alice, |n, now| {
        n.put_signed(now, key, Value::new(42, b"v1".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, alice, put.op).is_some()
    }));

    // Mallory tries a forgery in Alice's name (higher seq) and an edit in her own name.
    let mut forged = Value::new(42, b"evil".to_vec());
    forged.seq = 9;
    crypto::sign_value(&mut forged, ids[mallory].as_ref().unwrap());
    forged.owner = Some(alice_key.to_spki_der());
    let f = net.with(mallory, |n, now| {
        n.put(now, key, forged, PutOptions::default()).unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, mallory, f.op).is_some()
    }));
    let refused: u64 = net.nodes.iter().map(|n| n.stats().bad_signatures).sum();
    assert!(refused >= 1, "no storer noticed the forgery");
    let o = net.with(mallory, |n, now| {
        n.put_signed(
            now,
            key,
            Value::new(42, b"mallory's".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, mallory, o.op).is_some()
    }));
    for reader in [bob, carol, 10, 15] {
        let op = net.with(reader, |n, now| n.get(now, key, Query::default()).unwrap());
        assert!(net.run_until(Duration::from_secs(10), |net| get_done(net, reader, op).is_some()));
        let got = get_values(&net, reader, op);
        // Alice's value arrives intact; the forgery never does. Mallory may publish a value of
        // her own under the same id where Alice's is not stored: it verifies as hers, not Alice's.
        assert!(got.iter().any(|v| v.data == b"v1"), "reader {reader}: {got:?}");
        for v in &got {
            assert_ne!(v.data, b"evil");
            let owner = crypto::verify_value(v).unwrap();
            assert_eq!(owner == alice_key, v.data == b"v1", "reader {reader}: {v:?}");
        }
    }
    // No storer holding Alice's value let Mallory replace it.
    let holders: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| {
            net.nodes[i]
                .local_values(&key)
                .iter()
                .any(|v| v.owner == Some(alice_key.to_spki_der()))
        })
        .collect();
    assert!(holders.len() >= 4, "{holders:?}");
    for &i in &holders {
        for v in net.nodes[i].local_values(&key) {
            assert!(v.data == b"v1" || i == mallory, "storer {i}: {v:?}");
        }
    }

    // Alice raises her own seq: the edit is accepted.
    let put = net.with(alice, |n, now| {
        n.put_signed(now, key, Value::new(42, b"v2".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, alice, put.op).is_some()
    }));
    let op = net.with(bob, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(10), |net| get_done(net, bob, op).is_some()));
    let got = get_values(&net, bob, op);
    assert!(got.iter().any(|v| v.data == b"v2" && v.seq == 1), "{got:?}");

    // Mallory replays Alice's older value (seq 0, genuinely signed): storers keep seq 1.
    let current = net.nodes[holders[0]]
        .local_values(&key)
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(current.seq, 1, "the storers hold v2 now");
    let mut old = Value::new(42, b"v1".to_vec());
    old.seq = 0;
    crypto::sign_value(&mut old, ids[alice].as_ref().unwrap());
    let replay = net.with(mallory, |n, now| {
        n.put(now, key, old, PutOptions::default()).unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, mallory, replay.op).is_some()
    }));
    let op = net.with(bob, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(10), |net| get_done(net, bob, op).is_some()));
    for v in get_values(&net, bob, op) {
        // Only Mallory's own node can still serve the stale copy; a reader keeps the highest seq.
        if crypto::verify_value(&v).unwrap() == alice_key && v.seq == 1 {
            assert_eq!(v.data, b"v2");
        }
    }
    for &i in &holders {
        if i != mallory {
            assert!(
                net.nodes[i].local_values(&key).iter().all(|v| v.seq == 1),
                "storer {i}"
            );
        }
    }

    // Alice encrypts to Bob: Bob reads it; Carol (another identity) is given nothing; a node
    // without identity sees only the ciphertext.
    let secret = InfoHash::get("for bob");
    let put = net.with(alice, |n, now| {
        n.put_encrypted(
            now,
            secret,
            &bob_key,
            Value::new(7, b"psst".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, alice, put.op).is_some()
    }));
    let read = |net: &mut MemNet, who: usize| {
        let op = net.with(who, |n, now| n.get(now, secret, Query::default()).unwrap());
        assert!(net.run_until(Duration::from_secs(10), |net| get_done(net, who, op).is_some()));
        get_values(net, who, op)
    };
    let for_bob = read(&mut net, bob);
    assert_eq!(for_bob.len(), 1);
    assert_eq!(for_bob[0].data, b"psst");
    assert_eq!(for_bob[0].owner, Some(alice_key.to_spki_der()));
    let unreadable_before = net.nodes[carol].stats().unreadable;
    assert!(read(&mut net, carol).is_empty());
    assert!(net.nodes[carol].stats().unreadable > unreadable_before);
    let opaque = read(&mut net, 12);
    assert_eq!(opaque.len(), 1);
    assert!(opaque[0].is_encrypted() && opaque[0].data.is_empty());
    // Mallory flips a byte of the ciphertext and puts it under a new id: Bob never sees it.
    let mut tampered = opaque[0].clone();
    tampered.id = 8;
    let last = tampered.cypher.len() - 1;
    tampered.cypher[last] ^= 1;
    let t = net.with(mallory, |n, now| {
        n.put(now, secret, tampered, PutOptions::default()).unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, mallory, t.op).is_some()
    }));
    let unreadable_before = net.nodes[bob].stats().unreadable;
    let for_bob = read(&mut net, bob);
    assert_eq!(for_bob.len(), 1, "{for_bob:?}");
    assert_eq!(for_bob[0].data, b"psst");
    assert!(net.nodes[bob].stats().unreadable > unreadable_before);

    // By id alone: Carol encrypts to Bob's short id; his announced key is looked up and checked.
    let loc = dht_proto::public_key_location(&bob_key.id());
    let holders = (0..net.nodes.len())
        .filter(|&i| !net.nodes[i].local_values(&loc).is_empty())
        .count();
    assert!(holders >= 4, "Bob's key is announced on {holders} nodes");
    let mailbox = InfoHash::get("bob's mailbox");
    let put = net.with(carol, |n, now| {
        n.put_encrypted_to_id(
            now,
            mailbox,
            bob_key.id(),
            Value::new(0, b"hi bob".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, carol, put.op).is_some()
    }));
    assert!(put_done(&net, carol, put.op).unwrap().total_acked() >= 1);
    let op = net.with(bob, |n, now| n.get(now, mailbox, Query::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(10), |net| get_done(net, bob, op).is_some()));
    let got = get_values(&net, bob, op);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"hi bob");
    // The lookup's own events stay inside the node.
    assert!(
        net.events[carol]
            .iter()
            .all(|e| !matches!(e, Event::Values { key, .. } if *key == loc))
    );
    // An id nobody announced: the put reports no node reached.
    let put = net.with(carol, |n, now| {
        n.put_encrypted_to_id(
            now,
            mailbox,
            InfoHash::get("nobody"),
            Value::new(0, b"lost".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(net.run_until(Duration::from_secs(10), |net| {
        put_done(net, carol, put.op).is_some()
    }));
    let outcome = put_done(&net, carol, put.op).unwrap();
    assert_eq!((outcome.total_acked(), outcome.targeted), (0, [0, 0]));
}

/// Dual-stack nodes that joined over IPv4 only learn their peers' IPv6 addresses: maintenance
/// asks for both families' nodes because the node has both sockets (OpenDHT's `want`), not
/// because both routing tables already have a node (which, for a node that joined over IPv4,
/// never happens).
#[test]
fn nodes_joined_over_ipv4_learn_ipv6_peers() {
    let mut net = MemNet::new(21, Stack::Dual, Duration::from_millis(10));
    for _ in 0..30 {
        net.add(dht_proto::Config::default());
    }
    for i in 1..30 {
        let now = net.now;
        net.nodes[i].bootstrap(now, MemNet::addr4(0));
        // A few join over both families, so some routing tables have IPv6 nodes to give.
        if i < 6 {
            net.nodes[i].bootstrap(now, MemNet::addr6(0));
        }
        net.flush(i);
    }
    net.run_for(Duration::from_secs(10 * 60));
    let v4_only_joiners_with_v6 = (6..30).filter(|&i| net.nodes[i].stats().nodes[1] > 0).count();
    assert_eq!(v4_only_joiners_with_v6, 24, "every IPv4 joiner learns IPv6 peers");
    assert!(connected(&net, Family::V6));
}

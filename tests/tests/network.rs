//! An in-memory network of 20–50 `dht-proto` nodes: put, get, listen, expiry, refresh,
//! large values, cancel and two address families.

use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::{Config, Event, Family, InfoHash, Instant, Node, OpId, PerFamily, PutOptions, Status};
use dht_sim::net::{LinkLatency, Loss, NetConfig};
use dht_sim::{Sim, SimConfig, Stack};

/// The network these tests were written for: 10 ms one way, nothing lost, `n` hosts (not yet
/// bootstrapped) whose nodes have the default configuration, every event kept.
fn network(seed: u64, stack: Stack, n: usize) -> Sim {
    network_of(seed, stack, n, Config::default())
}

/// [`network`] with nodes configured as `node`.
fn network_of(seed: u64, stack: Stack, n: usize, node: Config) -> Sim {
    Sim::new(SimConfig {
        seed,
        nodes: n,
        stack,
        net: NetConfig {
            latency: LinkLatency::Fixed(Duration::from_millis(10)),
            ..NetConfig::default()
        },
        node,
        ..SimConfig::default()
    })
}

/// `n` hosts, each bootstrapping from host 0 (in both families when dual-stack).
fn build(seed: u64, stack: Stack, n: usize) -> Sim {
    bootstrap_from_0(network(seed, stack, n))
}

fn bootstrap_from_0(mut sim: Sim) -> Sim {
    for i in 1..sim.hosts.len() {
        sim.bootstrap_from(i, 0);
    }
    sim
}

/// Runs `f` on host `i`'s node now (the host must be up), then drains the node.
fn on<R>(sim: &mut Sim, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
    sim.with(i, f).expect("the host is up")
}

/// Host `i`'s node (the host must be up).
fn node(sim: &Sim, i: usize) -> &Node {
    sim.node(i).expect("the host is up")
}

fn connected(sim: &Sim, fam: Family) -> bool {
    sim.nodes().all(|(_, n)| n.status(fam) == Status::Connected)
}

fn get_values(sim: &Sim, node: usize, op: OpId) -> Vec<Value> {
    sim.events(node)
        .iter()
        .filter_map(|e| match e {
            Event::Values { op: o, values, .. } if *o == op => Some(values.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn get_done(sim: &Sim, node: usize, op: OpId) -> Option<bool> {
    sim.events(node).iter().find_map(|e| match e {
        Event::GetDone { op: o, ok, .. } if *o == op => Some(*ok),
        _ => None,
    })
}

fn put_done(sim: &Sim, node: usize, op: OpId) -> Option<dht_proto::PutOutcome> {
    sim.events(node).iter().find_map(|e| match e {
        Event::PutDone { op: o, outcome, .. } if *o == op => Some(*outcome),
        _ => None,
    })
}

fn boot(seed: u64, stack: Stack, n: usize) -> Sim {
    settle(build(seed, stack, n), stack)
}

/// Runs until every node is connected in the stack's main family, then 30 s more.
fn settle(mut sim: Sim, stack: Stack) -> Sim {
    let fam = if stack == Stack::V6 {
        Family::V6
    } else {
        Family::V4
    };
    assert!(
        sim.run_until(Duration::from_secs(60), |sim| connected(sim, fam)),
        "network did not connect"
    );
    sim.run_for(Duration::from_secs(30));
    sim
}

#[test]
fn put_then_get_from_every_other_node() {
    let mut sim = boot(1, Stack::V4, 30);
    let key = InfoHash::get("hello");
    let put = on(&mut sim, 3, |n, now| {
        n.put(now, key, Value::new(0, b"world".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(30), |sim| put_done(sim, 3, put.op).is_some()));
    let outcome = put_done(&sim, 3, put.op).unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(outcome.acked.v4, 8, "{outcome:?}");
    for i in 0..30 {
        let op = on(&mut sim, i, |n, now| n.get(now, key, Query::default()).unwrap());
        assert!(
            sim.run_until(Duration::from_secs(30), |sim| get_done(sim, i, op).is_some()),
            "node {i}"
        );
        let values = get_values(&sim, i, op);
        assert_eq!(values.len(), 1, "node {i}");
        assert_eq!(values[0].data, b"world");
        assert_eq!(values[0].id, put.vid);
    }
}

fn listen_added(sim: &Sim, node: usize) -> Vec<Value> {
    sim.events(node)
        .iter()
        .filter_map(|e| match e {
            Event::ListenAdded { values, .. } => Some(values.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn listen_expired(sim: &Sim, node: usize) -> Vec<Value> {
    sim.events(node)
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
    let mut sim = boot(2, Stack::V4, 25);
    let key = InfoHash::get("channel");
    let token = on(&mut sim, 7, |n, now| {
        n.listen(now, key, Query::default()).unwrap()
    });
    sim.run_for(Duration::from_secs(5));
    let mut vids = Vec::new();
    for (i, node) in [3usize, 12, 20].into_iter().enumerate() {
        let put = on(&mut sim, node, |n, now| {
            n.put(
                now,
                key,
                Value::new(0, format!("msg {i}").into_bytes()),
                PutOptions::default(),
            )
            .unwrap()
        });
        vids.push(put.vid);
        sim.run_for(Duration::from_secs(2));
    }
    assert!(sim.run_until(Duration::from_secs(10), |sim| listen_added(sim, 7).len() >= 3));
    let mut seen: Vec<_> = listen_added(&sim, 7).iter().map(|v| v.id).collect();
    seen.sort_unstable();
    let mut want = vids.clone();
    want.sort_unstable();
    assert_eq!(seen, want, "each value reported once");
    assert!(listen_expired(&sim, 7).is_empty());
    // Type 0 values live 10 minutes: their expiry is reported once, after that.
    sim.run_for(Duration::from_secs(9 * 60));
    assert!(listen_expired(&sim, 7).is_empty(), "expired too early");
    sim.run_for(Duration::from_secs(3 * 60));
    let mut gone: Vec<_> = listen_expired(&sim, 7).iter().map(|v| v.id).collect();
    gone.sort_unstable();
    assert_eq!(gone, want);
    // A cancelled listen hears nothing more.
    on(&mut sim, 7, |n, now| n.cancel_listen(now, token).unwrap());
    let before = listen_added(&sim, 7).len();
    on(&mut sim, 3, |n, now| {
        n.put(now, key, Value::new(0, b"late".to_vec()), PutOptions::default())
            .unwrap()
    });
    sim.run_for(Duration::from_secs(10));
    assert_eq!(listen_added(&sim, 7).len(), before);
}

/// With re-replication on, as nodes run by default: on dht-sim's network the closest sets still
/// change after the put, so storers re-announce both values. A re-announced copy keeps its
/// original creation time (`Storage::store` keeps the later of the stored and the announced
/// time), so the plain value still dies at its 10 minutes.
#[test]
fn values_expire_and_permanent_puts_are_refreshed() {
    values_expire_and_permanent_puts_are_refreshed_on(network(3, Stack::V4, 20));
}

/// The same without re-replication (expiry alone).
#[test]
fn values_expire_with_re_replication_off() {
    let mut node = Config::default();
    node.replicate = false;
    values_expire_and_permanent_puts_are_refreshed_on(network_of(3, Stack::V4, 20, node));
}

fn values_expire_and_permanent_puts_are_refreshed_on(sim: Sim) {
    let mut sim = settle(bootstrap_from_0(sim), Stack::V4);
    let plain = InfoHash::get("plain");
    let forever = InfoHash::get("forever");
    let p1 = on(&mut sim, 4, |n, now| {
        n.put(now, plain, Value::new(1, b"a".to_vec()), PutOptions::default())
            .unwrap()
    });
    let p2 = on(&mut sim, 4, |n, now| {
        n.put(
            now,
            forever,
            Value::new(2, b"b".to_vec()),
            PutOptions::permanent(),
        )
        .unwrap()
    });
    assert!(
        sim.run_until(Duration::from_secs(20), |sim| put_done(sim, 4, p1.op).is_some()
            && put_done(sim, 4, p2.op).is_some())
    );
    let found = |sim: &mut Sim, key: InfoHash, from: usize| {
        let op = on(sim, from, |n, now| n.get(now, key, Query::default()).unwrap());
        assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, from, op).is_some()));
        get_values(sim, from, op).len()
    };
    sim.run_for(Duration::from_secs(9 * 60));
    assert_eq!(found(&mut sim, plain, 15), 1, "alive before its expiration");
    sim.run_for(Duration::from_secs(2 * 60));
    assert_eq!(found(&mut sim, plain, 15), 0, "gone after it");
    // The permanent value outlives several expirations; refreshes keep it on the storers.
    sim.run_for(Duration::from_secs(30 * 60));
    assert_eq!(found(&mut sim, forever, 16), 1);
    assert!(
        node(&sim, 4).stats().sent(dht_proto::MessageKind::Refresh) > 0,
        "refresh used"
    );
    // Once cancelled, it expires.
    on(&mut sim, 4, |n, now| n.cancel_put(now, forever, 2).unwrap());
    sim.run_for(Duration::from_secs(11 * 60));
    assert_eq!(found(&mut sim, forever, 16), 0);
}

#[test]
fn large_values_cross_as_fragments() {
    let mut sim = boot(4, Stack::V4, 20);
    let key = InfoHash::get("big");
    let data: Vec<u8> = (0..60 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let put = on(&mut sim, 2, |n, now| {
        n.put(now, key, Value::new(0, data.clone()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(30), |sim| put_done(sim, 2, put.op).is_some()));
    assert!(put_done(&sim, 2, put.op).unwrap().ok());
    let op = on(&mut sim, 17, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, 17, op).is_some()));
    let values = get_values(&sim, 17, op);
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].data, data);
}

#[test]
fn ipv6_only_and_dual_stack_networks() {
    let mut sim = boot(5, Stack::V6, 20);
    let key = InfoHash::get("six");
    let put = on(&mut sim, 1, |n, now| {
        n.put(now, key, Value::new(0, b"v6".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(30), |sim| put_done(sim, 1, put.op).is_some()));
    let outcome = put_done(&sim, 1, put.op).unwrap();
    assert!(
        outcome.ok() && outcome.acked.v6 == 8 && outcome.acked.v4 == 0,
        "{outcome:?}"
    );
    let op = on(&mut sim, 19, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, 19, op).is_some()));
    assert_eq!(get_values(&sim, 19, op).len(), 1);

    let mut sim = boot(6, Stack::Dual, 20);
    assert!(sim.run_until(Duration::from_secs(60), |sim| connected(sim, Family::V6)));
    let put = on(&mut sim, 1, |n, now| {
        n.put(now, key, Value::new(0, b"both".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(30), |sim| put_done(sim, 1, put.op).is_some()));
    let outcome = put_done(&sim, 1, put.op).unwrap();
    assert_eq!(outcome.acked, PerFamily::new(8, 8), "{outcome:?}");
    let op = on(&mut sim, 18, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, 18, op) == Some(true)));
    assert_eq!(
        get_values(&sim, 18, op).len(),
        1,
        "the same value found on both families is delivered once"
    );
}

#[test]
fn queries_filter_and_select() {
    let mut sim = boot(7, Stack::V4, 20);
    let key = InfoHash::get("typed");
    for (id, ut) in [(1u64, "a"), (2, "b"), (3, "a")] {
        let mut v = Value::new(id, vec![id as u8; 10]);
        v.user_type = ut.into();
        on(&mut sim, 5, |n, now| {
            n.put(now, key, v, PutOptions::default()).unwrap()
        });
    }
    sim.run_for(Duration::from_secs(10));
    let q = Query::parse("WHERE user_type=a").unwrap();
    let op = on(&mut sim, 14, |n, now| n.get(now, key, q).unwrap());
    assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, 14, op).is_some()));
    let mut ids: Vec<u64> = get_values(&sim, 14, op).iter().map(|v| v.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 3]);
    let q = Query::parse("SELECT id").unwrap();
    let op = on(&mut sim, 15, |n, now| n.get(now, key, q).unwrap());
    assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, 15, op).is_some()));
    let values = get_values(&sim, 15, op);
    let mut ids: Vec<u64> = values.iter().map(|v| v.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(values.iter().all(|v| v.data.is_empty()), "only ids were selected");
}

#[test]
fn a_lone_node_answers_from_its_own_storage() {
    let mut sim = build(8, Stack::V4, 1);
    let key = InfoHash::get("alone");
    let put = on(&mut sim, 0, |n, now| {
        n.put(now, key, Value::new(5, b"x".to_vec()), PutOptions::default())
            .unwrap()
    });
    sim.run_for(Duration::from_secs(1));
    let outcome = put_done(&sim, 0, put.op).expect("put done");
    assert!(!outcome.ok());
    let op = on(&mut sim, 0, |n, now| n.get(now, key, Query::default()).unwrap());
    sim.run_for(Duration::from_secs(1));
    assert_eq!(get_done(&sim, 0, op), Some(false));
    assert_eq!(get_values(&sim, 0, op).len(), 1);
}

#[test]
fn values_survive_the_loss_of_their_first_storers() {
    let mut sim = boot(9, Stack::V4, 40);
    let key = InfoHash::get("survivor");
    let put = on(&mut sim, 0, |n, now| {
        n.put(
            now,
            key,
            Value::new(9, b"still here".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(20), |sim| put_done(sim, 0, put.op).is_some()));
    let holders = |sim: &Sim| -> Vec<usize> {
        sim.nodes()
            .filter(|&(i, n)| i >= 1 && !n.local_values(&key).is_empty())
            .map(|(i, _)| i)
            .collect()
    };
    let first = holders(&sim);
    assert_eq!(first.len(), 8, "{first:?}");
    // All eight storers leave, two at a time, a couple of minutes apart. The putter never
    // re-announces a non-permanent value, so only re-replication can keep it.
    for pair in first.chunks(2) {
        for &i in pair {
            sim.crash(i);
        }
        sim.run_for(Duration::from_secs(150));
    }
    let now_holding: Vec<usize> = holders(&sim).into_iter().filter(|i| !first.contains(i)).collect();
    assert!(now_holding.len() >= 4, "re-replicated to {now_holding:?}");
    let op = on(&mut sim, 33, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(60), |sim| get_done(sim, 33, op).is_some()));
    assert_eq!(get_values(&sim, 33, op).len(), 1);
    assert!(sim.nodes().map(|(_, n)| n.stats().replications).sum::<u64>() > 0);
}

#[test]
fn a_replaced_value_reaches_the_storers_and_cancel_stops_traffic() {
    let mut sim = boot(10, Stack::V4, 20);
    let key = InfoHash::get("override");
    let p1 = on(&mut sim, 2, |n, now| {
        n.put(now, key, Value::new(77, b"one".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(20), |sim| put_done(sim, 2, p1.op).is_some()));
    let p2 = on(&mut sim, 2, |n, now| {
        n.put(now, key, Value::new(77, b"two".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(20), |sim| put_done(sim, 2, p2.op).is_some()));
    let op = on(&mut sim, 11, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(30), |sim| get_done(sim, 11, op).is_some()));
    let values = get_values(&sim, 11, op);
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].data, b"two");

    // A permanent put cancelled at once sends nothing more after a short while.
    let p3 = on(&mut sim, 5, |n, now| {
        n.put(
            now,
            InfoHash::get("p3"),
            Value::new(3, b"x".to_vec()),
            PutOptions::permanent(),
        )
        .unwrap()
    });
    on(&mut sim, 5, |n, now| {
        n.cancel_put(now, InfoHash::get("p3"), p3.vid).unwrap()
    });
    assert!(put_done(&sim, 5, p3.op).is_some(), "a cancelled put reports done");
    sim.run_for(Duration::from_secs(30));
    let sent = node(&sim, 5).stats().sent(dht_proto::MessageKind::Put);
    sim.run_for(Duration::from_secs(30 * 60));
    assert_eq!(node(&sim, 5).stats().sent(dht_proto::MessageKind::Put), sent);
    assert_eq!(node(&sim, 5).stats().searches, 0, "no search left behind");
}

/// One seed, run twice: the same deliveries, byte for byte. Another seed: another run.
#[test]
fn a_network_run_is_replayed_exactly_from_its_seed() {
    let run = |seed: u64| {
        let mut sim = boot(seed, Stack::Dual, 30);
        let key = InfoHash::get("replay");
        on(&mut sim, 4, |n, now| {
            n.put(now, key, Value::new(0, b"same".to_vec()), PutOptions::default())
                .unwrap()
        });
        on(&mut sim, 9, |n, now| {
            n.listen(now, key, Query::default()).unwrap()
        });
        sim.run_for(Duration::from_secs(120));
        let op = on(&mut sim, 20, |n, now| n.get(now, key, Query::default()).unwrap());
        sim.run_for(Duration::from_secs(30));
        assert_eq!(get_values(&sim, 20, op).len(), 1);
        let events: Vec<Vec<Event>> = sim.hosts.iter().map(|h| h.events.clone()).collect();
        (sim.trace(), sim.delivered(), events)
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
    let mut sim = boot(12, Stack::V4, 50);
    sim.net.set_config(NetConfig {
        loss: Loss::Random(0.05),
        ..sim.net.config().clone()
    });
    let mut puts = Vec::new();
    for i in 0..20usize {
        let key = InfoHash::get(format!("key {i}"));
        let from = (i * 7) % 50;
        let h = on(&mut sim, from, |n, now| {
            n.put(now, key, Value::new(0, vec![i as u8; 100]), PutOptions::default())
                .unwrap()
        });
        puts.push((key, from, h));
    }
    assert!(sim.run_until(Duration::from_secs(60), |sim| {
        puts.iter()
            .all(|(_, from, h)| put_done(sim, *from, h.op).is_some())
    }));
    for (key, from, h) in &puts {
        let outcome = put_done(&sim, *from, h.op).unwrap();
        assert!(outcome.acked.v4 >= 6, "{key}: {outcome:?}");
    }
    for (i, (key, _, h)) in puts.iter().enumerate() {
        let at = (i * 13 + 5) % 50;
        let op = on(&mut sim, at, |n, now| n.get(now, *key, Query::default()).unwrap());
        assert!(sim.run_until(Duration::from_secs(60), |sim| get_done(sim, at, op).is_some()));
        let values = get_values(&sim, at, op);
        assert!(
            values.iter().any(|v| v.id == h.vid),
            "{key} not found from node {at}"
        );
    }
}

#[test]
fn signed_and_encrypted_values_hold_against_a_malicious_node() {
    use dht_proto::crypto::{self, Identity};
    let ids: Vec<Option<Identity>> = (0..20u8)
        .map(|i| (1..=4).contains(&i).then(|| Identity::from_seed(&[i; 32])))
        .collect();
    let (alice, bob, mallory, carol) = (1, 2, 3, 4);
    let mut sim = network(17, Stack::V4, 0);
    for id in &ids {
        let mut c = Config::default();
        c.identity = id.clone();
        sim.add_host_with(c);
    }
    for i in 1..ids.len() {
        sim.bootstrap_from(i, 0);
    }
    assert!(sim.run_until(Duration::from_secs(60), |sim| connected(sim, Family::V4)));
    sim.run_for(Duration::from_secs(30));
    let alice_key = ids[alice].as_ref().unwrap().public();
    let bob_key = ids[bob].as_ref().unwrap().public();

    // Alice signs a value; Bob reads it, verified as hers.
    let key = InfoHash::get("alice's notes");
    let put = on(&mut sim, alice, |n, now| {
        n.put_signed(now, key, Value::new(42, b"v1".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, alice, put.op).is_some()
    }));

    // Mallory tries a forgery in Alice's name (higher seq) and an edit in her own name.
    let mut forged = Value::new(42, b"evil".to_vec());
    forged.seq = 9;
    crypto::sign_value(&mut forged, ids[mallory].as_ref().unwrap());
    forged.owner = Some(alice_key.to_spki_der());
    let f = on(&mut sim, mallory, |n, now| {
        n.put(now, key, forged, PutOptions::default()).unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, mallory, f.op).is_some()
    }));
    let refused: u64 = sim.nodes().map(|(_, n)| n.stats().bad_signatures).sum();
    assert!(refused >= 1, "no storer noticed the forgery");
    let o = on(&mut sim, mallory, |n, now| {
        n.put_signed(
            now,
            key,
            Value::new(42, b"mallory's".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, mallory, o.op).is_some()
    }));
    for reader in [bob, carol, 10, 15] {
        let op = on(&mut sim, reader, |n, now| {
            n.get(now, key, Query::default()).unwrap()
        });
        assert!(sim.run_until(Duration::from_secs(10), |sim| get_done(sim, reader, op).is_some()));
        let got = get_values(&sim, reader, op);
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
    let holders: Vec<usize> = sim
        .nodes()
        .filter(|(_, n)| {
            n.local_values(&key)
                .iter()
                .any(|v| v.owner == Some(alice_key.to_spki_der()))
        })
        .map(|(i, _)| i)
        .collect();
    assert!(holders.len() >= 4, "{holders:?}");
    for &i in &holders {
        for v in node(&sim, i).local_values(&key) {
            assert!(v.data == b"v1" || i == mallory, "storer {i}: {v:?}");
        }
    }

    // Alice raises her own seq: the edit is accepted.
    let put = on(&mut sim, alice, |n, now| {
        n.put_signed(now, key, Value::new(42, b"v2".to_vec()), PutOptions::default())
            .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, alice, put.op).is_some()
    }));
    let op = on(&mut sim, bob, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(10), |sim| get_done(sim, bob, op).is_some()));
    let got = get_values(&sim, bob, op);
    assert!(got.iter().any(|v| v.data == b"v2" && v.seq == 1), "{got:?}");

    // Mallory replays Alice's older value (seq 0, genuinely signed): storers keep seq 1.
    let current = node(&sim, holders[0])
        .local_values(&key)
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(current.seq, 1, "the storers hold v2 now");
    let mut old = Value::new(42, b"v1".to_vec());
    old.seq = 0;
    crypto::sign_value(&mut old, ids[alice].as_ref().unwrap());
    let replay = on(&mut sim, mallory, |n, now| {
        n.put(now, key, old, PutOptions::default()).unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, mallory, replay.op).is_some()
    }));
    let op = on(&mut sim, bob, |n, now| n.get(now, key, Query::default()).unwrap());
    assert!(sim.run_until(Duration::from_secs(10), |sim| get_done(sim, bob, op).is_some()));
    for v in get_values(&sim, bob, op) {
        // Only Mallory's own node can still serve the stale copy; a reader keeps the highest seq.
        if crypto::verify_value(&v).unwrap() == alice_key && v.seq == 1 {
            assert_eq!(v.data, b"v2");
        }
    }
    for &i in &holders {
        if i != mallory {
            assert!(
                node(&sim, i).local_values(&key).iter().all(|v| v.seq == 1),
                "storer {i}"
            );
        }
    }

    // Alice encrypts to Bob: Bob reads it; Carol (another identity) is given nothing; a node
    // without identity sees only the ciphertext.
    let secret = InfoHash::get("for bob");
    let put = on(&mut sim, alice, |n, now| {
        n.put_encrypted(
            now,
            secret,
            &bob_key,
            Value::new(7, b"psst".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, alice, put.op).is_some()
    }));
    let read = |sim: &mut Sim, who: usize| {
        let op = on(sim, who, |n, now| n.get(now, secret, Query::default()).unwrap());
        assert!(sim.run_until(Duration::from_secs(10), |sim| get_done(sim, who, op).is_some()));
        get_values(sim, who, op)
    };
    let for_bob = read(&mut sim, bob);
    assert_eq!(for_bob.len(), 1);
    assert_eq!(for_bob[0].data, b"psst");
    assert_eq!(for_bob[0].owner, Some(alice_key.to_spki_der()));
    let unreadable_before = node(&sim, carol).stats().unreadable;
    assert!(read(&mut sim, carol).is_empty());
    assert!(node(&sim, carol).stats().unreadable > unreadable_before);
    let opaque = read(&mut sim, 12);
    assert_eq!(opaque.len(), 1);
    assert!(opaque[0].is_encrypted() && opaque[0].data.is_empty());
    // Mallory flips a byte of the ciphertext and puts it under a new id: Bob never sees it.
    let mut tampered = opaque[0].clone();
    tampered.id = 8;
    let last = tampered.cypher.len() - 1;
    tampered.cypher[last] ^= 1;
    let t = on(&mut sim, mallory, |n, now| {
        n.put(now, secret, tampered, PutOptions::default()).unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, mallory, t.op).is_some()
    }));
    let unreadable_before = node(&sim, bob).stats().unreadable;
    let for_bob = read(&mut sim, bob);
    assert_eq!(for_bob.len(), 1, "{for_bob:?}");
    assert_eq!(for_bob[0].data, b"psst");
    assert!(node(&sim, bob).stats().unreadable > unreadable_before);

    // By id alone: Carol encrypts to Bob's short id; his announced key is looked up and checked.
    let loc = dht_proto::public_key_location(&bob_key.id());
    let holders = sim
        .nodes()
        .filter(|(_, n)| !n.local_values(&loc).is_empty())
        .count();
    assert!(holders >= 4, "Bob's key is announced on {holders} nodes");
    let mailbox = InfoHash::get("bob's mailbox");
    let put = on(&mut sim, carol, |n, now| {
        n.put_encrypted_to_id(
            now,
            mailbox,
            bob_key.id(),
            Value::new(0, b"hi bob".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, carol, put.op).is_some()
    }));
    assert!(put_done(&sim, carol, put.op).unwrap().total_acked() >= 1);
    let op = on(&mut sim, bob, |n, now| {
        n.get(now, mailbox, Query::default()).unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| get_done(sim, bob, op).is_some()));
    let got = get_values(&sim, bob, op);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"hi bob");
    // The lookup's own events stay inside the node.
    assert!(
        sim.events(carol)
            .iter()
            .all(|e| !matches!(e, Event::Values { key, .. } if *key == loc))
    );
    // An id nobody announced: the put reports no node reached.
    let put = on(&mut sim, carol, |n, now| {
        n.put_encrypted_to_id(
            now,
            mailbox,
            InfoHash::get("nobody"),
            Value::new(0, b"lost".to_vec()),
            PutOptions::default(),
        )
        .unwrap()
    });
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        put_done(sim, carol, put.op).is_some()
    }));
    let outcome = put_done(&sim, carol, put.op).unwrap();
    assert_eq!(
        (outcome.total_acked(), outcome.targeted),
        (0, PerFamily::new(0, 0))
    );
}

/// Dual-stack nodes that joined over IPv4 only learn their peers' IPv6 addresses: maintenance
/// asks for both families' nodes because the node has both sockets (OpenDHT's `want`), not
/// because both routing tables already have a node (which, for a node that joined over IPv4,
/// never happens).
#[test]
fn nodes_joined_over_ipv4_learn_ipv6_peers() {
    let mut sim = network(21, Stack::Dual, 30);
    for i in 1..30 {
        on(&mut sim, i, |n, now| {
            n.bootstrap(now, Sim::addr4(0));
            // A few join over both families, so some routing tables have IPv6 nodes to give.
            if i < 6 {
                n.bootstrap(now, Sim::addr6(0));
            }
        });
    }
    sim.run_for(Duration::from_secs(10 * 60));
    let v4_only_joiners_with_v6 = (6..30).filter(|&i| node(&sim, i).stats().nodes.v6 > 0).count();
    assert_eq!(v4_only_joiners_with_v6, 24, "every IPv4 joiner learns IPv6 peers");
    assert!(connected(&sim, Family::V6));
}

/// A put issued right after `bootstrap` to a node that has not answered yet completes in a few
/// round trips. Three connected nodes a, b, c; d bootstraps from a; b bootstraps from d (or from
/// an address where no node answers) and puts at once. The nodes joined over IPv4 only, as on a
/// loopback run of dht-mio, so the IPv6 family has no node at all: its half of the put used to
/// wait `CONNECT_GRACE` (10 s) because `bootstrap` had armed the bootstrap timer.
#[test]
fn a_put_right_after_a_bootstrap_is_not_held() {
    for (stack, silent) in [(Stack::V4, false), (Stack::Dual, false), (Stack::Dual, true)] {
        let mut sim = network(8, stack, 3);
        for i in 1..3 {
            on(&mut sim, i, |n, now| n.bootstrap(now, Sim::addr4(0)));
        }
        let mut sim = settle(sim, Stack::V4);
        let d = sim.add_host();
        on(&mut sim, d, |n, now| n.bootstrap(now, Sim::addr4(0)));
        let to = if silent { Sim::addr4(9) } else { Sim::addr4(d) };
        on(&mut sim, 1, |n, now| n.bootstrap(now, to));
        let start = sim.now;
        let put = on(&mut sim, 1, |n, now| {
            n.put(
                now,
                InfoHash::get("soon"),
                Value::new(1, b"v".to_vec()),
                PutOptions::default(),
            )
            .unwrap()
        });
        assert!(sim.run_until(Duration::from_secs(30), |sim| put_done(sim, 1, put.op).is_some()));
        let took = sim.now - start;
        let outcome = put_done(&sim, 1, put.op).unwrap();
        assert!(outcome.ok(), "{stack:?}: {outcome:?}");
        assert!(took < Duration::from_secs(1), "{stack:?}: the put took {took:?}");
    }
}

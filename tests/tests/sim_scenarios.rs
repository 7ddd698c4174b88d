//! Simulator scenarios on fixed seeds. A failure prints `DHT_SIM_SEED=<n>`; run the test again
//! with that variable set to replay it exactly.

use std::collections::BTreeSet;
use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::net::{LinkLatency, Loss, NetConfig};
use dht_sim::{Op, Sim, SimConfig, run_seeds};

fn build(seed: u64, nodes: usize, net: NetConfig) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes,
        net,
        ..SimConfig::default()
    });
    assert!(
        sim.bootstrap_all(Duration::from_secs(120)),
        "bootstrap did not connect every node"
    );
    sim.run_for(Duration::from_secs(60));
    sim
}

fn key(i: usize) -> InfoHash {
    InfoHash::get(format!("key {i}"))
}

/// `n` puts of distinct keys from random nodes; returns (key, put op).
fn put_many(sim: &mut Sim, n: usize, opts: PutOptions) -> Vec<(InfoHash, Op)> {
    let puts: Vec<(InfoHash, Op)> = (0..n)
        .map(|i| {
            let from = sim.random_up();
            (
                key(i),
                sim.put(
                    from,
                    key(i),
                    Value::new(0, format!("value {i}").into_bytes()),
                    opts,
                ),
            )
        })
        .collect();
    let ops: Vec<Op> = puts.iter().map(|p| p.1).collect();
    assert!(
        sim.run_until_done(&ops, Duration::from_secs(120)),
        "puts did not finish"
    );
    puts
}

/// A get of each put from a random other node; returns how many found their value.
fn get_all(sim: &mut Sim, puts: &[(InfoHash, Op)]) -> usize {
    let gets: Vec<(Op, u64)> = puts
        .iter()
        .map(|(k, p)| {
            let vid = sim.op(*p).and_then(|r| r.vid).expect("put has a vid");
            let at = sim.random_up_except(p.0);
            (sim.get(at, *k), vid)
        })
        .collect();
    let ops: Vec<Op> = gets.iter().map(|g| g.0).collect();
    assert!(
        sim.run_until_done(&ops, Duration::from_secs(300)),
        "gets did not finish"
    );
    gets.iter().filter(|(g, vid)| sim.found(*g, *vid)).count()
}

#[test]
fn thousand_nodes_every_value_found() {
    run_seeds("thousand_nodes_every_value_found", &[1], |seed| {
        let mut sim = build(seed, 1000, NetConfig::default());
        let mark = sim.mark();
        let puts = put_many(&mut sim, 1000, PutOptions::default());
        let found = get_all(&mut sim, &puts);
        let report = sim.report(&mark);
        println!("{report}");
        assert_eq!(found, 1000);
        // No loss, no churn: every request is answered on its first send. A node that drops or
        // delays replies shows up here even when retransmissions hide it from the results.
        let retransmits: u64 = sim
            .hosts
            .iter()
            .filter_map(|h| h.node.as_ref())
            .map(|n| n.stats().retransmits)
            .sum();
        let timeouts: u64 = sim
            .hosts
            .iter()
            .filter_map(|h| h.node.as_ref())
            .map(|n| n.stats().timeouts)
            .sum();
        assert_eq!(
            (retransmits, timeouts),
            (0, 0),
            "requests went unanswered on a perfect network"
        );
    });
}

#[test]
fn listeners_hear_every_put_and_every_expiry() {
    run_seeds("listeners_hear_every_put_and_every_expiry", &[2], |seed| {
        let mut sim = build(seed, 200, NetConfig::default());
        let keys: Vec<InfoHash> = (0..5).map(|i| InfoHash::get(format!("channel {i}"))).collect();
        let listeners: Vec<(usize, dht_sim::Op)> = (0..10)
            .map(|i| {
                let at = sim.random_up();
                (i % 5, sim.listen(at, keys[i % 5]))
            })
            .collect();
        sim.run_for(Duration::from_secs(10));
        let mut vids: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); 5];
        for i in 0..50 {
            let from = sim.random_up();
            let op = sim.put(
                from,
                keys[i % 5],
                Value::new(0, format!("msg {i}").into_bytes()),
                PutOptions::default(),
            );
            sim.run_for(Duration::from_millis(500));
            vids[i % 5].insert(sim.op(op).and_then(|r| r.vid).unwrap());
        }
        sim.run_for(Duration::from_secs(30));
        for (k, l) in &listeners {
            let heard = &sim.op(*l).unwrap().found;
            assert_eq!(heard, &vids[*k], "listener of key {k} missed puts");
        }
        // Type 0 values live 10 minutes: no expiry before, every expiry after.
        sim.run_for(Duration::from_secs(8 * 60));
        for (_, l) in &listeners {
            assert!(sim.op(*l).unwrap().expired.is_empty(), "expired too early");
        }
        sim.run_for(Duration::from_secs(3 * 60));
        for (k, l) in &listeners {
            assert_eq!(
                &sim.op(*l).unwrap().expired,
                &vids[*k],
                "listener of key {k} missed expiries"
            );
        }
    });
}

#[test]
fn twenty_percent_loss_gets_still_succeed() {
    run_seeds("twenty_percent_loss_gets_still_succeed", &[3], |seed| {
        let mut sim = build(seed, 300, NetConfig::default());
        sim.net.set_config(NetConfig {
            loss: Loss::Random(0.2),
            ..NetConfig::default()
        });
        let mark = sim.mark();
        let puts = put_many(&mut sim, 300, PutOptions::default());
        let found = get_all(&mut sim, &puts);
        println!("{}", sim.report(&mark));
        assert!(found * 100 >= 99 * 300, "only {found}/300 gets succeeded");
    });
}

#[test]
fn churn_of_thirty_percent_in_an_hour_keeps_permanent_values() {
    run_seeds(
        "churn_of_thirty_percent_in_an_hour_keeps_permanent_values",
        &[4],
        |seed| {
            let mut sim = build(seed, 300, NetConfig::default());
            let mark = sim.mark();
            let puts = put_many(&mut sim, 100, PutOptions::permanent());
            // The putters stay (a permanent put lives as long as its putter); anyone else may go.
            let keep: BTreeSet<usize> = puts.iter().map(|(_, op)| op.0).collect();
            let replaced = sim.churn_over(90, Duration::from_secs(3600), &keep).len();
            assert_eq!(replaced, 90, "30 % of 300 nodes replaced");
            let found = get_all(&mut sim, &puts);
            println!("{}", sim.report(&mark));
            assert!(
                found * 1000 >= 999 * 100,
                "only {found}/100 values retrievable after churn"
            );
        },
    );
}

#[test]
fn values_put_on_both_sides_of_a_partition_are_found_everywhere_after_healing() {
    run_seeds("partition_then_heal", &[5, 15], |seed| {
        let mut sim = build(seed, 200, NetConfig::default());
        let left: Vec<usize> = (0..100).collect();
        let right: Vec<usize> = (100..200).collect();
        sim.net.partition(&[("left", &left), ("right", &right)]);
        sim.run_for(Duration::from_secs(60));
        // Type 4 values live 7 days: only re-replication, not their putter, can carry them
        // across once the halves meet again.
        let mut puts = Vec::new();
        for i in 0..40usize {
            let side = if i % 2 == 0 { &left } else { &right };
            let from = side[(i * 7) % 100];
            let k = InfoHash::get(format!("split {i}"));
            let mut v = Value::new(0, vec![i as u8; 20]);
            v.value_type = 4;
            puts.push((k, sim.put(from, k, v, PutOptions::default())));
        }
        let ops: Vec<Op> = puts.iter().map(|p| p.1).collect();
        assert!(sim.run_until_done(&ops, Duration::from_secs(120)));
        sim.run_for(Duration::from_secs(9 * 60));
        sim.net.heal();
        // Buckets that only held the other half went stale during the split; maintenance
        // refreshes them, storers then see new closest nodes and re-announce.
        sim.run_for(Duration::from_secs(5 * 60));
        let mut missing = Vec::new();
        for (i, (k, p)) in puts.iter().enumerate() {
            let vid = sim.op(*p).and_then(|r| r.vid).unwrap();
            for at in [left[(i * 13) % 100], right[(i * 17) % 100]] {
                let g = sim.get(at, *k);
                assert!(sim.run_until_done(&[g], Duration::from_secs(60)));
                if !sim.found(g, vid) {
                    missing.push((i, at));
                }
            }
        }
        assert!(missing.is_empty(), "not found after healing: {missing:?}");
    });
}

#[test]
fn values_vanish_after_their_types_expiration_and_not_before() {
    run_seeds("expiry", &[6], |seed| {
        let mut sim = build(seed, 100, NetConfig::default());
        let plain = InfoHash::get("ten minutes");
        let ice = InfoHash::get("one minute");
        let p = sim.put(
            10,
            plain,
            Value::new(0, b"type 0".to_vec()),
            PutOptions::default(),
        );
        let mut v = Value::new(0, b"type 5".to_vec());
        v.value_type = 5; // ICE candidates: 1 minute.
        let q = sim.put(20, ice, v, PutOptions::default());
        assert!(sim.run_until_done(&[p, q], Duration::from_secs(30)));
        let (pv, qv) = (sim.op(p).unwrap().vid.unwrap(), sim.op(q).unwrap().vid.unwrap());
        let check = |sim: &mut Sim, key: InfoHash, vid: u64| {
            let at = sim.random_up();
            let g = sim.get(at, key);
            assert!(sim.run_until_done(&[g], Duration::from_secs(30)));
            sim.found(g, vid)
        };
        sim.run_for(Duration::from_secs(45));
        assert!(check(&mut sim, ice, qv), "a 1-minute value gone before its time");
        sim.run_for(Duration::from_secs(30));
        assert!(!check(&mut sim, ice, qv), "a 1-minute value outlived its type");
        sim.run_for(Duration::from_secs(7 * 60));
        assert!(
            check(&mut sim, plain, pv),
            "a 10-minute value gone before its time"
        );
        sim.run_for(Duration::from_secs(2 * 60 + 30));
        assert!(!check(&mut sim, plain, pv), "a 10-minute value outlived its type");
    });
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut sim = build(
            seed,
            150,
            NetConfig {
                loss: Loss::Random(0.05),
                ..NetConfig::default()
            },
        );
        let puts = put_many(&mut sim, 30, PutOptions::default());
        get_all(&mut sim, &puts);
        (sim.trace(), sim.processed())
    };
    let a = run(9);
    assert_eq!(a, run(9));
    assert_ne!(a.0, run(10).0);
    // Changing a fault rate does not change what the nodes are: the same ids for the same seed.
    let ids = |loss| {
        let sim = Sim::new(SimConfig {
            seed: 9,
            nodes: 20,
            net: NetConfig {
                loss,
                ..NetConfig::default()
            },
            ..SimConfig::default()
        });
        sim.hosts
            .iter()
            .map(|h| h.node.as_ref().unwrap().node_id())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(Loss::None), ids(Loss::Random(0.3)));
}

#[test]
fn crashed_nodes_fall_silent_and_restart_with_or_without_their_state() {
    run_seeds("crash_and_restart", &[7], |seed| {
        let mut sim = build(seed, 60, NetConfig::default());
        let k = InfoHash::get("crash");
        let p = sim.put(1, k, Value::new(0, b"v".to_vec()), PutOptions::default());
        assert!(sim.run_until_done(&[p], Duration::from_secs(30)));
        let holders: Vec<usize> = (0..60)
            .filter(|&i| {
                sim.with(i, |n, _| !n.local_values(&k).is_empty())
                    .unwrap_or(false)
            })
            .collect();
        let h = *holders
            .iter()
            .find(|&&i| i != 1)
            .expect("a storer other than the putter");
        let old_id = sim.with(h, |n, _| n.node_id()).unwrap();
        // Down: it receives nothing, and no timer of it runs.
        let node = sim.crash(h).expect("was up");
        assert!(!sim.is_up(h));
        let before = node.stats().received;
        sim.run_for(Duration::from_secs(60));
        // Back with its state: same id, still holding the value, and it hears from others again.
        sim.restart(h, Some(node));
        sim.run_for(Duration::from_secs(60));
        assert_eq!(sim.with(h, |n, _| n.node_id()), Some(old_id));
        assert!(sim.with(h, |n, _| !n.local_values(&k).is_empty()).unwrap());
        assert!(sim.with(h, |n, _| n.stats().received.total()).unwrap() > before.total());
        // Back without it: a new node (new id, nothing stored) at the same address.
        sim.crash(h);
        sim.restart(h, None);
        sim.bootstrap(h, 2);
        assert_ne!(sim.with(h, |n, _| n.node_id()), Some(old_id));
        assert!(sim.with(h, |n, _| n.local_values(&k).is_empty()).unwrap());
        assert!(
            sim.run_until(Duration::from_secs(30), |s| s.status(h, dht_proto::Family::V4)
                == Some(dht_proto::Status::Connected))
        );
    });
}

#[test]
fn a_young_network_finds_every_value() {
    // All 100 nodes bootstrap at once, each from one node that started before it, and the puts
    // begin half a second after the last one connected: routing tables are still thin, and a
    // search's closest 8 are not always the true ones. Every value must still be found.
    run_seeds("a_young_network_finds_every_value", &[1, 2, 3], |seed| {
        let mut sim = Sim::new(SimConfig {
            seed,
            nodes: 100,
            net: NetConfig {
                latency: LinkLatency::Uniform(Duration::from_micros(50), Duration::from_millis(2)),
                ..NetConfig::default()
            },
            ..SimConfig::default()
        });
        assert!(
            sim.bootstrap_at_once(Duration::from_secs(60)),
            "bootstrap did not connect every node"
        );
        sim.run_for(Duration::from_millis(500));
        let mut missing = Vec::new();
        for i in 0..100 {
            let k = InfoHash::get(format!("young {seed} {i}"));
            let from = sim.random_up();
            let p = sim.put(from, k, Value::new(0, b"v".to_vec()), PutOptions::default());
            assert!(
                sim.run_until_done(&[p], Duration::from_secs(60)),
                "put did not finish"
            );
            let vid = sim.op(p).and_then(|r| r.vid).expect("put has a vid");
            let at = sim.random_up_except(from);
            let g = sim.get(at, k);
            assert!(
                sim.run_until_done(&[g], Duration::from_secs(60)),
                "get did not finish"
            );
            if !sim.found(g, vid) {
                missing.push(i);
            }
        }
        assert!(missing.is_empty(), "values not found: {missing:?}");
    });
}

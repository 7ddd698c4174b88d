//! dht-smol nodes on loopback: bounded in time (every await that could hang is raced against a
//! timer), no fixed sleeps.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_smol::{Change, Config, Error, Handle};
use smol::future::FutureExt;
use smol::stream::StreamExt;

const WAIT: Duration = Duration::from_secs(20);

#[path = "node/complete_gets.rs"]
mod complete_gets;

/// `f`, or a panic after `WAIT`.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    f.or(async {
        smol::Timer::after(WAIT).await;
        panic!("timed out: {what}")
    })
    .await
}

/// A loopback config whose node has the identity of `seed`.
fn with_identity(seed: u8) -> Config {
    let mut c = Config::loopback();
    c.node.identity = Some(dht_proto::crypto::Identity::from_seed(&[seed; 32]));
    c
}

async fn network(n: usize) -> Vec<Handle> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Handle::start(Config::loopback()).await.unwrap());
    }
    for node in nodes.iter().skip(1) {
        node.bootstrap_addr(nodes[0].local_addrs()[0]).unwrap();
    }
    for node in &nodes {
        node.wait_connected(WAIT).await.unwrap();
    }
    nodes
}

#[test]
fn two_nodes_then_ten_put_and_get_small_and_60_kib_values() {
    smol::block_on(async {
        let two = network(2).await;
        let key = InfoHash::get("pair");
        let stored = bounded("put", two[0].put(key, Value::new(0, b"hi".to_vec())))
            .await
            .unwrap();
        assert!(stored.outcome.total_acked() >= 1);
        let got: Vec<Value> = bounded("get", two[1].get(key).collect()).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, stored.vid);

        let ten = network(10).await;
        let big = InfoHash::get("big");
        let data: Vec<u8> = (0..60 * 1024).map(|i| (i % 251) as u8).collect();
        bounded("big put", ten[4].put(big, Value::new(0, data.clone())))
            .await
            .unwrap();
        for n in &ten {
            let got = bounded("big get", n.get_all(big)).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].data, data);
        }
        for n in two.iter().chain(&ten) {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_listen_stream_hears_puts_and_dropping_it_cancels_the_listen() {
    smol::block_on(async {
        let net = network(4).await;
        let key = InfoHash::get("room");
        let before = net[1].stats().await.unwrap().operations;
        let mut listen = net[1].listen(key);
        bounded("put", net[2].put(key, Value::new(0, b"one".to_vec())))
            .await
            .unwrap();
        match bounded("listen", listen.next()).await {
            Some(Ok(Change::Added(v))) => assert_eq!(v[0].data, b"one"),
            other => panic!("{other:?}"),
        }
        assert_eq!(net[1].stats().await.unwrap().operations, before + 1);
        drop(listen);
        // The cancel is applied before the next command: nothing of the listen is left.
        assert_eq!(net[1].stats().await.unwrap().operations, before);
        for n in &net {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_get_stream_dropped_mid_search_leaves_nothing_behind() {
    smol::block_on(async {
        let net = network(5).await;
        let key = InfoHash::get("dropped");
        bounded("put", net[0].put(key, Value::new(0, b"x".to_vec())))
            .await
            .unwrap();
        let idle = net[3].stats().await.unwrap();
        let mut s = net[3].get(key);
        // Take the first value, then drop the stream while the search may still run.
        assert!(bounded("first value", s.next()).await.is_some());
        drop(s);
        let after = net[3].stats().await.unwrap();
        assert_eq!(after.operations, idle.operations, "{after:?}");
        // A stream dropped before it was ever polled, too.
        drop(net[3].get(InfoHash::get("never polled")));
        assert_eq!(net[3].stats().await.unwrap().operations, idle.operations);
        for n in &net {
            n.shutdown().await;
        }
    });
}

#[test]
fn shutdown_lets_a_pending_put_finish_then_everything_is_closed() {
    smol::block_on(async {
        let net = network(3).await;
        let key = InfoHash::get("last words");
        let n = net[1].clone();
        let put = smol::spawn(async move { n.put(key, Value::new(0, b"bye".to_vec())).await });
        // Shut down at once: the put was sent first, so it is pending, and it finishes.
        let n = net[1].clone();
        let stopped = smol::spawn(async move { n.shutdown().await });
        let stored = bounded("put", put).await.unwrap();
        assert!(stored.outcome.total_acked() >= 1);
        bounded("shutdown", stopped).await;
        assert_eq!(bounded("get", net[2].get_all(key)).await.unwrap()[0].data, b"bye");
        assert!(matches!(net[1].stats().await, Err(Error::Closed)));
        assert!(matches!(net[1].get_all(key).await, Err(Error::Closed)));
        assert!(matches!(
            net[1].put(key, Value::new(0, vec![1])).await,
            Err(Error::Closed)
        ));
        assert!(matches!(
            net[1].listen(key).next().await,
            Some(Err(Error::Closed))
        ));
        assert!(matches!(
            net[1].bootstrap_addr(net[0].local_addrs()[0]),
            Err(Error::Closed)
        ));
        for n in &net {
            n.shutdown().await;
        }
    });
}

#[test]
fn bad_input_gives_typed_errors() {
    smol::block_on(async {
        let a = Handle::start(Config::loopback()).await.unwrap();
        // `.invalid` never resolves (RFC 6761).
        assert!(matches!(
            a.bootstrap_host("no-such-host.invalid:4222").await,
            Err(Error::Resolve { .. })
        ));
        assert!(!a.bootstrap_host("localhost").await.unwrap().is_empty());
        let taken = a.local_addrs()[0].port();
        let clash = Config {
            port: taken,
            ..Config::loopback()
        };
        assert!(matches!(Handle::bind(clash).await, Err(Error::Bind { .. })));
        let none = Config {
            bind4: None,
            bind6: None,
            ..Config::loopback()
        };
        assert!(matches!(Handle::bind(none).await, Err(Error::NoSocket)));
        // The zero key is refused by the node: each operation says so.
        let zero = InfoHash::default();
        assert!(matches!(
            a.put(zero, Value::new(0, vec![1])).await,
            Err(Error::Command(_))
        ));
        assert!(matches!(a.get_all(zero).await, Err(Error::Command(_))));
        assert!(matches!(
            a.listen(zero).next().await,
            Some(Err(Error::Command(_)))
        ));
        a.shutdown().await;
    });
}

#[test]
fn permanent_put_cancel_and_export_import() {
    smol::block_on(async {
        let net = network(3).await;
        let key = InfoHash::get("kept");
        let stored = bounded(
            "put",
            net[0].put_with(key, Value::new(0, b"p".to_vec()), PutOptions::permanent()),
        )
        .await
        .unwrap();
        assert!(
            net[0]
                .export_values()
                .await
                .unwrap()
                .iter()
                .any(|e| e.value.id == stored.vid)
        );
        net[0].cancel_put(key, stored.vid).unwrap();
        // Cancelled: our own copy is gone (commands apply in order, so the export sees it).
        assert!(
            !net[0]
                .export_values()
                .await
                .unwrap()
                .iter()
                .any(|e| e.value.id == stored.vid)
        );
        let values = net[1].export_values().await.unwrap();
        let nodes = net[1].export_nodes().await.unwrap();
        assert!(!nodes.is_empty());
        assert!(!net[1].public_addresses().await.unwrap().is_empty());
        let fresh = Handle::start(Config::loopback()).await.unwrap();
        fresh.import_values(values.clone()).await.unwrap();
        fresh.import_nodes(nodes).await.unwrap();
        fresh.wait_connected(WAIT).await.unwrap();
        assert_eq!(fresh.export_values().await.unwrap().len(), values.len());
        for n in net.iter().chain([&fresh]) {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_mixed_network_of_mio_runners_and_smol_nodes_exchanges_values() {
    use dht_mio::Runner;
    smol::block_on(async {
        let runners: Vec<Runner> = (0..3)
            .map(|_| Runner::run(dht_mio::Config::loopback()).unwrap())
            .collect();
        let nodes = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(Handle::start(Config::loopback()).await.unwrap());
            }
            v
        };
        // Alternate joins across drivers.
        for (i, n) in nodes.iter().enumerate() {
            n.bootstrap_addr(runners[i].local_addrs()[0]).unwrap();
            runners[(i + 1) % 3].bootstrap_addr(n.local_addrs()[0]).unwrap();
        }
        for n in &nodes {
            n.wait_connected(WAIT).await.unwrap();
        }
        for r in &runners {
            assert!(r.wait_connected(WAIT));
        }
        for i in 0..3 {
            let k = InfoHash::get(format!("from smol {i}"));
            bounded("smol put", nodes[i].put(k, Value::new(0, vec![i as u8])))
                .await
                .unwrap();
            let k2 = InfoHash::get(format!("from mio {i}"));
            runners[i]
                .put_blocking(k2, Value::new(0, vec![i as u8]), WAIT)
                .unwrap();
        }
        for i in 0..3 {
            for r in &runners {
                let got = r
                    .get_blocking(InfoHash::get(format!("from smol {i}")), WAIT)
                    .unwrap();
                assert_eq!(got.len(), 1, "mio did not get smol's value {i}");
            }
            for n in &nodes {
                let got = bounded("get", n.get_all(InfoHash::get(format!("from mio {i}"))))
                    .await
                    .unwrap();
                assert_eq!(got.len(), 1, "smol did not get mio's value {i}");
            }
        }
        for n in &nodes {
            n.shutdown().await;
        }
        for r in runners {
            r.shutdown(WAIT).unwrap();
        }
    });
}

#[test]
fn the_handle_is_clone_send_sync_and_dropping_everything_ends_the_driver() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Handle>();
    smol::block_on(async {
        let (a, driver) = Handle::bind(Config::loopback()).await.unwrap();
        let task = smol::spawn(driver);
        let b = Handle::start(Config::loopback()).await.unwrap();
        a.bootstrap_addr(b.local_addrs()[0]).unwrap();
        a.wait_connected(WAIT).await.unwrap();
        // A put future dropped before its end: the put runs to its end in the node (the value
        // was handed over), then nothing of it is left.
        let key = InfoHash::get("dropped put");
        let baseline = a.stats().await.unwrap().operations;
        let mut fut = Box::pin(a.put(key, Value::new(0, b"w".to_vec())));
        assert!(
            smol::future::poll_once(&mut fut).await.is_none(),
            "not done after one poll"
        );
        drop(fut);
        let end = std::time::Instant::now() + WAIT;
        while a.stats().await.unwrap().operations > baseline {
            assert!(std::time::Instant::now() < end, "the dropped put never finished");
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        // Every handle and stream gone: the driver task ends (no task left behind).
        let listen = a.listen(key);
        drop(a);
        drop(listen);
        bounded("driver end", task).await;
        b.shutdown().await;
    });
}

#[test]
fn signed_and_encrypted_puts_through_the_async_api() {
    use dht_proto::crypto::{self, Identity};
    smol::block_on(async {
        let alice = Handle::start(with_identity(1)).await.unwrap();
        let bob = Handle::start(with_identity(2)).await.unwrap();
        let plain = Handle::start(Config::loopback()).await.unwrap();
        bob.bootstrap_addr(alice.local_addrs()[0]).unwrap();
        plain.bootstrap_addr(alice.local_addrs()[0]).unwrap();
        bob.wait_connected(WAIT).await.unwrap();
        plain.wait_connected(WAIT).await.unwrap();
        let alice_pk = Identity::from_seed(&[1; 32]).public();
        let bob_pk = Identity::from_seed(&[2; 32]).public();
        let key = InfoHash::get("signed via smol");
        bounded("signed put", alice.put_signed(key, Value::new(0, b"s".to_vec())))
            .await
            .unwrap();
        let got = bounded("get", bob.get_all(key)).await.unwrap();
        assert_eq!(crypto::verify_value(&got[0]).unwrap(), alice_pk);
        let secret = InfoHash::get("encrypted via smol");
        bounded(
            "encrypted put",
            alice.put_encrypted(secret, &bob_pk, Value::new(0, b"e".to_vec())),
        )
        .await
        .unwrap();
        let got = bounded("get", bob.get_all(secret)).await.unwrap();
        assert_eq!(got[0].data, b"e");
        let opaque = bounded("get", plain.get_all(secret)).await.unwrap();
        assert!(opaque[0].is_encrypted());
        // Without an identity, a signed put is refused with a typed error.
        assert!(matches!(
            plain.put_signed(key, Value::new(0, vec![1])).await,
            Err(Error::Command(dht_proto::CommandError::NoIdentity))
        ));
        for n in [alice, bob, plain] {
            n.shutdown().await;
        }
    });
}

#[test]
fn encrypting_to_an_id_finds_the_announced_key() {
    use dht_proto::crypto::Identity;
    smol::block_on(async {
        let alice = Handle::start(with_identity(1)).await.unwrap();
        let bob = Handle::start(with_identity(2)).await.unwrap();
        bob.bootstrap_addr(alice.local_addrs()[0]).unwrap();
        bob.wait_connected(WAIT).await.unwrap();
        alice.wait_connected(WAIT).await.unwrap();
        let bob_id = Identity::from_seed(&[2; 32]).public().id();
        let key = InfoHash::get("to bob by id");
        // Bob announces his key once connected: retry until the lookup finds it.
        let end = std::time::Instant::now() + WAIT;
        loop {
            let stored = bounded(
                "put",
                alice.put_encrypted_to_id(key, bob_id, Value::new(0, b"hey".to_vec())),
            )
            .await
            .unwrap();
            if stored.outcome.total_acked() >= 1 {
                break;
            }
            assert!(std::time::Instant::now() < end, "bob's key never found");
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        assert_eq!(bounded("get", bob.get_all(key)).await.unwrap()[0].data, b"hey");
        alice.shutdown().await;
        bob.shutdown().await;
    });
}

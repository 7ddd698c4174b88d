//! Runners on loopback sockets: bounded in time, no fixed sleeps (waits poll a condition).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::Duration;

use dht_mio::{Change, Config, Error, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::{DropReason, InfoHash, PutOptions};

const WAIT: Duration = Duration::from_secs(15);

#[path = "runner/complete_gets.rs"]
mod complete_gets;

fn network(n: usize) -> Vec<Runner> {
    let runners: Vec<Runner> = (0..n).map(|_| Runner::run(Config::loopback()).unwrap()).collect();
    for r in runners.iter().skip(1) {
        r.bootstrap_addr(runners[0].local_addrs()[0]).unwrap();
    }
    for r in &runners {
        assert!(r.wait_connected(WAIT), "a runner did not connect");
    }
    runners
}

#[test]
fn ten_runners_put_and_get_small_and_60_kib_values() {
    let net = network(10);
    let small = InfoHash::get("small");
    let big = InfoHash::get("big");
    let data: Vec<u8> = (0..60 * 1024).map(|i| (i % 253) as u8).collect();
    assert!(
        net[3]
            .put_blocking(small, Value::new(0, b"hi".to_vec()), WAIT)
            .unwrap()
            .total_acked()
            >= 1
    );
    assert!(
        net[5]
            .put_blocking(big, Value::new(0, data.clone()), WAIT)
            .unwrap()
            .total_acked()
            >= 1
    );
    for r in &net {
        let v = r.get_blocking(small, WAIT).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].data, b"hi");
        let v = r.get_blocking(big, WAIT).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].data, data);
    }
    for r in net {
        r.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn a_listen_is_told_of_puts_and_cancel_stops_it() {
    let net = network(4);
    let key = InfoHash::get("room");
    let (tx, rx) = mpsc::channel();
    let token = net[1]
        .listen(key, Query::default(), move |change| {
            let (values, expired) = match change {
                Change::Added(v) => (v, false),
                Change::Expired(v) => (v, true),
                Change::Failed(e) => panic!("listen failed: {e}"),
            };
            for v in values {
                let _ = tx.send((v.data.clone(), expired));
            }
        })
        .unwrap();
    net[2]
        .put_blocking(key, Value::new(0, b"one".to_vec()), WAIT)
        .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (b"one".to_vec(), false));
    net[1].cancel_listen(token);
    net[3]
        .put_blocking(key, Value::new(0, b"two".to_vec()), WAIT)
        .unwrap();
    // The get below finishing means the runner has turned past the put; nothing more came.
    net[1].get_blocking(key, WAIT).unwrap();
    let late: Vec<_> = rx.try_iter().collect();
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn a_hostile_peer_does_not_stop_the_runner_from_serving_others() {
    let net = network(3);
    let target = net[0].local_addrs()[0];
    // The hostile peer has an address of its own, as it would on a real network: on the
    // runners' own 127.0.0.1 its flood would use up the per-address request budget they share,
    // and the node would rightly drop their requests as well.
    let hostile = UdpSocket::bind("127.0.0.2:0").unwrap();
    // Garbage, truncated messages, value data without a header, and a ping flood.
    let ping =
        dht_proto::wire::Message::request(1, InfoHash::get("flood"), dht_proto::wire::RequestKind::Ping)
            .encode_to_vec();
    for i in 0..3000u32 {
        let _ = hostile.send_to(&i.to_be_bytes(), target);
        let _ = hostile.send_to(&ping[..ping.len() / 2], target);
        let _ = hostile.send_to(&ping, target);
    }
    let key = InfoHash::get("still served");
    let put = net[1]
        .put_blocking(key, Value::new(0, b"ok".to_vec()), WAIT)
        .unwrap();
    assert!(put.total_acked() >= 1, "{put:?}");
    assert_eq!(net[2].get_blocking(key, WAIT).unwrap().len(), 1);
    // Some datagrams may be lost in the socket buffer; those that arrived were counted.
    let end = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < end && net[0].stats().dropped(DropReason::Malformed) == 0 {
        std::thread::park_timeout(Duration::from_millis(10));
    }
    let s = net[0].stats();
    assert!(s.dropped(DropReason::Malformed) > 0, "{s:?}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let first = Runner::run(Config::loopback()).unwrap();
    let taken = first.local_addrs()[0].port();
    let config = Config {
        port: taken,
        ..Config::loopback()
    };
    match Runner::run(config) {
        Err(Error::Bind { addr, .. }) => assert_eq!(addr.port(), taken),
        other => panic!("expected a bind error, got {other:?}"),
    }
    let none = Config {
        bind4: None,
        bind6: None,
        ..Config::loopback()
    };
    assert!(matches!(Runner::run(none), Err(Error::NoSocket)));
}

#[test]
fn callbacks_may_command_runners_but_waiting_calls_refuse_instead_of_deadlocking() {
    let net = network(3);
    let key = InfoHash::get("from a callback");
    let other = InfoHash::get("chained");
    let (tx, rx) = mpsc::channel();
    let h = net[1].handle();
    let h2 = net[1].handle();
    net[1]
        .put(
            key,
            Value::new(0, b"first".to_vec()),
            PutOptions::default(),
            move |r| {
                assert!(r.unwrap().total_acked() >= 1);
                // A waiting call from the runner's thread is refused, not a deadlock.
                let blocked = h.get_blocking(key, WAIT);
                let _ = tx.send(format!("{blocked:?}"));
                // Non-waiting calls work: chain a put, then a get from its callback.
                let tx2 = tx.clone();
                h.put(
                    other,
                    Value::new(0, b"second".to_vec()),
                    PutOptions::default(),
                    move |r| {
                        assert!(r.is_ok());
                        let tx3 = tx2.clone();
                        h2.get(
                            other,
                            Query::default(),
                            move |v| {
                                let _ = tx3.send(String::from_utf8_lossy(&v[0].data).into_owned());
                            },
                            |_| {},
                        )
                        .unwrap();
                    },
                )
                .unwrap();
            },
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "Err(OnRunnerThread)");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "second");
    // A refused command reaches its callback as an error.
    let (tx, rx) = mpsc::channel();
    net[2]
        .put(
            InfoHash::default(),
            Value::new(0, b"x".to_vec()),
            PutOptions::default(),
            move |r| {
                let _ = tx.send(r.is_err());
            },
        )
        .unwrap();
    assert!(rx.recv_timeout(WAIT).unwrap());
    assert!(matches!(
        net[2].get_blocking(InfoHash::default(), WAIT),
        Err(Error::Command(_))
    ));
    // A handle outliving its runner fails cleanly.
    let h = net[0].handle();
    for r in net {
        r.shutdown(Duration::from_secs(5)).unwrap();
    }
    assert!(matches!(h.get_blocking(key, WAIT), Err(Error::Closed)));
    assert!(matches!(h.export_nodes(), Err(Error::Closed)));
    assert!(matches!(h.routing_summary(), Err(Error::Closed)));
}

#[test]
fn bootstrap_by_host_name_and_a_name_that_does_not_resolve() {
    let a = Runner::run(Config::loopback()).unwrap();
    let b = Runner::run(Config::loopback()).unwrap();
    let port = a.local_addrs()[0].port();
    let addrs = b.bootstrap_host(&format!("localhost:{port}")).unwrap();
    assert!(!addrs.is_empty());
    assert!(b.wait_connected(WAIT));
    // `.invalid` never resolves (RFC 6761).
    match b.bootstrap_host("no-such-host.invalid:4222") {
        Err(Error::Resolve { host, .. }) => assert_eq!(host, "no-such-host.invalid:4222"),
        other => panic!("expected a resolve error, got {other:?}"),
    }
    // In the config, too: the runner does not start.
    let bad = Config {
        bootstrap: vec!["no-such-host.invalid".into()],
        ..Config::loopback()
    };
    assert!(matches!(Runner::run(bad), Err(Error::Resolve { .. })));
    // A bootstrap list that resolves joins at start.
    let c = Runner::run(Config {
        bootstrap: vec![format!("127.0.0.1:{port}")],
        ..Config::loopback()
    })
    .unwrap();
    assert!(c.wait_connected(WAIT));
}

#[test]
fn export_and_import_move_nodes_and_values_to_a_new_runner() {
    let net = network(4);
    let key = InfoHash::get("kept");
    net[1]
        .put_opts_blocking(key, Value::new(7, b"state".to_vec()), PutOptions::default(), WAIT)
        .unwrap();
    let holder = net
        .iter()
        .find(|r| r.export_values().unwrap().iter().any(|e| e.key == key))
        .expect("someone stores the value");
    let values = holder.export_values().unwrap();
    let nodes = holder.export_nodes().unwrap();
    assert!(nodes.len() >= 3, "{nodes:?}");
    assert!(!holder.public_addresses().unwrap().is_empty());
    // The routing tables as typed counts: the nodes it knows, in buckets covering the id space.
    let t = holder.routing_summary().unwrap();
    assert_eq!(t.v4.first().map(|b| b.first), Some(InfoHash::ZERO), "{t:?}");
    assert_eq!(t.v4.iter().filter(|b| b.own).count(), 1, "{t:?}");
    let known: usize = t.v4.iter().map(|b| b.good + b.dubious).sum();
    assert!(known >= 3, "{t:?}");
    let fresh = Runner::run(Config::loopback()).unwrap();
    fresh.import_values(values).unwrap();
    fresh.import_nodes(nodes).unwrap();
    // Imported nodes are enough to join (no bootstrap call).
    assert!(fresh.wait_connected(WAIT));
    let here = fresh.export_values().unwrap();
    assert!(here.iter().any(|e| e.key == key && e.value.data == b"state"));
    assert!(fresh.stats().stored_values >= 1);
    assert_eq!(fresh.get_blocking(key, WAIT).unwrap()[0].id, 7);
}

#[test]
fn shutdown_lets_a_pending_put_finish() {
    let net = network(3);
    let key = InfoHash::get("last words");
    let (tx, rx) = mpsc::channel();
    let mut net = net.into_iter();
    let first = net.next().unwrap();
    let rest: Vec<Runner> = net.collect();
    rest[0]
        .put(
            key,
            Value::new(0, b"bye".to_vec()),
            PutOptions::default(),
            move |r| {
                let _ = tx.send(r.map(|o| o.total_acked()));
            },
        )
        .unwrap();
    let mut rest = rest.into_iter();
    rest.next().unwrap().shutdown(WAIT).unwrap();
    // The outcome came before the runner stopped.
    assert!(rx.try_recv().unwrap().unwrap() >= 1);
    assert_eq!(first.get_blocking(key, WAIT).unwrap()[0].data, b"bye");
    // join() after request_shutdown from another handle.
    let r = rest.next().unwrap();
    r.handle().request_shutdown();
    r.join().unwrap();
}

#[test]
fn pooled_runners_share_a_thread_free_their_port_and_refuse_waiting_calls_from_callbacks() {
    let pool = dht_mio::Pool::new().unwrap();
    let a = pool.run(Config::loopback()).unwrap();
    let b = pool.run(Config::loopback()).unwrap();
    let own = Runner::run(Config::loopback()).unwrap();
    b.bootstrap_addr(a.local_addrs()[0]).unwrap();
    own.bootstrap_addr(a.local_addrs()[0]).unwrap();
    assert!(b.wait_connected(WAIT) && own.wait_connected(WAIT));
    let key = InfoHash::get("pool");
    let (tx, rx) = mpsc::channel();
    let a_handle = a.handle();
    let own_handle = own.handle();
    b.put(
        key,
        Value::new(0, b"p".to_vec()),
        PutOptions::default(),
        move |_| {
            // `a` shares this thread: waiting on it would deadlock, so it is refused.
            let _ = tx.send(format!("{:?}", a_handle.get_blocking(key, WAIT)));
            // (Waiting on `own` would not deadlock, but it would stall the whole pool while `own`
            // asks `a` and `b`; a non-waiting get is the way.)
            let tx = tx.clone();
            own_handle
                .get(
                    key,
                    Query::default(),
                    |_| {},
                    move |r| {
                        let _ = tx.send(format!("{r:?}"));
                    },
                )
                .unwrap();
        },
    )
    .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "Err(OnRunnerThread)");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "Ok(true)");
    // Dropping a pooled runner closes its sockets: its port can be bound again at once.
    let port = a.local_addrs()[0].port();
    drop(a);
    let again = pool
        .run(Config {
            port,
            ..Config::loopback()
        })
        .unwrap();
    assert_eq!(again.local_addrs()[0].port(), port);
    b.shutdown(WAIT).unwrap();
    assert!(matches!(b_get_after(&pool), Ok(())));
}

/// The pool keeps serving its other runners after one shut down.
fn b_get_after(pool: &dht_mio::Pool) -> Result<(), Error> {
    let c = pool.run(Config::loopback())?;
    let d = pool.run(Config::loopback())?;
    d.bootstrap_addr(c.local_addrs()[0]).unwrap();
    assert!(d.wait_connected(WAIT));
    let key = InfoHash::get("after");
    c.put_blocking(key, Value::new(0, b"x".to_vec()), WAIT)?;
    assert_eq!(d.get_blocking(key, WAIT)?.len(), 1);
    Ok(())
}

#[test]
fn signed_and_encrypted_puts_through_the_runner() {
    use dht_mio::PutMode;
    use dht_proto::crypto::{self, Identity};
    let with_id = |seed: u8| {
        let mut c = Config::loopback();
        c.node.identity = Some(Identity::from_seed(&[seed; 32]));
        Runner::run(c).unwrap()
    };
    let alice = with_id(1);
    let bob = with_id(2);
    let plain = Runner::run(Config::loopback()).unwrap();
    bob.bootstrap_addr(alice.local_addrs()[0]).unwrap();
    plain.bootstrap_addr(alice.local_addrs()[0]).unwrap();
    assert!(bob.wait_connected(WAIT) && plain.wait_connected(WAIT));
    let alice_pk = Identity::from_seed(&[1; 32]).public();
    let bob_pk = Identity::from_seed(&[2; 32]).public();
    let key = InfoHash::get("signed via mio");
    alice
        .put_as_blocking(key, Value::new(0, b"s".to_vec()), PutMode::Signed, WAIT)
        .unwrap();
    let got = bob.get_blocking(key, WAIT).unwrap();
    assert_eq!(crypto::verify_value(&got[0]).unwrap(), alice_pk);
    let secret = InfoHash::get("encrypted via mio");
    alice
        .put_as_blocking(
            secret,
            Value::new(0, b"e".to_vec()),
            PutMode::EncryptedTo(bob_pk),
            WAIT,
        )
        .unwrap();
    assert_eq!(bob.get_blocking(secret, WAIT).unwrap()[0].data, b"e");
    assert!(plain.get_blocking(secret, WAIT).unwrap()[0].is_encrypted());
    // The callback forms.
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    alice
        .put_signed(
            InfoHash::get("cb signed"),
            Value::new(0, b"1".to_vec()),
            PutOptions::default(),
            move |r| {
                let _ = tx.send(r.map(|o| o.total_acked()));
            },
        )
        .unwrap();
    alice
        .put_encrypted(
            InfoHash::get("cb encrypted"),
            bob_pk,
            Value::new(0, b"2".to_vec()),
            PutOptions::default(),
            move |r| {
                let _ = tx2.send(r.map(|o| o.total_acked()));
            },
        )
        .unwrap();
    for _ in 0..2 {
        assert!(rx.recv_timeout(WAIT).unwrap().unwrap() >= 1);
    }
    assert_eq!(
        bob.get_blocking(InfoHash::get("cb encrypted"), WAIT).unwrap()[0].data,
        b"2"
    );
    assert!(matches!(
        plain.put_as_blocking(key, Value::new(0, vec![1]), PutMode::Signed, WAIT),
        Err(Error::Command(dht_proto::CommandError::NoIdentity))
    ));
}

//! Runners on loopback sockets: bounded in time, no fixed sleeps (waits poll a condition).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::Duration;

use dht_mio::{RunError, Runner, RunnerConfig};
use dht_proto::value::{Query, Value};
use dht_proto::{DropReason, InfoHash};

const WAIT: Duration = Duration::from_secs(15);

fn network(n: usize) -> Vec<Runner> {
    let runners: Vec<Runner> = (0..n)
        .map(|_| Runner::run(RunnerConfig::loopback()).unwrap())
        .collect();
    for r in runners.iter().skip(1) {
        r.bootstrap(runners[0].local_addrs()[0]);
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
        r.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn a_listen_is_told_of_puts_and_cancel_stops_it() {
    let net = network(4);
    let key = InfoHash::get("room");
    let (tx, rx) = mpsc::channel();
    let token = net[1]
        .listen(key, Query::default(), move |values, expired| {
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
    let hostile = UdpSocket::bind("127.0.0.1:0").unwrap();
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
    net[1]
        .put_blocking(key, Value::new(0, b"ok".to_vec()), WAIT)
        .unwrap();
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
    let first = Runner::run(RunnerConfig::loopback()).unwrap();
    let taken = first.local_addrs()[0].port();
    let config = RunnerConfig {
        port: taken,
        ..RunnerConfig::loopback()
    };
    match Runner::run(config) {
        Err(RunError::Bind { addr, .. }) => assert_eq!(addr.port(), taken),
        other => panic!("expected a bind error, got {other:?}"),
    }
    let none = RunnerConfig {
        bind4: None,
        bind6: None,
        ..RunnerConfig::loopback()
    };
    assert!(matches!(Runner::run(none), Err(RunError::NoSocket)));
}

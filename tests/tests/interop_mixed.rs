//! Our runners (dht-mio, real loopback sockets) in networks with real OpenDHT nodes, 2.4.12
//! (Debian's python3-opendht) and 4.4.2 (the PyPI wheel), driven by `tests/py/opendht_peer.py`: each side bootstraps from
//! the other, values of 10 B, 32 KiB and 60 KiB cross both ways, listens on either side hear puts
//! on the other, and in a mixed network of 5 + 5 every value put anywhere is got everywhere.
//!
//! Skipped (with a message) when the module is missing, unless `DHT_REQUIRE_OPENDHT` is set, as
//! CI sets it. Every wait is bounded; the Python process is killed when the test ends.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use dht_mio::{Change, Config, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::{Family, InfoHash, Status};
use dht_tests::opendht::{OpenDhtPeers, Version};

const WAIT: Duration = Duration::from_secs(30);

fn ours() -> Runner {
    Runner::run(Config::loopback()).expect("runner")
}

fn v4(r: &Runner) -> std::net::SocketAddr {
    r.local_addrs()[0]
}

/// Polls `f` every 50 ms until it holds, at most `WAIT`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn data(tag: &str, len: usize) -> Vec<u8> {
    let mut d = tag.as_bytes().to_vec();
    d.extend((0..len.saturating_sub(tag.len())).map(|i| (i % 251) as u8));
    d
}

#[test]
fn ours_and_opendht_bootstrap_from_each_other_exchange_values_and_listen() {
    bootstrap_exchange_listen(Version::V2_4_12);
}

#[test]
fn ours_and_opendht_4_4_2_bootstrap_from_each_other_exchange_values_and_listen() {
    bootstrap_exchange_listen(Version::V4_4_2);
}

fn bootstrap_exchange_listen(version: Version) {
    let Some(mut py) = OpenDhtPeers::start_version(version, 2) else {
        return;
    };
    // Theirs from ours: OpenDHT node 0 knows only our r1.
    let r1 = ours();
    py.bootstrap(0, v4(&r1));
    assert!(r1.wait_connected(WAIT), "r1 never connected");
    eventually("OpenDHT node 0 to hold a good node", || py.good_nodes(0) >= 1);
    // Ours from theirs: r2 knows only OpenDHT node 0.
    let r2 = ours();
    r2.bootstrap_addr(py.addr(0)).expect("bootstrap");
    assert!(r2.wait_connected(WAIT), "r2 never connected through OpenDHT");
    // And OpenDHT node 1 joins through r2.
    py.bootstrap(1, v4(&r2));
    eventually("OpenDHT node 1 to hold a good node", || py.good_nodes(1) >= 1);

    for len in [10, 32 * 1024, 60 * 1024] {
        // Ours → theirs.
        let key = InfoHash::get(format!("ours to theirs {len}"));
        let d = data("ours", len);
        let o = r1
            .put_blocking(key, Value::new(0, d.clone()), WAIT)
            .expect("our put");
        assert!(o.total_acked() >= 1, "{len}: {o:?}");
        for i in 0..2 {
            let got = py.get(i, &key);
            assert!(
                got.contains(&d),
                "OpenDHT node {i} did not get our {len}-byte value: {} values",
                got.len()
            );
        }
        // Theirs → ours.
        let key = InfoHash::get(format!("theirs to ours {len}"));
        let d = data("theirs", len);
        assert!(py.put(1, &key, &d), "OpenDHT put of {len} bytes failed");
        for r in [&r1, &r2] {
            let got = r.get_blocking(key, WAIT).expect("our get");
            assert!(
                got.iter().any(|v| v.data == d),
                "we did not get OpenDHT's {len}-byte value: {} values",
                got.len()
            );
        }
    }

    // A listen of theirs hears a put of ours.
    let key = InfoHash::get("listened by theirs");
    py.listen(1, &key);
    let d = data("heard by OpenDHT", 20);
    r1.put_blocking(key, Value::new(0, d.clone()), WAIT).expect("put");
    let end = Instant::now() + WAIT;
    loop {
        let left = end
            .checked_duration_since(Instant::now())
            .expect("OpenDHT's listen heard nothing");
        let (i, k, got, expired) = py
            .events
            .recv_timeout(left)
            .expect("OpenDHT's listen heard nothing");
        if i == 1 && k == key.to_string() && got == d {
            assert!(!expired);
            break;
        }
    }
    // A listen of ours hears a put of theirs.
    let key = InfoHash::get("listened by ours");
    let (tx, rx) = mpsc::channel();
    r2.listen(key, Query::default(), move |c| {
        if let Change::Added(vs) = c {
            for v in vs {
                let _ = tx.send(v.data.clone());
            }
        }
    })
    .expect("listen");
    let d = data("heard by ours", 20);
    // Give the listen time to reach the closest nodes: put until it is heard.
    let end = Instant::now() + WAIT;
    assert!(py.put(0, &key, &d));
    loop {
        let left = end
            .checked_duration_since(Instant::now())
            .expect("our listen heard nothing");
        if rx.recv_timeout(left).expect("our listen heard nothing") == d {
            break;
        }
    }
    assert_eq!(r1.status(Family::V4), Status::Connected);
    r1.shutdown(Duration::from_secs(5)).expect("shutdown");
    r2.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn in_a_mixed_network_of_five_and_five_every_value_is_got_everywhere() {
    mixed_five_and_five(Version::V2_4_12);
}

#[test]
fn in_a_mixed_network_of_five_and_five_4_4_2_every_value_is_got_everywhere() {
    mixed_five_and_five(Version::V4_4_2);
}

fn mixed_five_and_five(version: Version) {
    let Some(mut py) = OpenDhtPeers::start_version(version, 5) else {
        return;
    };
    // Alternate: ours[0] ← theirs[0] ← ours[1] ← theirs[1] ← ...
    let mut rs: Vec<Runner> = Vec::new();
    for i in 0..5 {
        let r = ours();
        if i > 0 {
            r.bootstrap_addr(py.addr(i - 1)).expect("bootstrap");
        }
        py.bootstrap(i, v4(&r));
        rs.push(r);
    }
    for (i, r) in rs.iter().enumerate() {
        assert!(r.wait_connected(WAIT), "ours {i} never connected");
    }
    for i in 0..5 {
        eventually("every OpenDHT node to hold a good node", || py.good_nodes(i) >= 1);
    }
    let key = |who: &str| InfoHash::get(format!("mixed {who}"));
    for (i, r) in rs.iter().enumerate() {
        let who = format!("ours {i}");
        let o = r
            .put_blocking(key(&who), Value::new(0, who.clone().into_bytes()), WAIT)
            .expect("put");
        assert!(o.total_acked() >= 1, "{who}: {o:?}");
    }
    for i in 0..5 {
        let who = format!("theirs {i}");
        assert!(py.put(i, &key(&who), who.as_bytes()), "{who}: put failed");
    }
    let everyone: Vec<String> = (0..5)
        .flat_map(|i| [format!("ours {i}"), format!("theirs {i}")])
        .collect();
    for who in &everyone {
        let k = key(who);
        for (i, r) in rs.iter().enumerate() {
            let got = r.get_blocking(k, WAIT).expect("get");
            assert!(
                got.iter().any(|v| v.data == who.as_bytes()),
                "ours {i} did not get {who}"
            );
        }
        for i in 0..5 {
            let got = py.get(i, &k);
            assert!(
                got.iter().any(|d| d == who.as_bytes()),
                "theirs {i} did not get {who}"
            );
        }
    }
    for r in rs {
        r.shutdown(Duration::from_secs(5)).expect("shutdown");
    }
}

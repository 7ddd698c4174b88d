//! Complete gets through the runner (issue 20): a get's end tells how many of the closest nodes
//! answered, and the uplink rate of the driver's config paces a node's replies. A module of
//! `runner.rs`, on its fixtures.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use dht_mio::{Config, GetSummary, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::{ExportedValue, InfoHash};

use super::network;

/// Longer than the other runner tests' wait: a paced reply takes seconds.
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_get_tells_how_many_of_the_closest_nodes_answered() {
    let net = network(6);
    let key = InfoHash::get("summary");
    net[1]
        .put_blocking(key, Value::new(0, b"here".to_vec()), WAIT)
        .unwrap();
    for r in &net {
        let (values, summary) = r.get_with_summary_blocking(key, Query::default(), WAIT).unwrap();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].data, b"here");
        assert!(summary.ok, "{summary:?}");
        // Five other nodes, in two families: each asked node is one of them.
        assert!(summary.answered >= 1, "{summary:?}");
        assert!(
            summary.answered <= summary.asked && summary.asked <= 10,
            "{summary:?}"
        );
    }
    // The callback form: the summary reaches `on_done`, and the old `get` still says `Ok(true)`.
    let (tx, rx) = mpsc::channel();
    net[4]
        .get_with_summary(key, Query::default(), |_| {}, move |r| tx.send(r).unwrap())
        .unwrap();
    let summary = rx.recv_timeout(WAIT).unwrap().unwrap();
    assert!(summary.ok && summary.answered >= 1, "{summary:?}");
    let (tx, rx) = mpsc::channel();
    net[4]
        .get(key, Query::default(), |_| {}, move |r| tx.send(r).unwrap())
        .unwrap();
    assert!(rx.recv_timeout(WAIT).unwrap().unwrap());
    for r in net {
        r.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn a_lone_node_s_get_asked_no_one() {
    let lone = Runner::run(Config::loopback()).unwrap();
    let (values, summary) = lone
        .get_with_summary_blocking(InfoHash::get("nobody"), Query::default(), WAIT)
        .unwrap();
    assert!(values.is_empty());
    assert_eq!(
        summary,
        GetSummary {
            ok: false,
            answered: 0,
            asked: 0
        }
    );
    lone.shutdown(Duration::from_secs(5)).unwrap();
}

/// Bytes per second of the slow node's uplink, and the value it serves.
const RATE: u64 = 32_000;
const SIZE: usize = 60_000;

#[test]
fn the_uplink_rate_of_the_config_paces_a_large_reply() {
    let mut slow = Config::loopback().with_uplink_rate(Some(RATE));
    // The value stays on the slow node only: no re-replication to the asker.
    slow.node.replicate = false;
    let a = Runner::run(slow).unwrap();
    assert_eq!(
        a.inspect(|n| n.config().uplink_bytes_per_sec).unwrap(),
        Some(RATE)
    );
    let b = Runner::run(Config::loopback()).unwrap();
    b.bootstrap_addr(a.local_addrs()[0]).unwrap();
    assert!(b.wait_connected(WAIT) && a.wait_connected(WAIT));
    let key = InfoHash::get("large");
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 249) as u8).collect();
    a.import_values(vec![ExportedValue {
        key,
        value: Value::new(7, data.clone()),
        remaining: None,
    }])
    .unwrap();
    let started = Instant::now();
    let (values, summary) = b.get_with_summary_blocking(key, Query::default(), WAIT).unwrap();
    let took = started.elapsed();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].data, data);
    assert!(summary.ok && summary.answered >= 1, "{summary:?}");
    // 60 KB at 32 KB/s: about 1.9 s per reply (unpaced, loopback takes milliseconds). Half of
    // it as the bound leaves room for the datagrams that go out before the uplink is charged.
    let paced = Duration::from_millis(SIZE as u64 * 1000 / RATE / 2);
    assert!(took >= paced, "took {took:?}, less than {paced:?}: not paced");
    a.shutdown(Duration::from_secs(5)).unwrap();
    b.shutdown(Duration::from_secs(5)).unwrap();
}

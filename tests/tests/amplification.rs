//! Anti-amplification on real sockets: a `dht-mio` node on 127.0.0.1 holds a key with 8 values
//! of 8 KB; 199 sources on 127.0.0.2 … 127.0.0.200 (spoofed addresses, as a reflection attack
//! would use) each send it a get and a find and never answer anything. With the default
//! configuration the node sends them at most twice the bytes it received from them; with
//! `amplification_factor: None` (OpenDHT's behaviour) it sends them hundreds of times more.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dht_mio::{Config, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::wire::{Message, RequestKind};
use dht_proto::{ExportedValue, InfoHash};

/// The sources: one UDP socket on each of 127.0.0.2 … 127.0.0.200.
fn sources() -> Vec<UdpSocket> {
    (2..=200u8)
        .map(|i| {
            let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, i), 0)).expect("bind 127.0.0.x");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect()
}

/// A node with the default core configuration (or with the guard off), on 127.0.0.1 only, holding `key`
/// with 8 values of 8 KB, and 8 other nodes joined to it (so that finds are answered with
/// nodes).
fn victim(key: InfoHash, guard: bool) -> (Runner, Vec<Runner>) {
    let mut config = Config::loopback();
    config.bind6 = None;
    config.seed = Some([7; 32]);
    if !guard {
        config.node.amplification_factor = None;
    }
    let node = Runner::run(config.clone()).expect("run");
    let addr = node.local_addrs()[0];
    let values = (1..=8u64)
        .map(|id| ExportedValue {
            key,
            value: Value::new(id, vec![id as u8; 8000]),
            remaining: Some(Duration::from_secs(600)),
        })
        .collect();
    node.import_values(values).expect("import");
    let peers: Vec<Runner> = (0..8u8)
        .map(|i| {
            let mut c = config.clone();
            c.seed = Some([i + 10; 32]);
            let p = Runner::run(c).expect("run");
            p.bootstrap_addr(addr).expect("bootstrap");
            p
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.stats().stored_values < 8 || node.stats().nodes.v4 < 8 {
        assert!(
            Instant::now() < deadline,
            "the node did not get ready: {:?}",
            node.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (node, peers)
}

/// Bytes sent to the node by the sources, and received from it.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    received: usize,
}

/// Every source sends a get for `key` and a find, once.
fn attack(sources: &[UdpSocket], to: SocketAddr, key: InfoHash) -> Tally {
    let mut tally = Tally::default();
    for (i, s) in sources.iter().enumerate() {
        let id = InfoHash::get(format!("source {i}"));
        let get = RequestKind::Get {
            key,
            query: Query::default(),
            want: None,
        };
        let find = RequestKind::Find {
            target: key,
            want: None,
        };
        for (tid, kind) in [(1000 + i as u32, get), (5000 + i as u32, find)] {
            let data = Message::request(tid, id, kind).encode_to_vec();
            tally.sent += s.send_to(&data, to).expect("send");
        }
    }
    tally
}

/// Reads what waits on every source; returns whether anything did.
fn drain(sources: &[UdpSocket], tally: &mut Tally) -> bool {
    let mut buf = vec![0u8; 65536];
    let mut any = false;
    for s in sources {
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, _)) => {
                    tally.received += n;
                    any = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
    any
}

/// Reads the sources until `done` holds (checked between reads), then until they stay quiet
/// for 200 ms; panics past `limit`.
fn collect(sources: &[UdpSocket], tally: &mut Tally, limit: Duration, mut done: impl FnMut(&Tally) -> bool) {
    let deadline = Instant::now() + limit;
    let mut quiet_since: Option<Instant> = None;
    loop {
        assert!(Instant::now() < deadline, "not done within {limit:?}: {tally:?}");
        if drain(sources, tally) {
            quiet_since = None;
        } else if done(tally) {
            let q = *quiet_since.get_or_insert_with(Instant::now);
            if q.elapsed() >= Duration::from_millis(200) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sources_that_never_answer_get_at_most_twice_what_they_sent() {
    let key = InfoHash::get("amplification: 8 values of 8 KB");
    assert_eq!(
        dht_proto::Config::default().amplification_factor,
        Some(2),
        "on by default"
    );
    let (node, peers) = victim(key, true);
    let sources = sources();
    let mut tally = attack(&sources, node.local_addrs()[0], key);
    // Done once every datagram held for the sources has been given up (3 s after the gets).
    collect(&sources, &mut tally, Duration::from_secs(30), |_| {
        let s = node.stats();
        s.amplification_held > 0 && s.amplification_dropped >= s.amplification_held
    });
    let stats = node.stats();
    eprintln!(
        "{tally:?}; held {} given up {}",
        stats.amplification_held, stats.amplification_dropped
    );
    assert!(
        tally.received > 0,
        "the sources were answered (headers, trimmed finds, probes)"
    );
    assert!(
        tally.received <= 2 * tally.sent,
        "sent to the sources {} bytes for {} received from them",
        tally.received,
        tally.sent
    );
    drop(peers);
}

/// The same attack with the guard off: the test above can fail.
#[test]
fn without_the_guard_the_same_sources_get_hundreds_of_times_what_they_sent() {
    let key = InfoHash::get("amplification: 8 values of 8 KB");
    let (node, peers) = victim(key, false);
    let sources = sources();
    let mut tally = attack(&sources, node.local_addrs()[0], key);
    // Every get is answered with all 64 KB.
    collect(&sources, &mut tally, Duration::from_secs(30), |t| {
        t.received >= sources.len() * 64_000
    });
    eprintln!("{tally:?}");
    assert!(
        tally.received > 100 * tally.sent,
        "sent to the sources {} bytes for {} received from them",
        tally.received,
        tally.sent
    );
    drop(peers);
}

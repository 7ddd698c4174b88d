//! LAN peer discovery on real sockets, each test inside a network namespace of its own (only
//! `lo`; `../../dht-driver/tests/support/netns.rs`): two of our nodes with no bootstrap find
//! each other; ours and OpenDHT 4.4.2 find each other both ways and share port 8888; other
//! networks are ignored; floods are bounded and counted.

#[path = "../../dht-driver/tests/support/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dht_mio::{Config, DiscoveryConfig, Runner};
use dht_proto::discovery::{Announce, encode_announce};
use dht_proto::value::Value;
use dht_proto::{Family, InfoHash, Status};

const LIMIT: Duration = Duration::from_secs(30);

fn config(network: u32) -> Config {
    let mut c = Config {
        discovery: Some(DiscoveryConfig::default()),
        ..Config::loopback()
    };
    c.node.network = network;
    c
}

/// Polls `f` until it holds, at most `limit`.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn connected_both(r: &Runner) -> bool {
    r.status(Family::V4) == Status::Connected && r.status(Family::V6) == Status::Connected
}

fn knows(r: &Runner, id: InfoHash, family: Family) -> bool {
    r.export_nodes()
        .unwrap_or_default()
        .iter()
        .any(|n| n.id == id && Family::of(&n.addr) == family)
}

#[test]
fn two_nodes_without_bootstrap_find_each_other_and_exchange_a_value() {
    if !netns::inside("two_nodes_without_bootstrap_find_each_other_and_exchange_a_value") {
        return;
    }
    let a = Runner::run(config(0)).expect("a");
    let b = Runner::run(config(0)).expect("b");
    assert!(
        a.discovery_stats().is_some() && b.discovery_stats().is_some(),
        "discovery runs"
    );
    assert!(
        wait_for(LIMIT, || connected_both(&a) && connected_both(&b)),
        "both families connect"
    );
    for fam in [Family::V4, Family::V6] {
        assert!(
            knows(&a, b.node_id(), fam) && knows(&b, a.node_id(), fam),
            "{fam:?}"
        );
    }
    let key = InfoHash::get("found on the LAN");
    a.put_blocking(key, Value::new(1, b"hello".to_vec()), LIMIT)
        .expect("put");
    let got = b.get_blocking(key, LIMIT).expect("get");
    assert!(got.iter().any(|v| v.data == b"hello"));
    let s = b.discovery_stats().expect("stats");
    assert!(s.bootstraps >= 1 && s.own >= 1, "{s:?}");
}

#[test]
fn discovery_is_off_by_default() {
    if !netns::inside("discovery_is_off_by_default") {
        return;
    }
    let a = Runner::run(Config::loopback()).expect("a");
    let b = Runner::run(config(0)).expect("b");
    assert!(a.discovery_stats().is_none());
    // b announces; a, without discovery, hears nothing and stays alone.
    assert!(wait_for(Duration::from_secs(3), || b
        .discovery_stats()
        .is_some_and(|s| s.announced >= 2)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.status(Family::V4), Status::Disconnected);
    assert!(a.export_nodes().unwrap_or_default().is_empty());
}

#[test]
fn other_network_ids_are_ignored() {
    if !netns::inside("other_network_ids_are_ignored") {
        return;
    }
    let a = Runner::run(config(1)).expect("a");
    let b = Runner::run(config(2)).expect("b");
    // a hears b's announcement, b hears a's reply to its query: both ignore them.
    let heard = |r: &Runner| r.discovery_stats().is_some_and(|s| s.other_network >= 2);
    assert!(
        wait_for(LIMIT, || heard(&a) && heard(&b)),
        "{:?} {:?}",
        a.discovery_stats(),
        b.discovery_stats()
    );
    for r in [&a, &b] {
        let s = r.discovery_stats().expect("stats");
        assert_eq!(s.bootstraps, 0, "{s:?}");
        assert!(r.export_nodes().unwrap_or_default().is_empty());
        assert_eq!(r.status(Family::V4), Status::Disconnected);
    }
}

#[test]
fn a_flood_of_forged_announcements_is_bounded_and_counted() {
    if !netns::inside("a_flood_of_forged_announcements_is_bounded_and_counted") {
        return;
    }
    let a = Runner::run(config(0)).expect("a");
    let cfg = DiscoveryConfig::default();
    let start = Instant::now();
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    let group: SocketAddr = "239.192.0.1:8888".parse().expect("group");
    let base = a.discovery_stats().expect("stats").received;
    // 2000 announcements of distinct forged ids, 100 at a time (each batch waited for, so that
    // the socket buffer never overflows), plus malformed, truncated and oversize ones.
    let mut sent = 0u64;
    for batch in 0..20u32 {
        for i in 0..100u32 {
            let id = InfoHash::get((batch * 100 + i).to_be_bytes());
            let bytes = encode_announce(&Announce {
                id,
                port: 4000 + i as u16,
                network: 0,
            });
            tx.send_to(&bytes, group).expect("send");
            sent += 1;
        }
        for junk in [&[0xc1u8][..], &[0x81, 0xa3, 0x64, 0x68], &[0x80; 3000]] {
            tx.send_to(junk, group).expect("send");
            sent += 1;
        }
        assert!(
            wait_for(LIMIT, || a
                .discovery_stats()
                .is_some_and(|s| s.received - base >= sent)),
            "batch {batch}"
        );
    }
    let elapsed = start.elapsed();
    let s = a.discovery_stats().expect("stats");
    let allowed =
        u64::from(cfg.bootstrap_burst) + (elapsed.as_micros() / cfg.bootstrap_period.as_micros()) as u64 + 1;
    assert!(
        s.bootstraps <= allowed,
        "{} bootstraps in {elapsed:?}: {s:?}",
        s.bootstraps
    );
    assert!(s.bootstraps >= u64::from(cfg.bootstrap_burst), "{s:?}");
    assert_eq!(s.rate_limited, 2000 - s.bootstraps, "{s:?}");
    assert_eq!((s.malformed, s.oversize), (40, 20), "{s:?}");
    // The routing table holds only what was let through.
    let nodes = a.export_nodes().expect("nodes").len() as u64;
    assert!(nodes <= s.bootstraps, "{nodes} nodes");
}

// ---------------------------------------------------------------------------------------------
// OpenDHT 4.4.2 (the PyPI wheel, in a venv)

/// The venv python with opendht 4.4.2: `DHT_OPENDHT442_PYTHON`, then `RDHT_OPENDHT4_PYTHON`,
/// then the venv that `crates/dht-python/run-tests.sh` keeps (`target/py-opendht4-venv`).
fn opendht442() -> Option<String> {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/py-opendht4-venv/bin/python"
    );
    let candidates = [
        std::env::var("DHT_OPENDHT442_PYTHON").ok(),
        std::env::var("RDHT_OPENDHT4_PYTHON").ok(),
        Some(root.to_string()),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = Command::new(&p)
            .args([
                "-c",
                "import opendht; assert opendht.__version__.startswith('4.')",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    None
}

/// Whether an OpenDHT 4.4.2 test can run; skips (or fails under DHT_REQUIRE_OPENDHT=1).
fn need_opendht(test: &str) -> Option<String> {
    let p = opendht442();
    if p.is_none() {
        let required = std::env::var("DHT_REQUIRE_OPENDHT").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "DHT_REQUIRE_OPENDHT=1 but no python with opendht 4.4.2 (set DHT_OPENDHT442_PYTHON)"
        );
        println!("SKIPPED {test}: no python with opendht 4.4.2 (set DHT_OPENDHT442_PYTHON)");
    }
    p
}

/// One `discovery_peer.py` process.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
    id: InfoHash,
}

impl Peer {
    fn start(python: &str, port: u16, network: u32) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/discovery_peer.py");
        let mut child = Command::new(python)
            .args(["-u", script, &port.to_string(), &network.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OpenDHT peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(r) = line.strip_prefix("re ") {
                    let _ = tx.send(r.to_string());
                }
            }
        });
        let mut p = Peer {
            child,
            stdin,
            replies,
            id: InfoHash::ZERO,
        };
        let ready = p.reply();
        let hex = ready.strip_prefix("ready ").expect("ready line");
        p.id = InfoHash::from_hex(hex.trim()).expect("OpenDHT's node id");
        p
    }

    fn reply(&mut self) -> String {
        self.replies
            .recv_timeout(Duration::from_secs(60))
            .expect("the OpenDHT peer answered in time")
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to the peer");
        self.reply()
    }

    fn knows(&mut self, id: InfoHash, family: Family) -> bool {
        let af = if family == Family::V4 { 4 } else { 6 };
        self.cmd(&format!("wait {id} {af} 30")) == "found"
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both find each other on both families and exchange values both ways; then a third party's
/// announcement (port 8888 shared by two processes) reaches both.
fn interop(ours_first: bool) {
    let Some(python) = need_opendht("interop") else {
        return;
    };
    let (ours, mut peer) = if ours_first {
        let ours = Runner::run(config(0)).expect("ours");
        (ours, Peer::start(&python, 4301, 0))
    } else {
        let peer = Peer::start(&python, 4301, 0);
        (Runner::run(config(0)).expect("ours"), peer)
    };
    for fam in [Family::V4, Family::V6] {
        assert!(peer.knows(ours.node_id(), fam), "OpenDHT found ours on {fam:?}");
        assert!(
            wait_for(LIMIT, || knows(&ours, peer.id, fam)),
            "ours found OpenDHT on {fam:?}"
        );
    }
    assert!(wait_for(LIMIT, || connected_both(&ours)));
    assert_eq!(peer.cmd("put from-opendht hello-rust"), "put");
    let key = InfoHash::get("from-opendht");
    assert!(
        wait_for(LIMIT, || ours
            .get_blocking(key, LIMIT)
            .is_ok_and(|v| v.iter().any(|v| v.data == b"hello-rust"))),
        "ours got OpenDHT's value"
    );
    ours.put_blocking(
        InfoHash::get("from-rust"),
        Value::new(7, b"hello-opendht".to_vec()),
        LIMIT,
    )
    .expect("put");
    assert_eq!(peer.cmd("get from-rust hello-opendht 30"), "got");

    // Port 8888 is shared: a later announcement, multicast by a third party, reaches both.
    let forged = InfoHash::get("a third node");
    let before = ours.discovery_stats().expect("stats").bootstraps;
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    let bytes = encode_announce(&Announce {
        id: forged,
        port: 5011,
        network: 0,
    });
    tx.send_to(&bytes, "239.192.0.1:8888").expect("send");
    assert!(peer.knows(forged, Family::V4), "OpenDHT still hears port 8888");
    assert!(
        wait_for(LIMIT, || ours
            .discovery_stats()
            .is_some_and(|s| s.bootstraps > before)),
        "ours still hears port 8888"
    );
    assert!(
        knows(&ours, forged, Family::V4) || ours.discovery_stats().is_some_and(|s| s.bootstraps > before)
    );
}

#[test]
fn opendht_442_first_then_ours_find_each_other_and_exchange_values() {
    if netns::inside("opendht_442_first_then_ours_find_each_other_and_exchange_values") {
        interop(false);
    }
}

#[test]
fn ours_first_then_opendht_442_find_each_other_and_exchange_values() {
    if netns::inside("ours_first_then_opendht_442_find_each_other_and_exchange_values") {
        interop(true);
    }
}

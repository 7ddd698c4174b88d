//! Running Debian's OpenDHT `dhtnode` on loopback for interop tests.
//!
//! Tests call [`OpenDhtNode::start`]; when the binary is missing they print why and skip, unless
//! `DHT_REQUIRE_OPENDHT` is set (as CI sets it), in which case a missing binary fails the test.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Where Debian installs OpenDHT's node. Our own binary shares the name, so tests use full paths.
pub const DHTNODE: &str = "/usr/bin/dhtnode";

/// A running OpenDHT node, killed (by PID) when dropped.
pub struct OpenDhtNode {
    child: Child,
    /// The UDP port it listens on (IPv4 and IPv6, all addresses).
    pub port: u16,
}

impl OpenDhtNode {
    /// Starts `dhtnode -s -p <free port>`. Returns `None` (after printing the reason) when the
    /// binary is not installed and `DHT_REQUIRE_OPENDHT` is unset.
    pub fn start() -> Option<OpenDhtNode> {
        if !Path::new(DHTNODE).exists() {
            let why = format!("{DHTNODE} is not installed (apt-get install dhtnode)");
            if std::env::var_os("DHT_REQUIRE_OPENDHT").is_some() {
                panic!("{why}, and DHT_REQUIRE_OPENDHT is set");
            }
            eprintln!("skipping OpenDHT interop test: {why}");
            return None;
        }
        let port = free_udp_port();
        let child = Command::new(DHTNODE)
            .args(["-s", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dhtnode");
        Some(OpenDhtNode { child, port })
    }
}

impl Drop for OpenDhtNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port that was free on `127.0.0.1` and `::1` a moment ago.
pub fn free_udp_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = s.local_addr().expect("addr").port();
        if UdpSocket::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}

/// The Python harness that runs real OpenDHT nodes (`tests/py/opendht_peer.py`).
pub const PY_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/opendht_peer.py");
/// Debian's interpreter: its `opendht` module loads only here.
pub const PY: &str = "/usr/bin/python3";

/// Real OpenDHT nodes (`DhtRunner`s of Debian's python3-opendht) in one Python process, driven
/// line by line. Killed (by PID) when dropped.
pub struct OpenDhtPeers {
    child: Child,
    stdin: std::process::ChildStdin,
    replies: std::sync::mpsc::Receiver<String>,
    /// Listen notifications: (runner, key hex, data, expired).
    pub events: std::sync::mpsc::Receiver<(usize, String, Vec<u8>, bool)>,
    /// The UDP port of each runner (127.0.0.1 and ::1).
    pub ports: Vec<u16>,
}

/// How long one harness command may take.
const PY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| {
            s.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

impl OpenDhtPeers {
    /// Starts `n` OpenDHT runners on loopback. `None` (after printing why) when Debian's
    /// python3-opendht is missing and `DHT_REQUIRE_OPENDHT` is unset.
    pub fn start(n: usize) -> Option<OpenDhtPeers> {
        use std::io::BufRead;
        let ok = Command::new(PY)
            .args(["-c", "import opendht"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let why = format!("{PY} cannot import opendht (apt-get install python3-opendht)");
            if std::env::var_os("DHT_REQUIRE_OPENDHT").is_some() {
                panic!("{why}, and DHT_REQUIRE_OPENDHT is set");
            }
            eprintln!("skipping OpenDHT interop test: {why}");
            return None;
        }
        let mut child = Command::new(PY)
            .arg(PY_PEER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the OpenDHT harness");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (rtx, replies) = std::sync::mpsc::channel();
        let (etx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let w: Vec<&str> = line.split_whitespace().collect();
                match w.as_slice() {
                    ["ev", "listen", i, k, data, exp] => {
                        let _ = etx.send((
                            i.parse().unwrap_or(usize::MAX),
                            k.to_string(),
                            from_hex(data),
                            *exp == "1",
                        ));
                    }
                    ["re", ..] if rtx.send(line.clone()).is_err() => return,
                    _ => {}
                }
            }
        });
        let mut peers = OpenDhtPeers {
            child,
            stdin,
            replies,
            events,
            ports: Vec::new(),
        };
        let r = peers.call(&format!("start {n}"));
        peers.ports = r.iter().skip(2).filter_map(|p| p.parse().ok()).collect();
        assert_eq!(peers.ports.len(), n, "harness start: {r:?}");
        Some(peers)
    }

    /// Sends one command and returns the words of its reply (panics on a harness error or after
    /// a minute without a reply).
    fn call(&mut self, cmd: &str) -> Vec<String> {
        use std::io::Write;
        writeln!(self.stdin, "{cmd}").expect("harness stdin");
        self.stdin.flush().expect("harness stdin");
        let line = self
            .replies
            .recv_timeout(PY_WAIT)
            .expect("the harness did not answer");
        assert!(!line.starts_with("re error"), "{cmd:.80}: {line}");
        line.split_whitespace().map(str::to_string).collect()
    }

    /// The UDP address of runner `i` on 127.0.0.1.
    pub fn addr(&self, i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports[i]))
    }

    /// Runner `i` pings `addr` to join.
    pub fn bootstrap(&mut self, i: usize, addr: std::net::SocketAddr) {
        self.call(&format!("boot {i} {} {}", addr.ip(), addr.port()));
    }

    /// Runner `i` puts `data` at `key` (OpenDHT's blocking put); true when it reports success.
    pub fn put(&mut self, i: usize, key: &dht_proto::InfoHash, data: &[u8]) -> bool {
        let r = self.call(&format!("put {i} {key} {}", to_hex(data)));
        r.get(2).is_some_and(|w| w == "1")
    }

    /// Runner `i` gets the values at `key` (OpenDHT's blocking get): their data.
    pub fn get(&mut self, i: usize, key: &dht_proto::InfoHash) -> Vec<Vec<u8>> {
        let r = self.call(&format!("get {i} {key}"));
        r.iter().skip(2).map(|h| from_hex(h)).collect()
    }

    /// Runner `i` listens to `key`; notifications arrive on [`OpenDhtPeers::events`].
    pub fn listen(&mut self, i: usize, key: &dht_proto::InfoHash) {
        self.call(&format!("listen {i} {key}"));
    }

    /// Good IPv4 nodes in runner `i`'s routing table.
    pub fn good_nodes(&mut self, i: usize) -> usize {
        let r = self.call(&format!("nodes {i}"));
        r.get(2).and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// Runner `i`'s node id.
    pub fn node_id(&mut self, i: usize) -> dht_proto::InfoHash {
        let r = self.call(&format!("id {i}"));
        dht_proto::InfoHash::from_hex(r.get(2).map(String::as_str).unwrap_or("")).expect("node id")
    }
}

impl Drop for OpenDhtPeers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Running real OpenDHT nodes on loopback for interop tests: Debian's `dhtnode` and
//! python3-opendht (OpenDHT 2.4.12), and the `opendht` 4.4.2 wheel from PyPI in a venv, driven
//! by the same Python harness (`tests/py/opendht_peer.py`).
//!
//! Tests call [`OpenDhtNode::start`] or [`OpenDhtPeers::start`] (2.4.12) or their `_version`
//! forms; when that OpenDHT is missing they print why and skip, unless `DHT_REQUIRE_OPENDHT` is
//! set (as CI sets it), in which case a missing OpenDHT fails the test.
//!
//! 4.4.2's interpreter is `$DHT_OPENDHT442_PYTHON` (`.ci/run` sets it), or else
//! `target/py-opendht4-venv/bin/python` (the venv `crates/dht-python/run-tests.sh` makes).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where Debian installs OpenDHT's node. Our own binary shares the name, so tests use full paths.
pub const DHTNODE: &str = "/usr/bin/dhtnode";

/// Which OpenDHT a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Debian's OpenDHT 2.4.12: the `dhtnode` binary and python3-opendht.
    V2_4_12,
    /// The newest OpenDHT, the `opendht` 4.4.2 wheel from PyPI in a venv (no `dhtnode` binary:
    /// its nodes are `DhtRunner`s in the Python harness).
    V4_4_2,
}

impl Version {
    /// Its version number, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2_4_12 => "2.4.12",
            Version::V4_4_2 => "4.4.2",
        }
    }

    /// The Python interpreter whose `opendht` module is this version.
    pub fn python(self) -> PathBuf {
        match self {
            Version::V2_4_12 => PathBuf::from(PY),
            Version::V4_4_2 => std::env::var_os("DHT_OPENDHT442_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py-opendht4-venv/bin/python")
                }),
        }
    }

    /// Whether [`Version::python`] imports `opendht` of this version; `Err` says why not.
    pub fn check(self) -> Result<(), String> {
        let py = self.python();
        let out = Command::new(&py)
            .args(["-c", "import opendht; print(getattr(opendht, '__version__', ''))"])
            .stderr(Stdio::null())
            .output();
        let install = match self {
            Version::V2_4_12 => "apt-get install python3-opendht",
            Version::V4_4_2 => {
                "python3 -m venv V && V/bin/pip install opendht==4.4.2, then DHT_OPENDHT442_PYTHON=V/bin/python"
            }
        };
        match out {
            Ok(o) if o.status.success() => {
                let found = String::from_utf8_lossy(&o.stdout).trim().to_string();
                // Debian's 2.4.12 module has no __version__.
                if self == Version::V4_4_2 && found != self.name() {
                    return Err(format!(
                        "{} imports opendht {found:?}, not {}",
                        py.display(),
                        self.name()
                    ));
                }
                Ok(())
            }
            _ => Err(format!("{} cannot import opendht ({install})", py.display())),
        }
    }

    /// `true` when this OpenDHT can run; otherwise prints why and returns `false`, or panics if
    /// `DHT_REQUIRE_OPENDHT` is set.
    pub fn available_or_skip(self) -> bool {
        match self.check() {
            Ok(()) => true,
            Err(why) => skip_or_fail(&why),
        }
    }
}

fn skip_or_fail(why: &str) -> bool {
    if std::env::var_os("DHT_REQUIRE_OPENDHT").is_some() {
        panic!("{why}, and DHT_REQUIRE_OPENDHT is set");
    }
    eprintln!("skipping OpenDHT interop test: {why}");
    false
}

/// A running OpenDHT node: 2.4.12's `dhtnode` process, or one 4.4.2 `DhtRunner` in the Python
/// harness. Killed (by PID) when dropped.
pub struct OpenDhtNode {
    _process: NodeProcess,
    /// The UDP port it listens on (on 127.0.0.1 at least, and IPv6).
    pub port: u16,
}

enum NodeProcess {
    Dhtnode(Child),
    /// Held for its `Drop`, which kills the harness.
    Harness {
        _peers: OpenDhtPeers,
    },
}

impl OpenDhtNode {
    /// Starts Debian's `dhtnode -s -p <free port>` (OpenDHT 2.4.12). Returns `None` (after
    /// printing the reason) when the binary is not installed and `DHT_REQUIRE_OPENDHT` is unset.
    pub fn start() -> Option<OpenDhtNode> {
        OpenDhtNode::start_version(Version::V2_4_12)
    }

    /// Starts one node of OpenDHT `version`: 2.4.12's `dhtnode`, or for 4.4.2 (which has no
    /// `dhtnode` here) a `DhtRunner` of the Python harness. `None` as [`OpenDhtNode::start`].
    pub fn start_version(version: Version) -> Option<OpenDhtNode> {
        match version {
            Version::V2_4_12 => {
                if !Path::new(DHTNODE).exists() {
                    skip_or_fail(&format!("{DHTNODE} is not installed (apt-get install dhtnode)"));
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
                Some(OpenDhtNode {
                    _process: NodeProcess::Dhtnode(child),
                    port,
                })
            }
            Version::V4_4_2 => {
                let peers = OpenDhtPeers::start_version(version, 1)?;
                let port = peers.ports[0];
                Some(OpenDhtNode {
                    _process: NodeProcess::Harness { _peers: peers },
                    port,
                })
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let NodeProcess::Dhtnode(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// Real OpenDHT nodes (`DhtRunner`s of Debian's python3-opendht, or of the 4.4.2 wheel) in one
/// Python process, driven line by line. Killed (by PID) when dropped.
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
    /// Starts `n` OpenDHT 2.4.12 runners on loopback. `None` (after printing why) when Debian's
    /// python3-opendht is missing and `DHT_REQUIRE_OPENDHT` is unset.
    pub fn start(n: usize) -> Option<OpenDhtPeers> {
        OpenDhtPeers::start_version(Version::V2_4_12, n)
    }

    /// Starts `n` runners of OpenDHT `version` on loopback. `None` (after printing why) when
    /// that version's module is missing and `DHT_REQUIRE_OPENDHT` is unset.
    pub fn start_version(version: Version, n: usize) -> Option<OpenDhtPeers> {
        use std::io::BufRead;
        if !version.available_or_skip() {
            return None;
        }
        let mut child = Command::new(version.python())
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

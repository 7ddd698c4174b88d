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

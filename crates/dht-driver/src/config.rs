//! How to run a node: its sockets, its core configuration, its seed and whom it joins.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand_core::{OsRng, RngCore};

/// How to run a node, whatever the driver.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP port for both families; 0 picks a free one (the IPv6 socket then tries the IPv4 port,
    /// and any port if that one is taken for IPv6).
    pub port: u16,
    /// IPv4 address to bind; `None`: no IPv4.
    pub bind4: Option<Ipv4Addr>,
    /// IPv6 address to bind; `None`: no IPv6.
    pub bind6: Option<Ipv6Addr>,
    /// The node's configuration (network id, node id, identity, limits).
    pub node: dht_proto::Config,
    /// The node's seed, its identity until signed identities exist: the same seed gives the same
    /// node id (unless `node.node_id` is set). `None` draws one from the OS.
    pub seed: Option<[u8; 32]>,
    /// Nodes to join at start, as `host:port`, `[v6]:port` or `host` (port 4222); every one must
    /// resolve ([`crate::resolve`]).
    pub bootstrap: Vec<String>,
    /// LAN peer discovery, compatible with OpenDHT's `PeerDiscovery` (`docs/discovery.md`):
    /// `None` (the default, as in OpenDHT) runs none; `Some` binds UDP port 8888 with
    /// `SO_REUSEADDR`, joins 239.192.0.1 and ff08::101, announces the node and adds the nodes
    /// it hears of, within the limits of the [`crate::DiscoveryConfig`].
    pub discovery: Option<crate::DiscoveryConfig>,
}

impl Default for Config {
    /// Every interface of both families, OpenDHT's port 4222.
    fn default() -> Self {
        Config {
            port: dht_proto::DEFAULT_PORT,
            bind4: Some(Ipv4Addr::UNSPECIFIED),
            bind6: Some(Ipv6Addr::UNSPECIFIED),
            node: dht_proto::Config::default(),
            seed: None,
            bootstrap: Vec::new(),
            discovery: None,
        }
    }
}

impl Config {
    /// Loopback only (127.0.0.1 and ::1), any free port: for tests and local experiments.
    pub fn loopback() -> Config {
        Config {
            port: 0,
            bind4: Some(Ipv4Addr::LOCALHOST),
            bind6: Some(Ipv6Addr::LOCALHOST),
            ..Config::default()
        }
    }

    /// The seed to build the node with: [`Config::seed`], or 32 bytes from the OS.
    pub fn seed_or_random(&self) -> [u8; 32] {
        self.seed.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            OsRng.fill_bytes(&mut s);
            s
        })
    }
}

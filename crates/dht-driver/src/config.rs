//! How to run a node: its sockets, its core configuration, its seed and whom it joins.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand_core::{OsRng, RngCore};

/// How to run a node, whatever the driver.
///
/// Every setting of the core is in [`Config::node`], passed to the node as it is (only
/// `dual_stack` is set from the sockets bound): the uplink's rate
/// (`uplink_bytes_per_sec`, also [`Config::with_uplink_rate`]), the Sybil limits
/// (`max_bucket_nodes_per_subnet`, `max_search_nodes_per_subnet`), anti-amplification
/// (`amplification_factor`), the rate limits and every table's bound.
///
/// ```
/// use dht_driver::Config;
///
/// // A node on a 1 Mbit/s uplink, with anti-amplification on and no Sybil limit in buckets
/// // (many nodes on one private LAN).
/// let mut config = Config::loopback().with_uplink_rate(Some(125_000));
/// config.node.amplification_factor = Some(2);
/// config.node.max_bucket_nodes_per_subnet = None;
/// assert_eq!(config.node.uplink_bytes_per_sec, Some(125_000));
/// ```
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

    /// The uplink's rate in bytes per second: the value data of the node's get replies is then
    /// paced to it, round robin between replies, so that a large answer on a slow uplink is
    /// delivered slowly but whole rather than queued unseen while the asker gives up
    /// ([`dht_proto::Config::uplink_bytes_per_sec`]). `None` or `Some(0)`: not paced (the
    /// default, as OpenDHT). Both drivers (`dht-mio`, `dht-smol`) take it from here.
    ///
    /// ```
    /// use dht_driver::Config;
    ///
    /// let config = Config::loopback().with_uplink_rate(Some(64 * 1024));
    /// assert_eq!(config.node.uplink_bytes_per_sec, Some(65_536));
    /// assert_eq!(config.with_uplink_rate(Some(0)).node.uplink_bytes_per_sec, None);
    /// ```
    pub fn with_uplink_rate(mut self, bytes_per_sec: Option<u64>) -> Config {
        self.node.uplink_bytes_per_sec = bytes_per_sec.filter(|r| *r > 0);
        self
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

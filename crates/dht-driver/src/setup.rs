//! A node made ready to run: its sockets bound, its core built on the driver's clock.

use std::net::SocketAddr;

use dht_proto::{Node, PerFamily};

use crate::{Clock, Config, DiscoverySockets, DualSocket, Error, Ids, LanDiscovery, unix_now};

/// What a driver needs to start running a node: its sockets, the core and its id counter.
#[derive(Debug)]
pub struct Setup {
    /// The node's sockets (non-blocking).
    pub sockets: DualSocket,
    /// The core, already told the wall-clock time and asked to join the bootstrap nodes.
    pub node: Node,
    /// The node's id counter (get, listen and value ids), for its handles.
    pub ids: Ids,
    /// LAN peer discovery, when [`Config::discovery`] asked for it and a discovery socket could
    /// be bound: its sockets, and its logic with the start-up query and announcement queued.
    pub discovery: Option<(DiscoverySockets, LanDiscovery)>,
}

impl Setup {
    /// Binds the sockets `config` asks for, builds the core at `clock`'s now (dual-stack when
    /// both families are bound; its seed from the config or the OS) and pings every address of
    /// `bootstrap`. Resolve `config.bootstrap` first ([`Config::resolve_bootstrap`]): it blocks,
    /// and a driver may want it off its reactor.
    pub fn bind(config: Config, clock: &Clock, bootstrap: &[SocketAddr]) -> Result<Setup, Error> {
        let sockets = DualSocket::bind(&config)?;
        let discovery_config = config.discovery.clone();
        let seed = config.seed_or_random();
        let now = clock.now();
        let mut node_config = config.node;
        node_config.dual_stack = sockets.is_dual_stack();
        let mut node = Node::new(node_config, seed, now);
        node.set_unix_time(now, unix_now());
        for addr in bootstrap {
            node.bootstrap(now, *addr);
        }
        let discovery = discovery_config.and_then(|dc| {
            let families = PerFamily::new(sockets.v4.is_some(), sockets.v6.is_some());
            match DiscoverySockets::bind(families, crate::DISCOVERY_PORT) {
                Ok(ds) => {
                    let ports = LanDiscovery::ports(&sockets.local_addrs(), &ds);
                    let lan = LanDiscovery::start(dc, &node, ports, now);
                    Some((ds, lan))
                }
                Err(e) => {
                    // As OpenDHT: the node runs on, without discovery.
                    tracing::warn!(error = %e, "peer discovery off: no discovery socket");
                    None
                }
            }
        });
        Ok(Setup {
            sockets,
            node,
            ids: Ids::new(&seed),
            discovery,
        })
    }
}

impl Config {
    /// Resolves every spec of [`Config::bootstrap`] ([`crate::resolve`]); the first that does
    /// not resolve is the error. It blocks while the system resolver works.
    pub fn resolve_bootstrap(&self) -> Result<Vec<SocketAddr>, Error> {
        let mut addrs = Vec::new();
        for spec in &self.bootstrap {
            addrs.extend(crate::resolve(spec)?);
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_gets_the_config_as_given_but_for_dual_stack() {
        let clock = Clock::new();
        let mut config = Config {
            bind6: None,
            ..Config::loopback().with_uplink_rate(Some(12_345))
        };
        config.node.amplification_factor = Some(2);
        config.node.max_bucket_nodes_per_subnet = Some(1);
        config.node.max_search_nodes_per_subnet = None;
        let setup = Setup::bind(config, &clock, &[]).expect("binds 127.0.0.1");
        let c = setup.node.config();
        assert_eq!(c.uplink_bytes_per_sec, Some(12_345));
        assert_eq!(c.amplification_factor, Some(2));
        assert_eq!(c.max_bucket_nodes_per_subnet, Some(1));
        assert_eq!(c.max_search_nodes_per_subnet, None);
        assert!(!c.dual_stack, "one family bound");
    }
}

//! A node made ready to run: its sockets bound, its core built on the driver's clock.

use std::net::SocketAddr;

use dht_proto::Node;

use crate::{Clock, Config, DualSocket, Error, Ids, unix_now};

/// What a driver needs to start running a node: its sockets, the core and its id counter.
#[derive(Debug)]
pub struct Setup {
    /// The node's sockets (non-blocking).
    pub sockets: DualSocket,
    /// The core, already told the wall-clock time and asked to join the bootstrap nodes.
    pub node: Node,
    /// The node's id counter (get, listen and value ids), for its handles.
    pub ids: Ids,
}

impl Setup {
    /// Binds the sockets `config` asks for, builds the core at `clock`'s now (dual-stack when
    /// both families are bound; its seed from the config or the OS) and pings every address of
    /// `bootstrap`. Resolve `config.bootstrap` first ([`Config::resolve_bootstrap`]): it blocks,
    /// and a driver may want it off its reactor.
    pub fn bind(config: Config, clock: &Clock, bootstrap: &[SocketAddr]) -> Result<Setup, Error> {
        let sockets = DualSocket::bind(&config)?;
        let seed = config.seed_or_random();
        let now = clock.now();
        let mut node_config = config.node;
        node_config.dual_stack = sockets.is_dual_stack();
        let mut node = Node::new(node_config, seed, now);
        node.set_unix_time(now, unix_now());
        for addr in bootstrap {
            node.bootstrap(now, *addr);
        }
        Ok(Setup {
            sockets,
            node,
            ids: Ids::new(&seed),
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

//! A detailed view of the node for the status page (`/ui/`): what [`crate::Dht::details`]
//! returns, and how it is read from a `dht-smol` or a `dht-mio` node.
//!
//! Everything is read in one turn of the node (its stats, statuses and public addresses), so the
//! figures agree with each other. The routing tables, bucket by bucket, are
//! [`crate::Dht::routing`]'s (`Node::routing_summary`), served on their own route.

use std::net::{IpAddr, SocketAddr};

use dht_proto::{Family, InfoHash, Node, PerFamily, Stats, Status};

use crate::dht::BoxFuture;

/// The node as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDetails {
    /// The DHT node id.
    pub node_id: InfoHash,
    /// The network id (0: the public network).
    pub network: u32,
    /// Connectivity of IPv4 and IPv6.
    pub status: PerFamily<Status>,
    /// Our public addresses as peers report them.
    pub public_addresses: Vec<IpAddr>,
    /// The bound UDP addresses.
    pub local_addrs: Vec<SocketAddr>,
    /// The node's counters (traffic, drops, searches, storage).
    pub stats: Stats,
}

/// Reads the view inside the node (without the bound addresses, which the handle knows).
fn read(n: &Node) -> NodeDetails {
    let mut public_addresses = n.public_addresses(Family::V4);
    public_addresses.extend(n.public_addresses(Family::V6));
    NodeDetails {
        node_id: n.node_id(),
        network: n.config().network,
        status: PerFamily::new(n.status(Family::V4), n.status(Family::V6)),
        public_addresses,
        local_addrs: Vec::new(),
        stats: n.stats(),
    }
}

pub(crate) fn of_smol(node: &dht_smol::Handle) -> BoxFuture<Option<NodeDetails>> {
    let node = node.clone();
    Box::pin(async move {
        let mut d = node.inspect(read).await.ok()?;
        d.local_addrs = node.local_addrs();
        Some(d)
    })
}

pub(crate) fn of_mio(node: &dht_mio::Handle) -> BoxFuture<Option<NodeDetails>> {
    let node = node.clone();
    // `inspect` waits for the runner thread: run it on the blocking pool.
    Box::pin(smol::unblock(move || {
        let mut d = node.inspect(read).ok()?;
        d.local_addrs = node.local_addrs();
        Some(d)
    }))
}

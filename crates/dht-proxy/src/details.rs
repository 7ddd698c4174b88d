//! A detailed view of the node for the status page (`/ui/`): what [`crate::Dht::details`]
//! returns, and how it is read from a `dht-smol` or a `dht-mio` node.
//!
//! Everything is read in one turn of the node (its stats, statuses, public addresses and both
//! routing tables), so the figures agree with each other.

use std::net::{IpAddr, SocketAddr};

use dht_proto::{Family, InfoHash, Node, PerFamily, Stats, Status};

use crate::dht::BoxFuture;

/// One bucket of a routing table, as counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// The first id of the bucket's range (hex).
    pub first: String,
    /// The bucket's depth (bits of prefix its range covers).
    pub depth: u32,
    /// Nodes that answered recently.
    pub good: usize,
    /// Nodes not (yet, or no longer) good.
    pub dubious: usize,
    /// Nodes that stopped answering (expired: OpenDHT's "bad").
    pub bad: usize,
}

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
    /// The IPv4 and IPv6 routing tables, bucket by bucket.
    pub buckets: PerFamily<Vec<Bucket>>,
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
        buckets: PerFamily::new(
            parse_buckets(&n.routing_table_text(Family::V4)),
            parse_buckets(&n.routing_table_text(Family::V6)),
        ),
        stats: n.stats(),
    }
}

/// The buckets of `Node::routing_table_text`: a `bucket {first} depth {d} ({n} nodes)` line
/// per bucket, then a `  {id} {addr} {good|dubious|expired}` line per node.
pub(crate) fn parse_buckets(text: &str) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("bucket ") {
            let mut words = rest.split_whitespace();
            let first = words.next().unwrap_or_default().to_owned();
            let depth = match (words.next(), words.next()) {
                (Some("depth"), Some(d)) => d.parse().unwrap_or(0),
                _ => 0,
            };
            out.push(Bucket {
                first,
                depth,
                ..Bucket::default()
            });
        } else if let Some(b) = out.last_mut() {
            match line.split_whitespace().last() {
                Some("good") => b.good += 1,
                Some("expired") => b.bad += 1,
                Some(_) => b.dubious += 1,
                None => {}
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_from_the_table_text() {
        let text = "bucket 0000000000000000000000000000000000000000 depth 1 (3 nodes)\n  \
                    1111111111111111111111111111111111111111 127.0.0.1:1 good\n  \
                    2222222222222222222222222222222222222222 127.0.0.1:2 dubious\n  \
                    3333333333333333333333333333333333333333 127.0.0.1:3 expired\n\
                    bucket 8000000000000000000000000000000000000000 depth 1 (0 nodes)\n";
        let b = parse_buckets(text);
        let [b0, b1] = b.as_slice() else { panic!("{b:?}") };
        assert_eq!((b0.depth, b0.good, b0.dubious, b0.bad), (1, 1, 1, 1));
        assert_eq!(b1.first, "8000000000000000000000000000000000000000");
        assert_eq!((b1.good, b1.dubious, b1.bad), (0, 0, 0));
        assert!(parse_buckets("").is_empty());
    }
}

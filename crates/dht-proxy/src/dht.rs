//! The DHT node the proxy serves, as a small trait, and its implementations for a `dht-smol`
//! node and (in `mio.rs`) a `dht-mio` one.
//!
//! The server needs five things of a node: get (values as they arrive), put (plain or
//! permanent), cancel a permanent put, listen (additions and expirations) and a description of
//! itself for `GET /`. Keeping them behind [`Dht`] keeps the HTTP side independent of the
//! driver: tests and other drivers can serve through it too.

use std::future::Future;
use std::pin::Pin;

use dht_proto::value::Value;
use dht_proto::{BucketSummary, Family, InfoHash, PerFamily};
use smol::stream::{Stream, StreamExt};

/// A boxed stream, as [`Dht`] returns them.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;
/// A boxed future, as [`Dht`] returns them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a listen reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ListenEvent {
    /// Values added (or changed).
    Added(Vec<Value>),
    /// Values expired or removed.
    Expired(Vec<Value>),
}

/// A put's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The value id (chosen by the node when the value had 0).
    pub id: u64,
    /// True when the put reached the closest nodes (OpenDHT's `ok`); false gives `502`.
    pub ok: bool,
}

/// Routing-table counts of one address family, for node info.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyInfo {
    /// Good nodes (answered recently).
    pub good: usize,
    /// Known nodes not (yet) good.
    pub dubious: usize,
    /// Nodes that contacted us.
    pub incoming: usize,
}

/// What `GET /` reports of the node (OpenDHT's `NodeInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The DHT node id.
    pub node_id: InfoHash,
    /// The id of the node's public key, when it has an identity.
    pub id: Option<InfoHash>,
    /// IPv4 routing table.
    pub ipv4: FamilyInfo,
    /// IPv6 routing table.
    pub ipv6: FamilyInfo,
    /// Operations in progress.
    pub ops: usize,
    /// Values stored.
    pub storage_values: usize,
    /// Bytes of values stored.
    pub storage_size: usize,
    /// Bound UDP port for IPv4 (0: none).
    pub port_ipv4: u16,
    /// Bound UDP port for IPv6 (0: none).
    pub port_ipv6: u16,
}

/// The node behind the proxy. Every method returns at once; the work happens in the futures
/// and streams, which must be `Send` and own what they need.
pub trait Dht: Send + Sync + 'static {
    /// The values at `key` as they arrive; the stream ends when the get is done.
    fn get(&self, key: InfoHash) -> BoxStream<Value>;
    /// Puts `value` (its id filled in when 0); `permanent` keeps it announced until
    /// [`Dht::cancel_put`]. An `Err` is a refusal by the node (bad value, node closed).
    fn put(&self, key: InfoHash, value: Value, permanent: bool) -> BoxFuture<Result<PutResult, String>>;
    /// Stops announcing a permanent put.
    fn cancel_put(&self, key: InfoHash, id: u64);
    /// A listen at `key`; dropping the stream cancels it.
    fn listen(&self, key: InfoHash) -> BoxStream<ListenEvent>;
    /// A description of the node; `None` when it cannot be had (node shut down).
    fn info(&self) -> BoxFuture<Option<NodeInfo>>;
    /// A detailed view of the node for the status page (`/ui/`): routing-table buckets,
    /// traffic, storage. The default has none; the page then shows [`Dht::info`] only.
    fn details(&self) -> BoxFuture<Option<crate::NodeDetails>> {
        Box::pin(async { None })
    }
    /// The routing tables as counts per bucket (IPv4 and IPv6) for the status page's
    /// `/ui/api/routing`. The default has none; the page then shows [`Dht::info`]'s totals.
    fn routing(&self) -> BoxFuture<Option<PerFamily<Vec<BucketSummary>>>> {
        Box::pin(async { None })
    }
    /// Puts `value` signed with the node's identity (`POST /key/{h}/sign`). The default
    /// refuses: a node without an identity cannot sign.
    fn put_signed(&self, key: InfoHash, value: Value) -> BoxFuture<Result<PutResult, String>> {
        let _ = (key, value);
        Box::pin(async { Err("the node has no identity".to_owned()) })
    }
    /// Puts `value` encrypted to the public key whose id is `to` (`POST /key/{h}/encrypt`).
    /// The default refuses, as [`Dht::put_signed`] does.
    fn put_encrypted(
        &self,
        key: InfoHash,
        to: InfoHash,
        value: Value,
    ) -> BoxFuture<Result<PutResult, String>> {
        let _ = (key, to, value);
        Box::pin(async { Err("the node has no identity".to_owned()) })
    }
}

impl Dht for dht_smol::Handle {
    fn get(&self, key: InfoHash) -> BoxStream<Value> {
        Box::pin(dht_smol::Handle::get(self, key))
    }

    fn put(&self, key: InfoHash, value: Value, permanent: bool) -> BoxFuture<Result<PutResult, String>> {
        let node = self.clone();
        Box::pin(async move {
            let r = if permanent {
                node.put_permanent(key, value).await
            } else {
                node.put(key, value).await
            };
            r.map(|s| PutResult {
                id: s.vid,
                ok: s.outcome.ok(),
            })
            .map_err(|e| e.to_string())
        })
    }

    fn cancel_put(&self, key: InfoHash, id: u64) {
        let _ = dht_smol::Handle::cancel_put(self, key, id);
    }

    fn details(&self) -> BoxFuture<Option<crate::NodeDetails>> {
        crate::details::of_smol(self)
    }

    fn routing(&self) -> BoxFuture<Option<PerFamily<Vec<BucketSummary>>>> {
        let node = self.clone();
        Box::pin(async move { node.inspect(|n| n.routing_summary()).await.ok() })
    }

    fn put_signed(&self, key: InfoHash, value: Value) -> BoxFuture<Result<PutResult, String>> {
        let node = self.clone();
        Box::pin(async move {
            node.put_signed(key, value)
                .await
                .map(|s| PutResult {
                    id: s.vid,
                    ok: s.outcome.ok(),
                })
                .map_err(|e| e.to_string())
        })
    }

    fn put_encrypted(
        &self,
        key: InfoHash,
        to: InfoHash,
        value: Value,
    ) -> BoxFuture<Result<PutResult, String>> {
        let node = self.clone();
        Box::pin(async move {
            node.put_encrypted_to_id(key, to, value)
                .await
                .map(|s| PutResult {
                    id: s.vid,
                    ok: s.outcome.ok(),
                })
                .map_err(|e| e.to_string())
        })
    }

    fn listen(&self, key: InfoHash) -> BoxStream<ListenEvent> {
        Box::pin(dht_smol::Handle::listen(self, key).map_while(|c| match c {
            Ok(dht_smol::Change::Added(v)) => Some(ListenEvent::Added(v)),
            Ok(dht_smol::Change::Expired(v)) => Some(ListenEvent::Expired(v)),
            Err(_) => None,
        }))
    }

    fn info(&self) -> BoxFuture<Option<NodeInfo>> {
        let node = self.clone();
        Box::pin(async move {
            let stats = node.stats().await.ok()?;
            let addrs = node.local_addrs();
            let port = |v4: bool| {
                addrs
                    .iter()
                    .find(|a| a.is_ipv4() == v4)
                    .map(|a| a.port())
                    .unwrap_or(0)
            };
            let fam = |f: Family| {
                let nodes = stats.nodes[f];
                let good = stats.good_nodes[f];
                FamilyInfo {
                    good,
                    dubious: nodes.saturating_sub(good),
                    incoming: 0,
                }
            };
            // The status the driver publishes can say Connected a turn before stats count the
            // node as good; trust either.
            let mut ipv4 = fam(Family::V4);
            let mut ipv6 = fam(Family::V6);
            for (f, info) in [(Family::V4, &mut ipv4), (Family::V6, &mut ipv6)] {
                if info.good == 0 && node.status(f) == dht_proto::Status::Connected {
                    info.good = 1;
                    info.dubious = info.dubious.saturating_sub(1);
                }
            }
            Some(NodeInfo {
                node_id: node.node_id(),
                id: None,
                ipv4,
                ipv6,
                ops: stats.operations,
                storage_values: stats.stored_values,
                storage_size: stats.stored_bytes,
                port_ipv4: port(true),
                port_ipv6: port(false),
            })
        })
    }
}

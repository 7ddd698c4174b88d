//! [`Dht`] for a `dht-mio` node (OpenDHT's `DhtRunner`), as `dhtnode --proxyserver` serves it.
//!
//! The runner calls back on its own thread; each callback only hands its values to a channel
//! (never blocking the runner), and the proxy's tasks read the channels. Dropping a get or a
//! listen stream cancels the operation in the node. Node info asks the runner thread, so it
//! runs on smol's blocking pool.

use std::pin::Pin;
use std::task::{Context, Poll};

use dht_mio::{Change, GetId, Handle, ListenId, PutMode};
use dht_proto::value::{Query, Value};
use dht_proto::{Family, InfoHash, PutOptions, Status};
use smol::stream::Stream;

use crate::dht::{BoxFuture, BoxStream, Dht, FamilyInfo, ListenEvent, NodeInfo, PutResult};

/// The items of a channel fed by the runner's callbacks; dropping it runs `cancel`.
struct Fed<T> {
    rx: Pin<Box<smol::channel::Receiver<T>>>,
    cancel: Option<Box<dyn FnOnce() + Send>>,
}

impl<T> Stream for Fed<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.as_mut().poll_next(cx)
    }
}

impl<T> Drop for Fed<T> {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel();
        }
    }
}

fn put_with(
    node: &Handle,
    key: InfoHash,
    value: Value,
    opts: PutOptions,
    mode: PutMode,
) -> BoxFuture<Result<PutResult, String>> {
    let (tx, rx) = smol::channel::bounded(1);
    let sent = node.put_as(key, value, opts, mode, move |r| {
        let _ = tx.try_send(r);
    });
    Box::pin(async move {
        let id = sent.map_err(|e| e.to_string())?;
        match rx.recv().await {
            Ok(Ok(outcome)) => Ok(PutResult { id, ok: outcome.ok() }),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("node closed".to_owned()),
        }
    })
}

impl Dht for Handle {
    fn get(&self, key: InfoHash) -> BoxStream<Value> {
        let (tx, rx) = smol::channel::unbounded();
        let on_values = move |vs: &[Value]| {
            for v in vs {
                let _ = tx.try_send(v.clone());
            }
        };
        // The channel closes when both callbacks are dropped: after the end of the get.
        let id: Option<GetId> = Handle::get(self, key, Query::default(), on_values, |_| {}).ok();
        let node = self.clone();
        Box::pin(Fed {
            rx: Box::pin(rx),
            cancel: id.map(|id| Box::new(move || node.cancel_get(id)) as Box<dyn FnOnce() + Send>),
        })
    }

    fn put(&self, key: InfoHash, value: Value, permanent: bool) -> BoxFuture<Result<PutResult, String>> {
        let opts = if permanent {
            PutOptions::permanent()
        } else {
            PutOptions::default()
        };
        put_with(self, key, value, opts, PutMode::Plain)
    }

    fn cancel_put(&self, key: InfoHash, id: u64) {
        Handle::cancel_put(self, key, id);
    }

    fn listen(&self, key: InfoHash) -> BoxStream<ListenEvent> {
        let (tx, rx) = smol::channel::unbounded();
        let on_change = move |c: Change<'_>| match c {
            Change::Added(vs) => {
                let _ = tx.try_send(ListenEvent::Added(vs.to_vec()));
            }
            Change::Expired(vs) => {
                let _ = tx.try_send(ListenEvent::Expired(vs.to_vec()));
            }
            Change::Failed(_) => {
                tx.close();
            }
        };
        let id: Option<ListenId> = Handle::listen(self, key, Query::default(), on_change).ok();
        let node = self.clone();
        Box::pin(Fed {
            rx: Box::pin(rx),
            cancel: id.map(|id| Box::new(move || node.cancel_listen(id)) as Box<dyn FnOnce() + Send>),
        })
    }

    fn info(&self) -> BoxFuture<Option<NodeInfo>> {
        let node = self.clone();
        Box::pin(smol::unblock(move || {
            let stats = node.inspect(|n| n.stats()).ok()?;
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
                let mut good = stats.good_nodes[f];
                // The published status can say Connected a turn before stats count a good node.
                if good == 0 && node.status(f) == Status::Connected {
                    good = 1;
                }
                FamilyInfo {
                    good,
                    dubious: nodes.saturating_sub(good),
                    incoming: 0,
                }
            };
            Some(NodeInfo {
                node_id: node.node_id(),
                id: None,
                ipv4: fam(Family::V4),
                ipv6: fam(Family::V6),
                ops: stats.operations,
                storage_values: stats.stored_values,
                storage_size: stats.stored_bytes,
                port_ipv4: port(true),
                port_ipv6: port(false),
            })
        }))
    }

    fn details(&self) -> BoxFuture<Option<crate::NodeDetails>> {
        crate::details::of_mio(self)
    }

    fn routing(&self) -> BoxFuture<Option<dht_proto::PerFamily<Vec<dht_proto::BucketSummary>>>> {
        let node = self.clone();
        // `routing_summary` waits for the runner thread: run it on the blocking pool.
        Box::pin(smol::unblock(move || node.routing_summary().ok()))
    }

    fn put_signed(&self, key: InfoHash, value: Value) -> BoxFuture<Result<PutResult, String>> {
        put_with(self, key, value, PutOptions::default(), PutMode::Signed)
    }

    fn put_encrypted(
        &self,
        key: InfoHash,
        to: InfoHash,
        value: Value,
    ) -> BoxFuture<Result<PutResult, String>> {
        put_with(
            self,
            key,
            value,
            PutOptions::default(),
            PutMode::EncryptedToId(to),
        )
    }
}

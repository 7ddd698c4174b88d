//! [`Handle`]: binding a node, and every command, as futures and streams.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use dht_driver::{Clock, Ids, Routes, Setup};
use dht_proto::value::{Query, Value};
use dht_proto::wire::NodeInfo;
use dht_proto::{ExportedValue, Family, InfoHash, PerFamily, PutOptions, Stats, Status};
use smol::channel::Sender;
use smol::future::FutureExt;
use smol::{Async, Timer};

use crate::command::Command;
use crate::driver::{Core, Driver};
use crate::{Config, Error, GetStream, GetSummary, ListenStream, PutMode, Stored};

/// What every clone of a handle shares.
pub(crate) struct Inner {
    /// Boxed: the channel allocates its slots 31 at a time, and a `Command` carrying a value is
    /// a few hundred bytes.
    tx: Sender<Box<Command>>,
    addrs: Vec<SocketAddr>,
    id: InfoHash,
    ids: Ids,
    /// Latest status per family, published by the driver.
    pub(crate) status: PerFamily<AtomicU64>,
    /// LAN discovery's counters, published by the driver when discovery runs.
    pub(crate) discovery: std::sync::Mutex<Option<dht_driver::DiscoveryStats>>,
}

/// A handle to a running node: `Clone + Send + Sync`; every clone commands the same node.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.inner.id)
            .field("addrs", &self.inner.addrs)
            .finish_non_exhaustive()
    }
}

/// Resolves bootstrap specs on smol's blocking pool.
async fn resolve_all(specs: Vec<String>) -> Result<Vec<SocketAddr>, Error> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    smol::unblock(move || {
        let mut addrs = Vec::new();
        for spec in &specs {
            addrs.extend(dht_driver::resolve(spec)?);
        }
        Ok(addrs)
    })
    .await
}

impl Handle {
    /// Resolves the bootstrap list, binds the sockets and builds the node; returns the handle and
    /// the [`Driver`] to spawn.
    pub async fn bind(config: Config) -> Result<(Handle, Driver), Error> {
        let bootstrap = resolve_all(config.bootstrap.clone()).await?;
        let clock = Clock::new();
        let setup = Setup::bind(config, &clock, &bootstrap)?;
        let addrs = setup.sockets.local_addrs();
        let wrap = |s: Option<std::net::UdpSocket>| -> Result<_, Error> {
            s.map(|s| {
                let addr = s.local_addr().map_err(Error::Io)?;
                Async::new(s).map_err(|source| Error::Bind { addr, source })
            })
            .transpose()
        };
        let sock4 = wrap(setup.sockets.v4)?;
        let sock6 = wrap(setup.sockets.v6)?;
        let (disc4, disc6, lan) = match setup.discovery {
            Some((ds, lan)) => (wrap(ds.v4)?, wrap(ds.v6)?, Some(lan)),
            None => (None, None, None),
        };
        let (tx, rx) = smol::channel::unbounded();
        let inner = Arc::new(Inner {
            tx,
            addrs,
            id: setup.node.node_id(),
            ids: setup.ids,
            status: PerFamily::default(),
            discovery: std::sync::Mutex::new(lan.as_ref().map(|l| l.stats())),
        });
        let core = Core {
            node: setup.node,
            clock,
            sock4,
            sock6,
            rx,
            inner: Arc::downgrade(&inner),
            routes: Routes::new(),
            shutdown: Vec::new(),
            shutting_down: false,
            out: Vec::new(),
            disc4,
            disc6,
            lan,
        };
        Ok((Handle { inner }, Driver(Box::pin(core.run()))))
    }

    /// [`Handle::bind`], with the driver spawned on smol's global executor.
    pub async fn start(config: Config) -> Result<Handle, Error> {
        let (node, driver) = Handle::bind(config).await?;
        smol::spawn(driver).detach();
        Ok(node)
    }

    pub(crate) fn send(&self, c: Command) -> Result<(), Error> {
        self.inner.tx.try_send(Box::new(c)).map_err(|_| Error::Closed)
    }

    /// Runs `f` on the node inside the driver and returns its result.
    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dht_proto::Node, dht_proto::Instant) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (tx, rx) = smol::channel::bounded(1);
        self.send(Command::With(Box::new(move |n, now| {
            let _ = tx.try_send(f(n, now));
        })))?;
        rx.recv().await.map_err(|_| Error::Closed)
    }

    /// The bound addresses (IPv4 first).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.addrs.clone()
    }

    /// Our node id.
    pub fn node_id(&self) -> InfoHash {
        self.inner.id
    }

    /// Connectivity of `family`, as of the driver's last turn.
    pub fn status(&self, family: Family) -> Status {
        match self.inner.status[family].load(Ordering::Relaxed) {
            2 => Status::Connected,
            1 => Status::Connecting,
            _ => Status::Disconnected,
        }
    }

    /// LAN peer discovery's counters (heard, answered, bootstrapped, dropped by reason), as of
    /// the driver's last turn; `None` when discovery is off or could not start.
    pub fn discovery_stats(&self) -> Option<dht_driver::DiscoveryStats> {
        self.inner.discovery.lock().ok().and_then(|d| *d)
    }

    /// Waits until either family is connected, at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), Error> {
        let end = StdInstant::now() + limit;
        loop {
            if self.status(Family::V4) == Status::Connected || self.status(Family::V6) == Status::Connected {
                return Ok(());
            }
            if self.inner.tx.is_closed() {
                return Err(Error::Closed);
            }
            if StdInstant::now() >= end {
                return Err(Error::Timeout);
            }
            Timer::after(Duration::from_millis(5)).await;
        }
    }

    /// The node's counters (traffic, drops, routing tables, storage, operations in progress).
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.with(|n, _| n.stats()).await
    }

    /// Runs `f` on the node inside the driver with read access and returns its result (for
    /// views: routing tables, searches, stored values), as `dht_mio::Handle::inspect`.
    pub async fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dht_proto::Node) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.with(move |n, _| f(n)).await
    }

    /// Our public addresses as peers report them.
    pub async fn public_addresses(&self) -> Result<Vec<IpAddr>, Error> {
        self.with(|n, _| {
            let mut v = n.public_addresses(Family::V4);
            v.extend(n.public_addresses(Family::V6));
            v
        })
        .await
    }

    /// Pings `addr` to join its network.
    pub fn bootstrap_addr(&self, addr: SocketAddr) -> Result<(), Error> {
        self.send(Command::Bootstrap(addr))
    }

    /// Resolves `spec` (`host:port`, `[v6]:port`, or a bare host for port 4222, see
    /// [`resolve`](crate::resolve); on smol's blocking pool) and pings every address it names.
    pub async fn bootstrap_host(&self, spec: &str) -> Result<Vec<SocketAddr>, Error> {
        let spec = spec.to_string();
        let addrs = smol::unblock(move || dht_driver::resolve(&spec)).await?;
        for a in &addrs {
            self.bootstrap_addr(*a)?;
        }
        Ok(addrs)
    }

    /// The values at `key`, as they arrive; the stream ends when the search is done. Dropping it
    /// cancels the get.
    pub fn get(&self, key: InfoHash) -> GetStream {
        self.get_query(key, Query::default())
    }

    /// [`Handle::get`] with a query (`SELECT`/`WHERE`).
    pub fn get_query(&self, key: InfoHash, query: Query) -> GetStream {
        let id = self.inner.ids.get_id();
        let (tx, rx) = smol::channel::unbounded();
        let sent = self.send(Command::Get(id, key, query, tx));
        GetStream {
            node: self.clone(),
            id,
            rx: Box::pin(rx),
            pending: Vec::new(),
            outcome: sent.err().map(Err),
            summary: None,
        }
    }

    /// Every value at `key` once the get is done; an error if the node refused the get.
    pub async fn get_all(&self, key: InfoHash) -> Result<Vec<Value>, Error> {
        let mut s = self.get(key);
        let mut all = Vec::new();
        while let Some(v) = smol::stream::StreamExt::next(&mut s).await {
            all.push(v);
        }
        match s.outcome.take() {
            Some(Err(e)) => Err(e),
            _ => Ok(all),
        }
    }

    /// Every value at `key` matching `query` once the get is done, and how it ended
    /// ([`GetSummary`]: complete or not, how many of the closest nodes answered); an error if
    /// the node refused the get or shut down.
    ///
    /// ```
    /// use dht_smol::{Config, Handle};
    /// use dht_proto::{InfoHash, value::{Query, Value}};
    ///
    /// smol::block_on(async {
    ///     let a = Handle::start(Config::loopback()).await.unwrap();
    ///     let b = Handle::start(Config::loopback()).await.unwrap();
    ///     b.bootstrap_addr(a.local_addrs()[0]).unwrap();
    ///     b.wait_connected(std::time::Duration::from_secs(10)).await.unwrap();
    ///     let key = InfoHash::get("hello");
    ///     a.put(key, Value::new(0, b"world".to_vec())).await.unwrap();
    ///     let (values, summary) = b.get_all_with_summary(key, Query::default()).await.unwrap();
    ///     assert_eq!(values[0].data, b"world");
    ///     assert!(summary.ok && summary.answered >= 1);
    ///     a.shutdown().await;
    ///     b.shutdown().await;
    /// });
    /// ```
    pub async fn get_all_with_summary(
        &self,
        key: InfoHash,
        query: Query,
    ) -> Result<(Vec<Value>, GetSummary), Error> {
        let mut s = self.get_query(key, query);
        let mut all = Vec::new();
        while let Some(v) = smol::stream::StreamExt::next(&mut s).await {
            all.push(v);
        }
        match (s.outcome.take(), s.summary) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(summary)) => Ok((all, summary)),
            // The stream ended without a done message: only if the driver went away.
            (_, None) => Err(Error::Closed),
        }
    }

    /// Puts `value` at `key`; resolves when the closest nodes have answered.
    pub async fn put(&self, key: InfoHash, value: Value) -> Result<Stored, Error> {
        self.put_with(key, value, PutOptions::default()).await
    }

    /// A permanent put: kept alive until [`Handle::cancel_put`] with the returned value id.
    pub async fn put_permanent(&self, key: InfoHash, value: Value) -> Result<Stored, Error> {
        self.put_with(key, value, PutOptions::permanent()).await
    }

    /// A put signed with the node's identity (`Error::Command(NoIdentity)` without one).
    pub async fn put_signed(&self, key: InfoHash, value: Value) -> Result<Stored, Error> {
        self.put_as(key, value, PutOptions::default(), PutMode::Signed)
            .await
    }

    /// A put encrypted to `to` (and signed inside) with the node's identity.
    pub async fn put_encrypted(
        &self,
        key: InfoHash,
        to: &dht_proto::crypto::PublicKey,
        value: Value,
    ) -> Result<Stored, Error> {
        self.put_as(key, value, PutOptions::default(), PutMode::EncryptedTo(*to))
            .await
    }

    /// A put encrypted to the key whose short id is `to`, looked up in the DHT (the owner's node
    /// announces it once connected). If none is found, the outcome reports no node reached.
    pub async fn put_encrypted_to_id(
        &self,
        key: InfoHash,
        to: InfoHash,
        value: Value,
    ) -> Result<Stored, Error> {
        self.put_as(key, value, PutOptions::default(), PutMode::EncryptedToId(to))
            .await
    }

    /// A put with options.
    pub async fn put_with(&self, key: InfoHash, value: Value, opts: PutOptions) -> Result<Stored, Error> {
        self.put_as(key, value, opts, PutMode::Plain).await
    }

    /// A put with options and a [`PutMode`].
    pub async fn put_as(
        &self,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
        mode: PutMode,
    ) -> Result<Stored, Error> {
        let vid = self.inner.ids.fill_value_id(&mut value);
        let (tx, rx) = smol::channel::bounded(1);
        self.send(Command::Put(key, value, opts, mode, tx))?;
        let outcome = rx.recv().await.map_err(|_| Error::Closed)??;
        Ok(Stored { vid, outcome })
    }

    /// Stops announcing a value and drops our copy.
    pub fn cancel_put(&self, key: InfoHash, vid: u64) -> Result<(), Error> {
        self.send(Command::CancelPut(key, vid))
    }

    /// A listen: a stream of changes at `key`. Dropping it cancels the listen.
    pub fn listen(&self, key: InfoHash) -> ListenStream {
        self.listen_query(key, Query::default())
    }

    /// [`Handle::listen`] with a query.
    pub fn listen_query(&self, key: InfoHash, query: Query) -> ListenStream {
        let id = self.inner.ids.listen_id();
        let (tx, rx) = smol::channel::unbounded();
        if let Err(e) = self.send(Command::Listen(id, key, query, tx.clone())) {
            let _ = tx.try_send(Err(e));
        }
        ListenStream {
            node: self.clone(),
            id,
            rx: Box::pin(rx),
        }
    }

    /// Nodes worth remembering across restarts.
    pub async fn export_nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        self.with(|n, _| n.export_nodes()).await
    }

    /// Every stored value with the life it has left.
    pub async fn export_values(&self) -> Result<Vec<ExportedValue>, Error> {
        self.with(|n, _| n.export_values()).await
    }

    /// Adds exported nodes.
    pub async fn import_nodes(&self, nodes: Vec<NodeInfo>) -> Result<(), Error> {
        self.with(move |n, now| n.import_nodes(now, &nodes)).await
    }

    /// Stores exported values again.
    pub async fn import_values(&self, values: Vec<ExportedValue>) -> Result<(), Error> {
        self.with(move |n, now| n.import_values(now, values)).await
    }

    /// Shuts the node down, letting pending puts finish for at most 5 s.
    pub async fn shutdown(&self) {
        self.shutdown_within(Duration::from_secs(5)).await;
    }

    /// Shuts the node down, letting pending puts finish for at most `limit`; then the driver ends
    /// and every operation of every handle returns [`Error::Closed`].
    pub async fn shutdown_within(&self, limit: Duration) {
        let (tx, rx) = smol::channel::bounded(1);
        if self.send(Command::Shutdown(tx)).is_err() {
            return;
        }
        let _ = rx
            .recv()
            .or(async {
                Timer::after(limit).await;
                Ok(())
            })
            .await;
        // Past the bound (or done): close the channel, which ends the driver.
        self.inner.tx.close();
    }
}

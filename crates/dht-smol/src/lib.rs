//! # dht-smol
//!
//! An async driver for [`dht_proto::Node`] on smol: the node's IPv4 and IPv6 UDP sockets are
//! `smol::Async<UdpSocket>` (same port), the core runs in one task (the *driver*), and a cheap,
//! cloneable [`Node`] handle (`Clone + Send + Sync`) gives futures and streams: [`Node::get`] is a
//! `Stream` of values that ends when the search is done, [`Node::put`] a future of its outcome,
//! [`Node::listen`] a `Stream` of changes; dropping a stream cancels its get or listen.
//!
//! ```
//! use dht_smol::{Config, Node};
//! use dht_proto::{InfoHash, value::Value};
//! use smol::stream::StreamExt;
//!
//! smol::block_on(async {
//!     let a = Node::start(Config::loopback()).await.unwrap();
//!     let b = Node::start(Config::loopback()).await.unwrap();
//!     b.bootstrap_addr(a.local_addrs()[0]).unwrap();
//!     b.wait_connected(std::time::Duration::from_secs(10)).await.unwrap();
//!     let key = InfoHash::get("hello");
//!     a.put(key, Value::new(0, b"world".to_vec())).await.unwrap();
//!     let values: Vec<_> = b.get(key).collect().await;
//!     assert_eq!(values[0].data, b"world");
//!     a.shutdown().await;
//!     b.shutdown().await;
//! });
//! ```
//!
//! ## Whose runtime
//!
//! Nothing here starts threads or an executor of its own. [`Node::bind`] returns the handle and
//! the [`Driver`], a `Send + 'static` future that runs the node until it shuts down: spawn it on
//! any executor that can poll smol's reactor (`async-io`): `smol::spawn`, an
//! `async_executor::Executor`, or a `LocalExecutor` inside `smol::block_on`. With tokio or another
//! runtime, run the driver on a thread that polls async-io's reactor, e.g.
//! `std::thread::spawn(|| smol::block_on(driver))`. [`Node::start`] is `bind` plus
//! `smol::spawn(driver).detach()`.
//!
//! ```
//! use dht_smol::{Config, Node};
//!
//! let ex = smol::LocalExecutor::new();
//! smol::block_on(ex.run(async {
//!     let (node, driver) = Node::bind(Config::loopback()).await.unwrap();
//!     ex.spawn(driver).detach();
//!     assert!(!node.local_addrs().is_empty());
//!     node.shutdown().await;
//! }));
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use dht_proto::value::{Query, Value};
use dht_proto::wire::NodeInfo;
use dht_proto::{
    Event, ExportedValue, Family, InfoHash, ListenToken, OpId, PutOptions, PutOutcome, Stats, Status,
};
use rand_core::{OsRng, RngCore};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::stream::Stream;
use smol::{Async, Timer};

/// Socket buffer asked for each UDP socket (the kernel caps it at its maxima): room for the parts
/// of several 60 KiB values arriving at once.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP port for both families; 0 picks a free one.
    pub port: u16,
    /// IPv4 address to bind; `None`: no IPv4.
    pub bind4: Option<Ipv4Addr>,
    /// IPv6 address to bind; `None`: no IPv6.
    pub bind6: Option<Ipv6Addr>,
    /// The node's configuration (network id, limits).
    pub node: dht_proto::Config,
    /// The node's seed (its id derives from it); `None` draws one from the OS.
    pub seed: Option<[u8; 32]>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: dht_proto::DEFAULT_PORT,
            bind4: Some(Ipv4Addr::UNSPECIFIED),
            bind6: Some(Ipv6Addr::UNSPECIFIED),
            node: dht_proto::Config::default(),
            seed: None,
        }
    }
}

impl Config {
    /// Loopback only (127.0.0.1 and ::1), any free port.
    pub fn loopback() -> Config {
        Config {
            port: 0,
            bind4: Some(Ipv4Addr::LOCALHOST),
            bind6: Some(Ipv6Addr::LOCALHOST),
            ..Config::default()
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// Neither family could be bound (or none was asked for).
    #[error("no socket bound")]
    NoSocket,
    /// A host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        reason: String,
    },
    /// The node has shut down.
    #[error("the node has shut down")]
    Closed,
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] dht_proto::CommandError),
    /// Not within the time given.
    #[error("timed out")]
    Timeout,
}

/// A put's result: the value id (chosen here when the value's was 0) and how many nodes stored it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The value id, for [`Node::cancel_put`].
    pub vid: u64,
    /// Acknowledgements.
    pub outcome: PutOutcome,
}

/// What a listen reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Values added (or changed).
    Added(Vec<Value>),
    /// Values expired or removed.
    Expired(Vec<Value>),
}

/// How a put treats its value.
#[derive(Clone, Debug)]
pub enum PutMode {
    /// As given.
    Plain,
    /// Signed with the node's identity (`Config::node.identity`).
    Signed,
    /// Encrypted to this key (and signed inside) with the node's identity.
    EncryptedTo(dht_proto::crypto::PublicKey),
    /// Encrypted to the key with this short id, looked up where its owner announced it.
    EncryptedToId(InfoHash),
}

enum GetMsg {
    Values(Vec<Value>),
    Done(Result<bool, Error>),
}

type Inspect = Box<dyn FnOnce(&mut dht_proto::Node, dht_proto::Instant) + Send>;

// A put carries a value and maybe a key: the size of a command is not worth a box per message.
#[allow(clippy::large_enum_variant)]
enum Command {
    Bootstrap(SocketAddr),
    Get(u64, InfoHash, Query, Sender<GetMsg>),
    CancelGet(u64),
    Put(
        InfoHash,
        Value,
        PutOptions,
        PutMode,
        Sender<Result<PutOutcome, Error>>,
    ),
    CancelPut(InfoHash, u64),
    Listen(u64, InfoHash, Query, Sender<Result<Change, Error>>),
    CancelListen(u64),
    With(Inspect),
    Shutdown(Sender<()>),
}

struct Inner {
    /// Boxed: the channel allocates its slots 31 at a time, and a `Command` carrying a value is
    /// a few hundred bytes.
    tx: Sender<Box<Command>>,
    addrs: Vec<SocketAddr>,
    id: InfoHash,
    next: AtomicU64,
    vid_seed: u64,
    /// Latest status per family, published by the driver.
    status: [AtomicU64; 2],
}

/// A handle to a running node: `Clone + Send + Sync`; every clone commands the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("addrs", &self.inner.addrs)
            .finish_non_exhaustive()
    }
}

/// The task that runs a node: spawn it on an executor that polls smol's reactor. It ends when the
/// node has shut down (or when every handle and stream is gone).
pub struct Driver(Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

fn bind(addr: SocketAddr) -> io::Result<Async<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    Async::new(UdpSocket::from(s))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

fn status_code(s: Status) -> u64 {
    match s {
        Status::Disconnected => 0,
        Status::Connecting => 1,
        Status::Connected => 2,
    }
}

impl Node {
    /// Binds the sockets and builds the node; returns the handle and the [`Driver`] to spawn.
    pub async fn bind(config: Config) -> Result<(Node, Driver), Error> {
        let mut port = config.port;
        let mut sock4 = None;
        if let Some(ip) = config.bind4 {
            let addr = SocketAddr::new(IpAddr::V4(ip), port);
            let s = bind(addr).map_err(|source| Error::Bind { addr, source })?;
            port = s.get_ref().local_addr().map(|a| a.port()).unwrap_or(port);
            sock4 = Some(s);
        }
        let mut sock6 = None;
        if let Some(ip) = config.bind6 {
            let addr = SocketAddr::new(IpAddr::V6(ip), port);
            let bound = bind(addr).or_else(|e| {
                if config.port == 0 {
                    bind(SocketAddr::new(IpAddr::V6(ip), 0))
                } else {
                    Err(e)
                }
            });
            match bound {
                Ok(s) => sock6 = Some(s),
                Err(_) if sock4.is_some() => {}
                Err(source) => return Err(Error::Bind { addr, source }),
            }
        }
        if sock4.is_none() && sock6.is_none() {
            return Err(Error::NoSocket);
        }
        let addrs: Vec<SocketAddr> = [&sock4, &sock6]
            .into_iter()
            .flatten()
            .filter_map(|s| s.get_ref().local_addr().ok())
            .collect();
        let seed = config.seed.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            OsRng.fill_bytes(&mut s);
            s
        });
        let origin = StdInstant::now();
        let now = to_proto(origin);
        let mut node_config = config.node;
        node_config.dual_stack = sock4.is_some() && sock6.is_some();
        let mut node = dht_proto::Node::new(node_config, seed, now);
        node.set_unix_time(now, unix_now());
        let (tx, rx) = smol::channel::unbounded();
        let mut vid_seed = [0u8; 8];
        vid_seed.copy_from_slice(seed.get(24..32).unwrap_or(&[1; 8]));
        let inner = Arc::new(Inner {
            tx,
            addrs,
            id: node.node_id(),
            next: AtomicU64::new(1),
            vid_seed: u64::from_le_bytes(vid_seed),
            status: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let core = Core {
            node,
            origin,
            sock4,
            sock6,
            rx,
            inner: Arc::downgrade(&inner),
            gets: BTreeMap::new(),
            get_ops: BTreeMap::new(),
            puts: BTreeMap::new(),
            listens: BTreeMap::new(),
            listen_tokens: BTreeMap::new(),
            shutdown: Vec::new(),
            shutting_down: false,
            out: Vec::new(),
        };
        Ok((Node { inner }, Driver(Box::pin(core.run()))))
    }

    /// [`Node::bind`], with the driver spawned on smol's global executor.
    pub async fn start(config: Config) -> Result<Node, Error> {
        let (node, driver) = Node::bind(config).await?;
        smol::spawn(driver).detach();
        Ok(node)
    }

    fn send(&self, c: Command) -> Result<(), Error> {
        self.inner.tx.try_send(Box::new(c)).map_err(|_| Error::Closed)
    }

    fn next(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::Relaxed)
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
        let i = usize::from(family == Family::V6);
        match self.inner.status.get(i).map(|s| s.load(Ordering::Relaxed)) {
            Some(2) => Status::Connected,
            Some(1) => Status::Connecting,
            _ => Status::Disconnected,
        }
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

    /// Resolves `host` (asynchronously) and pings every address it names.
    pub async fn bootstrap(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let fail = |reason: String| Error::Resolve {
            host: format!("{host}:{port}"),
            reason,
        };
        let addrs = smol::net::resolve((host, port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        if addrs.is_empty() {
            return Err(fail("no addresses".into()));
        }
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

    /// [`Node::get`] with a query (`SELECT`/`WHERE`).
    pub fn get_query(&self, key: InfoHash, query: Query) -> GetStream {
        let id = self.next();
        let (tx, rx) = smol::channel::unbounded();
        let sent = self.send(Command::Get(id, key, query, tx));
        GetStream {
            node: self.clone(),
            id,
            rx: Box::pin(rx),
            pending: Vec::new(),
            outcome: sent.err().map(Err),
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

    /// Puts `value` at `key`; resolves when the closest nodes have answered.
    pub async fn put(&self, key: InfoHash, value: Value) -> Result<Stored, Error> {
        self.put_with(key, value, PutOptions::default()).await
    }

    /// A permanent put: kept alive until [`Node::cancel_put`] with the returned value id.
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
        if value.id == 0 {
            value.id = splitmix(self.inner.vid_seed ^ self.next());
        }
        let vid = value.id;
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

    /// [`Node::listen`] with a query.
    pub fn listen_query(&self, key: InfoHash, query: Query) -> ListenStream {
        let id = self.next();
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

/// The values of a get, as they arrive ([`Node::get`]). Ends when the search is done; dropping
/// it early cancels the get.
pub struct GetStream {
    node: Node,
    id: u64,
    rx: Pin<Box<Receiver<GetMsg>>>,
    pending: Vec<Value>,
    outcome: Option<Result<bool, Error>>,
}

impl std::fmt::Debug for GetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl GetStream {
    /// Once the stream has ended: `Ok(true)` when the closest nodes answered, `Ok(false)` when
    /// not all did, `Err` when the node refused the get or shut down. `None` before the end.
    pub fn outcome(&self) -> Option<&Result<bool, Error>> {
        self.outcome.as_ref()
    }
}

impl Stream for GetStream {
    type Item = Value;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        loop {
            if let Some(v) = self.pending.pop() {
                return Poll::Ready(Some(v));
            }
            if self.outcome.is_some() {
                return Poll::Ready(None);
            }
            match self.rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(GetMsg::Values(mut vs))) => {
                    vs.reverse();
                    self.pending = vs;
                }
                Poll::Ready(Some(GetMsg::Done(r))) => self.outcome = Some(r),
                Poll::Ready(None) => self.outcome = Some(Err(Error::Closed)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for GetStream {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let _ = self.node.send(Command::CancelGet(self.id));
        }
    }
}

/// The changes of a listen ([`Node::listen`]); dropping it cancels the listen. Yields an `Err`
/// (and then ends) if the node refused the listen or shut down.
pub struct ListenStream {
    node: Node,
    id: u64,
    rx: Pin<Box<Receiver<Result<Change, Error>>>>,
}

impl std::fmt::Debug for ListenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Stream for ListenStream {
    type Item = Result<Change, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}

impl Drop for ListenStream {
    fn drop(&mut self) {
        let _ = self.node.send(Command::CancelListen(self.id));
    }
}

fn to_proto(origin: StdInstant) -> dht_proto::Instant {
    dht_proto::Instant::from_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
}

/// The driver's state: the node, its sockets, and where each operation's results go.
struct Core {
    node: dht_proto::Node,
    origin: StdInstant,
    sock4: Option<Async<UdpSocket>>,
    sock6: Option<Async<UdpSocket>>,
    rx: Receiver<Box<Command>>,
    inner: std::sync::Weak<Inner>,
    gets: BTreeMap<OpId, (u64, Sender<GetMsg>)>,
    get_ops: BTreeMap<u64, OpId>,
    puts: BTreeMap<OpId, Sender<Result<PutOutcome, Error>>>,
    listens: BTreeMap<ListenToken, Sender<Result<Change, Error>>>,
    listen_tokens: BTreeMap<u64, ListenToken>,
    shutdown: Vec<Sender<()>>,
    shutting_down: bool,
    out: Vec<u8>,
}

enum Wake {
    Command(Option<Box<Command>>),
    Readable,
    Timer,
}

async fn readable(s: &Option<Async<UdpSocket>>) -> Wake {
    match s {
        Some(s) => {
            let _ = s.readable().await;
            Wake::Readable
        }
        None => smol::future::pending().await,
    }
}

impl Core {
    /// Frees what emptied tables hold: an emptied `BTreeMap` keeps its last leaf. Done on
    /// timer ticks, as the node does.
    fn compact(&mut self) {
        fn reset<K, V>(m: &mut BTreeMap<K, V>) {
            if m.is_empty() {
                *m = BTreeMap::new();
            }
        }
        reset(&mut self.gets);
        reset(&mut self.get_ops);
        reset(&mut self.puts);
        reset(&mut self.listens);
        reset(&mut self.listen_tokens);
    }

    fn now(&self) -> dht_proto::Instant {
        to_proto(self.origin)
    }

    async fn run(mut self) {
        self.drain();
        loop {
            let deadline = self.node.poll_timeout().map(|t| {
                let now = self.now();
                StdInstant::now() + Duration::from_micros(t.as_micros().saturating_sub(now.as_micros()))
            });
            let wake = {
                let rx = &self.rx;
                let cmd = async { Wake::Command(rx.recv().await.ok()) };
                let timer = async {
                    match deadline {
                        Some(t) => {
                            Timer::at(t).await;
                            Wake::Timer
                        }
                        None => smol::future::pending().await,
                    }
                };
                cmd.or(readable(&self.sock4))
                    .or(readable(&self.sock6))
                    .or(timer)
                    .await
            };
            match wake {
                Wake::Command(None) => return,
                Wake::Command(Some(c)) => self.command(*c),
                Wake::Readable | Wake::Timer => {}
            }
            // Commands first (one sent before a datagram it should affect is applied before it).
            if !self.commands() {
                return;
            }
            self.drain();
            if !self.receive() {
                return;
            }
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                self.compact();
            }
            self.drain();
            if self.shutting_down && self.shutdown.is_empty() {
                // Shutdown complete: end the driver.
                return;
            }
        }
    }

    /// Applies every waiting command; false once the channel is closed and empty.
    fn commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(c) => self.command(*c),
                Err(smol::channel::TryRecvError::Empty) => return true,
                Err(smol::channel::TryRecvError::Closed) => return false,
            }
        }
    }

    /// Reads every waiting datagram of both sockets, into the executor thread's buffer (shared
    /// by every node driven on that thread: nothing awaits while it is borrowed).
    fn receive(&mut self) -> bool {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; dht_proto::wire::MAX_DATAGRAM]);
        }
        BUF.with(|b| match b.try_borrow_mut() {
            Ok(mut buf) => self.receive_into(&mut buf),
            // Only if a node's driver were polled from inside another's turn: use a buffer of its own.
            Err(_) => self.receive_into(&mut vec![0u8; dht_proto::wire::MAX_DATAGRAM]),
        })
    }

    fn receive_into(&mut self, buf: &mut [u8]) -> bool {
        for v6 in [false, true] {
            loop {
                let sock = if v6 { &self.sock6 } else { &self.sock4 };
                let Some(sock) = sock else { break };
                match sock.get_ref().recv_from(buf) {
                    Ok((len, from)) => {
                        if !self.commands() {
                            return false;
                        }
                        let now = self.now();
                        if let Some(data) = buf.get(..len) {
                            self.node.handle_datagram(now, from, data);
                        }
                        self.drain();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // ICMP errors surface here on some systems: that datagram is lost.
                    Err(_) => {}
                }
            }
        }
        true
    }

    fn command(&mut self, c: Command) {
        let now = self.now();
        match c {
            Command::Bootstrap(addr) => self.node.bootstrap(now, addr),
            Command::Get(id, key, query, tx) => match self.node.get(now, key, query) {
                Ok(op) => {
                    self.gets.insert(op, (id, tx));
                    self.get_ops.insert(id, op);
                }
                Err(e) => {
                    let _ = tx.try_send(GetMsg::Done(Err(e.into())));
                }
            },
            Command::CancelGet(id) => {
                if let Some(op) = self.get_ops.remove(&id) {
                    self.gets.remove(&op);
                    let _ = self.node.cancel_get(now, op);
                }
            }
            Command::Put(key, value, opts, mode, tx) => match match mode {
                PutMode::Plain => self.node.put(now, key, value, opts),
                PutMode::Signed => self.node.put_signed(now, key, value, opts),
                PutMode::EncryptedTo(to) => self.node.put_encrypted(now, key, &to, value, opts),
                PutMode::EncryptedToId(to) => self.node.put_encrypted_to_id(now, key, to, value, opts),
            } {
                Ok(h) => {
                    self.puts.insert(h.op, tx);
                }
                Err(e) => {
                    let _ = tx.try_send(Err(e.into()));
                }
            },
            Command::CancelPut(key, vid) => {
                let _ = self.node.cancel_put(now, key, vid);
            }
            Command::Listen(id, key, query, tx) => match self.node.listen(now, key, query) {
                Ok(t) => {
                    self.listens.insert(t, tx);
                    self.listen_tokens.insert(id, t);
                }
                Err(e) => {
                    let _ = tx.try_send(Err(e.into()));
                }
            },
            Command::CancelListen(id) => {
                if let Some(t) = self.listen_tokens.remove(&id) {
                    self.listens.remove(&t);
                    let _ = self.node.cancel_listen(now, t);
                }
            }
            Command::With(f) => f(&mut self.node, now),
            Command::Shutdown(tx) => {
                self.shutdown.push(tx);
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.node.shutdown(now);
                }
            }
        }
    }

    fn drain(&mut self) {
        let now = self.now();
        while let Some(t) = self.node.poll_transmit(now, &mut self.out) {
            let sock = if t.destination.is_ipv4() {
                &self.sock4
            } else {
                &self.sock6
            };
            if let (Some(s), Some(data)) = (sock, self.out.get(..t.len)) {
                // Non-blocking: a full socket buffer drops the datagram, as a network would.
                let _ = s.get_ref().send_to(data, t.destination);
            }
        }
        while let Some(e) = self.node.poll_event() {
            self.dispatch(e);
        }
        if let Some(inner) = self.inner.upgrade() {
            for (i, f) in [Family::V4, Family::V6].into_iter().enumerate() {
                if let Some(s) = inner.status.get(i) {
                    s.store(status_code(self.node.status(f)), Ordering::Relaxed);
                }
            }
        }
    }

    fn dispatch(&mut self, e: Event) {
        match e {
            Event::Values { op, values, .. } => {
                if let Some((_, tx)) = self.gets.get(&op)
                    && tx.try_send(GetMsg::Values(values)).is_err()
                {
                    // The stream is gone without its cancel having arrived yet.
                    if let Some((id, _)) = self.gets.remove(&op) {
                        self.get_ops.remove(&id);
                    }
                    let _ = self.node.cancel_get(self.now(), op);
                }
            }
            Event::GetDone { op, ok, .. } => {
                if let Some((id, tx)) = self.gets.remove(&op) {
                    self.get_ops.remove(&id);
                    let _ = tx.try_send(GetMsg::Done(Ok(ok)));
                }
            }
            Event::PutDone { op, outcome, .. } => {
                if let Some(tx) = self.puts.remove(&op) {
                    let _ = tx.try_send(Ok(outcome));
                }
            }
            Event::ListenAdded { token, values, .. } => {
                if let Some(tx) = self.listens.get(&token) {
                    let _ = tx.try_send(Ok(Change::Added(values)));
                }
            }
            Event::ListenExpired { token, values, .. } => {
                if let Some(tx) = self.listens.get(&token) {
                    let _ = tx.try_send(Ok(Change::Expired(values)));
                }
            }
            Event::StatusChanged { family, status } => {
                tracing::info!(?family, ?status, "connectivity changed");
            }
            Event::ShutdownComplete => {
                for tx in self.shutdown.drain(..) {
                    let _ = tx.try_send(());
                }
            }
            _ => {}
        }
    }
}

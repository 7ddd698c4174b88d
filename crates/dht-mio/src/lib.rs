//! # dht-mio
//!
//! A thread runner for [`dht_proto::Node`], like OpenDHT's `DhtRunner`: one thread owns a
//! `mio::Poll`, an IPv4 and an IPv6 UDP socket (same port) and the node; commands arrive over a
//! channel and a `mio::Waker`; results go to callbacks, which run on the runner thread, or to
//! blocking calls built on them. A [`Pool`] carries many nodes on one thread (for processes that
//! run hundreds or thousands of them). `docs/runner.md` describes the design.
//!
//! ## The callback contract
//!
//! Callbacks run on the runner thread, between two turns of the node. From a callback you may:
//! call any method of a [`Handle`] that does not wait (`get`, `put`, `listen`, `cancel_*`,
//! `bootstrap`, `import_*`, `stats`, `status`, `node_id`, `request_shutdown`) on this runner or
//! any other; send to channels; spawn threads. The waiting calls (`get_blocking`,
//! `put_blocking`, `inspect` and the getters built on it, [`Runner::shutdown`]) return
//! [`RunError::OnRunnerThread`] when called from this runner's own thread instead of
//! deadlocking. A callback that blocks for long stalls the node (it answers no one meanwhile).
//!
//! ```
//! use std::time::Duration;
//! use dht_mio::{Runner, RunnerConfig};
//! use dht_proto::{InfoHash, value::Value};
//!
//! let local = RunnerConfig::loopback();
//! let a = Runner::run(local.clone()).unwrap();
//! let b = Runner::run(local).unwrap();
//! b.bootstrap(a.local_addrs()[0]);
//! assert!(b.wait_connected(Duration::from_secs(10)));
//! let key = InfoHash::get("hello");
//! let outcome = a.put_blocking(key, Value::new(0, b"world".to_vec()), Duration::from_secs(10)).unwrap();
//! assert!(outcome.total_acked() >= 1);
//! let values = b.get_blocking(key, Duration::from_secs(10)).unwrap();
//! assert_eq!(values[0].data, b"world");
//! a.shutdown(Duration::from_secs(5)).unwrap();
//! b.shutdown(Duration::from_secs(5)).unwrap();
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dht_proto::value::{Query, Value};
use dht_proto::wire::NodeInfo;
use dht_proto::{
    Config, Event, ExportedValue, Family, InfoHash, ListenToken, Node, OpId, PutOptions, PutOutcome, Stats,
    Status,
};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rand_core::{OsRng, RngCore};

/// Node `i` of a host has tokens `2i` (IPv4) and `2i + 1` (IPv6).
const WAKE: Token = Token(usize::MAX);

/// Socket buffer asked for each UDP socket: room for the parts of several 60 KiB values arriving at
/// once (the kernel may cap it at `net.core.rmem_max` / `wmem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// UDP port for both families; 0 picks a free one (the IPv6 socket then tries the IPv4 port).
    pub port: u16,
    /// IPv4 address to bind; `None`: no IPv4.
    pub bind4: Option<Ipv4Addr>,
    /// IPv6 address to bind; `None`: no IPv6.
    pub bind6: Option<Ipv6Addr>,
    /// The node's configuration (network id, node id, limits).
    pub node: Config,
    /// The node's seed, its identity until signed identities exist: the same seed gives the same
    /// node id (unless `node.node_id` is set). `None` draws one from the OS.
    pub seed: Option<[u8; 32]>,
    /// Nodes to join at start, as `host:port` or `host` (port 4222); every one must resolve.
    pub bootstrap: Vec<String>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            port: dht_proto::DEFAULT_PORT,
            bind4: Some(Ipv4Addr::UNSPECIFIED),
            bind6: Some(Ipv6Addr::UNSPECIFIED),
            node: Config::default(),
            seed: None,
            bootstrap: Vec::new(),
        }
    }
}

impl RunnerConfig {
    /// Loopback only (127.0.0.1 and ::1), any free port: for tests and local experiments.
    pub fn loopback() -> RunnerConfig {
        RunnerConfig {
            port: 0,
            bind4: Some(Ipv4Addr::LOCALHOST),
            bind6: Some(Ipv6Addr::LOCALHOST),
            ..RunnerConfig::default()
        }
    }
}

/// Why a runner could not start, or a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
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
    /// Polling setup failed.
    #[error("poll: {0}")]
    Poll(io::Error),
    /// A host name did not resolve to any address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// The runner has stopped.
    #[error("the runner has stopped")]
    Stopped,
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] dht_proto::CommandError),
    /// No answer within the time given.
    #[error("timed out")]
    Timeout,
    /// A waiting call was made from the runner's own thread (from a callback): it would deadlock.
    #[error("a waiting call from the runner's own thread would deadlock")]
    OnRunnerThread,
}

/// A get started by [`Handle::get`], for [`Handle::cancel_get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GetId(u64);

/// A listen started by [`Handle::listen`], for [`Handle::cancel_listen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenId(u64);

/// What a listen callback is told.
#[derive(Debug)]
pub enum Change<'a> {
    /// Values were added (or changed).
    Added(&'a [Value]),
    /// Values expired or were removed.
    Expired(&'a [Value]),
    /// The listen could not start; no more calls follow.
    Failed(RunError),
}

/// How a put treats its value.
#[derive(Clone, Debug)]
pub enum PutMode {
    /// As given.
    Plain,
    /// Signed with the node's identity (`Config::identity`).
    Signed,
    /// Encrypted to this key (and signed inside) with the node's identity.
    EncryptedTo(dht_proto::crypto::PublicKey),
    /// Encrypted to the key with this short id, looked up where its owner announced it.
    EncryptedToId(InfoHash),
}

type ValuesCb = Box<dyn FnMut(&[Value]) + Send>;
type DoneCb = Box<dyn FnOnce(Result<bool, RunError>) + Send>;
type PutCb = Box<dyn FnOnce(Result<PutOutcome, RunError>) + Send>;
type ListenCb = Box<dyn FnMut(Change<'_>) + Send>;
type InspectFn = Box<dyn FnOnce(&mut Node, dht_proto::Instant) + Send>;

// Commands travel boxed (`HostMsg::Cmd`), so the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Bootstrap(SocketAddr),
    Get {
        id: GetId,
        key: InfoHash,
        query: Query,
        on_values: ValuesCb,
        on_done: DoneCb,
    },
    CancelGet(GetId),
    Put {
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: PutCb,
    },
    CancelPut(InfoHash, u64),
    Listen {
        id: ListenId,
        key: InfoHash,
        query: Query,
        on_change: ListenCb,
    },
    CancelListen(ListenId),
    With(InspectFn),
    Shutdown,
}

/// What the runner thread shares with handles: the latest view of the node.
#[derive(Debug, Default)]
struct Shared {
    id: InfoHash,
    status: [Option<Status>; 2],
    stats: Stats,
    /// The node finished its shutdown (or the runner was told to stop).
    stopped: bool,
    /// The host closed the node's sockets.
    removed: bool,
}

/// A cheap, cloneable way to command a runner from any thread, callbacks included. It does not
/// keep the runner alive: once the [`Runner`] is shut down or dropped its calls fail with
/// [`RunError::Stopped`].
#[derive(Clone)]
pub struct Handle {
    host: Arc<HostCtl>,
    slot: u64,
    shared: Arc<Mutex<Shared>>,
    addrs: Vec<SocketAddr>,
    next_id: Arc<AtomicU64>,
    vid_seed: u64,
}

/// A running node: its thread, sockets and node. Derefs to [`Handle`] for every command.
/// Dropping it stops the node at once; [`Runner::shutdown`] lets pending puts finish first.
pub struct Runner {
    handle: Handle,
    /// Its own thread (none on a pool).
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Runner {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("addrs", &self.handle.addrs)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn to_proto(origin: std::time::Instant) -> dht_proto::Instant {
    dht_proto::Instant::from_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// SplitMix64: value ids from the node's seed and a counter (never 0).
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

/// Resolves `host:port`, `[v6]:port`, or a bare host / address (port 4222) to its addresses.
pub fn resolve(spec: &str) -> Result<Vec<SocketAddr>, RunError> {
    let fail = |reason: String| RunError::Resolve {
        host: spec.to_string(),
        reason,
    };
    let with_port = if spec.parse::<SocketAddr>().is_ok() {
        spec.to_string()
    } else if spec.parse::<IpAddr>().is_ok() {
        // A bare address; IPv6 needs brackets to take a port.
        match spec.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", dht_proto::DEFAULT_PORT),
            _ => format!("{spec}:{}", dht_proto::DEFAULT_PORT),
        }
    } else if spec
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        spec.to_string()
    } else {
        format!("{spec}:{}", dht_proto::DEFAULT_PORT)
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(fail("no addresses".into()));
    }
    Ok(addrs)
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // IPv4 goes through its own socket.
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at its maxima.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(UdpSocket::from_std(s.into()))
}

/// A thread that carries nodes: one per [`Runner::run`], or shared by every runner of a
/// [`Pool`].
struct HostCtl {
    registry: mio::Registry,
    tx: Sender<HostMsg>,
    waker: Arc<Waker>,
    origin: std::time::Instant,
    next_slot: AtomicU64,
    thread_id: ThreadId,
    /// This host's number in [`ON_HOST`].
    serial: u64,
}

/// Numbers hosts: 0 is none.
static HOST_SERIALS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The host whose thread this is (0 elsewhere): a command it sends itself, from a callback,
    /// needs no wake-up, as its loop reads the command queue before it next waits.
    static ON_HOST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

enum HostMsg {
    Add(u64, Box<Slot>),
    Cmd(u64, Box<Command>),
    /// Close the node's sockets and forget it.
    Remove(u64),
    /// The pool is gone: end once no node is left.
    Close,
}

/// Many runners on one thread: for processes that run hundreds or thousands of nodes (tests,
/// benchmarks, swarms), where a thread per node costs memory and context switches. Every
/// runner of a pool shares its thread, so a callback of one delays the others, and waiting calls
/// from a callback to any runner of the pool return [`RunError::OnRunnerThread`].
///
/// ```
/// use std::time::Duration;
/// use dht_mio::{Pool, RunnerConfig};
/// use dht_proto::{InfoHash, value::Value};
///
/// let pool = Pool::new().unwrap();
/// let nodes: Vec<_> = (0..20).map(|_| pool.run(RunnerConfig::loopback()).unwrap()).collect();
/// for n in &nodes[1..] {
///     n.bootstrap(nodes[0].local_addrs()[0]);
/// }
/// assert!(nodes[19].wait_connected(Duration::from_secs(10)));
/// let key = InfoHash::get("pooled");
/// nodes[3].put_blocking(key, Value::new(0, b"v".to_vec()), Duration::from_secs(10)).unwrap();
/// assert_eq!(nodes[17].get_blocking(key, Duration::from_secs(10)).unwrap()[0].data, b"v");
/// ```
pub struct Pool {
    host: Arc<HostCtl>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

fn start_host(exclusive: bool) -> Result<(Arc<HostCtl>, JoinHandle<()>), RunError> {
    let poll = Poll::new().map_err(RunError::Poll)?;
    let registry = poll.registry().try_clone().map_err(RunError::Poll)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(RunError::Poll)?);
    let (tx, rx) = mpsc::channel();
    let origin = std::time::Instant::now();
    let serial = HOST_SERIALS.fetch_add(1, Ordering::Relaxed);
    let mut host = Host {
        poll,
        rx,
        origin,
        slots: BTreeMap::new(),
        timers: std::collections::BTreeSet::new(),
        buf: vec![0u8; dht_proto::wire::MAX_DATAGRAM],
        out: Vec::with_capacity(2048),
        exclusive,
        closed: false,
    };
    let thread = std::thread::Builder::new()
        .name("dht-mio".into())
        .spawn(move || {
            ON_HOST.set(serial);
            host.run()
        })
        .map_err(RunError::Poll)?;
    let ctl = Arc::new(HostCtl {
        registry,
        tx,
        waker,
        origin,
        next_slot: AtomicU64::new(0),
        thread_id: thread.thread().id(),
        serial,
    });
    Ok((ctl, thread))
}

impl Pool {
    /// Starts the pool's thread.
    pub fn new() -> Result<Pool, RunError> {
        let (host, thread) = start_host(false)?;
        Ok(Pool {
            host,
            thread: Some(thread),
        })
    }

    /// Starts a node on the pool's thread (see [`Runner::run`]).
    pub fn run(&self, config: RunnerConfig) -> Result<Runner, RunError> {
        Runner::start(&self.host, config, None)
    }
}

impl Drop for Pool {
    /// Ends the thread once its runners are gone (dropping them, or after their shutdown).
    fn drop(&mut self) {
        let _ = self.host.tx.send(HostMsg::Close);
        let _ = self.host.waker.wake();
        if std::thread::current().id() != self.host.thread_id
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

impl Runner {
    /// Binds the sockets, resolves the bootstrap list and starts the node on a thread of its own.
    pub fn run(config: RunnerConfig) -> Result<Runner, RunError> {
        let (host, thread) = start_host(true)?;
        let r = Runner::start(&host, config, Some(thread));
        if r.is_err() {
            let _ = host.tx.send(HostMsg::Close);
            let _ = host.waker.wake();
        }
        r
    }

    fn start(
        host: &Arc<HostCtl>,
        config: RunnerConfig,
        thread: Option<JoinHandle<()>>,
    ) -> Result<Runner, RunError> {
        let mut bootstrap = Vec::new();
        for spec in &config.bootstrap {
            bootstrap.extend(resolve(spec)?);
        }
        let slot_id = host.next_slot.fetch_add(1, Ordering::Relaxed);
        let base = usize::try_from(slot_id)
            .unwrap_or(usize::MAX / 2)
            .saturating_mul(2);
        let (t4, t6) = (Token(base), Token(base + 1));
        let registry = &host.registry;
        let mut port = config.port;
        let mut sock4 = None;
        if let Some(ip) = config.bind4 {
            let addr = SocketAddr::new(IpAddr::V4(ip), port);
            let mut s = bind(addr).map_err(|source| RunError::Bind { addr, source })?;
            port = s.local_addr().map_err(RunError::Poll)?.port();
            registry
                .register(&mut s, t4, Interest::READABLE)
                .map_err(RunError::Poll)?;
            sock4 = Some(s);
        }
        let mut sock6 = None;
        if let Some(ip) = config.bind6 {
            let addr = SocketAddr::new(IpAddr::V6(ip), port);
            let bound = bind(addr).or_else(|e| {
                // The IPv4 port may be taken for IPv6: any port then, as OpenDHT does.
                if config.port == 0 {
                    bind(SocketAddr::new(IpAddr::V6(ip), 0))
                } else {
                    Err(e)
                }
            });
            match bound {
                Ok(mut s) => {
                    registry
                        .register(&mut s, t6, Interest::READABLE)
                        .map_err(RunError::Poll)?;
                    sock6 = Some(s);
                }
                // A host without IPv6 still runs on IPv4.
                Err(_) if sock4.is_some() => {}
                Err(source) => return Err(RunError::Bind { addr, source }),
            }
        }
        if sock4.is_none() && sock6.is_none() {
            return Err(RunError::NoSocket);
        }
        let addrs: Vec<SocketAddr> = [&sock4, &sock6]
            .into_iter()
            .flatten()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        let seed = config.seed.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            OsRng.fill_bytes(&mut s);
            s
        });
        let now = to_proto(host.origin);
        let mut node_config = config.node;
        node_config.dual_stack = sock4.is_some() && sock6.is_some();
        let mut node = Node::new(node_config, seed, now);
        node.set_unix_time(now, unix_now());
        for addr in bootstrap {
            node.bootstrap(now, addr);
        }
        let shared = Arc::new(Mutex::new(Shared {
            id: node.node_id(),
            ..Shared::default()
        }));
        let slot = Slot {
            sock4,
            sock6,
            node,
            shared: shared.clone(),
            gets: BTreeMap::new(),
            get_ops: BTreeMap::new(),
            puts: BTreeMap::new(),
            listens: BTreeMap::new(),
            listen_tokens: BTreeMap::new(),
            shutting_down: false,
            deadline: None,
            published: None,
        };
        host.tx
            .send(HostMsg::Add(slot_id, Box::new(slot)))
            .map_err(|_| RunError::Stopped)?;
        host.waker.wake().map_err(RunError::Poll)?;
        let mut vid_seed = [0u8; 8];
        vid_seed.copy_from_slice(seed.get(24..32).unwrap_or(&[1; 8]));
        Ok(Runner {
            handle: Handle {
                host: host.clone(),
                slot: slot_id,
                shared,
                addrs,
                next_id: Arc::new(AtomicU64::new(1)),
                vid_seed: u64::from_le_bytes(vid_seed),
            },
            thread,
        })
    }

    /// A handle for other threads and callbacks (it does not keep the runner alive).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the node, letting pending puts finish for at most `limit`, and closes its sockets
    /// (joining its thread unless it belongs to a [`Pool`]).
    /// Returns [`RunError::OnRunnerThread`] (and does nothing) when called from a callback.
    pub fn shutdown(mut self, limit: Duration) -> Result<(), RunError> {
        self.handle.not_on_runner()?;
        self.handle.request_shutdown();
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end && !self.handle.is_stopped() {
            std::thread::park_timeout(Duration::from_millis(2));
        }
        self.stop();
        Ok(())
    }

    /// Waits, without a bound, until the runner stops (after [`Handle::request_shutdown`] from
    /// anywhere, e.g. a callback), and closes it.
    pub fn join(mut self) -> Result<(), RunError> {
        self.handle.not_on_runner()?;
        while !self.handle.is_stopped() {
            std::thread::park_timeout(Duration::from_millis(5));
        }
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        if let Ok(mut s) = self.handle.shared.lock() {
            s.stopped = true;
        }
        let host = &self.handle.host;
        let _ = host.tx.send(HostMsg::Remove(self.handle.slot));
        if self.thread.is_some() {
            let _ = host.tx.send(HostMsg::Close);
        }
        let _ = host.waker.wake();
        if std::thread::current().id() == host.thread_id {
            // Dropped from a callback: the host removes it after this turn; nothing to wait for.
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        } else {
            // On a pool: wait (bounded) until the sockets are closed, so the port is free.
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < end
                && !self.handle.shared.lock().map(|s| s.removed).unwrap_or(true)
            {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Handle {
    fn send(&self, c: Command) -> Result<(), RunError> {
        if self.is_stopped() {
            return Err(RunError::Stopped);
        }
        self.host
            .tx
            .send(HostMsg::Cmd(self.slot, Box::new(c)))
            .map_err(|_| RunError::Stopped)?;
        if ON_HOST.get() == self.host.serial {
            return Ok(());
        }
        self.host.waker.wake().map_err(|_| RunError::Stopped)
    }

    fn not_on_runner(&self) -> Result<(), RunError> {
        if std::thread::current().id() == self.host.thread_id {
            Err(RunError::OnRunnerThread)
        } else {
            Ok(())
        }
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn is_stopped(&self) -> bool {
        self.shared.lock().map(|s| s.stopped).unwrap_or(true)
    }

    /// The bound addresses (IPv4 first).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Our node id.
    pub fn node_id(&self) -> InfoHash {
        self.shared.lock().map(|s| s.id).unwrap_or_default()
    }

    /// The node's counters (traffic, drops, routing table, storage). From another thread they
    /// are exact (asked of the node); from a callback, or once the node has stopped, they are as
    /// of its last published turn (published at most every 20 ms, and at the end).
    pub fn stats(&self) -> Stats {
        if self.not_on_runner().is_ok()
            && !self.is_stopped()
            && let Ok(s) = self.inspect(|n| n.stats())
        {
            return s;
        }
        self.shared.lock().map(|s| s.stats.clone()).unwrap_or_default()
    }

    /// Connectivity of `family`, as of the node's last turn.
    pub fn status(&self, family: Family) -> Status {
        let i = usize::from(family == Family::V6);
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.status.get(i).copied().flatten())
            .unwrap_or(Status::Disconnected)
    }

    /// Pings `addr` to join its network.
    pub fn bootstrap(&self, addr: SocketAddr) {
        let _ = self.send(Command::Bootstrap(addr));
    }

    /// Resolves `host` (`host:port`, `[v6]:port`, or a bare host for port 4222) and pings every
    /// address it names. Resolution runs on the calling thread.
    pub fn bootstrap_host(&self, host: &str) -> Result<Vec<SocketAddr>, RunError> {
        let addrs = resolve(host)?;
        for a in &addrs {
            self.send(Command::Bootstrap(*a))?;
        }
        Ok(addrs)
    }

    /// Waits until either family is connected, at most `limit`.
    pub fn wait_connected(&self, limit: Duration) -> bool {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if self.status(Family::V4) == Status::Connected || self.status(Family::V6) == Status::Connected {
                return true;
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
        false
    }

    /// A get: `on_values` gets values as they arrive, `on_done` the end (`Ok(true)` when the
    /// closest nodes answered, `Err` when the node refused the get). Both run on the runner thread.
    pub fn get(
        &self,
        key: InfoHash,
        query: Query,
        on_values: impl FnMut(&[Value]) + Send + 'static,
        on_done: impl FnOnce(Result<bool, RunError>) + Send + 'static,
    ) -> Result<GetId, RunError> {
        let id = GetId(self.next());
        self.send(Command::Get {
            id,
            key,
            query,
            on_values: Box::new(on_values),
            on_done: Box::new(on_done),
        })?;
        Ok(id)
    }

    /// Stops a get: its callbacks are dropped without another call.
    pub fn cancel_get(&self, id: GetId) {
        let _ = self.send(Command::CancelGet(id));
    }

    /// Every value at `key` matching `query`, once the get is done (at most `limit`).
    pub fn get_query_blocking(
        &self,
        key: InfoHash,
        query: Query,
        limit: Duration,
    ) -> Result<Vec<Value>, RunError> {
        self.not_on_runner()?;
        let (tx, rx) = mpsc::channel();
        let found = Arc::new(Mutex::new(Vec::new()));
        let sink = found.clone();
        let id = self.get(
            key,
            query,
            move |v| {
                if let Ok(mut f) = sink.lock() {
                    f.extend_from_slice(v);
                }
            },
            move |r| {
                let _ = tx.send(r);
            },
        )?;
        match rx.recv_timeout(limit) {
            Ok(r) => {
                r?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.cancel_get(id);
                return Err(RunError::Timeout);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(RunError::Stopped),
        }
        let values = found.lock().map(|f| f.clone()).unwrap_or_default();
        Ok(values)
    }

    /// Every value at `key`, once the get is done (at most `limit`).
    pub fn get_blocking(&self, key: InfoHash, limit: Duration) -> Result<Vec<Value>, RunError> {
        self.get_query_blocking(key, Query::default(), limit)
    }

    /// A put; `on_done` gets its outcome (or why the node refused it), on the runner thread.
    /// Returns the value id (a value id of 0 is replaced by a fresh one here).
    pub fn put(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(Result<PutOutcome, RunError>) + Send + 'static,
    ) -> Result<u64, RunError> {
        self.put_as(key, value, opts, PutMode::Plain, on_done)
    }

    /// A put signed with the node's identity (`Config::identity`); see [`Handle::put_as`].
    pub fn put_signed(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(Result<PutOutcome, RunError>) + Send + 'static,
    ) -> Result<u64, RunError> {
        self.put_as(key, value, opts, PutMode::Signed, on_done)
    }

    /// A put encrypted to `to` (and signed inside) with the node's identity; see
    /// [`Handle::put_as`] for encrypting to a key id instead.
    pub fn put_encrypted(
        &self,
        key: InfoHash,
        to: dht_proto::crypto::PublicKey,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(Result<PutOutcome, RunError>) + Send + 'static,
    ) -> Result<u64, RunError> {
        self.put_as(key, value, opts, PutMode::EncryptedTo(to), on_done)
    }

    /// A put signed, or encrypted, with the node's identity ([`PutMode`]). Without an identity
    /// `on_done` gets `CommandError::NoIdentity`.
    pub fn put_as(
        &self,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: impl FnOnce(Result<PutOutcome, RunError>) + Send + 'static,
    ) -> Result<u64, RunError> {
        if value.id == 0 {
            value.id = splitmix(self.vid_seed ^ self.next());
        }
        let vid = value.id;
        self.send(Command::Put {
            key,
            value,
            opts,
            mode,
            on_done: Box::new(on_done),
        })?;
        Ok(vid)
    }

    /// [`Handle::put_as`], waiting for the outcome at most `limit`.
    pub fn put_as_blocking(
        &self,
        key: InfoHash,
        value: Value,
        mode: PutMode,
        limit: Duration,
    ) -> Result<PutOutcome, RunError> {
        self.put_waiting(key, value, PutOptions::default(), mode, limit)
    }

    fn put_waiting(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        mode: PutMode,
        limit: Duration,
    ) -> Result<PutOutcome, RunError> {
        self.not_on_runner()?;
        let (tx, rx) = mpsc::channel();
        self.put_as(key, value, opts, mode, move |o| {
            let _ = tx.send(o);
        })?;
        match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(RunError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RunError::Stopped),
        }
    }

    /// A put, waiting for its outcome at most `limit`.
    pub fn put_blocking(&self, key: InfoHash, value: Value, limit: Duration) -> Result<PutOutcome, RunError> {
        self.put_opts_blocking(key, value, PutOptions::default(), limit)
    }

    /// A put with options (e.g. [`PutOptions::permanent`]), waiting for its outcome at most `limit`.
    pub fn put_opts_blocking(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        limit: Duration,
    ) -> Result<PutOutcome, RunError> {
        self.put_waiting(key, value, opts, PutMode::Plain, limit)
    }

    /// Stops announcing a value and drops our copy.
    pub fn cancel_put(&self, key: InfoHash, vid: u64) {
        let _ = self.send(Command::CancelPut(key, vid));
    }

    /// A listen: `on_change` runs on the runner thread for added values, for values gone, and
    /// once with [`Change::Failed`] if the node refused the listen.
    pub fn listen(
        &self,
        key: InfoHash,
        query: Query,
        on_change: impl FnMut(Change<'_>) + Send + 'static,
    ) -> Result<ListenId, RunError> {
        let id = ListenId(self.next());
        self.send(Command::Listen {
            id,
            key,
            query,
            on_change: Box::new(on_change),
        })?;
        Ok(id)
    }

    /// Stops a listen: its callback is not called again once this command is applied.
    pub fn cancel_listen(&self, id: ListenId) {
        let _ = self.send(Command::CancelListen(id));
    }

    /// Runs `f` on the runner thread with read access to the node and waits for its result
    /// (for views: routing tables, searches, stored values).
    pub fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> R + Send + 'static,
    ) -> Result<R, RunError> {
        self.not_on_runner()?;
        let (tx, rx) = mpsc::channel();
        self.send(Command::With(Box::new(move |node, _| {
            let _ = tx.send(f(node));
        })))?;
        rx.recv().map_err(|_| RunError::Stopped)
    }

    /// Our public addresses as peers report them.
    pub fn public_addresses(&self) -> Result<Vec<IpAddr>, RunError> {
        self.inspect(|n| {
            let mut v = n.public_addresses(Family::V4);
            v.extend(n.public_addresses(Family::V6));
            v
        })
    }

    /// Nodes worth remembering across restarts.
    pub fn export_nodes(&self) -> Result<Vec<NodeInfo>, RunError> {
        self.inspect(|n| n.export_nodes())
    }

    /// Every stored value with the life it has left.
    pub fn export_values(&self) -> Result<Vec<ExportedValue>, RunError> {
        self.inspect(|n| n.export_values())
    }

    /// Adds exported nodes.
    pub fn import_nodes(&self, nodes: Vec<NodeInfo>) -> Result<(), RunError> {
        self.send(Command::With(Box::new(move |n, now| n.import_nodes(now, &nodes))))
    }

    /// Stores exported values again.
    pub fn import_values(&self, values: Vec<ExportedValue>) -> Result<(), RunError> {
        self.send(Command::With(Box::new(move |n, now| {
            n.import_values(now, values)
        })))
    }

    /// Asks the node to shut down (pending puts finish first) without waiting; callable from
    /// callbacks. [`Runner::join`] or [`Runner::shutdown`] then ends the thread.
    pub fn request_shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}

struct Host {
    poll: Poll,
    rx: Receiver<HostMsg>,
    origin: std::time::Instant,
    slots: BTreeMap<u64, Slot>,
    /// Every node's next deadline.
    timers: std::collections::BTreeSet<(dht_proto::Instant, u64)>,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// A runner's own thread: ends with its node.
    exclusive: bool,
    closed: bool,
}

/// One node on a host: its sockets, the node, and the callbacks of its operations.
struct Slot {
    sock4: Option<UdpSocket>,
    sock6: Option<UdpSocket>,
    node: Node,
    shared: Arc<Mutex<Shared>>,
    gets: BTreeMap<OpId, (GetId, ValuesCb, DoneCb)>,
    get_ops: BTreeMap<GetId, OpId>,
    puts: BTreeMap<OpId, PutCb>,
    listens: BTreeMap<ListenToken, ListenCb>,
    listen_tokens: BTreeMap<ListenId, ListenToken>,
    shutting_down: bool,
    deadline: Option<dht_proto::Instant>,
    /// When the counters were last published.
    published: Option<dht_proto::Instant>,
}

impl Slot {
    /// Frees what emptied callback tables hold: an emptied `BTreeMap` keeps its last leaf.
    /// Done on timer ticks, as the node does.
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
}

impl Host {
    fn now(&self) -> dht_proto::Instant {
        to_proto(self.origin)
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            // Commands this thread's own callbacks sent (without a wake-up) go before it waits.
            self.messages();
            if self.closed && self.slots.is_empty() {
                return;
            }
            let now = self.now();
            let timeout = self
                .timers
                .first()
                .map(|(t, _)| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return;
            }
            // Commands first: one sent before a datagram it should affect is always applied
            // before that datagram (a cancelled listen hears nothing more).
            self.messages();
            for ev in events.iter() {
                let Token(t) = ev.token();
                if ev.token() != WAKE {
                    self.receive(t as u64 / 2, t % 2 == 1);
                }
            }
            let now = self.now();
            while let Some(&(t, id)) = self.timers.first() {
                if t > now {
                    break;
                }
                self.timers.remove(&(t, id));
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.deadline = None;
                    slot.node.handle_timeout(now);
                    slot.compact();
                }
                self.after(id, now);
            }
        }
    }

    fn messages(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                HostMsg::Add(id, slot) => {
                    self.slots.insert(id, *slot);
                    self.after(id, self.now());
                }
                HostMsg::Cmd(id, c) => {
                    let now = self.now();
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.command(now, *c);
                    }
                    self.after(id, now);
                }
                HostMsg::Remove(id) => self.remove(id),
                HostMsg::Close => {
                    self.closed = true;
                }
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if self.exclusive {
            // A runner's own thread ends with its node.
            self.closed = true;
        }
        if let Some(mut slot) = self.slots.remove(&id) {
            if let Some(t) = slot.deadline {
                self.timers.remove(&(t, id));
            }
            for s in [slot.sock4.as_mut(), slot.sock6.as_mut()].into_iter().flatten() {
                let _ = self.poll.registry().deregister(s);
            }
            let shared = slot.shared.clone();
            let last = slot.node.stats();
            drop(slot);
            if let Ok(mut s) = shared.lock() {
                s.stats = last;
                s.stopped = true;
                s.removed = true;
            }
        }
    }

    fn receive(&mut self, id: u64, v6: bool) {
        loop {
            let Some(slot) = self.slots.get_mut(&id) else {
                return;
            };
            let sock = if v6 {
                slot.sock6.as_ref()
            } else {
                slot.sock4.as_ref()
            };
            let Some(sock) = sock else { return };
            match sock.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    // Commands that came in meanwhile go first (see `run`).
                    self.messages();
                    let now = self.now();
                    if let (Some(slot), Some(data)) = (self.slots.get_mut(&id), self.buf.get(..len)) {
                        slot.node.handle_datagram(now, from, data);
                    }
                    self.after(id, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors surface here on some systems: the datagram is lost, carry on.
                Err(_) => {}
            }
        }
    }

    /// After a node's turn at `now`: send, dispatch events, publish its view, rearm its timer;
    /// remove it once it has stopped.
    fn after(&mut self, id: u64, now: dht_proto::Instant) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let stopped = slot.drain(now, &mut self.out);
        let next = slot.node.poll_timeout();
        if slot.deadline != next {
            if let Some(t) = slot.deadline {
                self.timers.remove(&(t, id));
            }
            if let Some(t) = next {
                self.timers.insert((t, id));
            }
            slot.deadline = next;
        }
        if stopped {
            self.remove(id);
        }
    }
}

impl Slot {
    fn command(&mut self, now: dht_proto::Instant, c: Command) {
        match c {
            Command::Bootstrap(addr) => self.node.bootstrap(now, addr),
            Command::Get {
                id,
                key,
                query,
                on_values,
                on_done,
            } => match self.node.get(now, key, query) {
                Ok(op) => {
                    self.gets.insert(op, (id, on_values, on_done));
                    self.get_ops.insert(id, op);
                }
                Err(e) => on_done(Err(e.into())),
            },
            Command::CancelGet(id) => {
                if let Some(op) = self.get_ops.remove(&id) {
                    self.gets.remove(&op);
                    let _ = self.node.cancel_get(now, op);
                }
            }
            Command::Put {
                key,
                value,
                opts,
                mode,
                on_done,
            } => match match mode {
                PutMode::Plain => self.node.put(now, key, value, opts),
                PutMode::Signed => self.node.put_signed(now, key, value, opts),
                PutMode::EncryptedTo(to) => self.node.put_encrypted(now, key, &to, value, opts),
                PutMode::EncryptedToId(to) => self.node.put_encrypted_to_id(now, key, to, value, opts),
            } {
                Ok(h) => {
                    self.puts.insert(h.op, on_done);
                }
                Err(e) => on_done(Err(e.into())),
            },
            Command::CancelPut(key, vid) => {
                let _ = self.node.cancel_put(now, key, vid);
            }
            Command::Listen {
                id,
                key,
                query,
                mut on_change,
            } => match self.node.listen(now, key, query) {
                Ok(t) => {
                    self.listens.insert(t, on_change);
                    self.listen_tokens.insert(id, t);
                }
                Err(e) => on_change(Change::Failed(e.into())),
            },
            Command::CancelListen(id) => {
                if let Some(t) = self.listen_tokens.remove(&id) {
                    self.listens.remove(&t);
                    let _ = self.node.cancel_listen(now, t);
                }
            }
            Command::With(f) => f(&mut self.node, now),
            Command::Shutdown => {
                self.shutting_down = true;
                self.node.shutdown(now);
            }
        }
    }

    /// Sends what the node has queued, dispatches its events and publishes its view; whether
    /// the node has stopped (read under the same lock).
    fn drain(&mut self, now: dht_proto::Instant, out: &mut Vec<u8>) -> bool {
        while let Some(t) = self.node.poll_transmit(now, out) {
            let sock = if t.destination.is_ipv4() {
                self.sock4.as_ref()
            } else {
                self.sock6.as_ref()
            };
            if let (Some(s), Some(data)) = (sock, out.get(..t.len)) {
                // A full socket buffer drops the datagram, as a network would; the node retries.
                let _ = s.send_to(data, t.destination);
            }
        }
        while let Some(e) = self.node.poll_event() {
            self.dispatch(e);
        }
        // Counters cost a walk of the tables: publish them at most every 20 ms (and at the end);
        // `Handle::stats` asks the node itself when it can.
        let publish = self.shutting_down
            || self
                .published
                .is_none_or(|t| now.as_micros().saturating_sub(t.as_micros()) >= 20_000);
        let Ok(mut s) = self.shared.lock() else {
            return true;
        };
        if publish {
            s.stats = self.node.stats();
            self.published = Some(now);
        }
        s.status = [
            Some(self.node.status(Family::V4)),
            Some(self.node.status(Family::V6)),
        ];
        s.stopped
    }

    fn dispatch(&mut self, e: Event) {
        match e {
            Event::Values { op, values, .. } => {
                if let Some((_, cb, _)) = self.gets.get_mut(&op) {
                    cb(&values);
                }
            }
            Event::GetDone { op, ok, .. } => {
                if let Some((id, _, done)) = self.gets.remove(&op) {
                    self.get_ops.remove(&id);
                    done(Ok(ok));
                }
            }
            Event::PutDone { op, outcome, .. } => {
                if let Some(cb) = self.puts.remove(&op) {
                    cb(Ok(outcome));
                }
            }
            Event::ListenAdded { token, values, .. } => {
                if let Some(cb) = self.listens.get_mut(&token) {
                    cb(Change::Added(&values));
                }
            }
            Event::ListenExpired { token, values, .. } => {
                if let Some(cb) = self.listens.get_mut(&token) {
                    cb(Change::Expired(&values));
                }
            }
            Event::StatusChanged { family, status } => {
                tracing::info!(?family, ?status, "connectivity changed");
            }
            Event::PublicAddressChanged { family, addr } => {
                tracing::info!(?family, %addr, "public address");
            }
            Event::ShutdownComplete => {
                tracing::debug!("shutdown complete");
                if self.shutting_down
                    && let Ok(mut s) = self.shared.lock()
                {
                    s.stopped = true;
                }
            }
            _ => {}
        }
    }
}

//! # dht-mio
//!
//! A thread runner for [`dht_proto::Node`], like OpenDHT's `DhtRunner`: one thread owns a
//! `mio::Poll`, an IPv4 and an IPv6 UDP socket (same port) and the node; commands arrive over a
//! channel and a `mio::Waker`; results go to callbacks, which run on the runner thread, or to
//! blocking calls built on them.
//!
//! Callbacks run on the runner thread while it holds the node: they must not block on the runner
//! (no blocking call of the same runner from a callback); they may send to channels, spawn work,
//! or call the non-blocking methods of any runner.
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
//! a.shutdown(Duration::from_secs(5));
//! b.shutdown(Duration::from_secs(5));
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dht_proto::value::{Query, Value};
use dht_proto::{
    Config, Event, Family, InfoHash, ListenToken, Node, OpId, PutOptions, PutOutcome, Stats, Status,
};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rand_core::{OsRng, RngCore};

const V4: Token = Token(0);
const V6: Token = Token(1);
const WAKE: Token = Token(2);

/// How to run a node.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// UDP port for both families; 0 picks a free one (the IPv6 socket then tries the IPv4 port).
    pub port: u16,
    /// IPv4 address to bind; `None`: no IPv4.
    pub bind4: Option<Ipv4Addr>,
    /// IPv6 address to bind; `None`: no IPv6.
    pub bind6: Option<Ipv6Addr>,
    /// The node's configuration.
    pub node: Config,
    /// The node's seed; `None` draws one from the OS.
    pub seed: Option<[u8; 32]>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            port: dht_proto::DEFAULT_PORT,
            bind4: Some(Ipv4Addr::UNSPECIFIED),
            bind6: Some(Ipv6Addr::UNSPECIFIED),
            node: Config::default(),
            seed: None,
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
    /// The runner has stopped.
    #[error("the runner has stopped")]
    Stopped,
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] dht_proto::CommandError),
    /// No answer within the time given.
    #[error("timed out")]
    Timeout,
}

type ValuesCb = Box<dyn FnMut(&[Value]) + Send>;
type DoneCb = Box<dyn FnOnce(bool) + Send>;
type PutCb = Box<dyn FnOnce(PutOutcome) + Send>;
type ListenCb = Box<dyn FnMut(&[Value], bool) + Send>;

enum Command {
    Bootstrap(SocketAddr),
    Get {
        key: InfoHash,
        query: Query,
        on_values: ValuesCb,
        on_done: DoneCb,
        reply: Sender<Result<OpId, RunError>>,
    },
    Put {
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        on_done: PutCb,
        reply: Sender<Result<u64, RunError>>,
    },
    CancelPut(InfoHash, u64),
    Listen {
        key: InfoHash,
        query: Query,
        on_change: ListenCb,
        reply: Sender<Result<ListenToken, RunError>>,
    },
    CancelListen(ListenToken),
    Shutdown,
}

/// What the runner thread shares with handles: the latest view of the node.
#[derive(Debug, Default)]
struct Shared {
    id: InfoHash,
    status: [Option<Status>; 2],
    stats: Stats,
    stopped: bool,
}

/// A running node. Dropping it stops the node without waiting for pending puts; call
/// [`Runner::shutdown`] to let them finish.
pub struct Runner {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    shared: Arc<Mutex<Shared>>,
    addrs: Vec<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
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

impl Runner {
    /// Binds the sockets and starts the runner thread.
    pub fn run(config: RunnerConfig) -> Result<Runner, RunError> {
        let poll = Poll::new().map_err(RunError::Poll)?;
        let mut port = config.port;
        let mut sock4 = None;
        if let Some(ip) = config.bind4 {
            let addr = SocketAddr::new(IpAddr::V4(ip), port);
            let mut s = UdpSocket::bind(addr).map_err(|source| RunError::Bind { addr, source })?;
            port = s.local_addr().map_err(RunError::Poll)?.port();
            poll.registry()
                .register(&mut s, V4, Interest::READABLE)
                .map_err(RunError::Poll)?;
            sock4 = Some(s);
        }
        let mut sock6 = None;
        if let Some(ip) = config.bind6 {
            let addr = SocketAddr::new(IpAddr::V6(ip), port);
            let bound = UdpSocket::bind(addr).or_else(|e| {
                // The IPv4 port may be taken for IPv6: any port then, as OpenDHT does.
                if config.port == 0 {
                    UdpSocket::bind(SocketAddr::new(IpAddr::V6(ip), 0))
                } else {
                    Err(e)
                }
            });
            match bound {
                Ok(mut s) => {
                    poll.registry()
                        .register(&mut s, V6, Interest::READABLE)
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
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(RunError::Poll)?);
        let seed = config.seed.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            OsRng.fill_bytes(&mut s);
            s
        });
        let origin = std::time::Instant::now();
        let mut node = Node::new(config.node, seed, to_proto(origin));
        node.set_unix_time(to_proto(origin), unix_now());
        let shared = Arc::new(Mutex::new(Shared {
            id: node.node_id(),
            ..Shared::default()
        }));
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker {
            poll,
            sock4,
            sock6,
            node,
            origin,
            rx,
            shared: shared.clone(),
            gets: BTreeMap::new(),
            puts: BTreeMap::new(),
            listens: BTreeMap::new(),
            buf: vec![0u8; 65536],
            out: Vec::with_capacity(2048),
            shutting_down: false,
        };
        let thread = std::thread::Builder::new()
            .name("dht-mio".into())
            .spawn(move || worker.run())
            .map_err(RunError::Poll)?;
        Ok(Runner {
            tx,
            waker,
            shared,
            addrs,
            thread: Some(thread),
        })
    }

    fn send(&self, c: Command) -> Result<(), RunError> {
        self.tx.send(c).map_err(|_| RunError::Stopped)?;
        self.waker.wake().map_err(|_| RunError::Stopped)
    }

    /// The bound addresses (IPv4 first).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Our node id.
    pub fn node_id(&self) -> InfoHash {
        self.shared.lock().map(|s| s.id).unwrap_or_default()
    }

    /// The node's counters, as of its last turn.
    pub fn stats(&self) -> Stats {
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

    /// A get: `on_values` gets values as they arrive, `on_done` the end (true when the closest
    /// nodes answered). Both run on the runner thread.
    pub fn get(
        &self,
        key: InfoHash,
        query: Query,
        on_values: impl FnMut(&[Value]) + Send + 'static,
        on_done: impl FnOnce(bool) + Send + 'static,
    ) -> Result<OpId, RunError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Get {
            key,
            query,
            on_values: Box::new(on_values),
            on_done: Box::new(on_done),
            reply,
        })?;
        rx.recv().map_err(|_| RunError::Stopped)?
    }

    /// Every value at `key`, once the get is done (or `limit` passes).
    pub fn get_blocking(&self, key: InfoHash, limit: Duration) -> Result<Vec<Value>, RunError> {
        let (tx, rx) = mpsc::channel();
        let found = Arc::new(Mutex::new(Vec::new()));
        let sink = found.clone();
        self.get(
            key,
            Query::default(),
            move |v| {
                if let Ok(mut f) = sink.lock() {
                    f.extend_from_slice(v);
                }
            },
            move |_| {
                let _ = tx.send(());
            },
        )?;
        rx.recv_timeout(limit).map_err(|_| RunError::Timeout)?;
        let values = found.lock().map(|f| f.clone()).unwrap_or_default();
        Ok(values)
    }

    /// A put; `on_done` gets its outcome. Returns the value id.
    pub fn put(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(PutOutcome) + Send + 'static,
    ) -> Result<u64, RunError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Put {
            key,
            value,
            opts,
            on_done: Box::new(on_done),
            reply,
        })?;
        rx.recv().map_err(|_| RunError::Stopped)?
    }

    /// A put, waiting for its outcome at most `limit`.
    pub fn put_blocking(&self, key: InfoHash, value: Value, limit: Duration) -> Result<PutOutcome, RunError> {
        let (tx, rx) = mpsc::channel();
        self.put(key, value, PutOptions::default(), move |o| {
            let _ = tx.send(o);
        })?;
        rx.recv_timeout(limit).map_err(|_| RunError::Timeout)
    }

    /// Stops announcing a value and drops our copy.
    pub fn cancel_put(&self, key: InfoHash, vid: u64) {
        let _ = self.send(Command::CancelPut(key, vid));
    }

    /// A listen: `on_change(values, expired)` runs for added values (`expired` false) and for
    /// values gone (`expired` true), on the runner thread.
    pub fn listen(
        &self,
        key: InfoHash,
        query: Query,
        on_change: impl FnMut(&[Value], bool) + Send + 'static,
    ) -> Result<ListenToken, RunError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Listen {
            key,
            query,
            on_change: Box::new(on_change),
            reply,
        })?;
        rx.recv().map_err(|_| RunError::Stopped)?
    }

    /// Stops a listen.
    pub fn cancel_listen(&self, token: ListenToken) {
        let _ = self.send(Command::CancelListen(token));
    }

    /// Stops the node, letting pending puts finish for at most `limit`, and joins the thread.
    pub fn shutdown(mut self, limit: Duration) {
        let _ = self.send(Command::Shutdown);
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end && !self.shared.lock().map(|s| s.stopped).unwrap_or(true) {
            std::thread::park_timeout(Duration::from_millis(5));
        }
        self.stop();
    }

    fn stop(&mut self) {
        if let Ok(mut s) = self.shared.lock() {
            s.stopped = true;
        }
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    poll: Poll,
    sock4: Option<UdpSocket>,
    sock6: Option<UdpSocket>,
    node: Node,
    origin: std::time::Instant,
    rx: Receiver<Command>,
    shared: Arc<Mutex<Shared>>,
    gets: BTreeMap<OpId, (ValuesCb, Option<DoneCb>)>,
    puts: BTreeMap<OpId, PutCb>,
    listens: BTreeMap<ListenToken, ListenCb>,
    buf: Vec<u8>,
    out: Vec<u8>,
    shutting_down: bool,
}

impl Worker {
    fn now(&self) -> dht_proto::Instant {
        to_proto(self.origin)
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if self.shared.lock().map(|s| s.stopped).unwrap_or(true) {
                return;
            }
            let now = self.now();
            let timeout = self
                .node
                .poll_timeout()
                .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return;
            }
            // Commands first: one sent before a datagram it should affect is always applied
            // before that datagram (a cancelled listen hears nothing more).
            self.commands();
            for ev in events.iter() {
                match ev.token() {
                    V4 | V6 => self.receive(ev.token()),
                    _ => {}
                }
            }
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            self.drain();
        }
    }

    fn receive(&mut self, token: Token) {
        loop {
            let sock = if token == V4 {
                self.sock4.as_ref()
            } else {
                self.sock6.as_ref()
            };
            let Some(sock) = sock else { return };
            match sock.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    // Commands that came in meanwhile go first (see `run`).
                    self.commands();
                    let now = self.now();
                    if let Some(data) = self.buf.get(..len) {
                        self.node.handle_datagram(now, from, data);
                    }
                    self.drain();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors surface here on some systems: the datagram is lost, carry on.
                Err(_) => return,
            }
        }
    }

    fn commands(&mut self) {
        while let Ok(c) = self.rx.try_recv() {
            let now = self.now();
            match c {
                Command::Bootstrap(addr) => self.node.bootstrap(now, addr),
                Command::Get {
                    key,
                    query,
                    on_values,
                    on_done,
                    reply,
                } => {
                    let r = self.node.get(now, key, query).map_err(RunError::from);
                    if let Ok(op) = r {
                        self.gets.insert(op, (on_values, Some(on_done)));
                    }
                    let _ = reply.send(r);
                }
                Command::Put {
                    key,
                    value,
                    opts,
                    on_done,
                    reply,
                } => match self.node.put(now, key, value, opts) {
                    Ok(h) => {
                        self.puts.insert(h.op, on_done);
                        let _ = reply.send(Ok(h.vid));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                },
                Command::CancelPut(key, vid) => {
                    let _ = self.node.cancel_put(now, key, vid);
                }
                Command::Listen {
                    key,
                    query,
                    on_change,
                    reply,
                } => {
                    let r = self.node.listen(now, key, query).map_err(RunError::from);
                    if let Ok(t) = r {
                        self.listens.insert(t, on_change);
                    }
                    let _ = reply.send(r);
                }
                Command::CancelListen(t) => {
                    self.listens.remove(&t);
                    let _ = self.node.cancel_listen(now, t);
                }
                Command::Shutdown => {
                    self.shutting_down = true;
                    self.node.shutdown(now);
                }
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        let now = self.now();
        while let Some(t) = self.node.poll_transmit(now, &mut self.out) {
            let sock = if t.destination.is_ipv4() {
                self.sock4.as_ref()
            } else {
                self.sock6.as_ref()
            };
            if let (Some(s), Some(data)) = (sock, self.out.get(..t.len)) {
                // A full socket buffer drops the datagram, as a network would; the node retries.
                let _ = s.send_to(data, t.destination);
            }
        }
        while let Some(e) = self.node.poll_event() {
            self.dispatch(e);
        }
        if let Ok(mut s) = self.shared.lock() {
            s.stats = self.node.stats();
            s.status = [
                Some(self.node.status(Family::V4)),
                Some(self.node.status(Family::V6)),
            ];
        }
    }

    fn dispatch(&mut self, e: Event) {
        match e {
            Event::Values { op, values, .. } => {
                if let Some((cb, _)) = self.gets.get_mut(&op) {
                    cb(&values);
                }
            }
            Event::GetDone { op, ok, .. } => {
                if let Some((_, done)) = self.gets.remove(&op)
                    && let Some(done) = done
                {
                    done(ok);
                }
            }
            Event::PutDone { op, outcome, .. } => {
                if let Some(cb) = self.puts.remove(&op) {
                    cb(outcome);
                }
            }
            Event::ListenAdded { token, values, .. } => {
                if let Some(cb) = self.listens.get_mut(&token) {
                    cb(&values, false);
                }
            }
            Event::ListenExpired { token, values, .. } => {
                if let Some(cb) = self.listens.get_mut(&token) {
                    cb(&values, true);
                }
            }
            Event::ShutdownComplete => {
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

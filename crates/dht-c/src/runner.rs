//! `dht_runner`: OpenDHT's `DhtRunner` over a [`dht_mio::Runner`], with its callbacks, tokens
//! and configuration structs.
//!
//! Each running runner has two threads: dht-mio's, which owns the sockets and the node, and a
//! *callback thread* (named `dht-c`), which runs every C callback in the order the node produced
//! its results. C code thus never runs on the node's thread, and a callback may call every
//! runner function but `dht_runner_delete` of its own runner (which is then finished on another
//! thread rather than deadlocking).
//!
//! Every done/end callback runs exactly once: a `Finisher` travels with each operation into the
//! node's thread, and if the node drops the operation without an answer (shutdown, delete,
//! refusal) its drop reports `false`. When no callback thread can take it any more, it runs on
//! the thread that ended the runner, as OpenDHT runs listen-end callbacks on the deleting thread.

use std::ffi::{c_char, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use dht_mio::{Change, GetId, Handle, ListenId, PutMode, Runner};
use dht_proto::crypto::{Identity, PublicKey};
use dht_proto::value::{Query, Value};
use dht_proto::wire::{self, Body, Message, RequestKind};
use dht_proto::{Config, InfoHash, PutOptions};
use rand_core::{OsRng, RngCore};

use crate::c_str;
use crate::crypto::{dht_certificate, dht_identity, identity_of, known_key, short_id};
use crate::hash::{dht_infohash, dht_pkid, read_hash};
use crate::registry::{self, Kind, Tracked};
use crate::value::{ValueObj, dht_value, new_value_handle};

/// Called once per value of a get; `false` ends the get (its done callback then gets `true`).
pub type dht_get_cb = Option<unsafe extern "C" fn(value: *const dht_value, user_data: *mut c_void) -> bool>;
/// Called once per value of a listen (`expired`: it went away); `false` cancels the listen.
pub type dht_value_cb =
    Option<unsafe extern "C" fn(value: *const dht_value, expired: bool, user_data: *mut c_void) -> bool>;
/// Called once at the end of an operation.
pub type dht_done_cb = Option<unsafe extern "C" fn(ok: bool, user_data: *mut c_void)>;
/// Called once when a shutdown is over, or when a listen is over ("free user_data now").
pub type dht_shutdown_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// How long a shutdown waits for pending puts before it reports done anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// Bootstrap addresses remembered before `run`.
const MAX_PENDING_BOOTSTRAP: usize = 64;

/// OpenDHT's `dht::NodeConfig`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dht_node_config {
    /// Node id; zero: derived from a random seed.
    pub node_id: dht_infohash,
    /// Network id; nodes of other networks are ignored.
    pub network: u32,
    /// Bootstrap mode (for testing).
    pub is_bootstrap: bool,
    /// Keep stored values alive on the network (ours always re-announces them).
    pub maintain_storage: bool,
    /// State file path (may be NULL); not used by ours.
    pub persist_path: *const c_char,
}

/// OpenDHT's `dht::SecureDhtConfig`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dht_secure_config {
    /// The node's configuration.
    pub node_config: dht_node_config,
    /// The node's identity (NULL fields: none).
    pub id: dht_identity,
}

/// OpenDHT's `DhtRunner::Config`, HEAD (4.x) layout.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dht_runner_config {
    /// Node and identity.
    pub dht_config: dht_secure_config,
    /// Ours is always threaded.
    pub threaded: bool,
    /// Proxy server: proxy-client mode is not available, so a non-empty one fails `run`.
    pub proxy_server: *const c_char,
    /// Push notifications (proxy only): not used.
    pub push_node_id: *const c_char,
    /// Not used.
    pub push_token: *const c_char,
    /// Not used.
    pub push_topic: *const c_char,
    /// Not used.
    pub push_platform: *const c_char,
    /// Not used (absent from OpenDHT 2.4.12: the layouts differ from here on).
    pub proxy_user_agent: *const c_char,
    /// LAN peer discovery: not available, ignored.
    pub peer_discovery: bool,
    /// LAN announce: not available, ignored.
    pub peer_publish: bool,
    /// Proxy TLS: not used.
    pub server_ca: *mut dht_certificate,
    /// Proxy TLS: not used.
    pub client_identity: dht_identity,
    /// Logging: ours installs no logger, ignored.
    pub log: bool,
}

impl Default for dht_runner_config {
    fn default() -> Self {
        let none = dht_identity {
            privatekey: std::ptr::null_mut(),
            certificate: std::ptr::null_mut(),
        };
        let null = std::ptr::null();
        dht_runner_config {
            dht_config: dht_secure_config {
                node_config: dht_node_config {
                    node_id: dht_infohash::default(),
                    network: 0,
                    is_bootstrap: false,
                    maintain_storage: false,
                    persist_path: null,
                },
                id: none,
            },
            threaded: true,
            proxy_server: null,
            push_node_id: null,
            push_token: null,
            push_topic: null,
            push_platform: null,
            proxy_user_agent: null,
            peer_discovery: false,
            peer_publish: false,
            server_ca: std::ptr::null_mut(),
            client_identity: none,
            log: false,
        }
    }
}

/// The caller's `user_data`, handed back to its callbacks untouched.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);

// SAFETY: the pointer is never dereferenced here, only passed back to the caller's callbacks on
// the runner's callback thread, which is what the C API promises the caller (as OpenDHT's does).
unsafe impl Send for UserData {}
// SAFETY: as above; it is only copied.
unsafe impl Sync for UserData {}

fn call_done(cb: dht_done_cb, ok: bool, ud: UserData) {
    if let Some(f) = cb {
        // SAFETY: `f` is the caller's function of this signature; `ud` is the caller's.
        unsafe { f(ok, ud.0) }
    }
}

fn call_end(cb: dht_shutdown_cb, ud: UserData) {
    if let Some(f) = cb {
        // SAFETY: `f` is the caller's function of this signature; `ud` is the caller's.
        unsafe { f(ud.0) }
    }
}

/// Calls `f` with a handle on `v` that is valid during the call only, then frees it (a handle
/// the callback freed itself, or kept with `dht_value_ref`, is handled by the registry).
fn with_value_handle<R>(v: Value, f: impl FnOnce(*const dht_value) -> R) -> R {
    let h = new_value_handle(Arc::new(ValueObj::new(v)));
    let r = f(h);
    drop(registry::take(h));
    r
}

type Job = Box<dyn FnOnce() + Send>;

/// What the callback thread is sent.
enum Msg {
    /// Values for a get or listen: dropped once the runner is being deleted.
    Deliver(Job),
    /// An operation's end: always run, exactly once.
    Finish(Job),
    /// Stop, and hand the queue back to the deleting thread.
    Stop,
}

fn run_job(j: Job) {
    // A panic in our code must not end the callback thread (C code cannot unwind).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(j));
}

/// Sends jobs to a runner's callback thread.
#[derive(Clone)]
struct Poster(Sender<Msg>);

impl Poster {
    fn deliver(&self, j: Job) {
        let _ = self.0.send(Msg::Deliver(j));
    }

    /// Queues an end; runs it here when the queue is gone.
    fn finish(&self, j: Job) {
        if let Err(mpsc::SendError(Msg::Finish(j))) = self.0.send(Msg::Finish(j)) {
            run_job(j);
        }
    }
}

/// Reports an operation's end exactly once: through [`Finisher::finish`], or `false` when dropped.
struct Finisher {
    f: Option<Box<dyn FnOnce(bool) + Send>>,
    poster: Poster,
}

impl Finisher {
    fn new(poster: &Poster, f: impl FnOnce(bool) + Send + 'static) -> Finisher {
        Finisher {
            f: Some(Box::new(f)),
            poster: poster.clone(),
        }
    }

    fn finish(mut self, ok: bool) {
        if let Some(f) = self.f.take() {
            self.poster.finish(Box::new(move || f(ok)));
        }
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            self.poster.finish(Box::new(move || f(false)));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Our state stays consistent across a panic (flags and queues only).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A shutdown in progress: who waits for it.
#[derive(Default)]
struct ShutdownState {
    /// Set by delete: stop waiting.
    cancel: AtomicBool,
    /// (done, waiting callbacks)
    st: Mutex<(bool, Vec<(dht_shutdown_cb, UserData)>)>,
}

/// A runner that was run.
struct Live {
    runner: Runner,
    handle: Handle,
    poster: Poster,
    callbacks: Option<JoinHandle<Receiver<Msg>>>,
    callbacks_id: ThreadId,
    identity: Option<Identity>,
    network: u32,
    addrs: Vec<SocketAddr>,
    /// False once `shutdown` was called.
    accepting: bool,
    shutdown: Arc<ShutdownState>,
    watcher: Option<JoinHandle<()>>,
    /// Pings in flight, joined at the end (they stop early then).
    pings: Vec<JoinHandle<()>>,
}

/// OpenDHT's `DhtRunner`: new, run, operate, shut down, delete.
pub struct dht_runner {
    state: Mutex<Option<Live>>,
    bootstrap: Mutex<Vec<String>>,
}

impl Tracked for dht_runner {
    const KIND: Kind = Kind::Runner;
}

/// What an operation needs of a running runner.
struct Active {
    handle: Handle,
    poster: Poster,
    network: u32,
    /// Set when the runner ends.
    cancel: Arc<ShutdownState>,
}

/// The runner's handle, if it runs and was not shut down.
fn active(r: *const dht_runner) -> Option<Active> {
    registry::with(r, |r| {
        lock(&r.state).as_ref().filter(|l| l.accepting).map(|l| Active {
            handle: l.handle.clone(),
            poster: l.poster.clone(),
            network: l.network,
            cancel: l.shutdown.clone(),
        })
    })
    .flatten()
}

fn callback_thread(rx: Receiver<Msg>) -> Receiver<Msg> {
    while let Ok(m) = rx.recv() {
        match m {
            Msg::Deliver(j) | Msg::Finish(j) => run_job(j),
            Msg::Stop => break,
        }
    }
    rx
}

fn start(port: u16, cfg: Option<&dht_runner_config>, bootstrap: &[String]) -> Option<Live> {
    let mut node = Config::default();
    let mut identity = None;
    if let Some(c) = cfg {
        // SAFETY: NULL or NUL-terminated (header contract).
        if !unsafe { c_str(c.proxy_server) }.unwrap_or_default().is_empty() {
            return None;
        }
        let nc = &c.dht_config.node_config;
        let id = InfoHash::from(nc.node_id);
        if !id.is_zero() {
            node.node_id = Some(id);
        }
        node.network = nc.network;
        node.bootstrap_mode = nc.is_bootstrap;
        identity = identity_of(&c.dht_config.id);
        node.identity = identity.clone();
    }
    let network = node.network;
    let runner = Runner::run(dht_mio::Config {
        port,
        node,
        ..dht_mio::Config::default()
    })
    .ok()?;
    let handle = runner.handle();
    let (tx, rx) = mpsc::channel();
    let callbacks = std::thread::Builder::new()
        .name("dht-c".into())
        .spawn(move || callback_thread(rx))
        .ok()?;
    for b in bootstrap {
        let _ = handle.bootstrap_host(b);
    }
    Some(Live {
        addrs: handle.local_addrs(),
        callbacks_id: callbacks.thread().id(),
        callbacks: Some(callbacks),
        runner,
        handle,
        poster: Poster(tx),
        identity,
        network,
        accepting: true,
        shutdown: Arc::default(),
        watcher: None,
        pings: Vec::new(),
    })
}

/// Ends a runner: stops its callback thread, closes the node, then runs every pending end
/// callback on this thread.
fn teardown(live: Live) {
    if std::thread::current().id() == live.callbacks_id {
        // Deleted from one of its own callbacks: the callback thread cannot join itself.
        let spawned = std::thread::Builder::new().spawn(move || teardown(live));
        drop(spawned);
        return;
    }
    let Live {
        runner,
        handle,
        poster,
        callbacks,
        shutdown,
        watcher,
        pings,
        ..
    } = live;
    shutdown.cancel.store(true, Ordering::Release);
    for p in pings {
        let _ = p.join();
    }
    if let Some(w) = watcher {
        w.thread().unpark();
        let _ = w.join();
    }
    let _ = poster.0.send(Msg::Stop);
    let rx = callbacks.and_then(|t| t.join().ok());
    // The node's thread ends here; the operations it held are dropped and queue their ends.
    drop(runner);
    drop(handle);
    drop(poster);
    if let Some(rx) = rx {
        while let Ok(m) = rx.try_recv() {
            if let Msg::Finish(j) = m {
                run_job(j);
            }
        }
    }
}

/// A new runner, not running. Free it with [`dht_runner_delete`].
#[unsafe(no_mangle)]
pub extern "C" fn dht_runner_new() -> *mut dht_runner {
    ffi!(std::ptr::null_mut(), {
        registry::into_raw(dht_runner {
            state: Mutex::new(None),
            bootstrap: Mutex::new(Vec::new()),
        })
    })
}

/// Ends the runner (if running, without waiting for pending puts) and frees it. Blocks until its
/// threads are joined; the end callbacks still pending (listens' shutdown callbacks, done
/// callbacks with `false` for gets, puts and pings in flight, shutdown callbacks) run before it
/// returns, those not yet run on this thread. From one
/// of the runner's own callbacks it returns at once and the end happens on another thread.
/// NULL or freed: nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_delete(runner: *mut dht_runner) {
    ffi!((), {
        let Some(r) = registry::take(runner) else {
            return;
        };
        let live = lock(&r.state).take();
        drop(r);
        if let Some(l) = live {
            teardown(l);
        }
    })
}

fn run(runner: *mut dht_runner, port: u16, cfg: Option<&dht_runner_config>) -> i32 {
    let enotconn = libc::ENOTCONN;
    let old = registry::with(runner.cast_const(), |r| {
        let mut st = lock(&r.state);
        match st.as_ref() {
            Some(l) if l.accepting => Err(()),
            _ => Ok(st.take()),
        }
    });
    let old = match old {
        None | Some(Err(())) => return enotconn,
        Some(Ok(old)) => old,
    };
    if let Some(l) = old {
        teardown(l);
    }
    let Some(pending) = registry::with(runner.cast_const(), |r| lock(&r.bootstrap).clone()) else {
        return enotconn;
    };
    let Some(live) = start(port, cfg, &pending) else {
        return enotconn;
    };
    let rest = registry::with(runner.cast_const(), |r| {
        let mut st = lock(&r.state);
        if st.is_some() {
            return Some(live);
        }
        *st = Some(live);
        None
    });
    match rest {
        // Deleted meanwhile, or run by another thread meanwhile.
        None => enotconn,
        Some(Some(l)) => {
            teardown(l);
            enotconn
        }
        Some(None) => 0,
    }
}

/// Runs the node on `port` (0: any), IPv4 and IPv6 on every address, default configuration.
/// 0, or `ENOTCONN` on any failure (port taken, already running, NULL). A runner that was shut
/// down may run again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_run(runner: *mut dht_runner, port: u16) -> i32 {
    ffi!(libc::ENOTCONN, { run(runner, port, None) })
}

/// [`dht_runner_run`] with a configuration (copied; NULL: the default). 0 or `ENOTCONN`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_run_config(
    runner: *mut dht_runner,
    port: u16,
    config: *const dht_runner_config,
) -> i32 {
    ffi!(libc::ENOTCONN, {
        let cfg = if config.is_null() {
            None
        } else {
            // SAFETY: non-NULL, points to a dht_runner_config (header contract); copied.
            Some(unsafe { config.read() })
        };
        run(runner, port, cfg.as_ref())
    })
}

/// Sets `*config` to the default: all zero, `threaded = true`. NULL: nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_config_default(config: *mut dht_runner_config) {
    ffi!((), {
        if !config.is_null() {
            // SAFETY: non-NULL, points to writable dht_runner_config storage (header contract).
            unsafe { config.write(dht_runner_config::default()) };
        }
    })
}

fn sockaddr_of(addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    if addr.is_null() || len < size_of::<libc::sockaddr_in>() {
        return None;
    }
    // SAFETY: non-NULL with at least 16 readable bytes (header contract), the size of `sockaddr`.
    let family = unsafe { addr.read_unaligned() }.sa_family;
    match i32::from(family) {
        libc::AF_INET => {
            // SAFETY: `len` covers a sockaddr_in (checked above).
            let sin = unsafe { addr.cast::<libc::sockaddr_in>().read_unaligned() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: `len` covers a sockaddr_in6 (checked).
            let sin6 = unsafe { addr.cast::<libc::sockaddr_in6>().read_unaligned() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Sends one ping from a socket of our own; whether `to` answered within about 3 s (`false` at
/// once when `cancel` is set: the runner is being deleted).
fn ping_once(to: SocketAddr, network: u32, cancel: &AtomicBool) -> bool {
    let local: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = UdpSocket::bind(local) else {
        return false;
    };
    let tid = OsRng.next_u32();
    let mut id = [0u8; 20];
    OsRng.fill_bytes(&mut id);
    let mut msg = Message::request(
        tid,
        InfoHash::from_slice(&id).unwrap_or(InfoHash::ZERO),
        RequestKind::Ping,
    );
    msg.network = network;
    msg.is_client = true;
    let data = msg.encode_to_vec();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..3 {
        let _ = sock.send_to(&data, to);
        let until = Instant::now() + Duration::from_secs(1);
        loop {
            if cancel.load(Ordering::Acquire) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            let slice = left.min(Duration::from_millis(50));
            if slice.is_zero() || sock.set_read_timeout(Some(slice)).is_err() {
                break;
            }
            let n = match sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                // An ICMP error (port closed): try again.
                Err(_) => break,
            };
            if let Some(Ok(m)) = buf.get(..n).map(wire::decode)
                && m.tid == tid
                && matches!(m.body, Body::Reply(_))
            {
                return true;
            }
        }
    }
    false
}

/// Pings one node (port 0: 4222); `done_cb(ok)` says whether it answered. An answering node may
/// enter the routing table; it is not added to the bootstrap list. NULL or unusable address:
/// `done_cb(false)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_ping(
    runner: *mut dht_runner,
    addr: *mut libc::sockaddr,
    addr_len: libc::socklen_t,
    done_cb: dht_done_cb,
    cb_user_data: *mut c_void,
) {
    ffi!((), {
        let ud = UserData(cb_user_data);
        let Some(a) = active(runner) else {
            return call_done(done_cb, false, ud);
        };
        let fin = Finisher::new(&a.poster, move |ok| call_done(done_cb, ok, ud));
        let Some(mut to) = sockaddr_of(addr, addr_len) else {
            return fin.finish(false);
        };
        if to.port() == 0 {
            to.set_port(dht_proto::DEFAULT_PORT);
        }
        let _ = a.handle.bootstrap_addr(to);
        let (network, cancel) = (a.network, a.cancel);
        // If the thread cannot start, the closure (and `fin`) is dropped: done(false).
        let Ok(t) = std::thread::Builder::new()
            .name("dht-c-ping".into())
            .spawn(move || fin.finish(ping_once(to, network, &cancel.cancel)))
        else {
            return;
        };
        // Kept for the end of the runner, which stops and joins it.
        let t = registry::with(runner.cast_const(), |r| {
            let mut st = lock(&r.state);
            match st.as_mut() {
                Some(l) => {
                    l.pings.retain(|p| !p.is_finished());
                    l.pings.push(t);
                    None
                }
                None => Some(t),
            }
        });
        // The runner ended meanwhile: its end did not see this ping, which ends on its own.
        drop(t);
    })
}

/// Adds a bootstrap node: `host` and `service` (a port), or with `service` NULL, `host` as
/// `host:port`, `[v6]:port` or a bare host (port 4222). The name is resolved on the calling
/// thread; before `run` it is kept and used at `run`. Nothing is reported.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_bootstrap(
    runner: *mut dht_runner,
    host: *const c_char,
    service: *const c_char,
) {
    ffi!((), {
        // SAFETY: NULL or NUL-terminated (header contract).
        let Some(host) = (unsafe { c_str(host) }) else {
            return;
        };
        // SAFETY: as above.
        let spec = match unsafe { c_str(service) } {
            None => host,
            Some(s) if host.contains(':') && !host.starts_with('[') => format!("[{host}]:{s}"),
            Some(s) => format!("{host}:{s}"),
        };
        let handle = registry::with(runner.cast_const(), |r| match lock(&r.state).as_ref() {
            Some(l) if l.accepting => Some(l.handle.clone()),
            Some(_) => None,
            None => {
                let mut b = lock(&r.bootstrap);
                if b.len() < MAX_PENDING_BOOTSTRAP {
                    b.push(spec.clone());
                }
                None
            }
        })
        .flatten();
        if let Some(h) = handle {
            let _ = h.bootstrap_host(&spec);
        }
    })
}

struct OpState<I> {
    /// The end was reported.
    ended: bool,
    /// No more values to the callback.
    stopped: bool,
    id: Option<I>,
    /// Cancel once the id is known.
    cancel: bool,
}

impl<I> Default for OpState<I> {
    fn default() -> Self {
        OpState {
            ended: false,
            stopped: false,
            id: None,
            cancel: false,
        }
    }
}

struct GetCtx {
    cb: dht_get_cb,
    done: dht_done_cb,
    ud: UserData,
    handle: Handle,
    st: Mutex<OpState<GetId>>,
}

impl GetCtx {
    fn set_id(&self, id: GetId) {
        let cancel = {
            let mut s = lock(&self.st);
            s.id = Some(id);
            s.cancel
        };
        if cancel {
            self.handle.cancel_get(id);
        }
    }

    fn deliver(&self, values: Vec<Value>) {
        for v in values {
            if lock(&self.st).stopped {
                return;
            }
            let keep = match self.cb {
                None => true,
                // SAFETY: the caller's function of this signature; the handle lives during the call.
                Some(f) => with_value_handle(v, |h| unsafe { f(h, self.ud.0) }),
            };
            if !keep {
                let id = {
                    let mut s = lock(&self.st);
                    s.stopped = true;
                    s.cancel = s.id.is_none();
                    s.id
                };
                if let Some(id) = id {
                    self.handle.cancel_get(id);
                }
                self.finish(true);
                return;
            }
        }
    }

    fn finish(&self, ok: bool) {
        {
            let mut s = lock(&self.st);
            if s.ended {
                return;
            }
            s.ended = true;
            s.stopped = true;
        }
        call_done(self.done, ok, self.ud);
    }
}

/// Gets the values at `hash`: `cb` once per value (NULL: accept all), then `done_cb(ok)` once
/// (NULL allowed). Not running: `done_cb(false)` at once on this thread. NULL or zero hash:
/// `done_cb(false)` on the callback thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_get(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    cb: dht_get_cb,
    done_cb: dht_done_cb,
    cb_user_data: *mut c_void,
) {
    ffi!((), {
        let ud = UserData(cb_user_data);
        let Some(a) = active(runner) else {
            return call_done(done_cb, false, ud);
        };
        let ctx = Arc::new(GetCtx {
            cb,
            done: done_cb,
            ud,
            handle: a.handle.clone(),
            st: Mutex::default(),
        });
        let c = ctx.clone();
        let fin = Finisher::new(&a.poster, move |ok| c.finish(ok));
        let key = read_hash(hash).unwrap_or(InfoHash::ZERO);
        if key.is_zero() {
            return fin.finish(false);
        }
        let (c, p) = (ctx.clone(), a.poster.clone());
        let on_values = move |vals: &[Value]| {
            let (c, vals) = (c.clone(), vals.to_vec());
            p.deliver(Box::new(move || c.deliver(vals)));
        };
        if let Ok(id) = a.handle.get(key, Query::default(), on_values, move |r| {
            fin.finish(matches!(r, Ok(true)))
        }) {
            ctx.set_id(id);
        }
    })
}

/// What a put does with its value.
enum Mode {
    Plain,
    Signed,
    Encrypted(Option<PublicKey>),
}

fn put(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    value: *const dht_value,
    done_cb: dht_done_cb,
    ud: UserData,
    permanent: bool,
    mode: Mode,
) {
    let Some(a) = active(runner) else {
        return call_done(done_cb, false, ud);
    };
    let fin = Finisher::new(&a.poster, move |ok| call_done(done_cb, ok, ud));
    let key = read_hash(hash).unwrap_or(InfoHash::ZERO);
    let obj = registry::with(value, |v| v.0.clone());
    let mode = match mode {
        Mode::Plain => Some(PutMode::Plain),
        Mode::Signed => Some(PutMode::Signed),
        Mode::Encrypted(to) => to.map(PutMode::EncryptedTo),
    };
    let (Some(obj), Some(mode), false) = (obj, mode, key.is_zero()) else {
        return fin.finish(false);
    };
    let opts = if permanent {
        PutOptions::permanent()
    } else {
        PutOptions::default()
    };
    // The caller's value gets its id before the put is sent, so that the done callback (which
    // may run before this call returns) reads it (OpenDHT sets it on the shared value too).
    let fresh = OsRng.next_u64().max(1);
    let _ = obj
        .id
        .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire);
    let on_done = move |r: Result<dht_proto::PutOutcome, dht_mio::Error>| fin.finish(r.is_ok_and(|o| o.ok()));
    let _ = a.handle.put_as(key, obj.snapshot(), opts, mode, on_done);
}

/// Puts `value` at `hash` (the runner keeps its own copy: unref at will). `done_cb(ok)` once
/// (NULL allowed); `permanent`: re-announce until [`dht_runner_cancel_put`]. A value id of 0 is
/// assigned during this call (visible with `dht_value_get_id` from then on). Not running:
/// `done_cb(false)` at once; NULL hash or value, or a value over 64 KiB: `done_cb(false)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_put(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    value: *const dht_value,
    done_cb: dht_done_cb,
    cb_user_data: *mut c_void,
    permanent: bool,
) {
    ffi!((), {
        put(
            runner,
            hash,
            value,
            done_cb,
            UserData(cb_user_data),
            permanent,
            Mode::Plain,
        )
    })
}

/// [`dht_runner_put`] signed with the runner's identity (Ed25519); without one: `done_cb(false)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_put_signed(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    value: *const dht_value,
    done_cb: dht_done_cb,
    cb_user_data: *mut c_void,
    permanent: bool,
) {
    ffi!((), {
        put(
            runner,
            hash,
            value,
            done_cb,
            UserData(cb_user_data),
            permanent,
            Mode::Signed,
        )
    })
}

/// [`dht_runner_put`] encrypted to the key with long id `to` (x25519) and signed inside. The key
/// must be one this process has seen (imported, generated, read from a certificate or a value's
/// owner); otherwise, or without an identity: `done_cb(false)`. (2.4.12: `to` is a
/// `dht_infohash*`.)
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_put_encrypted(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    to: *const dht_pkid,
    value: *const dht_value,
    done_cb: dht_done_cb,
    cb_user_data: *mut c_void,
    permanent: bool,
) {
    ffi!((), {
        let key = if to.is_null() {
            None
        } else {
            // SAFETY: non-NULL, points to a dht_pkid (header contract; alignment 1).
            known_key(&unsafe { to.read() }.d)
        };
        put(
            runner,
            hash,
            value,
            done_cb,
            UserData(cb_user_data),
            permanent,
            Mode::Encrypted(key),
        )
    })
}

/// Stops re-announcing the permanent put of `value_id` at `hash`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_cancel_put(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    value_id: u64,
) {
    ffi!((), {
        if let (Some(a), Some(key)) = (active(runner), read_hash(hash)) {
            a.handle.cancel_put(key, value_id);
        }
    })
}

struct ListenCtx {
    cb: dht_value_cb,
    end: dht_shutdown_cb,
    ud: UserData,
    handle: Option<Handle>,
    st: Mutex<OpState<ListenId>>,
}

impl ListenCtx {
    fn set_id(&self, id: ListenId) {
        let cancel = {
            let mut s = lock(&self.st);
            s.id = Some(id);
            s.cancel
        };
        if let (true, Some(h)) = (cancel, &self.handle) {
            h.cancel_listen(id);
        }
    }

    fn cancel(&self) {
        let id = {
            let mut s = lock(&self.st);
            s.stopped = true;
            s.cancel = s.id.is_none();
            s.id
        };
        if let (Some(id), Some(h)) = (id, &self.handle) {
            h.cancel_listen(id);
        }
    }

    fn deliver(&self, values: Vec<Value>, expired: bool) {
        for v in values {
            if lock(&self.st).stopped {
                return;
            }
            let keep = match self.cb {
                None => true,
                // SAFETY: the caller's function of this signature; the handle lives during the call.
                Some(f) => with_value_handle(v, |h| unsafe { f(h, expired, self.ud.0) }),
            };
            if !keep {
                self.cancel();
                return;
            }
        }
    }

    fn end(&self) {
        {
            let mut s = lock(&self.st);
            if s.ended {
                return;
            }
            s.ended = true;
            s.stopped = true;
        }
        call_end(self.end, self.ud);
    }
}

/// A listen, for [`dht_runner_cancel_listen`]; owned by the caller ([`dht_op_token_delete`]).
pub struct dht_op_token {
    ctx: Arc<ListenCtx>,
    used: AtomicBool,
}

impl Tracked for dht_op_token {
    const KIND: Kind = Kind::Token;
}

/// Frees a token (it does not cancel its listen). NULL or freed: nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_op_token_delete(token: *mut dht_op_token) {
    ffi!((), {
        drop(registry::take(token));
    })
}

/// Listens at `hash`: `cb(value, expired)` once per value that appears (stored ones included) or
/// goes; `false` cancels. `done_cb` (NULL allowed) runs once when the listen is over: after a
/// cancel, when `cb` returned `false`, at shutdown or delete; free `cb_user_data` there. Returns
/// a token (delete it even after cancel). Not running: the token of a listen already over
/// (`done_cb` has run on this thread). Returns NULL only if memory runs out.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_listen(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    cb: dht_value_cb,
    done_cb: dht_shutdown_cb,
    cb_user_data: *mut c_void,
) -> *mut dht_op_token {
    ffi!(std::ptr::null_mut(), {
        let a = active(runner);
        let ctx = Arc::new(ListenCtx {
            cb,
            end: done_cb,
            ud: UserData(cb_user_data),
            handle: a.as_ref().map(|a| a.handle.clone()),
            st: Mutex::default(),
        });
        let token = registry::into_raw(dht_op_token {
            ctx: ctx.clone(),
            used: AtomicBool::new(false),
        });
        let Some(a) = a else {
            ctx.end();
            return token;
        };
        let c = ctx.clone();
        let fin = Finisher::new(&a.poster, move |_| c.end());
        let key = read_hash(hash).unwrap_or(InfoHash::ZERO);
        if key.is_zero() {
            fin.finish(false);
            return token;
        }
        let (c, p) = (ctx.clone(), a.poster.clone());
        let mut fin = Some(fin);
        let on_change = move |change: Change<'_>| match change {
            Change::Added(v) | Change::Expired(v) => {
                let expired = matches!(change, Change::Expired(_));
                let (c, v) = (c.clone(), v.to_vec());
                p.deliver(Box::new(move || c.deliver(v, expired)));
            }
            Change::Failed(_) => {
                if let Some(f) = fin.take() {
                    f.finish(false);
                }
            }
        };
        if let Ok(id) = a.handle.listen(key, Query::default(), on_change) {
            ctx.set_id(id);
        }
        token
    })
}

/// Cancels the token's listen (asynchronously: its `done_cb` runs on the callback thread once the
/// node has dropped it). A token cancels once; later calls, and NULL or freed tokens, do nothing.
/// `runner` and `hash` are not needed (the token names its listen) and may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_cancel_listen(
    runner: *mut dht_runner,
    hash: *const dht_infohash,
    token: *mut dht_op_token,
) {
    let _ = (runner, hash);
    ffi!((), {
        registry::with(token.cast_const(), |t| {
            if !t.used.swap(true, Ordering::AcqRel) {
                t.ctx.cancel();
            }
        });
    })
}

fn watch_shutdown(handle: Handle, poster: Poster, sd: Arc<ShutdownState>) {
    handle.request_shutdown();
    let end = Instant::now() + SHUTDOWN_LIMIT;
    // A command fails once the node has finished (its pending puts done) and closed.
    while !sd.cancel.load(Ordering::Acquire)
        && Instant::now() < end
        && handle.import_nodes(Vec::new()).is_ok()
    {
        std::thread::park_timeout(Duration::from_millis(5));
    }
    let waiters = {
        let mut s = lock(&sd.st);
        s.0 = true;
        std::mem::take(&mut s.1)
    };
    for (cb, ud) in waiters {
        poster.finish(Box::new(move || call_end(cb, ud)));
    }
}

/// Shuts the node down gracefully: pending puts finish (at most 30 s), then `done_cb` runs on the
/// callback thread. The runner stays allocated and `dht_runner_is_running` stays true; operations
/// fail at once from this call on. Call [`dht_runner_delete`] afterwards, or run again. Not
/// running (or already shut down): `done_cb` runs at once on this thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_shutdown(
    runner: *mut dht_runner,
    done_cb: dht_shutdown_cb,
    cb_user_data: *mut c_void,
) {
    ffi!((), {
        let ud = UserData(cb_user_data);
        let queued = registry::with(runner.cast_const(), |r| {
            let mut st = lock(&r.state);
            let Some(live) = st.as_mut() else {
                return false;
            };
            {
                let mut s = lock(&live.shutdown.st);
                if s.0 {
                    return false;
                }
                s.1.push((done_cb, ud));
            }
            if live.accepting {
                live.accepting = false;
                let (h, p, sd) = (live.handle.clone(), live.poster.clone(), live.shutdown.clone());
                match std::thread::Builder::new()
                    .name("dht-c-shutdown".into())
                    .spawn(move || watch_shutdown(h, p, sd))
                {
                    Ok(t) => live.watcher = Some(t),
                    Err(_) => {
                        // No thread: report at once (the node still shuts down).
                        live.handle.request_shutdown();
                        lock(&live.shutdown.st).0 = true;
                        let waiting = std::mem::take(&mut lock(&live.shutdown.st).1);
                        for (cb, ud) in waiting {
                            live.poster.finish(Box::new(move || call_end(cb, ud)));
                        }
                    }
                }
            }
            true
        })
        .unwrap_or(false);
        if !queued {
            call_end(done_cb, ud);
        }
    })
}

/// The node id (zero when not running or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_get_node_id(runner: *const dht_runner) -> dht_infohash {
    ffi!(dht_infohash::default(), {
        registry::with(runner, |r| {
            lock(&r.state).as_ref().map(|l| l.handle.node_id().into())
        })
        .flatten()
        .unwrap_or_default()
    })
}

/// The short id of the identity's public key; zero without an identity.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_get_id(runner: *const dht_runner) -> dht_infohash {
    ffi!(dht_infohash::default(), {
        registry::with(runner, |r| {
            lock(&r.state)
                .as_ref()
                .map(|l| short_id(l.identity.as_ref()).into())
        })
        .flatten()
        .unwrap_or_default()
    })
}

/// True from `run` until delete, also after shutdown (as OpenDHT). NULL: false.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_is_running(runner: *const dht_runner) -> bool {
    ffi!(false, {
        registry::with(runner, |r| lock(&r.state).is_some()).unwrap_or(false)
    })
}

/// The port bound for `af` (`AF_INET`, `AF_INET6`), host byte order; 0 when not bound.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_get_bound_port(
    runner: *const dht_runner,
    af: libc::sa_family_t,
) -> libc::in_port_t {
    ffi!(0, {
        let want_v6 = match i32::from(af) {
            libc::AF_INET => false,
            libc::AF_INET6 => true,
            _ => return 0,
        };
        registry::with(runner, |r| {
            lock(&r.state)
                .as_ref()
                .and_then(|l| l.addrs.iter().find(|a| a.is_ipv6() == want_v6).map(|a| a.port()))
        })
        .flatten()
        .unwrap_or(0)
    })
}

fn malloc_sockaddr(addr: SocketAddr) -> *mut libc::sockaddr {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: malloc of the struct's size; checked for NULL before use.
            let p = unsafe { libc::malloc(size_of::<libc::sockaddr_in>()) }.cast::<libc::sockaddr_in>();
            if !p.is_null() {
                // SAFETY: all-zero bytes are a valid sockaddr_in (plain integers).
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                // SAFETY: `p` is a fresh allocation of a sockaddr_in (malloc aligns for any type).
                unsafe { p.write(sin) };
            }
            p.cast()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let p = unsafe { libc::malloc(size_of::<libc::sockaddr_in6>()) }.cast::<libc::sockaddr_in6>();
            if !p.is_null() {
                // SAFETY: all-zero bytes are a valid sockaddr_in6 (plain integers and arrays).
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                // SAFETY: `p` is a fresh allocation of a sockaddr_in6.
                unsafe { p.write(sin6) };
            }
            p.cast()
        }
    }
}

/// Our public addresses as peers report them (with our bound port), as a NULL-terminated
/// `malloc`ed array: `free()` each element, then the array. NULL when none, before `run`, after
/// shutdown, or when memory runs out.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_runner_get_public_address(
    runner: *const dht_runner,
) -> *mut *mut libc::sockaddr {
    ffi!(std::ptr::null_mut(), {
        let Some((handle, addrs)) = registry::with(runner, |r| {
            lock(&r.state)
                .as_ref()
                .map(|l| (l.handle.clone(), l.addrs.clone()))
        })
        .flatten() else {
            return std::ptr::null_mut();
        };
        let ips = handle.public_addresses().unwrap_or_default();
        if ips.is_empty() {
            return std::ptr::null_mut();
        }
        let port = |v6: bool| addrs.iter().find(|a| a.is_ipv6() == v6).map_or(0, |a| a.port());
        let n = ips.len();
        // SAFETY: malloc of n + 1 pointers; checked for NULL.
        let arr =
            unsafe { libc::malloc((n + 1) * size_of::<*mut libc::sockaddr>()) }.cast::<*mut libc::sockaddr>();
        if arr.is_null() {
            return std::ptr::null_mut();
        }
        let mut filled = 0;
        for ip in ips {
            let sa = malloc_sockaddr(SocketAddr::new(ip, port(ip.is_ipv6())));
            if sa.is_null() {
                break;
            }
            // SAFETY: `filled < n`, within the array of n + 1 pointers.
            unsafe { arr.add(filled).write(sa) };
            filled += 1;
        }
        // SAFETY: `filled <= n`, within the array.
        unsafe { arr.add(filled).write(std::ptr::null_mut()) };
        arr
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C header's `_Static_assert`s check the same numbers (tests/c/api.c).
    #[test]
    fn config_layout_is_opendht_heads() {
        assert_eq!(size_of::<dht_node_config>(), 40);
        assert_eq!(size_of::<dht_secure_config>(), 56);
        assert_eq!(std::mem::offset_of!(dht_runner_config, threaded), 56);
        assert_eq!(std::mem::offset_of!(dht_runner_config, proxy_user_agent), 104);
        assert_eq!(std::mem::offset_of!(dht_runner_config, peer_discovery), 112);
        assert_eq!(std::mem::offset_of!(dht_runner_config, server_ca), 120);
        assert_eq!(std::mem::offset_of!(dht_runner_config, log), 144);
        assert_eq!(size_of::<dht_runner_config>(), 152);
    }
}

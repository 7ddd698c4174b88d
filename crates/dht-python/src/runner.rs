//! `DhtRunner`, `DhtConfig` and `ListenToken`: OpenDHT's runner on a [`dht_mio::Runner`].
//!
//! Runners share one thread per process (a [`dht_mio::Pool`]) unless their config asks for a
//! thread of their own. Callbacks run on the runner's thread under the GIL; every wait releases
//! the GIL (and checks for Ctrl-C every 100 ms). A blocking call made from a callback running on
//! the target runner's thread raises `RuntimeError` instead of deadlocking. Done callbacks are never dropped silently: an operation
//! still pending when its runner stops reports `ok = False`.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use dht_mio::{Change, GetId, Handle, ListenId, PutMode, Runner};
use dht_proto::MessageKind;
use dht_proto::crypto::Identity;
use dht_proto::value::{Query, Select, Value, ValueType, Where};
use dht_proto::{Family, InfoHash, PutOptions};
use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::crypto::{PyIdentity, PyPublicKey};
use crate::hash::{PyInfoHash, PyPkId};
use crate::net::{PySockAddr, host_port, ping, port_arg};
use crate::value::{PyValue, PyValueType, PyWhere};

/// How long `shutdown()` lets pending puts finish before the sockets close.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);
/// How long a ping waits for an answer.
const PING_LIMIT: Duration = Duration::from_secs(3);
/// How often a blocking call checks for signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Numbers the runner threads, so a callback knows which thread it is on: each run of a runner
/// with a thread of its own gets a fresh serial; the shared thread is [`SHARED_SERIAL`].
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// The serial of the thread the runners of this process share.
const SHARED_SERIAL: u64 = u64::MAX;

/// The thread (a [`dht_mio::Pool`]) that runs every runner of this process whose config does not
/// ask for a thread of its own: nodes of one process then talk to each other without a thread
/// hand-off per message. `None` if it could not start (runners then get their own threads).
static SHARED: OnceLock<Option<dht_mio::Pool>> = OnceLock::new();

fn shared_pool() -> Option<&'static dht_mio::Pool> {
    SHARED.get_or_init(|| dht_mio::Pool::new().ok()).as_ref()
}

thread_local! {
    /// The serial of the runner thread whose callback runs on this thread now (0: none).
    static IN_CALLBACK: Cell<u64> = const { Cell::new(0) };
}

/// `RuntimeError` when called from a callback running on the thread of runner `serial`: a
/// blocking call there would wait for that very thread.
fn on_own_thread(serial: u64) -> PyResult<()> {
    if serial != 0 && IN_CALLBACK.get() == serial {
        return Err(PyRuntimeError::new_err(
            "a blocking call from a callback of a DhtRunner on the same thread would deadlock: \
             use the callback form (or DhtConfig.setSharedThread(False) for the other runner)",
        ));
    }
    Ok(())
}

/// Runs `f` under the GIL as a callback on the thread of runner `serial`; an exception is reported through
/// `sys.unraisablehook` (as upstream prints them) and counts as a falsy return.
fn callback(serial: u64, f: impl FnOnce(Python<'_>) -> PyResult<bool>) -> bool {
    Python::attach(|py| {
        let before = IN_CALLBACK.replace(serial);
        let r = f(py);
        IN_CALLBACK.set(before);
        r.unwrap_or_else(|e| {
            e.write_unraisable(py, None);
            false
        })
    })
}

fn truthy(r: Bound<'_, PyAny>) -> PyResult<bool> {
    r.is_truthy()
}

/// A done callback `(ok, nodes)` that runs exactly once: when the operation ends, or with
/// `ok = False` when the runner drops the operation (it stopped, or the get was cancelled).
struct DoneSlot {
    cb: Mutex<Option<Py<PyAny>>>,
    serial: u64,
}

impl DoneSlot {
    fn new(cb: Option<Py<PyAny>>, serial: u64) -> Arc<DoneSlot> {
        Arc::new(DoneSlot {
            cb: Mutex::new(cb),
            serial,
        })
    }

    fn fire(&self, ok: bool) {
        let cb = self.cb.lock().ok().and_then(|mut c| c.take());
        if let Some(cb) = cb {
            callback(self.serial, |py| {
                cb.call1(py, (ok, PyList::empty(py)))?;
                Ok(true)
            });
        }
    }
}

/// Fires its slot with `ok = False` if dropped before the operation reported.
struct DoneOnDrop(Arc<DoneSlot>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.fire(false);
    }
}

/// Node settings for `DhtRunner.run(config=...)`. `run` copies it: a config is never changed by
/// a runner, and each runner without one gets fresh defaults (upstream shares one default).
#[pyclass(module = "rdht._core", name = "DhtConfig", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyDhtConfig {
    identity: Option<Identity>,
    bootstrap_mode: bool,
    node_id: Option<InfoHash>,
    network: u32,
    maintain_storage: bool,
    rate_limit: (Option<u32>, Option<u32>),
    bind4: Option<SocketAddr>,
    bind6: Option<SocketAddr>,
    shared_thread: bool,
    /// Upstream's `threaded` flag: always true here (the runner has its thread).
    #[pyo3(get, set)]
    threaded: bool,
}

impl Default for PyDhtConfig {
    fn default() -> Self {
        PyDhtConfig {
            identity: None,
            bootstrap_mode: false,
            node_id: None,
            network: 0,
            maintain_storage: false,
            rate_limit: (None, None),
            bind4: None,
            bind6: None,
            shared_thread: true,
            threaded: true,
        }
    }
}

fn limit(n: i64) -> Option<u32> {
    u32::try_from(n).ok()
}

#[pymethods]
impl PyDhtConfig {
    #[new]
    fn py_new() -> Self {
        PyDhtConfig::default()
    }

    /// The identity that signs and decrypts values (`putSigned`, `putEncrypted`).
    #[pyo3(name = "setIdentity")]
    fn set_identity(&mut self, id: &PyIdentity) {
        self.identity = id.id.clone();
    }

    /// A bootstrap node: it does not try to fill its routing table.
    #[pyo3(name = "setBootstrapMode")]
    fn set_bootstrap_mode(&mut self, bootstrap: bool) {
        self.bootstrap_mode = bootstrap;
    }

    /// A fixed node id (random otherwise).
    #[pyo3(name = "setNodeId")]
    fn set_node_id(&mut self, id: &PyInfoHash) {
        self.node_id = Some(id.core()).filter(|h| !h.is_zero());
    }

    /// The network id: nodes talk only to nodes of the same one (0 is the public network).
    #[pyo3(name = "setNetwork")]
    fn set_network(&mut self, netid: u32) {
        self.network = netid;
    }

    /// Keep stored values replicated on the closest nodes.
    #[pyo3(name = "setMaintainStorage")]
    fn set_maintain_storage(&mut self, maintain: bool) {
        self.maintain_storage = maintain;
    }

    /// Request rate limits (per second, all peers and per peer); -1 means unlimited.
    #[pyo3(name = "setRateLimit")]
    fn set_rate_limit(&mut self, max_req_per_sec: i64, max_peer_req_per_sec: i64) {
        self.rate_limit = (limit(max_req_per_sec), limit(max_peer_req_per_sec));
    }

    /// Upstream's proxy client settings. No proxy client exists here: an empty server is
    /// accepted (no proxy), any other raises `NotImplementedError`.
    #[pyo3(name = "setProxyInfo")]
    #[pyo3(signature = (proxy_server, push_node_id = "", push_token = "", push_topic = "", push_platform = "", user_agent = "", server_ca = None))]
    #[allow(clippy::too_many_arguments)]
    fn set_proxy_info(
        &mut self,
        proxy_server: &str,
        push_node_id: &str,
        push_token: &str,
        push_topic: &str,
        push_platform: &str,
        user_agent: &str,
        server_ca: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = (
            push_node_id,
            push_token,
            push_topic,
            push_platform,
            user_agent,
            server_ca,
        );
        if proxy_server.is_empty() {
            return Ok(());
        }
        Err(PyNotImplementedError::new_err("rdht has no DHT proxy client"))
    }

    /// Upstream's local peer discovery: accepted and ignored (not implemented here).
    #[pyo3(name = "setPeerDiscovery")]
    fn set_peer_discovery(&mut self, peer_discovery: bool, peer_publish: bool) {
        let _ = (peer_discovery, peer_publish);
    }

    /// Whether the runner shares one thread with the other runners of this process (the
    /// default; an addition to upstream's API). Nodes on the shared thread exchange messages
    /// without a thread hand-off, which makes many nodes in one process several times faster;
    /// but a blocking call made in a callback of one of them on another of them raises
    /// `RuntimeError` (it would wait for its own thread). `False` gives the runner a thread of
    /// its own, as upstream does for every runner.
    #[pyo3(name = "setSharedThread")]
    fn set_shared_thread(&mut self, shared: bool) {
        self.shared_thread = shared;
    }

    /// The addresses to bind (an empty or missing `SockAddr` leaves that family to `run`).
    #[pyo3(name = "setBound")]
    #[pyo3(signature = (bind4 = None, bind6 = None))]
    fn set_bound(&mut self, bind4: Option<PySockAddr>, bind6: Option<PySockAddr>) -> PyResult<()> {
        let b4 = bind4.and_then(|s| s.addr);
        let b6 = bind6.and_then(|s| s.addr);
        if b4.is_some_and(|a| !a.is_ipv4()) || b6.is_some_and(|a| !a.is_ipv6()) {
            return Err(PyValueError::new_err(
                "setBound takes an IPv4 then an IPv6 address",
            ));
        }
        self.bind4 = b4;
        self.bind6 = b6;
        Ok(())
    }
}

/// A running node.
struct Live {
    runner: Runner,
    /// Its thread's serial ([`SHARED_SERIAL`] on the shared thread).
    serial: u64,
    network: u32,
    identity: Option<Identity>,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    /// The thread finishing a `shutdown()`.
    stopping: Option<JoinHandle<()>>,
    /// The serial of the last run (for `join` from a callback).
    last_serial: u64,
    types: Vec<ValueType>,
    /// `getNodeMessageStats` counters as of its last call (it reports the increase).
    sent_base: [u64; 5],
}

/// The token of a `listen`, for `cancelListen` (or its own `cancel()`). Each token owns its
/// callback, which is dropped when the listen ends.
#[pyclass(module = "rdht._core", name = "ListenToken", frozen)]
pub(crate) struct PyListenToken {
    handle: Handle,
    id: ListenId,
    key: PyInfoHash,
    ended: Arc<AtomicBool>,
}

#[pymethods]
impl PyListenToken {
    /// Stops the listen (once; later calls do nothing). No callback runs after it returns,
    /// except one already running on the runner's thread.
    fn cancel(&self) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.handle.cancel_listen(self.id);
        }
    }

    /// The key listened to.
    #[getter]
    fn key(&self) -> PyInfoHash {
        self.key
    }

    /// True once cancelled (by `cancel`, `cancelListen` or a falsy callback return).
    #[getter]
    fn cancelled(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn __repr__(&self) -> String {
        format!("<ListenToken {}>", crate::hash::to_hex(&self.key.0))
    }
}

/// The token of a get in callback form (upstream returns `None`): `cancel()` stops it, and its
/// done callback then runs with `ok = False`.
#[pyclass(module = "rdht._core", name = "GetToken", frozen)]
pub(crate) struct PyGetToken {
    handle: Handle,
    op: Arc<GetOp>,
}

#[pymethods]
impl PyGetToken {
    /// Stops the get.
    fn cancel(&self) {
        self.op.stop(&self.handle);
    }
}

/// What a get in callback form shares with its callbacks.
struct GetOp {
    id: Mutex<Option<GetId>>,
    stopped: AtomicBool,
}

impl GetOp {
    fn stop(&self, handle: &Handle) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(id) = self.id.lock().ok().and_then(|g| *g) {
            handle.cancel_get(id);
        }
    }
}

/// OpenDHT's `DhtRunner`: a DHT node on a thread of its own. `run()` starts it; `get`, `put`,
/// `listen` and the others use it; `shutdown()` then `join()` stop it (it can run again).
#[pyclass(module = "rdht._core", name = "DhtRunner", frozen, weakref, subclass)]
pub(crate) struct PyDhtRunner {
    state: Mutex<State>,
}

fn key_arg(key: &Bound<'_, PyAny>) -> PyResult<InfoHash> {
    let h = key.extract::<PyInfoHash>().map_err(|_| {
        PyTypeError::new_err(format!(
            "key must be an InfoHash, not {} (use InfoHash.get(name))",
            key.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    if h.core().is_zero() {
        return Err(PyValueError::new_err("the zero InfoHash cannot be used as a key"));
    }
    Ok(h.core())
}

fn value_arg<'py>(val: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyValue>> {
    let v = val.cast::<PyValue>().map_err(|_| {
        PyTypeError::new_err(format!(
            "value must be a Value, not {}",
            val.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    v.borrow().check_size()?;
    Ok(v.clone())
}

fn callable_arg(cb: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Py<PyAny>>> {
    match cb {
        Some(c) if c.is_none() => Ok(None),
        Some(c) if !c.is_callable() => Err(PyTypeError::new_err(format!("{what} must be callable"))),
        Some(c) => Ok(Some(c.unbind())),
        None => Ok(None),
    }
}

fn family_arg(af: u16) -> PyResult<Family> {
    match af {
        0 | 2 => Ok(Family::V4),
        10 => Ok(Family::V6),
        _ => Err(PyValueError::new_err(format!(
            "unknown address family {af} (2 or 10)"
        ))),
    }
}

/// Waits on `rx` with the GIL released, checking for signals; `None` when the sender is gone.
fn wait<T: Send>(py: Python<'_>, rx: &mut Option<mpsc::Receiver<T>>) -> PyResult<Option<T>> {
    loop {
        // The receiver is not `Sync`: it moves into the GIL-free section and back.
        let Some(r) = rx.take() else {
            return Ok(None);
        };
        let (r, got) = py.detach(move || {
            let got = r.recv_timeout(SIGNAL_CHECK);
            (r, got)
        });
        *rx = Some(r);
        match got {
            Ok(t) => return Ok(Some(t)),
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
        }
    }
}

enum GetMsg {
    Values(Vec<Value>),
    Done,
}

impl PyDhtRunner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than losing the runner: recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running node's handle and serial, or `RuntimeError`.
    fn live(&self) -> PyResult<(Handle, u64)> {
        let st = self.lock();
        match &st.live {
            Some(l) => Ok((l.runner.handle(), l.serial)),
            None => Err(PyRuntimeError::new_err(
                "the DhtRunner is not running (call run() first; it was shut down?)",
            )),
        }
    }

    /// Stops the node now and waits for a shutdown in progress, with the GIL released.
    fn stop_all(&self, py: Python<'_>) {
        let (live, stopping, serial) = {
            let mut st = self.lock();
            (st.live.take(), st.stopping.take(), st.last_serial)
        };
        let own = serial != 0 && IN_CALLBACK.get() == serial;
        py.detach(move || {
            drop(live);
            if let Some(t) = stopping
                && !own
            {
                let _ = t.join();
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn do_put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        val: &Bound<'_, PyAny>,
        mode: PutMode,
        done_cb: Option<Bound<'_, PyAny>>,
        permanent: bool,
    ) -> PyResult<Py<PyAny>> {
        let key = key_arg(key)?;
        let val = value_arg(val)?;
        let done = callable_arg(done_cb, "done_cb")?;
        let (handle, serial) = self.live()?;
        let value = val.borrow().v.clone();
        let opts = if permanent {
            PutOptions::permanent()
        } else {
            PutOptions::default()
        };
        match done {
            Some(cb) => {
                let guard = DoneOnDrop(DoneSlot::new(Some(cb), serial));
                let vid = handle
                    .put_as(key, value, opts, mode, move |r| {
                        guard.0.fire(r.is_ok_and(|o| o.ok()));
                    })
                    .map_err(crate::run_error)?;
                val.borrow_mut().v.id = vid;
                Ok(py.None())
            }
            None => {
                on_own_thread(serial)?;
                let (tx, rx) = mpsc::channel();
                let vid = handle
                    .put_as(key, value, opts, mode, move |r| {
                        let _ = tx.send(r.is_ok_and(|o| o.ok()));
                    })
                    .map_err(crate::run_error)?;
                val.borrow_mut().v.id = vid;
                let ok = wait(py, &mut Some(rx))?.unwrap_or(false);
                Ok(ok.into_pyobject(py)?.to_owned().into_any().unbind())
            }
        }
    }

    fn inspect<R: Send + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dht_proto::Node) -> R + Send + 'static,
    ) -> PyResult<R> {
        let (handle, serial) = self.live()?;
        on_own_thread(serial)?;
        py.detach(|| handle.inspect(f)).map_err(crate::run_error)
    }
}

fn bind_arg<T: std::str::FromStr>(s: &str, family: &str) -> PyResult<Option<T>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map(Some)
        .map_err(|_| PyValueError::new_err(format!("not an {family} address: {s:?}")))
}

#[pymethods]
impl PyDhtRunner {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn py_new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        let _ = (args, kwargs);
        PyDhtRunner {
            state: Mutex::new(State::default()),
        }
    }

    /// Starts the node. `port` 0 picks a free one. With `ipv4` and/or `ipv6` set, binds only
    /// those addresses (one family if only one is given); otherwise both families on every
    /// address. `id` is the identity for signed and encrypted puts (it overrides the config's;
    /// the config itself is never changed). `is_bootstrap` is ignored as upstream: use
    /// `DhtConfig.setBootstrapMode`. A port in use raises `OSError`; a running runner raises
    /// `RuntimeError`.
    #[pyo3(signature = (id = None, is_bootstrap = false, port = 0, ipv4 = "", ipv6 = "", config = None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        id: Option<PyIdentity>,
        is_bootstrap: bool,
        port: u16,
        ipv4: &str,
        ipv6: &str,
        config: Option<PyDhtConfig>,
    ) -> PyResult<()> {
        let _ = is_bootstrap;
        let config = config.unwrap_or_default();
        let mut bind4: Option<Ipv4Addr> = bind_arg(ipv4, "IPv4")?;
        let mut bind6: Option<Ipv6Addr> = bind_arg(ipv6, "IPv6")?;
        let mut port = port;
        if let Some(SocketAddr::V4(a)) = config.bind4 {
            bind4 = Some(*a.ip());
            if port == 0 {
                port = a.port();
            }
        }
        if let Some(SocketAddr::V6(a)) = config.bind6 {
            bind6 = Some(*a.ip());
            if port == 0 {
                port = a.port();
            }
        }
        if bind4.is_none() && bind6.is_none() {
            bind4 = Some(Ipv4Addr::UNSPECIFIED);
            bind6 = Some(Ipv6Addr::UNSPECIFIED);
        }
        let identity = id.and_then(|i| i.id).or(config.identity.clone());
        let mut node = dht_proto::Config::default();
        node.node_id = config.node_id;
        node.network = config.network;
        node.bootstrap_mode = config.bootstrap_mode;
        node.max_req_per_sec = config.rate_limit.0;
        node.max_peer_req_per_sec = config.rate_limit.1;
        node.identity = identity.clone();
        if config.maintain_storage {
            node.replicate = true;
        }
        {
            // A shutdown without join: finish it before running again.
            let mut st = self.lock();
            if st.live.is_some() {
                return Err(PyRuntimeError::new_err("the DhtRunner is already running"));
            }
            if let Some(t) = st.stopping.take() {
                drop(st);
                py.detach(|| {
                    let _ = t.join();
                });
            }
        }
        let mut st = self.lock();
        if st.live.is_some() {
            return Err(PyRuntimeError::new_err("the DhtRunner is already running"));
        }
        for t in &st.types {
            let types = node.types.to_mut();
            types.retain(|x| x.id != t.id);
            types.push(t.clone());
        }
        let rc = dht_mio::Config {
            port,
            bind4,
            bind6,
            node,
            seed: None,
            bootstrap: Vec::new(),
            discovery: None,
        };
        let pool = if config.shared_thread { shared_pool() } else { None };
        let runner = py
            .detach(|| match pool {
                Some(p) => p.run(rc),
                None => Runner::run(rc),
            })
            .map_err(crate::run_error)?;
        let serial = match pool {
            Some(_) => SHARED_SERIAL,
            None => SERIALS.fetch_add(1, Ordering::Relaxed),
        };
        st.last_serial = serial;
        st.sent_base = [0; 5];
        st.live = Some(Live {
            runner,
            serial,
            network: config.network,
            identity,
        });
        Ok(())
    }

    /// Joins the network through `host` (a name or address) on `port` (int or str; default
    /// 4222). Names resolve on the calling thread, with the GIL released; an unknown name raises
    /// `OSError`.
    #[pyo3(signature = (host, port = None))]
    fn bootstrap(&self, py: Python<'_>, host: &str, port: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let port = port_arg(port)?;
        let (handle, _) = self.live()?;
        let spec = host_port(host, port);
        py.detach(|| handle.bootstrap_host(&spec))
            .map(|_| ())
            .map_err(crate::run_error)
    }

    /// Pings `addr` (a `SockAddr`): `True` when it answers within 3 s. With `done_cb`, returns
    /// at once and calls `done_cb(ok)` from another thread. A runner not running answers `False`.
    #[pyo3(signature = (addr, done_cb = None))]
    fn ping(
        &self,
        py: Python<'_>,
        addr: &PySockAddr,
        done_cb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let done = callable_arg(done_cb, "done_cb")?;
        let target = addr
            .addr
            .ok_or_else(|| PyValueError::new_err("ping needs an address"))?;
        let live = self.live().ok().map(|(_, s)| s);
        let network = self.lock().live.as_ref().map(|l| l.network).unwrap_or(0);
        match done {
            Some(cb) => {
                let Some(serial) = live else {
                    cb.call1(py, (false,))?;
                    return Ok(py.None());
                };
                std::thread::Builder::new()
                    .name("rdht-ping".into())
                    .spawn(move || {
                        let ok = ping(target, network, PING_LIMIT).unwrap_or(false);
                        callback(serial, |py| {
                            cb.call1(py, (ok,))?;
                            Ok(true)
                        });
                    })
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                Ok(py.None())
            }
            None => {
                let ok = live.is_some() && py.detach(|| ping(target, network, PING_LIMIT))?;
                Ok(ok.into_pyobject(py)?.to_owned().into_any().unbind())
            }
        }
    }

    /// Gets the values at `key`. Without callbacks, blocks (GIL released) until the get is done
    /// and returns a list of `Value`. With `get_cb(value) -> bool` (a falsy return stops the get)
    /// and/or `done_cb(ok, nodes)`, returns a `GetToken` at once; callbacks run on the runner's
    /// thread. `filter(value) -> bool` selects values in Python; `where` (a `Where`) is sent to
    /// the network.
    #[pyo3(signature = (key, get_cb = None, done_cb = None, filter = None, r#where = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        get_cb: Option<Bound<'_, PyAny>>,
        done_cb: Option<Bound<'_, PyAny>>,
        filter: Option<Bound<'_, PyAny>>,
        r#where: Option<PyWhere>,
    ) -> PyResult<Py<PyAny>> {
        let key = key_arg(key)?;
        let get_cb = callable_arg(get_cb, "get_cb")?;
        let done_cb = callable_arg(done_cb, "done_cb")?;
        let filter = callable_arg(filter, "filter")?;
        let query = Query::new(Select::all(), r#where.map(|w| w.w).unwrap_or_else(Where::any));
        let (handle, serial) = self.live()?;
        if get_cb.is_none() && done_cb.is_none() {
            on_own_thread(serial)?;
            let (tx, rx) = mpsc::channel();
            let tx2 = tx.clone();
            let id = handle
                .get(
                    key,
                    query,
                    move |v| {
                        let _ = tx.send(GetMsg::Values(v.to_vec()));
                    },
                    move |_| {
                        let _ = tx2.send(GetMsg::Done);
                    },
                )
                .map_err(crate::run_error)?;
            let mut found = Vec::new();
            let mut rx = Some(rx);
            loop {
                match wait(py, &mut rx) {
                    Ok(Some(GetMsg::Values(v))) => found.extend(v),
                    Ok(Some(GetMsg::Done)) | Ok(None) => break,
                    Err(e) => {
                        handle.cancel_get(id);
                        return Err(e);
                    }
                }
            }
            let list = PyList::empty(py);
            for v in found {
                let v = Bound::new(py, PyValue { v })?;
                if let Some(f) = &filter
                    && !f.call1(py, (v.clone(),))?.bind(py).is_truthy()?
                {
                    continue;
                }
                list.append(v)?;
            }
            return Ok(list.into_any().unbind());
        }
        let op = Arc::new(GetOp {
            id: Mutex::new(None),
            stopped: AtomicBool::new(false),
        });
        let slot = DoneSlot::new(done_cb, serial);
        let guard = DoneOnDrop(slot.clone());
        let (op2, h2) = (op.clone(), handle.clone());
        let id = handle
            .get(
                key,
                query,
                move |values| {
                    if op2.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let go_on = callback(serial, |py| {
                        for v in values {
                            let v = Bound::new(py, PyValue { v: v.clone() })?;
                            if let Some(f) = &filter
                                && !truthy(f.call1(py, (v.clone(),))?.into_bound(py))?
                            {
                                continue;
                            }
                            if let Some(cb) = &get_cb
                                && !truthy(cb.call1(py, (v,))?.into_bound(py))?
                            {
                                return Ok(false);
                            }
                        }
                        Ok(true)
                    });
                    if !go_on {
                        // Upstream: a get stopped by its callback reports done with ok = true.
                        op2.stop(&h2);
                        slot.fire(true);
                    }
                },
                move |r| {
                    guard.0.fire(r.unwrap_or(false));
                },
            )
            .map_err(crate::run_error)?;
        if let Ok(mut g) = op.id.lock() {
            *g = Some(id);
        }
        if op.stopped.load(Ordering::SeqCst) {
            handle.cancel_get(id);
        }
        Ok(Py::new(py, PyGetToken { handle, op })?.into_any())
    }

    /// Cancels a get started with callbacks (its `GetToken`).
    #[pyo3(name = "cancelGet")]
    fn cancel_get(&self, token: &PyGetToken) {
        token.cancel();
    }

    /// Puts `val` at `key`. Without `done_cb`, blocks (GIL released) and returns `True` when
    /// storing nodes acknowledged it; with `done_cb(ok, nodes)`, returns at once. `permanent`
    /// keeps it announced until `cancelPut` (honoured by the blocking form too, unlike
    /// upstream). `val.id` holds the value's id once this returns. A value over 64 KiB raises
    /// `ValueError`.
    #[pyo3(signature = (key, val, done_cb = None, permanent = false))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        val: &Bound<'_, PyAny>,
        done_cb: Option<Bound<'_, PyAny>>,
        permanent: bool,
    ) -> PyResult<Py<PyAny>> {
        self.do_put(py, key, val, PutMode::Plain, done_cb, permanent)
    }

    /// `put`, signed with the runner's identity (ed25519; upstream RSA). Without an identity
    /// (`run(id=...)` or `DhtConfig.setIdentity`) the put fails (`False`).
    #[pyo3(name = "putSigned")]
    #[pyo3(signature = (key, val, done_cb = None, permanent = false))]
    fn put_signed(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        val: &Bound<'_, PyAny>,
        done_cb: Option<Bound<'_, PyAny>>,
        permanent: bool,
    ) -> PyResult<Py<PyAny>> {
        self.do_put(py, key, val, PutMode::Signed, done_cb, permanent)
    }

    /// `put`, encrypted to `to` and signed with the runner's identity (x25519 +
    /// ChaCha20-Poly1305; upstream RSA). `to` is the recipient's `PublicKey`, or the `InfoHash`
    /// short id of a key its owner announced on the DHT (looked up first). A `PkId` raises
    /// `ValueError` (no lookup by long id); `None` raises `ValueError`.
    #[pyo3(name = "putEncrypted")]
    #[pyo3(signature = (key, val, to, done_cb = None, permanent = false))]
    fn put_encrypted(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        val: &Bound<'_, PyAny>,
        to: &Bound<'_, PyAny>,
        done_cb: Option<Bound<'_, PyAny>>,
        permanent: bool,
    ) -> PyResult<Py<PyAny>> {
        let mode = if to.is_none() {
            return Err(PyValueError::new_err("putEncrypted needs a recipient"));
        } else if let Ok(pk) = to.extract::<PyPublicKey>() {
            let k = pk
                .key
                .ok_or_else(|| PyValueError::new_err("the recipient is not an ed25519 PublicKey"))?;
            PutMode::EncryptedTo(k)
        } else if let Ok(h) = to.extract::<PyInfoHash>() {
            PutMode::EncryptedToId(h.core())
        } else if to.extract::<PyPkId>().is_ok() {
            return Err(PyValueError::new_err(
                "encrypting to a PkId is not supported: pass the PublicKey, or its short id (InfoHash)",
            ));
        } else {
            return Err(PyTypeError::new_err(
                "putEncrypted: `to` must be a PublicKey or an InfoHash",
            ));
        };
        self.do_put(py, key, val, mode, done_cb, permanent)
    }

    /// Stops announcing `val` (by its id) at `key` and drops the local copy.
    #[pyo3(name = "cancelPut")]
    fn cancel_put(&self, key: &Bound<'_, PyAny>, val: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = key_arg(key)?;
        let vid = val
            .cast::<PyValue>()
            .map_err(|_| PyTypeError::new_err("cancelPut takes a Value"))?
            .borrow()
            .v
            .id;
        let (handle, _) = self.live()?;
        handle.cancel_put(key, vid);
        Ok(())
    }

    /// Listens at `key`: `value_cb(value, expired) -> bool` runs on the runner's thread for
    /// every value added (`expired` False) or gone (True); a falsy return cancels the listen.
    /// `where` (a `Where`) narrows it. Returns a `ListenToken` for `cancelListen`; it cancels on
    /// single-stack runners too.
    #[pyo3(signature = (key, value_cb, r#where = None))]
    fn listen(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value_cb: Bound<'_, PyAny>,
        r#where: Option<PyWhere>,
    ) -> PyResult<Py<PyListenToken>> {
        let pykey = key
            .extract::<PyInfoHash>()
            .map_err(|_| PyTypeError::new_err("key must be an InfoHash"))?;
        let key = key_arg(key)?;
        let cb = callable_arg(Some(value_cb), "value_cb")?
            .ok_or_else(|| PyTypeError::new_err("value_cb is required"))?;
        let query = Query::new(Select::all(), r#where.map(|w| w.w).unwrap_or_else(Where::any));
        let (handle, serial) = self.live()?;
        let ended = Arc::new(AtomicBool::new(false));
        let id_slot: Arc<Mutex<Option<ListenId>>> = Arc::new(Mutex::new(None));
        let (ended2, slot2, h2) = (ended.clone(), id_slot.clone(), handle.clone());
        let id = handle
            .listen(key, query, move |change| {
                if ended2.load(Ordering::SeqCst) {
                    return;
                }
                let (values, expired) = match change {
                    Change::Added(v) => (v, false),
                    Change::Expired(v) => (v, true),
                    Change::Failed(e) => {
                        ended2.store(true, Ordering::SeqCst);
                        callback(serial, |py| {
                            PyRuntimeError::new_err(format!("listen failed: {e}")).write_unraisable(py, None);
                            Ok(true)
                        });
                        return;
                    }
                };
                let go_on = callback(serial, |py| {
                    for v in values {
                        let v = Bound::new(py, PyValue { v: v.clone() })?;
                        if !truthy(cb.call1(py, (v, expired))?.into_bound(py))? {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                });
                if !go_on
                    && !ended2.swap(true, Ordering::SeqCst)
                    && let Some(id) = slot2.lock().ok().and_then(|g| *g)
                {
                    h2.cancel_listen(id);
                }
            })
            .map_err(crate::run_error)?;
        if let Ok(mut g) = id_slot.lock() {
            *g = Some(id);
        }
        if ended.load(Ordering::SeqCst) {
            handle.cancel_listen(id);
        }
        Py::new(
            py,
            PyListenToken {
                handle,
                id,
                key: pykey,
                ended,
            },
        )
    }

    /// Cancels the listen of `token`.
    #[pyo3(name = "cancelListen")]
    fn cancel_listen(&self, token: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = token
            .cast::<PyListenToken>()
            .map_err(|_| PyTypeError::new_err("cancelListen takes a ListenToken"))?;
        t.get().cancel();
        Ok(())
    }

    /// Asks the node to stop: pending puts finish (at most 5 s), then its sockets close and
    /// every pending operation reports `ok = False`. Returns at once; `shutdown_cb()` runs when
    /// done (on another thread). New operations raise `RuntimeError` from now on; `join()`
    /// waits for the end.
    #[pyo3(signature = (shutdown_cb = None))]
    fn shutdown(&self, py: Python<'_>, shutdown_cb: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let cb = callable_arg(shutdown_cb, "shutdown_cb")?;
        let live = {
            let mut st = self.lock();
            if st.stopping.is_some() && st.live.is_none() {
                drop(st);
                // Already stopping: report when that ends.
                if let Some(cb) = cb {
                    cb.call0(py)?;
                }
                return Ok(());
            }
            st.live.take()
        };
        let Some(live) = live else {
            if let Some(cb) = cb {
                cb.call0(py)?;
            }
            return Ok(());
        };
        let serial = live.serial;
        let t = std::thread::Builder::new()
            .name("rdht-shutdown".into())
            .spawn(move || {
                let _ = live.runner.shutdown(SHUTDOWN_LIMIT);
                if let Some(cb) = cb {
                    callback(serial, |py| {
                        cb.call0(py)?;
                        Ok(true)
                    });
                }
            })
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        self.lock().stopping = Some(t);
        Ok(())
    }

    /// Stops the node at once if `shutdown()` was not called, and waits until its thread has
    /// ended (GIL released). The runner can then `run()` again. From one of this runner's own
    /// callbacks it raises `RuntimeError` (it would wait for itself).
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        on_own_thread(self.lock().last_serial)?;
        self.stop_all(py);
        Ok(())
    }

    /// True from `run()` until `shutdown()` or `join()`.
    #[pyo3(name = "isRunning")]
    fn is_running(&self) -> bool {
        self.lock().live.is_some()
    }

    /// The node's id (zero when not running).
    #[pyo3(name = "getNodeId")]
    fn get_node_id(&self) -> PyInfoHash {
        self.live()
            .map(|(h, _)| h.node_id().into())
            .unwrap_or(PyInfoHash([0; 20]))
    }

    /// The short id of the runner's identity (zero without one).
    #[pyo3(name = "getId")]
    fn get_id(&self) -> PyInfoHash {
        self.lock()
            .live
            .as_ref()
            .and_then(|l| l.identity.as_ref())
            .map(|i| i.public().id().into())
            .unwrap_or(PyInfoHash([0; 20]))
    }

    /// The public key of the runner's identity (empty without one).
    #[pyo3(name = "getPublicKey")]
    fn get_public_key(&self) -> PyPublicKey {
        self.lock()
            .live
            .as_ref()
            .and_then(|l| l.identity.as_ref())
            .map(|i| PyPublicKey::from_key(i.public()))
            .unwrap_or_default()
    }

    /// The bound address of family `af` (0 or 2: IPv4; 10: IPv6); empty if none.
    #[pyo3(name = "getBound")]
    #[pyo3(signature = (af = 0))]
    fn get_bound(&self, af: u16) -> PyResult<PySockAddr> {
        let v6 = family_arg(af)? == Family::V6;
        let Ok((h, _)) = self.live() else {
            return Ok(PySockAddr::default());
        };
        Ok(PySockAddr {
            addr: h.local_addrs().into_iter().find(|a| a.is_ipv6() == v6),
        })
    }

    /// Our public addresses as peers report them (family `af`: 0 both, 2 IPv4, 10 IPv6), each
    /// with our bound port of its family.
    #[pyo3(name = "getPublicAddress")]
    #[pyo3(signature = (af = 0))]
    fn get_public_address(&self, py: Python<'_>, af: u16) -> PyResult<Vec<PySockAddr>> {
        if !matches!(af, 0 | 2 | 10) {
            return Err(PyValueError::new_err(format!("unknown address family {af}")));
        }
        let (h, serial) = self.live()?;
        on_own_thread(serial)?;
        let ips = py.detach(|| h.public_addresses()).map_err(crate::run_error)?;
        let bound = h.local_addrs();
        Ok(ips
            .into_iter()
            .filter(|ip| af == 0 || (af == 10) == ip.is_ipv6())
            .map(|ip: IpAddr| {
                let port = bound
                    .iter()
                    .find(|a| a.is_ipv6() == ip.is_ipv6())
                    .map(|a| a.port())
                    .unwrap_or(0);
                PySockAddr::from(SocketAddr::new(ip, port))
            })
            .collect())
    }

    /// Registers a value type. Types registered before `run()` apply to that run; a type
    /// registered while running applies from the next `run()`.
    #[pyo3(name = "registerType")]
    fn register_type(&self, t: &PyValueType) {
        let mut st = self.lock();
        st.types.retain(|x| x.id != t.t.id);
        st.types.push(t.t.clone());
    }

    /// Upstream turns on its C++ logger; here the node traces through Rust's `tracing`, which
    /// Python does not see: accepted and ignored.
    #[pyo3(name = "enableLogging")]
    fn enable_logging(&self) {}

    /// See `enableLogging`.
    #[pyo3(name = "disableLogging")]
    fn disable_logging(&self) {}

    /// See `enableLogging` (the file is not written).
    #[pyo3(name = "enableFileLogging")]
    fn enable_file_logging(&self, path: &str) {
        let _ = path;
    }

    /// Every stored value, one key per paragraph (debug text; the format is not a contract).
    #[pyo3(name = "getStorageLog")]
    fn get_storage_log(&self, py: Python<'_>) -> PyResult<String> {
        let values = self.inspect(py, |n| n.export_values())?;
        let mut out = String::new();
        let mut last: Option<InfoHash> = None;
        let total: usize = values.iter().map(|e| e.value.size()).sum();
        out.push_str(&format!("Storage: {} values, {} bytes\n", values.len(), total));
        for e in values {
            if last != Some(e.key) {
                out.push_str(&format!("Storage {}\n", e.key));
                last = Some(e.key);
            }
            out.push_str(&format!(
                "   Value id:{:x} type:{} size:{}{}\n",
                e.value.id,
                e.value.value_type,
                e.value.size(),
                e.remaining
                    .map(|r| format!(" expires in {}s", r.as_secs()))
                    .unwrap_or_default()
            ));
        }
        Ok(out)
    }

    /// The routing table of family `af` (2 or 10; 0 is IPv4) as text.
    #[pyo3(name = "getRoutingTablesLog")]
    #[pyo3(signature = (af = 0))]
    fn get_routing_tables_log(&self, py: Python<'_>, af: u16) -> PyResult<String> {
        let f = family_arg(af)?;
        self.inspect(py, move |n| n.routing_table_text(f))
    }

    /// The searches in progress or remembered, as text (`af` is accepted; both families show).
    #[pyo3(name = "getSearchesLog")]
    #[pyo3(signature = (af = 0))]
    fn get_searches_log(&self, py: Python<'_>, af: u16) -> PyResult<String> {
        family_arg(af)?;
        self.inspect(py, |n| n.searches_text())
    }

    /// Outgoing requests since the last call: `[ping, find, get, listen, put]`, as upstream;
    /// with `incoming=True`, the requests received since start.
    #[pyo3(name = "getNodeMessageStats")]
    #[pyo3(signature = (incoming = false))]
    fn get_node_message_stats(&self, incoming: bool) -> PyResult<Vec<u64>> {
        let (h, _) = self.live()?;
        let s = h.stats();
        let kinds = [
            MessageKind::Ping,
            MessageKind::Find,
            MessageKind::Get,
            MessageKind::Listen,
            MessageKind::Put,
        ];
        let now = kinds.map(|k| if incoming { s.received(k) } else { s.sent(k) });
        let mut st = self.lock();
        if incoming {
            return Ok(now.to_vec());
        }
        let out = now
            .iter()
            .zip(st.sent_base.iter())
            .map(|(n, b)| n.saturating_sub(*b))
            .collect();
        st.sent_base = now;
        Ok(out)
    }

    /// The node's counters as a dict (an addition to upstream's API): traffic by message kind,
    /// drops by reason, nodes, searches, storage, operations in progress.
    #[pyo3(name = "getStats")]
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (h, _) = self.live()?;
        let s = py.detach(|| h.stats());
        let d = PyDict::new(py);
        let received = PyDict::new(py);
        let sent = PyDict::new(py);
        for (k, n) in s.received.iter() {
            received.set_item(format!("{k:?}").to_lowercase(), n)?;
        }
        for (k, n) in s.sent.iter() {
            sent.set_item(format!("{k:?}").to_lowercase(), n)?;
        }
        let dropped = PyDict::new(py);
        for (r, n) in s.dropped.iter() {
            dropped.set_item(format!("{r:?}").to_lowercase(), n)?;
        }
        d.set_item("received", received)?;
        d.set_item("sent", sent)?;
        d.set_item("dropped", dropped)?;
        d.set_item("nodes4", s.nodes[Family::V4])?;
        d.set_item("nodes6", s.nodes[Family::V6])?;
        d.set_item("good_nodes4", s.good_nodes[Family::V4])?;
        d.set_item("good_nodes6", s.good_nodes[Family::V6])?;
        d.set_item("searches", s.searches)?;
        d.set_item("stored_keys", s.stored_keys)?;
        d.set_item("stored_values", s.stored_values)?;
        d.set_item("stored_bytes", s.stored_bytes)?;
        d.set_item("remote_listeners", s.remote_listeners)?;
        d.set_item("operations", s.operations)?;
        d.set_item("timeouts", s.timeouts)?;
        d.set_item("retransmits", s.retransmits)?;
        Ok(d)
    }

    /// Connectivity of family `af` (2 or 10; 0 is either): `'connected'`, `'connecting'` or
    /// `'disconnected'` (an addition to upstream's API).
    #[pyo3(name = "getStatus")]
    #[pyo3(signature = (af = 0))]
    fn get_status(&self, af: u16) -> PyResult<&'static str> {
        let Ok((h, _)) = self.live() else {
            return Ok("disconnected");
        };
        let name = |s: dht_proto::Status| match s {
            dht_proto::Status::Connected => "connected",
            dht_proto::Status::Connecting => "connecting",
            dht_proto::Status::Disconnected => "disconnected",
        };
        Ok(match af {
            0 => {
                let (a, b) = (h.status(Family::V4), h.status(Family::V6));
                if a == dht_proto::Status::Connected || b == dht_proto::Status::Connected {
                    "connected"
                } else if a == dht_proto::Status::Connecting || b == dht_proto::Status::Connecting {
                    "connecting"
                } else {
                    "disconnected"
                }
            }
            _ => name(h.status(family_arg(af)?)),
        })
    }

    fn __repr__(&self) -> String {
        match self.live() {
            Ok((h, _)) => format!("<DhtRunner {} running>", h.node_id()),
            Err(_) => "<DhtRunner stopped>".into(),
        }
    }
}

impl Drop for PyDhtRunner {
    /// Stops the node without holding the GIL (its callbacks need it to finish).
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if st.live.is_none() && st.stopping.is_none() {
            return;
        }
        let own = IN_CALLBACK.get() == st.last_serial;
        let (live, stopping) = (st.live.take(), st.stopping.take());
        Python::attach(|py| {
            py.detach(move || {
                drop(live);
                if let Some(t) = stopping
                    && !own
                {
                    let _ = t.join();
                }
            })
        });
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDhtConfig>()?;
    m.add_class::<PyDhtRunner>()?;
    m.add_class::<PyListenToken>()?;
    m.add_class::<PyGetToken>()?;
    Ok(())
}

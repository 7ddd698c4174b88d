//! Addresses and node records: `SockAddr`, `Node`, `NodeEntry`, `NodeSet`; and the ping that
//! `DhtRunner.ping` sends from a socket of its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyIndexError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_core::{OsRng, RngCore};

use crate::hash::PyInfoHash;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// A socket address (`ip:port`), as `DhtRunner.getBound()` returns and `ping` takes.
/// `SockAddr()` is empty; `SockAddr('127.0.0.1', 4222)` or `SockAddr.resolve(host, port)` make one.
#[pyclass(module = "rdht._core", name = "SockAddr", from_py_object)]
#[derive(Clone, Default)]
pub(crate) struct PySockAddr {
    pub(crate) addr: Option<SocketAddr>,
}

impl From<SocketAddr> for PySockAddr {
    fn from(a: SocketAddr) -> Self {
        PySockAddr { addr: Some(a) }
    }
}

#[pymethods]
impl PySockAddr {
    /// Empty, or from an address (`'1.2.3.4'`, `'::1'`, `'1.2.3.4:5'`, `'[::1]:5'`) and a port.
    #[new]
    #[pyo3(signature = (host = None, port = None))]
    fn py_new(host: Option<&str>, port: Option<u16>) -> PyResult<Self> {
        let Some(host) = host else {
            return Ok(PySockAddr::default());
        };
        let addr = if let Ok(a) = host.parse::<SocketAddr>() {
            a
        } else {
            let ip: IpAddr = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| PyValueError::new_err(format!("not an IP address: {host:?}")))?;
            SocketAddr::new(ip, 0)
        };
        let mut addr = addr;
        if let Some(p) = port {
            addr.set_port(p);
        }
        Ok(PySockAddr { addr: Some(addr) })
    }

    /// Every address `host` resolves to, with port `service` (default 4222).
    #[staticmethod]
    #[pyo3(signature = (host, service = None))]
    fn resolve(py: Python<'_>, host: &str, service: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<PySockAddr>> {
        let port = port_arg(service)?;
        let spec = host_port(host, port);
        py.detach(|| dht_mio::resolve(&spec))
            .map(|v| v.into_iter().map(PySockAddr::from).collect())
            .map_err(crate::run_error)
    }

    /// `ip:port` as bytes (`[invalid address]` when empty), as upstream.
    #[pyo3(name = "toString")]
    fn to_string_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.__str__().as_bytes())
    }

    /// The port (0 when empty).
    #[pyo3(name = "getPort")]
    fn get_port(&self) -> u16 {
        self.addr.map(|a| a.port()).unwrap_or(0)
    }

    /// The address family: 2 (IPv4), 10 (IPv6) or 0 (empty).
    #[pyo3(name = "getFamily")]
    fn get_family(&self) -> u16 {
        match self.addr {
            Some(SocketAddr::V4(_)) => AF_INET,
            Some(SocketAddr::V6(_)) => AF_INET6,
            None => 0,
        }
    }

    /// Sets the port.
    #[pyo3(name = "setPort")]
    fn set_port(&mut self, port: u16) {
        if let Some(a) = self.addr.as_mut() {
            a.set_port(port);
        }
    }

    /// Sets the family (2 or 10), making an unspecified address of it if it changes.
    #[pyo3(name = "setFamily")]
    fn set_family(&mut self, af: u16) -> PyResult<()> {
        let port = self.get_port();
        if af == self.get_family() {
            return Ok(());
        }
        self.addr = match af {
            AF_INET => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
            AF_INET6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)),
            0 => None,
            _ => return Err(PyValueError::new_err(format!("unknown address family {af}"))),
        };
        Ok(())
    }

    /// True for a loopback address.
    #[pyo3(name = "isLoopback")]
    fn is_loopback(&self) -> bool {
        self.addr.is_some_and(|a| a.ip().is_loopback())
    }

    /// True for a private (RFC 1918, unique-local or link-local) or loopback address.
    #[pyo3(name = "isPrivate")]
    fn is_private(&self) -> bool {
        self.addr.is_some_and(|a| match a.ip() {
            IpAddr::V4(ip) => ip.is_private() || ip.is_loopback() || ip.is_link_local(),
            IpAddr::V6(ip) => {
                ip.is_loopback()
                    || (ip.segments()[0] & 0xfe00) == 0xfc00
                    || (ip.segments()[0] & 0xffc0) == 0xfe80
            }
        })
    }

    /// True for 0.0.0.0 or ::.
    #[pyo3(name = "isUnspecified")]
    fn is_unspecified(&self) -> bool {
        self.addr.is_some_and(|a| a.ip().is_unspecified())
    }

    /// The IP address as str (`''` when empty).
    fn host(&self) -> String {
        self.addr.map(|a| a.ip().to_string()).unwrap_or_default()
    }

    fn __bool__(&self) -> bool {
        self.addr.is_some()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.extract::<PySockAddr>().is_ok_and(|o| o.addr == self.addr)
    }

    fn __str__(&self) -> String {
        self.addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "[invalid address]".into())
    }

    fn __repr__(&self) -> String {
        format!("<SockAddr '{}'>", self.__str__())
    }
}

/// A port given as int, str or bytes (upstream's `bootstrap(host, "4222")`), default 4222.
pub(crate) fn port_arg(port: Option<&Bound<'_, PyAny>>) -> PyResult<u16> {
    let Some(p) = port.filter(|p| !p.is_none()) else {
        return Ok(dht_proto::DEFAULT_PORT);
    };
    if let Ok(n) = p.extract::<u16>() {
        return Ok(n);
    }
    let text = if let Ok(s) = p.extract::<String>() {
        s
    } else if let Ok(b) = p.cast::<PyBytes>() {
        String::from_utf8_lossy(b.as_bytes()).into_owned()
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "port must be an int or a str",
        ));
    };
    text.trim()
        .parse()
        .map_err(|_| PyValueError::new_err(format!("not a port number: {text:?}")))
}

/// `host:port` for [`dht_mio::resolve`], bracketing a bare IPv6 address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    let h = host.trim();
    if h.parse::<Ipv6Addr>().is_ok() {
        format!("[{h}]:{port}")
    } else {
        format!("{h}:{port}")
    }
}

/// A node of the DHT: its id and address.
#[pyclass(module = "rdht._core", name = "Node", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyNode {
    id: PyInfoHash,
    addr: PySockAddr,
}

#[pymethods]
impl PyNode {
    /// The node id.
    #[pyo3(name = "getId")]
    fn get_id(&self) -> PyInfoHash {
        self.id
    }

    /// Its address as bytes (`ip:port`).
    #[pyo3(name = "getAddr")]
    fn get_addr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.addr.to_string_bytes(py)
    }

    /// Always false: a node record here is a snapshot.
    #[pyo3(name = "isExpired")]
    fn is_expired(&self) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<Node {} {}>",
            crate::hash::to_hex(&self.id.0),
            self.addr.__str__()
        )
    }
}

/// An entry of a `NodeSet`: an id and the `Node`. Get and put done callbacks receive a list of
/// these (always empty here: the runner reports no per-node results).
#[pyclass(module = "rdht._core", name = "NodeEntry", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyNodeEntry {
    id: PyInfoHash,
    node: PyNode,
}

#[pymethods]
impl PyNodeEntry {
    /// A new entry (upstream has no public constructor; this one takes an id and an address).
    #[new]
    #[pyo3(signature = (id = None, addr = None))]
    fn py_new(id: Option<PyInfoHash>, addr: Option<PySockAddr>) -> Self {
        let id = id.unwrap_or(PyInfoHash([0; 20]));
        PyNodeEntry {
            id,
            node: PyNode {
                id,
                addr: addr.unwrap_or_default(),
            },
        }
    }

    /// The entry's id.
    #[pyo3(name = "getId")]
    fn get_id(&self) -> PyInfoHash {
        self.id
    }

    /// The node.
    #[pyo3(name = "getNode")]
    fn get_node(&self) -> PyNode {
        self.node.clone()
    }

    fn __repr__(&self) -> String {
        format!("<NodeEntry {}>", crate::hash::to_hex(&self.id.0))
    }
}

/// A set of `NodeEntry`, ordered by id (upstream's `NodeSet`; `NodeSetInfo` is an alias).
#[pyclass(module = "rdht._core", name = "NodeSet")]
#[derive(Default)]
pub(crate) struct PyNodeSet {
    entries: std::collections::BTreeMap<[u8; 20], PyNodeEntry>,
}

#[pymethods]
impl PyNodeSet {
    #[new]
    fn py_new() -> Self {
        PyNodeSet::default()
    }

    /// The number of entries.
    fn size(&self) -> usize {
        self.entries.len()
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry; false if its id was already there.
    fn insert(&mut self, e: PyNodeEntry) -> bool {
        if self.entries.contains_key(&e.id.0) {
            return false;
        }
        self.entries.insert(e.id.0, e);
        true
    }

    /// Adds every entry of `iterable`.
    fn extend(&mut self, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        for e in iterable.try_iter()? {
            self.insert(e?.extract()?);
        }
        Ok(())
    }

    /// The smallest id; `IndexError` when empty.
    fn first(&self) -> PyResult<PyInfoHash> {
        self.entries
            .values()
            .next()
            .map(|e| e.id)
            .ok_or_else(|| PyIndexError::new_err("empty NodeSet"))
    }

    /// The largest id; `IndexError` when empty.
    fn last(&self) -> PyResult<PyInfoHash> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.id)
            .ok_or_else(|| PyIndexError::new_err("empty NodeSet"))
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list: Vec<PyNodeEntry> = self.entries.values().cloned().collect();
        Ok(list.into_pyobject(py)?.try_iter()?.into_any().unbind())
    }

    fn __str__(&self) -> String {
        self.entries
            .values()
            .map(|e| format!("{} {}\n", crate::hash::to_hex(&e.id.0), e.node.addr.__str__()))
            .collect()
    }
}

/// Pings `addr` from a fresh socket of the right family: true when it answers within `limit`.
pub(crate) fn ping(addr: SocketAddr, network: u32, limit: Duration) -> PyResult<bool> {
    use dht_proto::wire::{Body, Message, RequestKind};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        // What `getBound()` of a runner bound to every address gives: reach it on loopback.
        addr.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let os = |e: std::io::Error| PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string()));
    let sock = UdpSocket::bind(local).map_err(os)?;
    let tid = OsRng.next_u32();
    let mut id = [0u8; 20];
    OsRng.fill_bytes(&mut id);
    let mut msg = Message::request(tid, dht_proto::InfoHash(id), RequestKind::Ping);
    msg.network = network;
    // The pinger stores nothing: say so, so the peer does not add it to its table.
    msg.is_client = true;
    let data = msg.encode_to_vec();
    let end = Instant::now() + limit;
    let mut buf = vec![0u8; dht_proto::wire::MAX_DATAGRAM];
    while Instant::now() < end {
        if sock.send_to(&data, addr).is_err() {
            return Ok(false);
        }
        let resend = Instant::now() + Duration::from_millis(500);
        while Instant::now() < resend.min(end) {
            let wait = resend.min(end).saturating_duration_since(Instant::now());
            sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .map_err(os)?;
            match sock.recv_from(&mut buf) {
                Ok((len, from)) if from.port() == addr.port() => {
                    if let Some(m) = buf.get(..len).and_then(|d| dht_proto::wire::decode(d).ok())
                        && m.tid == tid
                        && matches!(m.body, Body::Reply(_))
                    {
                        return Ok(true);
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // ICMP port unreachable: nobody there.
                Err(_) => return Ok(false),
            }
        }
    }
    Ok(false)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySockAddr>()?;
    m.add_class::<PyNode>()?;
    m.add_class::<PyNodeEntry>()?;
    m.add_class::<PyNodeSet>()?;
    Ok(())
}

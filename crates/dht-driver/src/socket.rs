//! Dual-stack UDP set-up: an IPv4 and an IPv6 socket on the same port, made with socket2.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::{Config, Error};

/// Socket buffer asked for each UDP socket: room for the parts of several 60 KiB values arriving
/// at once (the kernel caps it at `net.core.rmem_max` / `wmem_max`). OpenDHT keeps the default
/// (≈ 208 KiB), which eight storers answering one get for a 60 KiB value overflow.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Binds one non-blocking UDP socket at `addr` with [`SOCKET_BUFFER`]-sized buffers (best effort).
/// An IPv6 socket is IPv6-only: IPv4 goes through its own socket.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
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
    // Best effort: the kernel caps these at its maxima.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A node's sockets: IPv4 and IPv6 on the same port where possible, both non-blocking.
#[derive(Debug)]
pub struct DualSocket {
    /// The IPv4 socket, if one was asked for.
    pub v4: Option<UdpSocket>,
    /// The IPv6 socket, if one was asked for and could be bound.
    pub v6: Option<UdpSocket>,
}

impl DualSocket {
    /// Binds the sockets `config` asks for ([`Config::port`], [`Config::bind4`],
    /// [`Config::bind6`]): IPv4 first; IPv6 on the same port, or on any port when the port was
    /// 0 and IPv4's is taken for IPv6 (as OpenDHT does). A host without IPv6 still runs on IPv4.
    pub fn bind(config: &Config) -> Result<DualSocket, Error> {
        let mut port = config.port;
        let mut v4 = None;
        if let Some(ip) = config.bind4 {
            let addr = SocketAddr::new(IpAddr::V4(ip), port);
            let s = bind_udp(addr).map_err(|source| Error::Bind { addr, source })?;
            port = s.local_addr().map_err(Error::Io)?.port();
            v4 = Some(s);
        }
        let mut v6 = None;
        if let Some(ip) = config.bind6 {
            let addr = SocketAddr::new(IpAddr::V6(ip), port);
            let bound = bind_udp(addr).or_else(|e| {
                if config.port == 0 {
                    bind_udp(SocketAddr::new(IpAddr::V6(ip), 0))
                } else {
                    Err(e)
                }
            });
            match bound {
                Ok(s) => v6 = Some(s),
                Err(_) if v4.is_some() => {}
                Err(source) => return Err(Error::Bind { addr, source }),
            }
        }
        if v4.is_none() && v6.is_none() {
            return Err(Error::NoSocket);
        }
        Ok(DualSocket { v4, v6 })
    }

    /// Whether both families are bound (the core's `Config::dual_stack`).
    pub fn is_dual_stack(&self) -> bool {
        self.v4.is_some() && self.v6.is_some()
    }

    /// The bound addresses, IPv4 first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

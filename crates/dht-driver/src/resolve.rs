//! Name resolution for bootstrap nodes: `host[:port]` specs to socket addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::Error;

/// Resolves `host:port`, `[v6]:port`, or a bare host name or address (port 4222) to every
/// address it names. It blocks while the system resolver works: from async code, run it where
/// blocking is allowed (e.g. `smol::unblock`, `tokio::task::spawn_blocking`).
///
/// ```
/// let addrs = dht_driver::resolve("127.0.0.1").unwrap();
/// assert_eq!(addrs, vec!["127.0.0.1:4222".parse().unwrap()]);
/// assert_eq!(dht_driver::resolve("[::1]:5000").unwrap()[0].port(), 5000);
/// assert!(dht_driver::resolve("no-such-host.invalid").is_err());
/// ```
pub fn resolve(spec: &str) -> Result<Vec<SocketAddr>, Error> {
    let fail = |reason: String| Error::Resolve {
        host: spec.to_string(),
        reason,
    };
    let with_port = if spec.parse::<SocketAddr>().is_ok() {
        spec.to_string()
    } else if let Ok(ip) = spec.parse::<IpAddr>() {
        // A bare address; IPv6 needs brackets to take a port.
        SocketAddr::new(ip, dht_proto::DEFAULT_PORT).to_string()
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

/// Resolves a host name or address and a port given apart (`("localhost", 4222)`), as
/// [`resolve`] does a spec; a failure names them as `host:port`. It blocks likewise.
pub fn resolve_host_port(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let fail = |reason: String| Error::Resolve {
        host: format!("{host}:{port}"),
        reason,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(fail("no addresses".into()));
    }
    Ok(addrs)
}

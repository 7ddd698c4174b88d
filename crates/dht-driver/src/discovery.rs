//! LAN peer discovery on real sockets, shared by every driver: binding the discovery port with
//! `SO_REUSEADDR` (so that OpenDHT nodes on the same host keep hearing), joining the IPv4 and
//! IPv6 groups, and carrying out what [`dht_proto::discovery::Discovery`] decides.
//!
//! A driver that runs discovery ([`crate::Config::discovery`]) binds [`DiscoverySockets`],
//! builds a [`LanDiscovery`] once its DHT sockets are bound, then on every turn: feeds each
//! datagram read from a discovery socket to [`LanDiscovery::datagram`], calls
//! [`LanDiscovery::tick`] (timers, status changes) and [`LanDiscovery::flush`] (sends, group
//! re-joins, bootstraps into the node), and wakes no later than [`LanDiscovery::poll_timeout`].
//! `docs/discovery.md` describes the protocol.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use dht_proto::discovery::{Discovery, GROUP_V4, GROUP_V6, Output, Target};
pub use dht_proto::discovery::{DiscoveryConfig, DiscoveryStats, PORT as DISCOVERY_PORT};
use dht_proto::wire::NodeInfo;
use dht_proto::{Family, Instant, Node, PerFamily, Status};

/// Binds one non-blocking discovery socket of `family` on `port` (normally
/// [`DISCOVERY_PORT`]) of every address, with `SO_REUSEADDR` as OpenDHT sets it (a socket
/// without it would take the port from every OpenDHT node on the host), IPv6-only for IPv6, and
/// joins the family's group on the interface the routing table picks. TTL and hop limit stay at
/// the system default of 1; loopback of our own multicasts stays on (the core ignores our own).
pub fn bind_discovery_socket(family: Family, port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, addr) = match family {
        Family::V4 => (
            Domain::IPV4,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ),
        Family::V6 => (
            Domain::IPV6,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ),
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if family == Family::V6 {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    let s: UdpSocket = s.into();
    join(&s, family)?;
    Ok(s)
}

/// Joins `family`'s group on `sock`.
fn join(sock: &UdpSocket, family: Family) -> io::Result<()> {
    match family {
        Family::V4 => sock.join_multicast_v4(&GROUP_V4, &Ipv4Addr::UNSPECIFIED),
        Family::V6 => sock.join_multicast_v6(&GROUP_V6, 0),
    }
}

/// Leaves and joins `family`'s group again (after a network change); errors are ignored, as the
/// next re-join tries again.
pub fn rejoin(sock: &UdpSocket, family: Family) {
    let _ = match family {
        Family::V4 => sock.leave_multicast_v4(&GROUP_V4, &Ipv4Addr::UNSPECIFIED),
        Family::V6 => sock.leave_multicast_v6(&GROUP_V6, 0),
    };
    let _ = join(sock, family);
}

/// The group address of `family`, port [`DISCOVERY_PORT`].
pub fn group(family: Family) -> SocketAddr {
    match family {
        Family::V4 => SocketAddr::new(IpAddr::V4(GROUP_V4), DISCOVERY_PORT),
        Family::V6 => SocketAddr::new(IpAddr::V6(GROUP_V6), DISCOVERY_PORT),
    }
}

/// A node's discovery sockets: one per family that has a DHT socket and could bind and join.
#[derive(Debug)]
pub struct DiscoverySockets {
    /// The IPv4 socket (port 8888, group 239.192.0.1).
    pub v4: Option<UdpSocket>,
    /// The IPv6 socket (port 8888, group ff08::101).
    pub v6: Option<UdpSocket>,
}

impl DiscoverySockets {
    /// Binds a socket for each family of `families` that is true, on `port`. A family that fails
    /// (no route to the group, no IPv6) is left out and logged; discovery then runs on the
    /// other. An error only when no family could be bound.
    pub fn bind(families: PerFamily<bool>, port: u16) -> io::Result<DiscoverySockets> {
        let mut last = None;
        let mut open = |f: Family| {
            if !families[f] {
                return None;
            }
            match bind_discovery_socket(f, port) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(family = ?f, error = %e, "peer discovery: cannot bind or join the group");
                    last = Some(e);
                    None
                }
            }
        };
        let v4 = open(Family::V4);
        let v6 = open(Family::V6);
        if v4.is_none() && v6.is_none() {
            return Err(last.unwrap_or_else(|| io::Error::other("no family to discover on")));
        }
        Ok(DiscoverySockets { v4, v6 })
    }

    /// Which families are bound.
    pub fn families(&self) -> PerFamily<bool> {
        PerFamily::new(self.v4.is_some(), self.v6.is_some())
    }
}

/// Discovery for one node, between its sockets and its core: the state machine plus the last
/// statuses seen. Socket-agnostic: the driver reads and writes its own sockets.
#[derive(Debug)]
pub struct LanDiscovery {
    machine: Discovery,
    status: PerFamily<Status>,
}

impl LanDiscovery {
    /// Starts discovery for `node`, announcing `dht_ports` (the DHT ports actually bound, for the
    /// families whose discovery socket is bound): the start-up query and announcement are queued
    /// for [`LanDiscovery::flush`].
    pub fn start(
        config: DiscoveryConfig,
        node: &Node,
        dht_ports: PerFamily<Option<u16>>,
        now: Instant,
    ) -> LanDiscovery {
        let mut machine = Discovery::new(config, node.node_id(), node.config().network);
        machine.start(now, dht_ports);
        LanDiscovery {
            machine,
            status: PerFamily::new(Status::Disconnected, Status::Disconnected),
        }
    }

    /// The ports to announce: the port of each DHT address whose family has a discovery socket.
    pub fn ports(dht_addrs: &[SocketAddr], sockets: &DiscoverySockets) -> PerFamily<Option<u16>> {
        let fams = sockets.families();
        let port = |f: Family| {
            dht_addrs
                .iter()
                .find(|a| Family::of(a) == f)
                .map(|a| a.port())
                .filter(|_| fams[f])
        };
        PerFamily::new(port(Family::V4), port(Family::V6))
    }

    /// A datagram read from a discovery socket.
    pub fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.machine.handle_datagram(now, from, data);
    }

    /// After the node's turn: hands its status changes and a due timer to the machine.
    pub fn tick(&mut self, now: Instant, node: &Node) {
        let status = PerFamily::new(node.status(Family::V4), node.status(Family::V6));
        if status != self.status {
            self.status = status;
            self.machine
                .handle_status(now, status[Family::V4], status[Family::V6]);
        }
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
        }
    }

    /// The network changed: re-join, query and announce now and a few times more.
    pub fn connectivity_changed(&mut self, now: Instant) {
        self.machine.connectivity_changed(now);
    }

    /// Carries out what the machine decided: `send(family, bytes, to)` for datagrams,
    /// `rejoin(family)` for group re-joins, and bootstraps straight into `node` (an unconfirmed
    /// routing-table entry, as OpenDHT's `insertNode`, which the node then confirms).
    pub fn flush(
        &mut self,
        now: Instant,
        node: &mut Node,
        mut send: impl FnMut(Family, &[u8], SocketAddr),
        mut rejoin: impl FnMut(Family),
    ) {
        while let Some(o) = self.machine.poll_output() {
            match o {
                Output::Send { family, to, data } => {
                    let to = match to {
                        Target::Group => group(family),
                        Target::Unicast(a) => a,
                    };
                    send(family, &data, to);
                }
                Output::Rejoin(family) => rejoin(family),
                Output::Bootstrap { id, addr } => {
                    tracing::debug!(%id, %addr, "peer discovery: found a node");
                    node.insert_node(now, NodeInfo { id, addr });
                }
            }
        }
    }

    /// When [`LanDiscovery::tick`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    /// What discovery has heard and done.
    pub fn stats(&self) -> DiscoveryStats {
        self.machine.stats()
    }
}

//! # dht-driver
//!
//! What every driver of [`dht_proto::Node`] shares, written once: `dht-mio` (a thread runner),
//! `dht-smol` (async, futures and streams), and whatever you build on another runtime (the REST
//! proxy, the Python and C bindings, or your own loop; `examples/tokio_node.rs` drives a node
//! from tokio with nothing but this crate).
//!
//! - [`Config`]: how to run a node (ports, addresses, the core's config, seed, bootstrap list).
//! - [`DualSocket`], [`bind_udp`], [`SOCKET_BUFFER`]: an IPv4 and an IPv6 UDP socket on one
//!   port, with large buffers; [`Setup`] binds them and builds the core.
//! - [`resolve`]: `host[:port]` bootstrap specs to addresses.
//! - [`Clock`], [`unix_now`]: `std::time` mapped to the core's [`dht_proto::Instant`].
//! - [`Ids`], [`GetId`], [`ListenId`]: ids handed out before the node sees a command, and value ids.
//! - [`PutMode`]: plain, signed or encrypted puts.
//! - [`Routes`]: events routed back to the callers that asked, whatever their sinks are.
//! - [`GetSummary`]: how a get ended (complete or not; how many of the closest nodes answered).
//! - [`Error`]: the errors every driver returns.
//! - [`DiscoverySockets`], [`LanDiscovery`]: LAN peer discovery (OpenDHT's `PeerDiscovery`),
//!   on when [`Config::discovery`] is set.
//!
//! ## The run loop
//!
//! A driver owns the sockets and the clock, and loops (`docs/runner.md`, "the run-loop
//! contract"): feed the core an input (a datagram, a due timer, a command), then drain
//! `poll_transmit` to the sockets and `poll_event` to the callers, and wait for the next input no
//! later than `poll_timeout`. Here, the smallest driver: blocking std sockets, two nodes on one
//! thread, a put on one and a get on the other.
//!
//! ```
//! use std::time::Duration;
//! use dht_driver::{Clock, Config, Routed, Routes, Setup};
//! use dht_proto::{InfoHash, PutOptions, value::{Query, Value}};
//!
//! let clock = Clock::new();
//! let config = Config { bind6: None, ..Config::loopback() };
//! let mut a = Setup::bind(config.clone(), &clock, &[]).unwrap();
//! let a_addr = a.sockets.local_addrs()[0];
//! let mut b = Setup::bind(config, &clock, &[a_addr]).unwrap();
//! let key = InfoHash::get("hello");
//! let now = clock.now();
//! a.node.put(now, key, Value::new(1, b"world".to_vec()), PutOptions::default()).unwrap();
//!
//! // The get's values collect in its sink, a Vec; puts and listens have none here.
//! let mut routes: Routes<Vec<Value>, (), ()> = Routes::new();
//! let mut got = None;
//! let mut asked = false;
//! let mut out = Vec::new();
//! let mut buf = vec![0u8; dht_proto::wire::MAX_DATAGRAM];
//! let end = std::time::Instant::now() + Duration::from_secs(20);
//! while got.is_none() && std::time::Instant::now() < end {
//!     for node in [&mut a, &mut b] {
//!         let now = clock.now();
//!         let sock = node.sockets.v4.as_ref().unwrap();
//!         // Inputs: every waiting datagram, then a due timer.
//!         while let Ok((len, from)) = sock.recv_from(&mut buf) {
//!             node.node.handle_datagram(clock.now(), from, &buf[..len]);
//!         }
//!         if node.node.poll_timeout().is_some_and(|t| t <= now) {
//!             node.node.handle_timeout(now);
//!         }
//!         // Outputs: drain both.
//!         while let Some(t) = node.node.poll_transmit(now, &mut out) {
//!             let _ = sock.send_to(&out[..t.len], t.destination);
//!         }
//!         while let Some(event) = node.node.poll_event() {
//!             match routes.route(event) {
//!                 Routed::Values { sink, values, .. } => sink.extend(values),
//!                 Routed::GetDone { sink, .. } => got = Some(sink),
//!                 _ => {}
//!             }
//!         }
//!     }
//!     // A command, once b is connected.
//!     if !asked && b.node.status(dht_proto::Family::V4) == dht_proto::Status::Connected {
//!         let op = b.node.get(clock.now(), key, Query::default()).unwrap();
//!         routes.add_get(b.ids.get_id(), op, Vec::new());
//!         asked = true;
//!     }
//!     // A real driver waits on its sockets until the earliest `poll_timeout`; this one naps.
//!     std::thread::sleep(Duration::from_millis(1));
//! }
//! assert_eq!(got.expect("the get ended in time")[0].data, b"world");
//! ```

mod clock;
mod config;
mod discovery;
mod error;
mod get;
mod ids;
mod put;
mod resolve;
mod routes;
mod setup;
mod socket;

pub use clock::{Clock, unix_now};
pub use config::Config;
pub use discovery::{
    DISCOVERY_PORT, DiscoveryConfig, DiscoverySockets, DiscoveryStats, LanDiscovery, bind_discovery_socket,
    group as discovery_group, rejoin as discovery_rejoin,
};
pub use error::Error;
pub use get::GetSummary;
pub use ids::{GetId, Ids, ListenId};
pub use put::PutMode;
pub use resolve::{resolve, resolve_host_port};
pub use routes::{Routed, Routes};
pub use setup::Setup;
pub use socket::{DualSocket, SOCKET_BUFFER, bind_udp};

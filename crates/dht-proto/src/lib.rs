//! # dht-proto
//!
//! The sans-IO core of an OpenDHT-compatible distributed hash table. It never touches a socket,
//! a clock or an OS random source: time comes in as an [`Instant`] with every input, and
//! randomness from generators the caller seeds, so the same inputs always give the same outputs.
//!
//! - [`Node`]: the DHT node as a pure state machine (routing tables, searches, storage, listens);
//! - [`InfoHash`]: 160-bit ids and keys, the XOR metric, hex and SHA-1 key hashing;
//! - [`wire`]: OpenDHT's UDP messages as typed [`wire::Message`]s, with [`wire::decode`] (which
//!   never panics on any input) and [`wire::encode`], plus value fragmentation and a bounded
//!   [`wire::fragment::Reassembler`];
//! - [`value`]: [`value::Value`], its msgpack form and signed body, [`value::ValueType`] with
//!   OpenDHT's default types, and [`value::Query`] (`SELECT … WHERE …`).
//!
//! ## The run loop
//!
//! A driver owns the sockets and the clock. After every input (a datagram, a timer, a command)
//! it drains [`Node::poll_transmit`] and [`Node::poll_event`], then sleeps until
//! [`Node::poll_timeout`] or the next datagram. `docs/architecture.md` states the contract.
//! Here two nodes talk through a vector standing in for the network, on a virtual clock:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use dht_proto::{Config, Event, InfoHash, Instant, Node, PutOptions};
//! use dht_proto::value::{Query, Value};
//!
//! let addrs: [SocketAddr; 2] = ["10.0.0.1:4222".parse().unwrap(), "10.0.0.2:4222".parse().unwrap()];
//! let mut nodes = [
//!     Node::new(Config::default(), [1; 32], Instant::ZERO),
//!     Node::new(Config::default(), [2; 32], Instant::ZERO),
//! ];
//! let mut now = Instant::ZERO;
//! let mut events = Vec::new();
//! // What every driver does: drain outputs, deliver datagrams, fire due timers.
//! fn run(nodes: &mut [Node; 2], addrs: &[SocketAddr; 2], now: &mut Instant, events: &mut Vec<Event>, until: Instant) {
//!     let mut buf = Vec::new();
//!     loop {
//!         let mut in_flight = Vec::new();
//!         for (i, n) in nodes.iter_mut().enumerate() {
//!             while let Some(t) = n.poll_transmit(*now, &mut buf) {
//!                 let to = addrs.iter().position(|a| *a == t.destination).unwrap();
//!                 in_flight.push((to, addrs[i], buf[..t.len].to_vec()));
//!             }
//!             events.extend(std::iter::from_fn(|| n.poll_event()));
//!         }
//!         if !in_flight.is_empty() {
//!             for (to, from, data) in in_flight {
//!                 nodes[to].handle_datagram(*now, from, &data);
//!             }
//!             continue;
//!         }
//!         // Nothing to deliver: jump to the earliest timer.
//!         match nodes.iter().filter_map(|n| n.poll_timeout()).min() {
//!             Some(t) if t <= until => {
//!                 *now = t.max(*now);
//!                 nodes.iter_mut().for_each(|n| n.handle_timeout(*now));
//!             }
//!             _ => return,
//!         }
//!     }
//! }
//! let ten_seconds = Duration::from_secs(10);
//!
//! nodes[1].bootstrap(now, addrs[0]);
//! let until = now + ten_seconds;
//! run(&mut nodes, &addrs, &mut now, &mut events, until);
//!
//! let key = InfoHash::get("greeting");
//! let put = nodes[0].put(now, key, Value::new(0, b"hello".to_vec()), PutOptions::default()).unwrap();
//! let until = now + ten_seconds;
//! run(&mut nodes, &addrs, &mut now, &mut events, until);
//! assert!(events.iter().any(|e| matches!(e, Event::PutDone { op, outcome, .. } if *op == put.op && outcome.ok())));
//!
//! let get = nodes[1].get(now, key, Query::default()).unwrap();
//! let until = now + ten_seconds;
//! run(&mut nodes, &addrs, &mut now, &mut events, until);
//! let found: Vec<&Value> = events
//!     .iter()
//!     .filter_map(|e| match e {
//!         Event::Values { op, values, .. } if *op == get => Some(values),
//!         _ => None,
//!     })
//!     .flatten()
//!     .collect();
//! assert_eq!(found[0].data, b"hello");
//! assert!(events.iter().any(|e| matches!(e, Event::GetDone { op, ok: true, .. } if *op == get)));
//! ```
//!
//! ## Example: answer a ping by hand with the codec
//! ```
//! use dht_proto::InfoHash;
//! use dht_proto::wire::{self, Body, Message, Reply, RequestKind};
//!
//! let me = InfoHash::get("node A");
//! // A ping as a C++ OpenDHT node sends it.
//! let datagram = Message::request(0x12345678, InfoHash::get("node B"), RequestKind::Ping).encode_to_vec();
//!
//! let msg = wire::decode(&datagram).expect("valid ping");
//! let Body::Request(req) = &msg.body else { unreachable!() };
//! assert_eq!(req.kind, RequestKind::Ping);
//!
//! let pong = Message::reply(msg.tid, Reply { id: me, addr: Some("192.0.2.7".parse().unwrap()), ..Reply::default() });
//! let mut out = Vec::new();
//! wire::encode(&pong, &mut out);
//! assert_eq!(wire::decode(&out).unwrap(), pong);
//!
//! // Garbage is a typed error, never a panic.
//! assert!(wire::decode(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
//! ```

#![no_std]
#![deny(rustdoc::broken_intra_doc_links)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

/// The `alloc` types every module uses, which `no_std` leaves out of the language prelude.
mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::format;
    pub(crate) use alloc::string::String;
    pub(crate) use alloc::vec;
    pub(crate) use alloc::vec::Vec;
}

mod amplify;
mod bufpool;
mod compact;
mod config;
pub mod crypto;
pub mod discovery;
mod error;
mod event;
mod family;
mod infohash;
mod msgpack;
mod node;
mod routing;
mod rpc;
mod search;
pub mod state;
mod stats;
mod storage;
mod subnet;
mod time;
pub mod value;
pub mod wire;

pub use config::Config;
pub use error::CommandError;
pub use event::{Event, ListenToken, OpId, PutOutcome, Transmit};
pub use family::{Family, PerFamily, Status};
pub use infohash::{HASH_LEN, InfoHash, ParseHashError};
pub use node::{ExportedValue, Node, PutHandle, PutOptions, TimerReason, public_key_location};
pub use routing::BucketSummary;
pub use stats::{DropReason, MessageKind, PerKind, PerReason, Stats};
pub use time::Instant;

/// OpenDHT's default UDP port.
pub const DEFAULT_PORT: u16 = 4222;

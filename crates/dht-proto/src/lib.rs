//! # dht-proto
//!
//! The sans-IO core of an OpenDHT-compatible distributed hash table. It never touches a socket,
//! a clock or an OS random source: time comes in as an [`Instant`] with every input, and
//! randomness from generators the caller seeds, so the same inputs always give the same outputs.
//!
//! This crate currently provides the stateless bottom of the core:
//!
//! - [`InfoHash`]: 160-bit ids and keys, the XOR metric, hex and SHA-1 key hashing;
//! - [`wire`]: OpenDHT's UDP messages as typed [`wire::Message`]s, with [`wire::decode`] (which
//!   never panics on any input) and [`wire::encode`], plus value fragmentation and a bounded
//!   [`wire::fragment::Reassembler`];
//! - [`value`]: [`value::Value`], its msgpack form and signed body, [`value::ValueType`] with
//!   OpenDHT's default types, and [`value::Query`] (`SELECT … WHERE …`).
//!
//! ## Example: answer a ping
//!
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

#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod event;
mod infohash;
mod node;
mod routing;
mod rpc;
mod search;
mod storage;
mod time;
pub mod value;
pub mod wire;

pub use config::Config;
pub use event::{
    CommandError, DropReason, Event, Family, ListenToken, MessageKind, OpId, PutOutcome, Stats, Status,
    Transmit,
};
pub use infohash::{HASH_LEN, InfoHash, ParseHashError};
pub use node::{ExportedValue, Node, PutHandle, PutOptions};
pub use time::Instant;

/// OpenDHT's default UDP port.
pub const DEFAULT_PORT: u16 = 4222;

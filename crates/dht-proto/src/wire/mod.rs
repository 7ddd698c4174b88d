//! The stateless codec: OpenDHT datagrams to typed [`Message`]s and back.
//!
//! [`decode`] follows the receiver rules of OpenDHT's `ParsedMessage` (classification by key
//! presence, unknown keys ignored, a bad `id` or `sa` rejects the message), and [`encode`] writes
//! what a C++ node sends, key for key. Value payloads too large to go inline are split by
//! [`fragment`] and put back together by its [`Reassembler`](fragment::Reassembler).
//!
//! ```
//! use dht_proto::InfoHash;
//! use dht_proto::wire::{self, Body, Message, Request, RequestKind};
//! let ping = Message::request(7, InfoHash::get("me"), RequestKind::Ping);
//! let mut buf = Vec::new();
//! wire::encode(&ping, &mut buf);
//! assert_eq!(wire::decode(&buf).unwrap(), ping);
//! assert!(wire::decode(&buf[..buf.len() - 1]).is_err());
//! ```

pub mod fragment;
mod message;

mod node_info;

pub use crate::msgpack::{DecodeError, MAX_DATAGRAM, MAX_DEPTH};
pub use message::{
    Body, ErrorCode, ErrorReply, FieldRows, LegacyUpdate, ListenRequest, Message, NetworkId, NodeList,
    PutRequest, Reply, Request, RequestKind, Tid, Token, UpdatePayload, UpdateRequest, ValueList, ValuePart,
    Values, Want, decode, encode,
};
pub use node_info::{NODE4_LEN, NODE6_LEN, NodeInfo};

#[cfg(test)]
mod tests;

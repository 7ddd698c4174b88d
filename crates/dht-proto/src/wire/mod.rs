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
pub(crate) mod msgpack;
mod node_info;

pub use message::{
    Body, ErrorCode, ErrorReply, FieldRows, LegacyUpdate, Message, NetworkId, Reply, Request, RequestKind,
    Tid, Token, UpdatePayload, ValuePart, Values, Want, decode, encode,
};
pub use msgpack::MAX_DEPTH;
pub use node_info::{NODE4_LEN, NODE6_LEN, NodeInfo};

/// The largest datagram OpenDHT receives (its receive buffer).
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Why a datagram is not a valid message. Every way bad input can be wrong has a variant; none
/// of them is the caller's fault, and a node drops such datagrams and counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a msgpack item.
    #[error("truncated")]
    Truncated,
    /// The datagram is larger than any OpenDHT node sends.
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
    /// A field had the wrong msgpack type.
    #[error("{field}: expected {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A declared length or element count exceeds the bytes that remain.
    #[error("{field}: declared length {len} exceeds the {remaining} bytes left")]
    LengthTooLarge {
        /// Field name.
        field: &'static str,
        /// Declared length or count.
        len: u64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// An integer outside the range of its field.
    #[error("{field}: integer out of range")]
    IntegerOutOfRange {
        /// Field name.
        field: &'static str,
    },
    /// A node id or hash that is not 20 bytes.
    #[error("{field}: expected 20 bytes, got {len}")]
    BadIdLength {
        /// Field name.
        field: &'static str,
        /// Length received.
        len: usize,
    },
    /// A compact node list whose length is not a multiple of its entry size.
    #[error("{field}: length {len} is not a multiple of {entry}")]
    BadNodeListLength {
        /// `n4` or `n6`.
        field: &'static str,
        /// Length received.
        len: usize,
        /// 26 or 38.
        entry: usize,
    },
    /// A request name we do not know, or a `y` that is not `q` on a request.
    #[error("unknown message kind")]
    UnknownKind,
    /// None of `a`, `r`, `e`, `u` (nor `p`) is present.
    #[error("message has no body")]
    NoBody,
    /// A required field is missing.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// A query that OpenDHT would refuse to decode.
    #[error("query: {0}")]
    BadQuery(&'static str),
    /// A value or field selection that breaks a rule of the value model.
    #[error("value: {0}")]
    BadValue(&'static str),
}

#[cfg(test)]
mod tests;

//! A node's state as bytes, for drivers that persist it across restarts (`dhtnode --persist`):
//! the nodes of [`Node::export_nodes`](crate::Node::export_nodes) and the values of
//! [`Node::export_values`](crate::Node::export_values).
//!
//! Format (msgpack): `[1, n4 bytes, n6 bytes, [[key bin20, value, remaining ms or nil], ...]]`,
//! where `n4`/`n6` are compact node lists as on the wire. Decoding is bounded like every parser
//! here: a corrupt or hostile file gives a [`DecodeError`], never a panic.
//!
//! ```
//! use std::time::Duration;
//! use dht_proto::{ExportedValue, InfoHash, state, value::Value};
//!
//! let values = vec![ExportedValue {
//!     key: InfoHash::get("k"),
//!     value: Value::new(1, b"v".to_vec()),
//!     remaining: Some(Duration::from_secs(60)),
//! }];
//! let bytes = state::encode(&[], &values);
//! let (nodes, back) = state::decode(&bytes).unwrap();
//! assert!(nodes.is_empty());
//! assert_eq!(back, values);
//! ```

use crate::prelude::*;
use core::time::Duration;

use crate::node::ExportedValue;
use crate::value::Value;
use rmp::Marker;

use crate::msgpack::{Reader, write};
use crate::wire::{DecodeError, NodeInfo};
use crate::{HASH_LEN, InfoHash};

const VERSION: u64 = 1;

/// Encodes nodes and values.
pub fn encode(nodes: &[NodeInfo], values: &[ExportedValue]) -> Vec<u8> {
    let mut out = Vec::new();
    write::array(&mut out, 4);
    write::uint(&mut out, VERSION);
    for v6 in [false, true] {
        let mut list = Vec::new();
        NodeInfo::write_list(nodes, v6, &mut list);
        write::bin(&mut out, &list);
    }
    write::array(&mut out, u32::try_from(values.len()).unwrap_or(u32::MAX));
    for e in values.iter().take(u32::MAX as usize) {
        write::array(&mut out, 3);
        write::bin(&mut out, e.key.as_bytes());
        e.value.encode(&mut out);
        match e.remaining {
            Some(d) => write::uint(&mut out, u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => out.push(0xc0),
        }
    }
    out
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<(Vec<NodeInfo>, Vec<ExportedValue>), DecodeError> {
    let mut r = Reader::new(bytes);
    if r.array_len("state")? != 4 {
        return Err(DecodeError::BadValue("state: expected 4 fields"));
    }
    if r.uint("state version")? != VERSION {
        return Err(DecodeError::BadValue("state: unknown version"));
    }
    let mut nodes = NodeInfo::parse_v4(r.bin("n4")?)?;
    nodes.extend(NodeInfo::parse_v6(r.bin("n6")?)?);
    let n = r.array_len("values")?;
    let mut values = Vec::new();
    for _ in 0..n {
        if r.array_len("stored value")? != 3 {
            return Err(DecodeError::BadValue("state: a stored value has 3 fields"));
        }
        let key = r.bin("key")?;
        if key.len() != HASH_LEN {
            return Err(DecodeError::BadValue("state: key is not 20 bytes"));
        }
        let key = InfoHash::from_slice(key).ok_or(DecodeError::BadValue("state: key"))?;
        let value = Value::read(&mut r)?;
        let remaining = if r.peek()? == Marker::Null {
            r.skip()?;
            None
        } else {
            Some(Duration::from_millis(r.uint("remaining")?))
        };
        values.push(ExportedValue {
            key,
            value,
            remaining,
        });
    }
    Ok((nodes, values))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_an_error() {
        let nodes = vec![
            NodeInfo {
                id: InfoHash::get("a"),
                addr: "127.0.0.1:4222".parse().unwrap(),
            },
            NodeInfo {
                id: InfoHash::get("b"),
                addr: "[::1]:4223".parse().unwrap(),
            },
        ];
        let values = vec![
            ExportedValue {
                key: InfoHash::get("k"),
                value: Value::new(9, vec![1, 2, 3]),
                remaining: Some(Duration::from_millis(1500)),
            },
            ExportedValue {
                key: InfoHash::get("p"),
                value: Value::new(10, b"permanent".to_vec()),
                remaining: None,
            },
        ];
        let bytes = encode(&nodes, &values);
        assert_eq!(decode(&bytes).unwrap(), (nodes, values));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(b"not a state file").is_err());
    }
}

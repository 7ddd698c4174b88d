//! Compact node info: the `n4`/`n6` lists of find and get replies.
//!
//! IPv4 entry: id (20) ‖ address (4) ‖ port (2, big-endian) = 26 bytes.
//! IPv6 entry: id (20) ‖ address (16) ‖ port (2, big-endian) = 38 bytes.

use crate::prelude::*;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::DecodeError;
use crate::InfoHash;

/// Bytes per IPv4 entry.
pub const NODE4_LEN: usize = 26;
/// Bytes per IPv6 entry.
pub const NODE6_LEN: usize = 38;

/// A node as carried in a reply: its id and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeInfo {
    /// Node id.
    pub id: InfoHash,
    /// UDP address.
    pub addr: SocketAddr,
}

impl NodeInfo {
    /// Parses an `n4` list.
    pub(crate) fn parse_v4(raw: &[u8]) -> Result<Vec<NodeInfo>, DecodeError> {
        let mut out = super::NodeList::new();
        Self::parse_v4_into(raw, &mut out)?;
        Ok(out.into_vec())
    }

    /// Parses an `n6` list.
    pub(crate) fn parse_v6(raw: &[u8]) -> Result<Vec<NodeInfo>, DecodeError> {
        let mut out = super::NodeList::new();
        Self::parse_v6_into(raw, &mut out)?;
        Ok(out.into_vec())
    }

    /// Parses an `n4` list into `out`, replacing what it held; its capacity is the exact count
    /// (bounded by the input's length), inline for up to 8. Inlined, so the list is not returned through memory.
    #[inline]
    pub(crate) fn parse_v4_into(raw: &[u8], out: &mut super::NodeList) -> Result<(), DecodeError> {
        if !raw.len().is_multiple_of(NODE4_LEN) {
            return Err(DecodeError::BadNodeListLength {
                field: "n4",
                len: raw.len(),
                entry: NODE4_LEN,
            });
        }
        // Filled in place, field by field: building each `NodeInfo` on the stack and moving it
        // into the vector (as `extend` does) costs store-forwarding stalls per entry.
        let blank = NodeInfo {
            id: InfoHash::ZERO,
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        };
        out.clear();
        out.reserve_exact(raw.len() / NODE4_LEN);
        out.resize(raw.len() / NODE4_LEN, blank);
        for (n, c) in out.iter_mut().zip(raw.chunks_exact(NODE4_LEN)) {
            let Some((id, rest)) = c.split_first_chunk::<20>() else {
                continue;
            };
            let Some((ip, port)) = rest.split_first_chunk::<4>() else {
                continue;
            };
            n.id = InfoHash(*id);
            if let SocketAddr::V4(a) = &mut n.addr {
                a.set_ip(Ipv4Addr::from(*ip));
                a.set_port(be16(port));
            }
        }
        Ok(())
    }

    /// Parses an `n6` list into `out`, as [`NodeInfo::parse_v4_into`] does.
    #[inline]
    pub(crate) fn parse_v6_into(raw: &[u8], out: &mut super::NodeList) -> Result<(), DecodeError> {
        if !raw.len().is_multiple_of(NODE6_LEN) {
            return Err(DecodeError::BadNodeListLength {
                field: "n6",
                len: raw.len(),
                entry: NODE6_LEN,
            });
        }
        // Filled in place, field by field: building each `NodeInfo` on the stack and moving it
        // into the vector (as `extend` does) costs store-forwarding stalls per entry.
        let blank = NodeInfo {
            id: InfoHash::ZERO,
            addr: SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
        };
        out.clear();
        out.reserve_exact(raw.len() / NODE6_LEN);
        out.resize(raw.len() / NODE6_LEN, blank);
        for (n, c) in out.iter_mut().zip(raw.chunks_exact(NODE6_LEN)) {
            let Some((id, rest)) = c.split_first_chunk::<20>() else {
                continue;
            };
            let Some((ip, port)) = rest.split_first_chunk::<16>() else {
                continue;
            };
            n.id = InfoHash(*id);
            if let SocketAddr::V6(a) = &mut n.addr {
                a.set_ip(Ipv6Addr::from(*ip));
                a.set_port(be16(port));
            }
        }
        Ok(())
    }

    /// Appends the compact form of every node of the given family (`v6` false: IPv4) to `out`.
    pub(crate) fn write_list(nodes: &[NodeInfo], v6: bool, out: &mut Vec<u8>) {
        for n in nodes {
            match (n.addr, v6) {
                (SocketAddr::V4(a), false) => {
                    out.extend_from_slice(n.id.as_bytes());
                    out.extend_from_slice(&a.ip().octets());
                    out.extend_from_slice(&a.port().to_be_bytes());
                }
                (SocketAddr::V6(a), true) => {
                    out.extend_from_slice(n.id.as_bytes());
                    out.extend_from_slice(&a.ip().octets());
                    out.extend_from_slice(&a.port().to_be_bytes());
                }
                _ => {}
            }
        }
    }
}

/// The big-endian port at the end of an entry (exactly 2 bytes by construction).
fn be16(s: &[u8]) -> u16 {
    match s {
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_reject_bad_lengths() {
        let nodes = vec![
            NodeInfo {
                id: InfoHash::get("a"),
                addr: "192.0.2.1:4222".parse().unwrap(),
            },
            NodeInfo {
                id: InfoHash::get("b"),
                addr: "[2001:db8::1]:5000".parse().unwrap(),
            },
        ];
        let mut n4 = Vec::new();
        NodeInfo::write_list(&nodes, false, &mut n4);
        assert_eq!(n4.len(), NODE4_LEN);
        assert_eq!(&n4[24..], &[0x10, 0x7e]);
        let mut n6 = Vec::new();
        NodeInfo::write_list(&nodes, true, &mut n6);
        assert_eq!(n6.len(), NODE6_LEN);
        assert_eq!(NodeInfo::parse_v4(&n4).unwrap(), nodes[..1]);
        assert_eq!(NodeInfo::parse_v6(&n6).unwrap(), nodes[1..]);
        assert!(NodeInfo::parse_v4(&n4[..25]).is_err());
        assert!(NodeInfo::parse_v6(&n6[..37]).is_err());
    }
}

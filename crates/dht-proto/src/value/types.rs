//! Value types: how long a value of each type lives and which values a storing node accepts.

use crate::prelude::*;
use alloc::borrow::Cow;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use super::{MAX_VALUE_SIZE, Value};
use crate::InfoHash;
use crate::msgpack::{Reader, write};

/// The numeric id of a [`ValueType`], as carried in a value's body.
pub type ValueTypeId = u16;

/// What a storing node checks (and may rewrite) before it stores a new value of a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorePolicy {
    /// Accept values whose [`Value::size`] is at most 64 KiB.
    Default,
    /// Type 1: like `Default`, but refuse a `[service, data]` payload with an empty service.
    DhtMessage,
    /// Type 2: the payload is a raw `sockaddr`; the storer replaces the address with the sender's
    /// as it sees it, keeping the announced port, and refuses port 0.
    ServiceAnnouncement,
    /// Type 8: certificates, stored only under their key's id (checked by the secure layer).
    Certificate,
}

/// A value type: id, name, lifetime and store policy (OpenDHT's `ValueType`). Edits of an
/// existing value are refused unless identical, as OpenDHT's default edit policy does; signed
/// types relax that in the secure layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    /// The type id.
    pub id: ValueTypeId,
    /// A human-readable name.
    pub name: Cow<'static, str>,
    /// How long a stored value of this type lives after its creation or last refresh.
    pub expiration: Duration,
    /// What a storing node checks before storing.
    pub store_policy: StorePolicy,
}

const MIN: u64 = 60;

static DEFAULT_TYPES: [ValueType; 7] = [
    ValueType::USER_DATA,
    ValueType::builtin(1, "DHT message", 5 * MIN, StorePolicy::DhtMessage),
    ValueType::builtin(
        2,
        "Internet Service Announcement",
        15 * MIN,
        StorePolicy::ServiceAnnouncement,
    ),
    ValueType::builtin(3, "IM message", 5 * MIN, StorePolicy::Default),
    ValueType::builtin(
        4,
        "Certificate trust request",
        7 * 24 * 60 * MIN,
        StorePolicy::Default,
    ),
    ValueType::builtin(5, "ICE candidates", MIN, StorePolicy::Default),
    ValueType::builtin(8, "Certificate", 7 * 24 * 60 * MIN, StorePolicy::Certificate),
];

impl ValueType {
    /// Type 0, the fallback for every unregistered id: 10 minutes.
    pub const USER_DATA: ValueType = ValueType::builtin(0, "User Data", 10 * MIN, StorePolicy::Default);

    /// OpenDHT's default types (ids 0, 1, 2, 3, 4, 5 and 8).
    pub fn defaults() -> &'static [ValueType] {
        &DEFAULT_TYPES
    }

    /// The default type for `id`, falling back to [`ValueType::USER_DATA`] as OpenDHT does.
    pub fn default_for(id: ValueTypeId) -> &'static ValueType {
        DEFAULT_TYPES
            .iter()
            .find(|t| t.id == id)
            .unwrap_or(&DEFAULT_TYPES[0])
    }

    const fn builtin(id: ValueTypeId, name: &'static str, secs: u64, store_policy: StorePolicy) -> ValueType {
        ValueType {
            id,
            name: Cow::Borrowed(name),
            expiration: Duration::from_secs(secs),
            store_policy,
        }
    }

    /// A user type with the default store policy.
    pub fn new(id: ValueTypeId, name: impl Into<Cow<'static, str>>, expiration: Duration) -> ValueType {
        ValueType {
            id,
            name: name.into(),
            expiration,
            store_policy: StorePolicy::Default,
        }
    }

    /// Applies the store policy to a new value put at `key` by `from`. Returns the value to store
    /// (possibly rewritten), or `None` when the value is refused.
    pub fn check_store(&self, _key: &InfoHash, value: Value, from: Option<SocketAddr>) -> Option<Value> {
        if value.size() > MAX_VALUE_SIZE {
            return None;
        }
        match self.store_policy {
            StorePolicy::Default | StorePolicy::Certificate => Some(value),
            StorePolicy::DhtMessage => {
                let mut r = Reader::new(&value.data);
                let empty_service = r.array_len("service").is_ok_and(|n| n >= 1)
                    && r.str_bytes("service").is_ok_and(|s| s.is_empty());
                (!empty_service).then_some(value)
            }
            StorePolicy::ServiceAnnouncement => {
                let port = sockaddr_port(&service_sockaddr(&value.data)?)?;
                if port == 0 {
                    return None;
                }
                match from {
                    Some(from) => {
                        let mut v = value;
                        let mut out = Vec::new();
                        write::bin(&mut out, &encode_sockaddr(SocketAddr::new(from.ip(), port)));
                        v.data = out;
                        Some(v)
                    }
                    None => Some(value),
                }
            }
        }
    }
}

/// The raw `sockaddr` inside a type-2 payload (a msgpack bin).
fn service_sockaddr(data: &[u8]) -> Option<Vec<u8>> {
    Reader::new(data).bin("sockaddr").ok().map(<[u8]>::to_vec)
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The port of a Linux `sockaddr_in`/`sockaddr_in6` (family in host order, port big-endian).
fn sockaddr_port(raw: &[u8]) -> Option<u16> {
    match raw {
        [_, _, p0, p1, ..] if raw.len() >= 16 => Some(u16::from_be_bytes([*p0, *p1])),
        _ => None,
    }
}

/// Linux's `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes) for `addr`, family in
/// little-endian host order as OpenDHT writes it on x86 and ARM.
pub fn encode_sockaddr(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&AF_INET.to_le_bytes());
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&[0; 8]);
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&AF_INET6.to_le_bytes());
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&[0; 4]);
        }
    }
    out
}

/// Parses a Linux `sockaddr_in`/`sockaddr_in6` as written by [`encode_sockaddr`].
pub fn decode_sockaddr(raw: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_le_bytes([*raw.first()?, *raw.get(1)?]);
    let port = u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]);
    match family {
        AF_INET => {
            let ip: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        AF_INET6 => {
            let ip: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_opendht() {
        assert_eq!(ValueType::default_for(0).expiration, Duration::from_secs(600));
        assert_eq!(ValueType::default_for(1).expiration, Duration::from_secs(300));
        assert_eq!(ValueType::default_for(2).expiration, Duration::from_secs(900));
        assert_eq!(ValueType::default_for(5).expiration, Duration::from_secs(60));
        assert_eq!(
            ValueType::default_for(8).expiration,
            Duration::from_secs(7 * 86400)
        );
        // Unregistered ids fall back to user data.
        assert_eq!(ValueType::default_for(77).id, 0);
    }

    #[test]
    fn default_store_policy_caps_size() {
        let t = ValueType::default_for(0);
        assert!(
            t.check_store(&InfoHash::ZERO, Value::new(1, vec![0; MAX_VALUE_SIZE]), None)
                .is_some()
        );
        assert!(
            t.check_store(&InfoHash::ZERO, Value::new(1, vec![0; MAX_VALUE_SIZE + 1]), None)
                .is_none()
        );
    }

    #[test]
    fn dht_message_refuses_empty_service() {
        let t = ValueType::default_for(1);
        let mut data = Vec::new();
        write::array(&mut data, 2);
        write::str(&mut data, "");
        write::bin(&mut data, b"x");
        let mut v = Value::new(1, data);
        v.value_type = 1;
        assert!(t.check_store(&InfoHash::ZERO, v.clone(), None).is_none());
        let mut ok = Vec::new();
        write::array(&mut ok, 2);
        write::str(&mut ok, "svc");
        write::bin(&mut ok, b"x");
        v.data = ok;
        assert!(t.check_store(&InfoHash::ZERO, v, None).is_some());
    }

    #[test]
    fn service_announcement_is_rewritten_to_the_sender_address() {
        let t = ValueType::default_for(2);
        let announced: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut data = Vec::new();
        write::bin(&mut data, &encode_sockaddr(announced));
        let v = Value {
            id: 1,
            value_type: 2,
            data,
            ..Value::default()
        };
        let from: SocketAddr = "192.0.2.9:4222".parse().unwrap();
        let stored = t.check_store(&InfoHash::ZERO, v, Some(from)).unwrap();
        let raw = service_sockaddr(&stored.data).unwrap();
        assert_eq!(decode_sockaddr(&raw), Some("192.0.2.9:5000".parse().unwrap()));

        let mut zero = Vec::new();
        write::bin(&mut zero, &encode_sockaddr("[::1]:0".parse().unwrap()));
        let v = Value {
            id: 1,
            value_type: 2,
            data: zero,
            ..Value::default()
        };
        assert!(t.check_store(&InfoHash::ZERO, v, Some(from)).is_none());
    }
}

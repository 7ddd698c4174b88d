//! Subnets, for the Sybil limits: an IPv4 /24 or an IPv6 /64 is one subnet, as one operator
//! can hold every address of one cheaply. Loopback addresses are in none: a test network on
//! one machine (every node on 127.0.0.1 or ::1) is not limited.

use core::net::IpAddr;

/// The subnet of `ip` (IPv4 /24, IPv6 /64), as one number; `None` for loopback addresses,
/// which no limit applies to.
pub(crate) fn subnet_of(ip: &IpAddr) -> Option<u128> {
    if ip.is_loopback() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4) >> 8),
        IpAddr::V6(v6) => (u128::from(*v6) >> 64) | (1 << 127),
    })
}

/// Whether `ip` is in the same limited subnet as `other`.
pub(crate) fn same_subnet(ip: &IpAddr, other: &IpAddr) -> bool {
    match (subnet_of(ip), subnet_of(other)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
/// Keeps, in order, the items whose subnet (through `ip`) has not yet had `limit` items before
/// them; `None` keeps all.
pub(crate) fn diverse<T>(items: &mut alloc::vec::Vec<T>, limit: Option<usize>, ip: impl Fn(&T) -> IpAddr) {
    let Some(limit) = limit else { return };
    let mut seen: alloc::collections::BTreeMap<u128, usize> = alloc::collections::BTreeMap::new();
    items.retain(|t| match subnet_of(&ip(t)) {
        None => true,
        Some(s) => {
            let c = seen.entry(s).or_insert(0);
            *c += 1;
            *c <= limit
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_24_and_ipv6_64_are_one_subnet_and_loopback_none() {
        assert!(same_subnet(&ip("198.51.100.1"), &ip("198.51.100.254")));
        assert!(!same_subnet(&ip("198.51.100.1"), &ip("198.51.101.1")));
        assert!(same_subnet(&ip("2001:db8::1"), &ip("2001:db8::ffff:1")));
        assert!(!same_subnet(&ip("2001:db8::1"), &ip("2001:db8:0:1::1")));
        assert!(!same_subnet(&ip("10.0.0.1"), &ip("2001:db8::1")));
        assert_eq!(subnet_of(&ip("127.0.0.1")), None);
        assert_eq!(subnet_of(&ip("::1")), None);
        assert!(!same_subnet(&ip("127.0.0.1"), &ip("127.0.0.2")));
    }

    #[test]
    fn diverse_keeps_the_first_of_each_subnet() {
        let mut v = vec![
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.1.1"),
            ip("10.0.0.3"),
            ip("127.0.0.1"),
            ip("127.0.0.2"),
            ip("127.0.0.3"),
        ];
        diverse(&mut v, Some(2), |a| *a);
        assert_eq!(
            v,
            [
                ip("10.0.0.1"),
                ip("10.0.0.2"),
                ip("10.0.1.1"),
                ip("127.0.0.1"),
                ip("127.0.0.2"),
                ip("127.0.0.3")
            ]
        );
        let mut w = vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")];
        diverse(&mut w, None, |a| *a);
        assert_eq!(w.len(), 3);
    }
}

//! Address families, and values kept once per family.

use core::net::{IpAddr, SocketAddr};

/// An address family. Routing tables, searches and statuses are kept per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        }
    }

    /// The family of `ip`.
    pub fn of_ip(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Connectivity of one family (OpenDHT's `NodeStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No node known, no bootstrap under way.
    Disconnected,
    /// Nodes known but none confirmed yet, or a bootstrap ping is pending.
    Connecting,
    /// At least one good node in the routing table.
    Connected,
}

/// One `T` per family, indexed by [`Family`] (no index can be out of range).
///
/// ```
/// use dht_proto::{Family, PerFamily};
///
/// let mut nodes = PerFamily::new(3, 0);
/// *nodes.get_mut(Family::V6) += 2;
/// assert_eq!(nodes[Family::V6], 2);
/// assert_eq!(nodes.iter().sum::<i32>(), 5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerFamily<T> {
    /// The IPv4 value.
    pub v4: T,
    /// The IPv6 value.
    pub v6: T,
}

impl<T> PerFamily<T> {
    /// The IPv4 and IPv6 values.
    pub const fn new(v4: T, v6: T) -> PerFamily<T> {
        PerFamily { v4, v6 }
    }

    /// The value of `family`.
    pub fn get(&self, family: Family) -> &T {
        &self[family]
    }

    /// The value of `family`, to change.
    pub fn get_mut(&mut self, family: Family) -> &mut T {
        &mut self[family]
    }

    /// Both values, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.v4, &self.v6].into_iter()
    }

    /// Each family with its value, IPv4 first.
    pub fn pairs(&self) -> impl Iterator<Item = (Family, &T)> {
        [(Family::V4, &self.v4), (Family::V6, &self.v6)].into_iter()
    }
}

impl<T> core::ops::Index<Family> for PerFamily<T> {
    type Output = T;
    fn index(&self, f: Family) -> &T {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

impl<T> core::ops::IndexMut<Family> for PerFamily<T> {
    fn index_mut(&mut self, f: Family) -> &mut T {
        match f {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }
}

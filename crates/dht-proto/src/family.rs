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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PerFamily<T> {
    pub v4: T,
    pub v6: T,
}

impl<T> PerFamily<T> {
    pub(crate) fn new(v4: T, v6: T) -> PerFamily<T> {
        PerFamily { v4, v6 }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.v4, &self.v6].into_iter()
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

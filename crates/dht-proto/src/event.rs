//! What the node tells its driver: events, transmits, statuses and counters.

use std::net::{IpAddr, SocketAddr};

use crate::InfoHash;
use crate::value::{Value, ValueId};

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

/// Names a get or a put until its done event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Names a listen until it is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenToken(pub u64);

/// How a put went, per family: how many of the closest nodes acknowledged it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Nodes that acknowledged the value, IPv4 and IPv6.
    pub acked: [usize; 2],
    /// Closest nodes the search wanted to reach (up to 8 per family).
    pub targeted: [usize; 2],
}

impl PutOutcome {
    /// True when at least one family reached all its closest nodes (OpenDHT's `ok`).
    pub fn ok(&self) -> bool {
        self.targeted
            .iter()
            .zip(self.acked.iter())
            .any(|(t, a)| *t > 0 && a >= t)
    }

    /// Nodes of `family` that acknowledged the value.
    pub fn acked_in(&self, family: Family) -> usize {
        match family {
            Family::V4 => self.acked[0],
            Family::V6 => self.acked[1],
        }
    }

    /// Closest nodes of `family` the search wanted to reach.
    pub fn targeted_in(&self, family: Family) -> usize {
        match family {
            Family::V4 => self.targeted[0],
            Family::V6 => self.targeted[1],
        }
    }

    pub(crate) fn set(&mut self, family: Family, acked: usize, targeted: usize) {
        let (a, t) = match family {
            Family::V4 => (&mut self.acked[0], &mut self.targeted[0]),
            Family::V6 => (&mut self.acked[1], &mut self.targeted[1]),
        };
        *a = acked;
        *t = targeted;
    }

    /// Acknowledgements in both families.
    pub fn total_acked(&self) -> usize {
        self.acked[0] + self.acked[1]
    }
}

/// Something the driver should hand to the user.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A get found values (each value once; again only if its content changed).
    Values {
        /// The get.
        op: OpId,
        /// Its key.
        key: InfoHash,
        /// New values.
        values: Vec<Value>,
    },
    /// A get finished. `ok` is false when no family completed its search.
    GetDone {
        /// The get.
        op: OpId,
        /// Its key.
        key: InfoHash,
        /// True when at least one family reached its closest nodes.
        ok: bool,
    },
    /// A put finished (for a permanent put: its first announce).
    PutDone {
        /// The put.
        op: OpId,
        /// Its key.
        key: InfoHash,
        /// The value id.
        vid: ValueId,
        /// Who acknowledged it.
        outcome: PutOutcome,
    },
    /// A listen learned of new or changed values.
    ListenAdded {
        /// The listen.
        token: ListenToken,
        /// Its key.
        key: InfoHash,
        /// The values.
        values: Vec<Value>,
    },
    /// Values a listen reported are gone (expired everywhere it heard them from).
    ListenExpired {
        /// The listen.
        token: ListenToken,
        /// Its key.
        key: InfoHash,
        /// The values that expired.
        values: Vec<Value>,
    },
    /// A family's connectivity changed.
    StatusChanged {
        /// The family.
        family: Family,
        /// Its new status.
        status: Status,
    },
    /// Peers now most often report this public address for us.
    PublicAddressChanged {
        /// The family.
        family: Family,
        /// The address (port unknown, so 0).
        addr: IpAddr,
    },
    /// After [`Node::shutdown`](crate::Node::shutdown): every pending put has finished.
    ShutdownComplete,
}

/// A datagram to send, written into the caller's buffer by
/// [`Node::poll_transmit`](crate::Node::poll_transmit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length in the buffer.
    pub len: usize,
}

/// A caller's mistake in a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The key is the zero hash.
    #[error("the zero key cannot be used")]
    ZeroKey,
    /// The value does not fit its type's size limit.
    #[error("value of {size} bytes is larger than {max}")]
    ValueTooLarge {
        /// Serialized size.
        size: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Too many searches at once.
    #[error("too many searches ({0})")]
    TooManySearches(usize),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// No such put or listen.
    #[error("unknown operation")]
    UnknownOperation,
    /// A signed or encrypted put needs an identity (`Config::identity`).
    #[error("no identity configured")]
    NoIdentity,
}

/// Why an incoming datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// It did not parse.
    Malformed,
    /// From a martian source address.
    Martian,
    /// From a blacklisted address.
    Blacklisted,
    /// Another network id.
    WrongNetwork,
    /// Carries our own id, or a zero id.
    BadSenderId,
    /// Over the per-IP request rate.
    RateLimitedPeer,
    /// Over the global request rate.
    RateLimitedGlobal,
    /// A reply no pending request expects, carrying parts.
    Unexpected,
    /// Value data refused by reassembly.
    Reassembly,
    /// Larger than a datagram can be.
    TooLarge,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::Martian,
        DropReason::Blacklisted,
        DropReason::WrongNetwork,
        DropReason::BadSenderId,
        DropReason::RateLimitedPeer,
        DropReason::RateLimitedGlobal,
        DropReason::Unexpected,
        DropReason::Reassembly,
        DropReason::TooLarge,
    ];
}

/// Message kinds, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MessageKind {
    /// `ping`.
    Ping,
    /// `find`.
    Find,
    /// `get`.
    Get,
    /// `put`.
    Put,
    /// `listen`.
    Listen,
    /// `refresh`.
    Refresh,
    /// `update`.
    Update,
    /// A reply.
    Reply,
    /// An error reply.
    Error,
    /// Value data (`p`).
    ValueData,
}

impl MessageKind {
    /// Every kind, in counter order.
    pub const ALL: [MessageKind; 10] = [
        MessageKind::Ping,
        MessageKind::Find,
        MessageKind::Get,
        MessageKind::Put,
        MessageKind::Listen,
        MessageKind::Refresh,
        MessageKind::Update,
        MessageKind::Reply,
        MessageKind::Error,
        MessageKind::ValueData,
    ];
}

/// Counters and gauges of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received, by kind (index: [`MessageKind::ALL`]).
    pub received: [u64; 10],
    /// Datagrams sent, by kind (index: [`MessageKind::ALL`]).
    pub sent: [u64; 10],
    /// Datagrams dropped, by reason (index: [`DropReason::ALL`]).
    pub dropped: [u64; 10],
    /// Requests that timed out after every retransmission.
    pub timeouts: u64,
    /// Retransmissions sent.
    pub retransmits: u64,
    /// Error replies sent.
    pub errors_sent: u64,
    /// Values refused by storage (policy, quota, distance).
    pub store_refused: u64,
    /// Stored values evicted by quota.
    pub store_evicted: u64,
    /// Signed values dropped because their ed25519 signature did not verify (puts refused,
    /// get results and listen updates not delivered).
    pub bad_signatures: u64,
    /// Encrypted values dropped because they were not for us or did not open (with an identity).
    pub unreadable: u64,
    /// Transmits dropped because the queue was full.
    pub transmit_overflow: u64,
    /// Events dropped because the queue was full.
    pub event_overflow: u64,
    /// Requests not sent because the pending table was full.
    pub pending_overflow: u64,
    /// Nodes in the routing tables (IPv4, IPv6).
    pub nodes: [usize; 2],
    /// Good nodes in the routing tables (IPv4, IPv6).
    pub good_nodes: [usize; 2],
    /// Searches alive.
    pub searches: usize,
    /// Keys stored.
    pub stored_keys: usize,
    /// Values stored.
    pub stored_values: usize,
    /// Bytes of values stored.
    pub stored_bytes: usize,
    /// Remote listeners registered with us.
    pub remote_listeners: usize,
    /// Requests awaiting replies.
    pub pending_requests: usize,
    /// Gets, puts and listens of ours in progress.
    pub operations: usize,
    /// Re-replication announces started.
    pub replications: u64,
    /// Searches that synced after asking past their closest 8 nodes (speculatively).
    pub speculative_searches: u64,
    /// Of those, the ones where that found one of the closest 8 (see `docs/architecture.md`).
    pub speculation_paid: u64,
}

impl Stats {
    /// Datagrams received of `kind`.
    pub fn received(&self, kind: MessageKind) -> u64 {
        self.received.get(kind as usize).copied().unwrap_or(0)
    }
    /// Datagrams sent of `kind`.
    pub fn sent(&self, kind: MessageKind) -> u64 {
        self.sent.get(kind as usize).copied().unwrap_or(0)
    }
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason as usize).copied().unwrap_or(0)
    }
    pub(crate) fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason as usize) {
            *c += 1;
        }
    }
    pub(crate) fn count_in(&mut self, kind: MessageKind) {
        if let Some(c) = self.received.get_mut(kind as usize) {
            *c += 1;
        }
    }
    pub(crate) fn count_out(&mut self, kind: MessageKind) {
        if let Some(c) = self.sent.get_mut(kind as usize) {
            *c += 1;
        }
    }
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

//! Counters and gauges of a node, and the kinds and drop reasons they are kept by.

use crate::family::{Family, PerFamily};

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

/// Defines a counter per value of a fieldless enum that lists every value in order in `ALL`.
macro_rules! counters {
    ($(#[$doc:meta])* $name:ident by $key:ident, $what:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name([u64; $key::ALL.len()]);

        impl $name {
            #[doc = concat!("The count of `", stringify!($what), "`.")]
            pub fn get(&self, $what: $key) -> u64 {
                self[$what]
            }

            #[doc = concat!("Each ", stringify!($key), " with its count, in [`", stringify!($key), "::ALL`] order.")]
            pub fn iter(&self) -> impl Iterator<Item = ($key, u64)> + '_ {
                $key::ALL.into_iter().map(move |k| (k, self[k]))
            }

            #[doc = concat!("The sum over every ", stringify!($key), ".")]
            pub fn total(&self) -> u64 {
                self.0.iter().sum()
            }

            /// Counts one more.
            pub(crate) fn add(&mut self, $what: $key) {
                // `ALL` lists every value in declaration order (tested), so the index is in range.
                if let Some(c) = self.0.get_mut($what as usize) {
                    *c += 1;
                }
            }
        }

        impl core::ops::Index<$key> for $name {
            type Output = u64;
            fn index(&self, $what: $key) -> &u64 {
                self.0.get($what as usize).unwrap_or(&0)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_map().entries(self.iter()).finish()
            }
        }
    };
}

counters! {
    /// Datagram counts by [`MessageKind`]: `get(kind)` or `[kind]`, and `iter()` over
    /// `(kind, count)`.
    ///
    /// ```
    /// use dht_proto::{MessageKind, PerKind};
    ///
    /// let counts = PerKind::default();
    /// assert_eq!(counts[MessageKind::Ping], 0);
    /// assert_eq!(counts.iter().count(), MessageKind::ALL.len());
    /// assert_eq!(counts.total(), 0);
    /// ```
    PerKind by MessageKind, kind
}

counters! {
    /// Dropped datagram counts by [`DropReason`]: `get(reason)` or `[reason]`, and `iter()` over
    /// `(reason, count)`.
    PerReason by DropReason, reason
}

/// Counters and gauges of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received, by kind.
    pub received: PerKind,
    /// Datagrams sent, by kind.
    pub sent: PerKind,
    /// Datagrams dropped, by reason.
    pub dropped: PerReason,
    /// Requests that timed out after every retransmission.
    pub timeouts: u64,
    /// Retransmissions sent.
    pub retransmits: u64,
    /// Retransmitted gets not answered again: their reply's value data was still queued.
    pub duplicate_gets: u64,
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
    /// Datagrams held for an address without a proven round trip (anti-amplification).
    pub amplification_held: u64,
    /// Datagrams for such an address dropped: past the hold's bounds, or held too long.
    pub amplification_dropped: u64,
    /// Events dropped because the queue was full.
    pub event_overflow: u64,
    /// Requests not sent because the pending table was full.
    pub pending_overflow: u64,
    /// Nodes in the routing tables, per family.
    pub nodes: PerFamily<usize>,
    /// Good nodes in the routing tables, per family.
    pub good_nodes: PerFamily<usize>,
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
    /// Nodes in the routing table of `family` (`nodes[family]`).
    pub fn nodes_in(&self, family: Family) -> usize {
        self.nodes[family]
    }

    /// Good nodes in the routing table of `family` (`good_nodes[family]`).
    pub fn good_nodes_in(&self, family: Family) -> usize {
        self.good_nodes[family]
    }

    /// Datagrams received of `kind` (`received[kind]`).
    pub fn received(&self, kind: MessageKind) -> u64 {
        self.received[kind]
    }
    /// Datagrams sent of `kind` (`sent[kind]`).
    pub fn sent(&self, kind: MessageKind) -> u64 {
        self.sent[kind]
    }
    /// Datagrams dropped for `reason` (`dropped[reason]`).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason]
    }
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped.add(reason);
    }
    pub(crate) fn count_in(&mut self, kind: MessageKind) {
        self.received.add(kind);
    }
    pub(crate) fn count_out(&mut self, kind: MessageKind) {
        self.sent.add(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_value_in_declaration_order() {
        for (i, k) in MessageKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
        }
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        let mut counts = PerKind::default();
        counts.add(MessageKind::ValueData);
        counts.add(MessageKind::ValueData);
        assert_eq!(counts.get(MessageKind::ValueData), 2);
        assert_eq!(counts.iter().last(), Some((MessageKind::ValueData, 2)));
        assert_eq!(counts.total(), 2);
    }
}

//! Counters and gauges of a node, and the kinds and drop reasons they are kept by.

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
    /// Nodes in the routing table of `family`.
    pub fn nodes_in(&self, family: crate::Family) -> usize {
        match family {
            crate::Family::V4 => self.nodes[0],
            crate::Family::V6 => self.nodes[1],
        }
    }

    /// Good nodes in the routing table of `family`.
    pub fn good_nodes_in(&self, family: crate::Family) -> usize {
        match family {
            crate::Family::V4 => self.good_nodes[0],
            crate::Family::V6 => self.good_nodes[1],
        }
    }

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

//! What the node tells its driver: events and transmits, and the ids that name operations.

use crate::prelude::*;
use core::net::{IpAddr, SocketAddr};

use crate::InfoHash;
use crate::family::{Family, PerFamily, Status};
use crate::value::{Value, ValueId};

/// Names a get or a put until its done event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Names a listen until it is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenToken(pub u64);

/// How a put went, per family: how many of the closest nodes acknowledged it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Nodes that acknowledged the value, per family.
    pub acked: PerFamily<usize>,
    /// Closest nodes the search wanted to reach (up to 8 per family), per family.
    pub targeted: PerFamily<usize>,
}

impl PutOutcome {
    /// True when at least one family reached all its closest nodes (OpenDHT's `ok`).
    pub fn ok(&self) -> bool {
        Family::ALL
            .into_iter()
            .any(|f| self.targeted[f] > 0 && self.acked[f] >= self.targeted[f])
    }

    /// Nodes of `family` that acknowledged the value (`acked[family]`).
    pub fn acked_in(&self, family: Family) -> usize {
        self.acked[family]
    }

    /// Closest nodes of `family` the search wanted to reach (`targeted[family]`).
    pub fn targeted_in(&self, family: Family) -> usize {
        self.targeted[family]
    }

    pub(crate) fn set(&mut self, family: Family, acked: usize, targeted: usize) {
        self.acked[family] = acked;
        self.targeted[family] = targeted;
    }

    /// Acknowledgements in both families.
    pub fn total_acked(&self) -> usize {
        self.acked.iter().sum()
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
        /// True when at least one family reached its closest nodes: every live one of them
        /// (not silent through its retransmissions) answered in full.
        ok: bool,
        /// Of the closest nodes the get settled on (both families), how many answered it in
        /// full.
        answered: usize,
        /// How many of the closest nodes it asked: those that answered, those still answering
        /// and those that stayed silent (nodes that expired are not counted).
        asked: usize,
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

//! What handles send to the host: commands with their callbacks; and what the host publishes back.

use std::net::SocketAddr;

use dht_proto::value::{Query, Value};
use dht_proto::{InfoHash, Node, PerFamily, PutOptions, PutOutcome, Stats, Status};

use crate::{Error, GetId, ListenId, PutMode};

/// What a listen callback is told.
#[derive(Debug)]
pub enum Change<'a> {
    /// Values were added (or changed).
    Added(&'a [Value]),
    /// Values expired or were removed.
    Expired(&'a [Value]),
    /// The listen could not start; no more calls follow.
    Failed(Error),
}

pub(crate) type ValuesCb = Box<dyn FnMut(&[Value]) + Send>;
pub(crate) type DoneCb = Box<dyn FnOnce(Result<dht_driver::GetSummary, Error>) + Send>;
pub(crate) type PutCb = Box<dyn FnOnce(Result<PutOutcome, Error>) + Send>;
pub(crate) type ListenCb = Box<dyn FnMut(Change<'_>) + Send>;
pub(crate) type InspectFn = Box<dyn FnOnce(&mut Node, dht_proto::Instant) + Send>;

// Commands travel boxed (`HostMsg::Cmd`), so the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Bootstrap(SocketAddr),
    Get {
        id: GetId,
        key: InfoHash,
        query: Query,
        on_values: ValuesCb,
        on_done: DoneCb,
    },
    CancelGet(GetId),
    Put {
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: PutCb,
    },
    CancelPut(InfoHash, u64),
    Listen {
        id: ListenId,
        key: InfoHash,
        query: Query,
        on_change: ListenCb,
    },
    CancelListen(ListenId),
    With(InspectFn),
    Shutdown,
}

/// What the host shares with handles: the latest view of the node.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) id: InfoHash,
    pub(crate) status: PerFamily<Option<Status>>,
    pub(crate) stats: Stats,
    /// LAN discovery's counters, when it runs (published with `stats`; boxed, as most nodes
    /// run without it: see [`publish_discovery`]).
    pub(crate) discovery: Option<Box<dht_driver::DiscoveryStats>>,
    /// The node finished its shutdown (or the runner was told to stop).
    pub(crate) stopped: bool,
    /// The host closed the node's sockets.
    pub(crate) removed: bool,
}

/// Publishes discovery's counters into `to`, in place when they were published before (they
/// are published every 20 ms: no allocation each time).
pub(crate) fn publish_discovery(
    to: &mut Option<Box<dht_driver::DiscoveryStats>>,
    stats: Option<dht_driver::DiscoveryStats>,
) {
    match (to.as_deref_mut(), stats) {
        (Some(old), Some(new)) => *old = new,
        (_, new) => *to = new.map(Box::new),
    }
}

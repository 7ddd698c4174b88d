//! The table that routes the core's events back to the callers that asked: gets, puts and
//! listens, each to its caller's sink (a callback, a channel, a waker: the driver chooses).

use std::collections::BTreeMap;

use dht_proto::value::Value;
use dht_proto::{Event, ListenToken, OpId, PutOutcome};

use crate::{GetId, GetSummary, ListenId};

/// Where each operation's results go: `G` is a get's sink, `P` a put's, `L` a listen's.
///
/// A driver adds an entry when its node accepts a command ([`Routes::add_get`], ...), hands every
/// event of the node to [`Routes::route`], and delivers what comes back to the sink it names.
/// Gets and listens are found by the caller's id ([`GetId`], [`ListenId`]) as well as by the
/// core's, so a caller can cancel before the core has answered.
///
/// ```
/// use dht_driver::{Ids, Routed, Routes};
/// use dht_proto::{Event, InfoHash, Instant, Node, value::Query};
///
/// let mut node = Node::new(dht_proto::Config::default(), [1; 32], Instant::ZERO);
/// let ids = Ids::new(&[1; 32]);
/// let mut routes: Routes<Vec<String>, (), ()> = Routes::new();
/// let op = node.get(Instant::ZERO, InfoHash::get("k"), Query::default()).unwrap();
/// routes.add_get(ids.get_id(), op, Vec::new());
/// // The core reports the end of the get; the table hands back the get's sink and how it ended.
/// let done = Event::GetDone { op, key: InfoHash::get("k"), ok: true, answered: 3, asked: 4 };
/// match routes.route(done) {
///     Routed::GetDone { sink, summary } => {
///         assert!(sink.is_empty() && summary.ok);
///         assert_eq!((summary.answered, summary.asked), (3, 4));
///     }
///     _ => unreachable!(),
/// }
/// assert!(routes.is_empty());
/// ```
#[derive(Debug)]
pub struct Routes<G, P, L> {
    gets: BTreeMap<OpId, (GetId, G)>,
    get_ops: BTreeMap<GetId, OpId>,
    puts: BTreeMap<OpId, P>,
    listens: BTreeMap<ListenToken, L>,
    listen_tokens: BTreeMap<ListenId, ListenToken>,
}

/// What an event means for the callers: which sink it goes to, and what to tell it.
#[derive(Debug)]
pub enum Routed<'a, G, P, L> {
    /// A get found values; the get goes on.
    Values {
        /// The get, to end it with [`Routes::remove_get`] if its caller has gone.
        op: OpId,
        /// Its sink.
        sink: &'a mut G,
        /// The new values.
        values: Vec<Value>,
    },
    /// A get has ended; its entry is gone and its sink handed back.
    GetDone {
        /// Its sink.
        sink: G,
        /// How it ended: complete or not (`summary.ok`), and how many of the closest nodes
        /// answered.
        summary: GetSummary,
    },
    /// A put has its outcome (a permanent put: its first announce); its entry is gone.
    PutDone {
        /// Its sink.
        sink: P,
        /// Who acknowledged it.
        outcome: PutOutcome,
    },
    /// A listen learned of new or changed values.
    ListenAdded {
        /// Its sink.
        sink: &'a mut L,
        /// The values.
        values: Vec<Value>,
    },
    /// Values a listen reported are gone.
    ListenExpired {
        /// Its sink.
        sink: &'a mut L,
        /// The values.
        values: Vec<Value>,
    },
    /// An event for the node's owner rather than a caller (status, public address, shutdown),
    /// or for an operation no caller waits on any more.
    Unrouted(Event),
}

impl<G, P, L> Default for Routes<G, P, L> {
    fn default() -> Self {
        Routes::new()
    }
}

impl<G, P, L> Routes<G, P, L> {
    /// An empty table.
    pub fn new() -> Self {
        Routes {
            gets: BTreeMap::new(),
            get_ops: BTreeMap::new(),
            puts: BTreeMap::new(),
            listens: BTreeMap::new(),
            listen_tokens: BTreeMap::new(),
        }
    }

    /// Whether no operation waits for an event.
    pub fn is_empty(&self) -> bool {
        self.gets.is_empty() && self.puts.is_empty() && self.listens.is_empty()
    }

    /// The node accepted get `id` as `op`: its events go to `sink`.
    pub fn add_get(&mut self, id: GetId, op: OpId, sink: G) {
        self.gets.insert(op, (id, sink));
        self.get_ops.insert(id, op);
    }

    /// The caller cancels get `id`: its sink is dropped; the core's op to cancel, if it was
    /// still running.
    pub fn cancel_get(&mut self, id: GetId) -> Option<OpId> {
        let op = self.get_ops.remove(&id)?;
        self.gets.remove(&op);
        Some(op)
    }

    /// Get `op` is over for its caller (e.g. its stream was dropped): its sink, if it had one.
    pub fn remove_get(&mut self, op: OpId) -> Option<G> {
        let (id, sink) = self.gets.remove(&op)?;
        self.get_ops.remove(&id);
        Some(sink)
    }

    /// The node accepted a put as `op`: its outcome goes to `sink`.
    pub fn add_put(&mut self, op: OpId, sink: P) {
        self.puts.insert(op, sink);
    }

    /// The node accepted listen `id` as `token`: its changes go to `sink`.
    pub fn add_listen(&mut self, id: ListenId, token: ListenToken, sink: L) {
        self.listens.insert(token, sink);
        self.listen_tokens.insert(id, token);
    }

    /// The caller cancels listen `id`: its sink is dropped; the core's token to cancel, if the
    /// listen was running.
    pub fn cancel_listen(&mut self, id: ListenId) -> Option<ListenToken> {
        let token = self.listen_tokens.remove(&id)?;
        self.listens.remove(&token);
        Some(token)
    }

    /// Where `event` goes. A get's or put's last event removes its entry.
    pub fn route(&mut self, event: Event) -> Routed<'_, G, P, L> {
        match event {
            Event::Values { op, values, .. } if self.gets.contains_key(&op) => match self.gets.get_mut(&op) {
                Some((_, sink)) => Routed::Values { op, sink, values },
                None => unreachable!("checked by the guard"),
            },
            Event::GetDone {
                op,
                ok,
                answered,
                asked,
                ..
            } if self.gets.contains_key(&op) => match self.remove_get(op) {
                Some(sink) => Routed::GetDone {
                    sink,
                    summary: GetSummary { ok, answered, asked },
                },
                None => unreachable!("checked by the guard"),
            },
            Event::PutDone { op, outcome, .. } if self.puts.contains_key(&op) => {
                match self.puts.remove(&op) {
                    Some(sink) => Routed::PutDone { sink, outcome },
                    None => unreachable!("checked by the guard"),
                }
            }
            Event::ListenAdded { token, values, .. } if self.listens.contains_key(&token) => {
                match self.listens.get_mut(&token) {
                    Some(sink) => Routed::ListenAdded { sink, values },
                    None => unreachable!("checked by the guard"),
                }
            }
            Event::ListenExpired { token, values, .. } if self.listens.contains_key(&token) => {
                match self.listens.get_mut(&token) {
                    Some(sink) => Routed::ListenExpired { sink, values },
                    None => unreachable!("checked by the guard"),
                }
            }
            other => Routed::Unrouted(other),
        }
    }

    /// Frees what emptied tables hold (an emptied `BTreeMap` keeps its last leaf). Drivers call
    /// it on timer ticks, as the node compacts its own tables.
    pub fn compact(&mut self) {
        fn reset<K, V>(m: &mut BTreeMap<K, V>) {
            if m.is_empty() {
                *m = BTreeMap::new();
            }
        }
        reset(&mut self.gets);
        reset(&mut self.get_ops);
        reset(&mut self.puts);
        reset(&mut self.listens);
        reset(&mut self.listen_tokens);
    }
}

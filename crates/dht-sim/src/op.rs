//! Operations started through the simulator: the handle a scenario holds ([`Op`]), what was seen
//! of each ([`OpRecord`]), and the table that turns the nodes' events into those records.

use std::collections::{BTreeMap, BTreeSet};

use dht_proto::value::ValueId;
use dht_proto::{Event, InfoHash, Instant, PutOutcome};

/// A handle on an operation started through the simulator: the host that started it and the
/// operation's number in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Op(pub usize, pub u64);

/// Kinds of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A get.
    Get,
    /// A put.
    Put,
    /// A listen.
    Listen,
}

/// One operation started through the simulator.
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// Its kind.
    pub kind: OpKind,
    /// The host that started it.
    pub node: usize,
    /// Its key.
    pub key: InfoHash,
    /// When it started.
    pub start: Instant,
    /// When the first value arrived (gets, listens).
    pub first_value: Option<Instant>,
    /// When it finished (gets, puts).
    pub done: Option<Instant>,
    /// Its result: a get found its family's closest nodes, a put reached them.
    pub ok: bool,
    /// A get's closest nodes that answered it in full, and those it asked (`Event::GetDone`).
    pub answered: (usize, usize),
    /// Value ids found (gets) or announced (listens).
    pub found: BTreeSet<ValueId>,
    /// Value ids a listen was told expired.
    pub expired: BTreeSet<ValueId>,
    /// A put's value id.
    pub vid: Option<ValueId>,
    /// A put's outcome.
    pub outcome: Option<PutOutcome>,
    /// Request–reply round trips on the causal chain of datagrams that brought the first
    /// value: the lookup's hops (retransmissions after a timeout continue the chain).
    pub hops_first: Option<u16>,
    /// The same for the datagram after which the operation was done.
    pub hops_done: Option<u16>,
}

impl OpRecord {
    pub(crate) fn new(kind: OpKind, node: usize, key: InfoHash, start: Instant) -> OpRecord {
        OpRecord {
            kind,
            node,
            key,
            start,
            first_value: None,
            done: None,
            ok: false,
            answered: (0, 0),
            found: BTreeSet::new(),
            expired: BTreeSet::new(),
            vid: None,
            outcome: None,
            hops_first: None,
            hops_done: None,
        }
    }
}

/// Every operation of a run, and how to find one from a node's event: by (host, the node's op
/// id) for gets and puts, by (host, listen token) for listens.
#[derive(Debug, Default)]
pub(crate) struct OpTable {
    ops: BTreeMap<Op, OpRecord>,
    by_node_op: BTreeMap<(usize, u64), Op>,
    listens: BTreeMap<(usize, u64), Op>,
    done: u64,
}

impl OpTable {
    /// Records a new operation started on host `node` at `now`; `id` is the node's op id or
    /// listen token (`None` when the node refused the command, so no event will name it).
    pub(crate) fn start(
        &mut self,
        kind: OpKind,
        node: usize,
        key: InfoHash,
        id: Option<u64>,
        now: Instant,
    ) -> Op {
        let op = Op(node, self.ops.len() as u64);
        self.ops.insert(op, OpRecord::new(kind, node, key, now));
        if let Some(id) = id {
            match kind {
                OpKind::Listen => self.listens.insert((node, id), op),
                _ => self.by_node_op.insert((node, id), op),
            };
        }
        op
    }

    pub(crate) fn get(&self, op: &Op) -> Option<&OpRecord> {
        self.ops.get(op)
    }

    pub(crate) fn get_mut(&mut self, op: &Op) -> Option<&mut OpRecord> {
        self.ops.get_mut(op)
    }

    /// Operations started.
    pub(crate) fn started(&self) -> u64 {
        self.ops.len() as u64
    }

    /// Gets and puts done.
    pub(crate) fn done(&self) -> u64 {
        self.done
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Op, &OpRecord)> {
        self.ops.iter()
    }

    /// Notes what event `e` of host `i`, seen at `now` after `hops` round trips, tells of the
    /// operation it names.
    pub(crate) fn record(&mut self, i: usize, e: &Event, now: Instant, hops: u16) {
        let find = |m: &BTreeMap<(usize, u64), Op>, id: u64| m.get(&(i, id)).copied();
        match e {
            Event::Values { op, values, .. } => {
                if let Some(o) = find(&self.by_node_op, op.0)
                    && let Some(r) = self.ops.get_mut(&o)
                {
                    if r.first_value.is_none() {
                        r.first_value = Some(now);
                        r.hops_first = Some(hops);
                    }
                    r.found.extend(values.iter().map(|v| v.id));
                }
            }
            Event::GetDone {
                op,
                ok,
                answered,
                asked,
                ..
            } => {
                if let Some(o) = find(&self.by_node_op, op.0)
                    && let Some(r) = self.ops.get_mut(&o)
                {
                    if r.done.is_none() {
                        r.done = Some(now);
                        r.hops_done = Some(hops);
                        self.done += 1;
                    }
                    r.ok = *ok;
                    r.answered = (*answered, *asked);
                }
            }
            Event::PutDone { op, outcome, .. } => {
                if let Some(o) = find(&self.by_node_op, op.0)
                    && let Some(r) = self.ops.get_mut(&o)
                {
                    if r.done.is_none() {
                        r.done = Some(now);
                        r.hops_done = Some(hops);
                        self.done += 1;
                    }
                    r.ok = outcome.ok();
                    r.outcome = Some(*outcome);
                }
            }
            Event::ListenAdded { token, values, .. } => {
                if let Some(o) = find(&self.listens, token.0)
                    && let Some(r) = self.ops.get_mut(&o)
                {
                    for v in values {
                        r.found.insert(v.id);
                        r.first_value.get_or_insert(now);
                    }
                }
            }
            Event::ListenExpired { token, values, .. } => {
                if let Some(o) = find(&self.listens, token.0)
                    && let Some(r) = self.ops.get_mut(&o)
                {
                    r.expired.extend(values.iter().map(|v| v.id));
                }
            }
            _ => {}
        }
    }
}

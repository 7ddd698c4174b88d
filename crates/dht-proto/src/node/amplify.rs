//! Anti-amplification in the node (our departure from OpenDHT, which answers a 71-byte get with
//! every value it holds): the [`Guard`](crate::amplify::Guard) is credited with what each
//! address sends, charged with what we send it, and told of every proof of a round trip; what
//! does not fit is held, and the address is pinged for its proof.

use super::*;
use crate::amplify::{Admit, PROBE_RESERVE, PROOF_TIME};

/// Room a padded get request buys for values sent inline in its reply.
const INLINE_VALUES_ROOM: usize = 128;

/// Whether a request of this kind is padded (see [`Node::pad_request`]), and the room it buys
/// beyond a reply naming 8 nodes.
pub(super) fn pad_room(kind: &RequestKind) -> Option<usize> {
    match kind {
        RequestKind::Find { .. } => Some(0),
        RequestKind::Get { .. } => Some(INLINE_VALUES_ROOM),
        _ => None,
    }
}

impl Node {
    /// A datagram of `len` bytes came from `from`: its credit grows, unless it is proven (by
    /// the guard, or by our routing table, which has it at that address with a reply to us).
    pub(super) fn note_received(&mut self, now: Instant, from: SocketAddr, len: usize, msg: &Message) {
        if !self.guard.is_on() || self.guard.is_proven(now, &from) {
            return;
        }
        if let Some(id) = msg.sender_id()
            && self.vouched(now, from, id)
        {
            // Nothing to remember: the table does.
            self.proven_as(now, from, Some(*id));
            return;
        }
        self.guard.on_received(now, from, len);
    }

    /// Whether our routing table has node `id` at `from`, not expired, with a reply to a
    /// request of ours within the proof's lifetime (a round trip, which the table keeps: the
    /// guard need not remember these addresses).
    fn vouched(&self, now: Instant, from: SocketAddr, id: &InfoHash) -> bool {
        self.tables[Family::of(&from)].get(id).is_some_and(|n| {
            n.addr == from && !n.expired && n.last_replied().is_some_and(|t| now - t < PROOF_TIME)
        })
    }

    /// `addr` proved a round trip: what was held for it goes out now.
    pub(super) fn proven(&mut self, now: Instant, addr: SocketAddr) {
        self.proven_as(now, addr, None);
    }

    /// `addr`, node `id` if known, proved a round trip (remembered by the guard unless the
    /// routing table vouches for it): what was held for it goes out now.
    pub(super) fn proven_as(&mut self, now: Instant, addr: SocketAddr, id: Option<InfoHash>) {
        let remember = !id.is_some_and(|id| self.vouched(now, addr, &id));
        if self.awaiting.iter().any(|r| r.to == addr) {
            let (ready, wait) = core::mem::take(&mut self.awaiting)
                .into_iter()
                .partition(|r| r.to == addr);
            self.awaiting = wait;
            self.paced.extend::<VecDeque<_>>(ready);
        }
        for data in self.guard.prove(now, addr, remember) {
            if self.transmits.len() >= self.config.max_transmit_queue {
                self.stats.transmit_overflow += 1;
                continue;
            }
            self.transmits.push_back((addr, data));
        }
    }

    /// Whether `data` may go to `to` now; if not, it is held or dropped, and counted.
    pub(super) fn amplification_allows(&mut self, to: SocketAddr, data: &[u8]) -> bool {
        match self.guard.admit(self.last_input, to, data) {
            Admit::Send => true,
            Admit::Held => {
                self.stats.amplification_held += 1;
                false
            }
            Admit::Dropped => {
                tracing::debug!(%to, "datagram dropped: over the anti-amplification hold");
                self.stats.amplification_dropped += 1;
                false
            }
        }
    }

    /// Pings the addresses that have something held, for their proof.
    pub(super) fn send_probes(&mut self, now: Instant) {
        for to in self.guard.take_probes() {
            // No node id: a probe that goes unanswered expires no routing-table entry.
            self.send_request(now, to, InfoHash::ZERO, RequestKind::Ping, Purpose::Ping, &[]);
        }
    }

    /// Gives up datagrams held too long, and value data whose address never proved itself.
    pub(super) fn expire_held(&mut self, now: Instant) {
        let mut n = self.guard.expire(now);
        while let Some(r) = self.awaiting.front()
            && r.until <= now
        {
            let parts = r.parts.len();
            tracing::debug!(to = %r.to, parts, "reply data given up: the address never proved itself");
            n += parts;
            self.paced_len = self.paced_len.saturating_sub(parts);
            self.awaiting.pop_front();
        }
        self.stats.amplification_dropped += n as u64;
    }

    /// When the oldest value data waiting for a proof are given up.
    pub(super) fn awaiting_deadline(&self) -> Option<Instant> {
        self.awaiting.front().map(|r| r.until)
    }

    /// Pads a find or get request of ours to `to` so that the 2x bound of its receiver covers
    /// a whole reply (8 nodes of `to`'s family, a token, a few small values inline, and room
    /// for a probe): we prove nothing to a node we never answered, and without the padding it
    /// could name only 3 nodes, which leaves our searches short of the closest nodes. As QUIC
    /// pads its first packets. Only while our own guard is on.
    pub(super) fn pad_request(&mut self, to: &SocketAddr, extra: Option<usize>, packet: &mut Vec<u8>) {
        let Some(extra) = extra.filter(|_| self.guard.is_on()) else {
            return;
        };
        let family = Family::of(to);
        let reply = match self.full_reply_len[family] {
            0 => {
                let len = self.full_reply_len_to(to);
                self.full_reply_len[family] = u16::try_from(len).unwrap_or(u16::MAX);
                len
            }
            len => usize::from(len),
        };
        crate::amplify::pad(packet, (reply + PROBE_RESERVE + extra).div_ceil(2));
    }

    /// The size of a find reply to `to` with a full node list and a token: the same for every
    /// address of a family (addresses, ids and tokens have fixed sizes).
    fn full_reply_len_to(&self, to: &SocketAddr) -> usize {
        let node = NodeInfo {
            id: self.id,
            addr: *to,
        };
        let mut r = self.plain_reply(to);
        r.token = Some(self.storer.tokens.make(to));
        match Family::of(to) {
            Family::V4 => r.nodes4 = NodeList::from_elem(node, TARGET_NODES),
            Family::V6 => r.nodes6 = NodeList::from_elem(node, TARGET_NODES),
        }
        self.encoded_len(Message::reply(Tid::default(), r))
    }

    /// Trims the node lists of a find or get reply to `to` so that it fits what the address
    /// may still receive before it proves itself (leaving room for the probe when value data
    /// follow, which wait for the proof). A reply that would not fit even without nodes is
    /// left whole: it waits for the proof.
    pub(super) fn fit_reply(&mut self, to: &SocketAddr, tid: Tid, r: &mut Reply, more: bool) {
        let Some(budget) = self.guard.budget(to) else {
            return;
        };
        if more {
            self.guard.reserve_probe(to);
        }
        let room = if more {
            budget.saturating_sub(PROBE_RESERVE)
        } else {
            budget
        };
        let size = |r: &Reply| self.encoded_len(Message::reply(tid, r.clone()));
        if size(r) <= room {
            return;
        }
        let mut bare = r.clone();
        bare.nodes4.clear();
        bare.nodes6.clear();
        if size(&bare) > room {
            return;
        }
        // Farthest first, from the longer list, until it fits.
        while size(r) > room {
            if r.nodes4.len() >= r.nodes6.len() {
                r.nodes4.pop();
            } else {
                r.nodes6.pop();
            }
        }
    }
}

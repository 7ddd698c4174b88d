//! Anti-amplification in the node (our departure from OpenDHT, which answers a 71-byte get with
//! every value it holds): the [`Guard`](crate::amplify::Guard) is credited with what each
//! address sends, charged with what we send it, and told of every proof of a round trip; what
//! does not fit is held, and the address is pinged for its proof.

use super::*;
use crate::amplify::{Admit, PROBE_RESERVE};

impl Node {
    /// A datagram of `len` bytes came from `from`: its credit grows, unless it is proven, or a
    /// good node of our routing table at that address sent it (which proves it).
    pub(super) fn note_received(&mut self, now: Instant, from: SocketAddr, len: usize, msg: &Message) {
        if !self.guard.is_on() || self.guard.is_proven(now, &from) {
            return;
        }
        let id = msg.sender_id().copied();
        if let Some(id) = id
            && self.tables[Family::of(&from)]
                .get(&id)
                .is_some_and(|n| n.addr == from && n.is_good(now))
        {
            self.proven(now, from);
            return;
        }
        self.guard.on_received(now, from, len, id);
    }

    /// `addr` proved a round trip: what was held for it goes out now.
    pub(super) fn proven(&mut self, now: Instant, addr: SocketAddr) {
        for data in self.guard.prove(now, addr) {
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
        for (to, id) in self.guard.take_probes() {
            self.send_request(now, to, id, RequestKind::Ping, Purpose::Ping, &[]);
        }
    }

    /// Gives up datagrams held too long.
    pub(super) fn expire_held(&mut self, now: Instant) {
        let n = self.guard.expire(now);
        self.stats.amplification_dropped += n as u64;
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
        let size = |r: &Reply| self.encode(Message::reply(tid, r.clone())).len();
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

//! Anti-amplification: a node must not be a reflector. To an address that has not proven a
//! round trip, it sends at most `factor` times the bytes it received from it; what does not
//! fit waits (bounded, for [`HOLD_TIME`]) until the address proves itself, or is dropped.
//!
//! An address proves itself by answering a request of ours (its reply carries our transaction
//! id, which a forger of its address never sees), by sending a write token we issued to it, or
//! by being a good node of our routing table. The node asks for the proof with a ping (a
//! probe) when it has something held.
//!
//! Pure and bounded: `now` comes with every call; at most `max_unproven` addresses are
//! tracked (the longest idle forgotten first, which never lets more through: the forgotten
//! address starts again from zero credit and zero sent), `max_held` bytes are held in all and
//! `max_held_per_address` for one address, and `max_proven` proven addresses are remembered.

use crate::prelude::*;
use alloc::collections::{BTreeMap, VecDeque};
use core::net::SocketAddr;
use core::time::Duration;

use crate::{InfoHash, Instant};

/// How long held datagrams wait for their address's proof.
pub(crate) const HOLD_TIME: Duration = Duration::from_secs(3);
/// An unproven address with nothing held is forgotten after this idle time.
const IDLE_TIME: Duration = Duration::from_secs(60);
/// A proof lasts this long (as long as a node's last reply keeps it good).
const PROOF_TIME: Duration = Duration::from_secs(120 * 60);
/// Room left for the probe when a reply's header goes out and its value data wait: a ping
/// is 52 bytes, 60 with a network id.
pub(crate) const PROBE_RESERVE: usize = 64;

/// Whether a probe was asked for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    None,
    Wanted,
    Sent,
}

#[derive(Debug)]
struct Unproven {
    received: u64,
    sent: u64,
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// When the first datagram now held was held.
    held_since: Option<Instant>,
    last: Instant,
    probe: Probe,
    /// Credit kept for the probe: other datagrams may not use it.
    reserved: usize,
    /// The next datagram is the probe: it goes, ahead of what is held.
    probe_next: bool,
    /// The node id it last gave (for the probe).
    id: InfoHash,
}

/// What became of a datagram offered to [`Guard::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Send it.
    Send,
    /// Held until the address proves itself.
    Held,
    /// Over the holding bounds: dropped.
    Dropped,
}

/// The bounds of a [`Guard`] (from `Config`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub factor: Option<u32>,
    pub max_unproven: usize,
    pub max_held: usize,
    pub max_held_per_address: usize,
    pub max_proven: usize,
}

/// [`PROOF_TIME`] in whole seconds.
const PROOF_SECS: u32 = PROOF_TIME.as_secs() as u32;

/// An address as a map key: the IPv6 (or IPv4-mapped) address, then the port; 18 bytes
/// instead of a `SocketAddr`'s 32.
type AddrKey = [u8; 18];

fn addr_key(a: &SocketAddr) -> AddrKey {
    let ip = match a.ip() {
        core::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        core::net::IpAddr::V6(v6) => v6,
    };
    let mut k = [0; 18];
    let (head, tail) = k.split_at_mut(16);
    head.copy_from_slice(&ip.octets());
    tail.copy_from_slice(&a.port().to_be_bytes());
    k
}

/// `now` in whole seconds (a node's clock starts near zero; saturates after 136 years).
fn secs(now: Instant) -> u32 {
    u32::try_from(now.as_micros() / 1_000_000).unwrap_or(u32::MAX)
}

/// The anti-amplification state: unproven addresses with their credit, proven ones.
#[derive(Debug)]
pub(crate) struct Guard {
    limits: Limits,
    unproven: BTreeMap<SocketAddr, Unproven>,
    /// Proven addresses (compact keys: a node remembers dozens) and when, in whole seconds.
    proven: BTreeMap<AddrKey, u32>,
    held_bytes: usize,
}

impl Guard {
    pub(crate) fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            unproven: BTreeMap::new(),
            proven: BTreeMap::new(),
            held_bytes: 0,
        }
    }

    /// Frees what emptied tables hold (see [`crate::compact`]).
    pub(crate) fn compact(&mut self) {
        use crate::compact::Compact;
        self.unproven.compact();
        self.proven.compact();
    }

    /// Whether the guard is on.
    pub(crate) fn is_on(&self) -> bool {
        self.limits.factor.is_some()
    }

    /// Whether `addr` has proven a round trip (and the proof has not lapsed).
    pub(crate) fn is_proven(&self, now: Instant, addr: &SocketAddr) -> bool {
        self.proven
            .get(&addr_key(addr))
            .is_some_and(|t| secs(now).saturating_sub(*t) < PROOF_SECS)
    }

    /// `len` bytes came from `from` (which gave node id `id`, if any): its credit grows.
    pub(crate) fn on_received(&mut self, now: Instant, from: SocketAddr, len: usize, id: Option<InfoHash>) {
        if !self.is_on() || self.is_proven(now, &from) {
            return;
        }
        if !self.unproven.contains_key(&from) && self.unproven.len() >= self.limits.max_unproven {
            self.evict_unproven();
        }
        let e = self.unproven.entry(from).or_insert(Unproven {
            received: 0,
            sent: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            held_since: None,
            last: now,
            probe: Probe::None,
            reserved: 0,
            probe_next: false,
            id: InfoHash::ZERO,
        });
        e.received = e.received.saturating_add(len as u64);
        e.last = now;
        if let Some(id) = id {
            e.id = id;
        }
    }

    /// Forgets the eighth of the tracked addresses idle longest (their held data dropped).
    fn evict_unproven(&mut self) {
        let mut lasts: Vec<Instant> = self.unproven.values().map(|u| u.last).collect();
        let k = lasts.len() / 8;
        if lasts.is_empty() {
            return;
        }
        lasts.select_nth_unstable(k);
        let Some(cut) = lasts.get(k).copied() else { return };
        let mut freed = 0;
        let mut budget = k + 1;
        self.unproven.retain(|_, u| {
            if budget > 0 && u.last <= cut {
                budget -= 1;
                freed += u.held_bytes;
                false
            } else {
                true
            }
        });
        self.held_bytes -= freed;
    }

    /// `addr` proved a round trip: returns what was held for it, to send now.
    pub(crate) fn prove(&mut self, now: Instant, addr: SocketAddr) -> VecDeque<Vec<u8>> {
        if !self.is_on() {
            return VecDeque::new();
        }
        let (key, at) = (addr_key(&addr), secs(now));
        if !self.proven.contains_key(&key) && self.proven.len() >= self.limits.max_proven {
            self.proven.retain(|_, t| at.saturating_sub(*t) < PROOF_SECS);
            if self.proven.len() >= self.limits.max_proven {
                let mut times: Vec<u32> = self.proven.values().copied().collect();
                let k = times.len() / 8;
                times.select_nth_unstable(k);
                if let Some(cut) = times.get(k).copied() {
                    self.proven.retain(|_, t| *t > cut);
                }
            }
        }
        if self.limits.max_proven > 0 {
            self.proven.insert(key, at);
        }
        match self.unproven.remove(&addr) {
            Some(u) => {
                self.held_bytes -= u.held_bytes;
                u.held
            }
            None => VecDeque::new(),
        }
    }

    /// Bytes that may still go to `to` at once; `None`: no limit (guard off, proven, or an
    /// address that never sent us anything: our requests to it are our own doing).
    pub(crate) fn budget(&self, to: &SocketAddr) -> Option<usize> {
        let factor = u64::from(self.limits.factor?);
        let u = self.unproven.get(to)?;
        Some(usize::try_from(u.received.saturating_mul(factor).saturating_sub(u.sent)).unwrap_or(usize::MAX))
    }

    /// A request of ours to `to` (or its retransmission or value data): always sent, never
    /// held, since a peer cannot make us send requests at will; its bytes are charged to the
    /// address's credit, so the replies that follow stay within the bound.
    pub(crate) fn charge_request(&mut self, to: &SocketAddr, len: usize) {
        if self.limits.factor.is_none() {
            return;
        }
        if let Some(u) = self.unproven.get_mut(to) {
            u.sent = u.sent.saturating_add(len as u64);
            u.probe_next = false;
        }
    }

    /// A datagram for `to`: sent if the credit allows, else held (a probe is then wanted) or,
    /// past the holding bounds, dropped.
    pub(crate) fn admit(&mut self, now: Instant, to: SocketAddr, data: &[u8]) -> Admit {
        let Some(budget) = self.budget(&to) else {
            return Admit::Send;
        };
        let Some(u) = self.unproven.get_mut(&to) else {
            return Admit::Send;
        };
        if u.probe_next && data.len() <= budget {
            u.probe_next = false;
            u.sent += data.len() as u64;
            return Admit::Send;
        }
        if u.held.is_empty() && data.len() + u.reserved <= budget {
            u.sent += data.len() as u64;
            return Admit::Send;
        }
        if u.held.iter().any(|h| h.as_slice() == data) {
            // A retransmission's answer, identical to one already waiting.
            return Admit::Dropped;
        }
        if u.held_bytes + data.len() > self.limits.max_held_per_address
            || self.held_bytes + data.len() > self.limits.max_held
        {
            return Admit::Dropped;
        }
        u.held_bytes += data.len();
        self.held_bytes += data.len();
        u.held.push_back(data.to_vec());
        u.held_since.get_or_insert(now);
        u.last = now;
        if u.probe == Probe::None {
            u.probe = Probe::Wanted;
        }
        Admit::Held
    }

    /// Keeps room for a probe to `to` (what follows will likely be held): other datagrams may
    /// not use it until the probe goes.
    pub(crate) fn reserve_probe(&mut self, to: &SocketAddr) {
        if let Some(u) = self.unproven.get_mut(to)
            && u.probe == Probe::None
        {
            u.reserved = PROBE_RESERVE;
        }
    }

    /// Addresses with something held and no probe yet, whose credit has room for one: the node
    /// pings each at once (charged like any datagram, the next datagram to it goes ahead of
    /// what is held). Marks them probed.
    pub(crate) fn take_probes(&mut self) -> Vec<(SocketAddr, InfoHash)> {
        let Some(factor) = self.limits.factor else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (a, u) in self.unproven.iter_mut() {
            let room = u
                .received
                .saturating_mul(u64::from(factor))
                .saturating_sub(u.sent);
            if u.probe == Probe::Wanted && room >= PROBE_RESERVE as u64 && !u.id.is_zero() {
                u.probe = Probe::Sent;
                u.reserved = 0;
                u.probe_next = true;
                out.push((*a, u.id));
            }
        }
        out
    }

    /// When held data next lapse.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.unproven
            .values()
            .filter_map(|u| u.held_since)
            .min()
            .map(|t| t + HOLD_TIME)
    }

    /// Drops held data past [`HOLD_TIME`] and forgets idle addresses. Returns the datagrams
    /// dropped.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        let mut freed = 0;
        self.unproven.retain(|_, u| {
            if u.held_since.is_some_and(|t| now - t >= HOLD_TIME) {
                dropped += u.held.len();
                freed += u.held_bytes;
                u.held.clear();
                u.held_bytes = 0;
                u.held_since = None;
                // One probe per episode: a later hold may probe again.
                u.probe = Probe::None;
                u.reserved = 0;
            }
            u.held_since.is_some() || now - u.last < IDLE_TIME
        });
        self.held_bytes -= freed;
        dropped
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.unproven.len()
    }

    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            factor: Some(2),
            max_unproven: 64,
            max_held: 10_000,
            max_held_per_address: 4_000,
            max_proven: 16,
        }
    }

    fn a(i: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], i))
    }

    #[test]
    fn an_unproven_address_gets_twice_what_it_sent_and_the_rest_waits_for_its_proof() {
        let mut g = Guard::new(limits());
        let t = Instant::ZERO;
        assert_eq!(
            g.admit(t, a(1), &[0; 500]),
            Admit::Send,
            "never heard from: our own request"
        );
        g.on_received(t, a(1), 100, Some(InfoHash([1; 20])));
        assert_eq!(g.budget(&a(1)), Some(200));
        assert_eq!(g.admit(t, a(1), &[1; 150]), Admit::Send);
        assert_eq!(g.admit(t, a(1), &[2; 1000]), Admit::Held);
        assert_eq!(
            g.admit(t, a(1), &[3; 10]),
            Admit::Held,
            "nothing overtakes what waits"
        );
        assert_eq!(
            g.admit(t, a(1), &[2; 1000]),
            Admit::Dropped,
            "the same datagram twice"
        );
        assert!(g.take_probes().is_empty(), "50 bytes left: no room for a probe");
        g.on_received(t, a(1), 100, None);
        assert_eq!(g.take_probes(), [(a(1), InfoHash([1; 20]))]);
        assert!(g.take_probes().is_empty(), "one probe");
        let held = g.prove(t, a(1));
        assert_eq!(held.len(), 2);
        assert_eq!(g.held_bytes(), 0);
        assert!(g.is_proven(t, &a(1)));
        assert_eq!(g.budget(&a(1)), None);
        g.on_received(t, a(1), 100, None);
        assert_eq!(g.admit(t, a(1), &[0; 5000]), Admit::Send);
    }

    #[test]
    fn held_data_lapse_and_holding_is_bounded() {
        let mut g = Guard::new(limits());
        let t = Instant::ZERO;
        g.on_received(t, a(1), 10, None);
        for i in 0..10u8 {
            let _ = g.admit(t, a(1), &[i; 1000]);
        }
        assert_eq!(g.held_bytes(), 4000, "per address");
        for p in 2..6 {
            g.on_received(t, a(p), 10, None);
            for i in 0..4u8 {
                let _ = g.admit(t, a(p), &[i; 1000]);
            }
        }
        assert_eq!(g.held_bytes(), 10_000, "in all");
        assert_eq!(g.next_deadline(), Some(t + HOLD_TIME));
        assert_eq!(g.expire(t + HOLD_TIME), 10);
        assert_eq!(g.held_bytes(), 0);
        assert_eq!(g.tracked(), 5, "still tracked, still unproven");
        assert_eq!(g.budget(&a(1)), Some(20));
        g.expire(t + HOLD_TIME + IDLE_TIME);
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn tables_are_bounded() {
        let mut g = Guard::new(limits());
        for i in 0..1000u16 {
            let t = Instant::from_millis(u64::from(i));
            g.on_received(t, a(i), 10, None);
            let _ = g.admit(t, a(i), &[0; 100]);
            assert!(g.tracked() <= 64);
        }
        assert!(g.held_bytes() <= 10_000);
        for i in 0..1000u16 {
            let _ = g.prove(Instant::from_millis(u64::from(i)), a(i));
            assert!(g.proven.len() <= 16);
        }
        assert!(g.is_proven(Instant::from_millis(999), &a(999)));
    }

    #[test]
    fn off_means_no_limit() {
        let mut g = Guard::new(Limits {
            factor: None,
            ..limits()
        });
        g.on_received(Instant::ZERO, a(1), 10, None);
        assert_eq!(g.admit(Instant::ZERO, a(1), &[0; 5000]), Admit::Send);
        assert_eq!(g.tracked(), 0);
    }
}
